"""Checkpoints verified before trusted (docs/TRAINING.md, "Faults and resuming").

Real tiny training runs (``test_train``'s shards and configs, in-process, 1 step an
epoch) whose checkpoint files are then cut short, emptied or rewritten on disk: a damaged
newest checkpoint is named and passed over for the newest intact one, the resumed epoch
repeats the uninterrupted run's exactly, a resume that fails before training leaves a
finished MLflow run FINISHED, and leftovers of an interrupted save are removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import test_train as tt  # the tiny shard writer and configs; a module import
import torch

from avrsp.errors import WeightsError
from workflows import loop
from workflows.export import load_model
from workflows.tracking import RUN_FILE
from workflows.train import checkpoint_dirs, train

TIMING = ("train_windows_per_s", "epoch_s")


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """A finished in-process run of 2 epochs (a registered MLflow model): its config and
    result. Tests resume copies of it."""
    root = tmp_path_factory.mktemp("ckpt")
    shards = tt.write_shards(root, tt.small_network(), {"train": 2, "val": 1})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = tt.fast_config(
        shards, root / "runs", uri, run_name="base", grid_windows=0, system_metrics=False,
        mlflow_model_format="pickle", progress_every=0,
    )  # fmt: skip
    return cfg, train(cfg)


def copy_run(cfg: tt.TrainConfig, name: str, *, same_mlflow_run: bool) -> tt.TrainConfig:
    """A copy of the run's folder under another storage (the same run name); without
    ``same_mlflow_run`` its resume opens an MLflow run of its own."""
    storage = Path(cfg.storage_path).parent / name
    shutil.copytree(cfg.run_dir, storage / cfg.run_name)
    if not same_mlflow_run:
        (storage / cfg.run_name / RUN_FILE).unlink()
    return cfg.model_copy(update={"storage_path": storage, "register_as": ""})


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_named_and_passed_over(finished) -> None:
    cfg, first = finished
    copy = copy_run(cfg, "cut", same_mlflow_run=False)
    newest = copy.run_dir / "checkpoint_epoch_0001" / "checkpoint.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # cut in half, as a full disk or a kill leaves it
    # Leftovers of an interrupted copy of a checkpoint into the run, and of an atomic write.
    (copy.run_dir / ".checkpoint_epoch_0002.tmp4242").mkdir()
    (copy.run_dir / ".checkpoint_epoch_0002.tmp4242" / "checkpoint.pt").write_bytes(b"x")
    (copy.run_dir / ".model.pt.k2j3.tmp").write_bytes(b"x")
    said: list[str] = []
    again = train(copy, log=said.append)
    assert said[0] == (
        f"[avrsp train] skipping a damaged checkpoint: {newest}: damaged or truncated: its "
        f"{len(data) // 2:,} bytes do not have the SHA-256 recorded at save in "
        "checkpoint.pt.sha256"
    )
    assert "resuming run 'base' from checkpoint_epoch_0000 (epoch 0 done" in said[1]
    assert len(said) == 2
    # Epoch 1 was redone from epoch 0's state, and repeats the uninterrupted run exactly:
    # every random state the epoch uses is the one it had (validation included).
    assert [h["epoch"] for h in again.history] == [0, 1]
    assert again.history[0] == first.history[0]
    redone, whole = again.history[1], first.history[1]
    assert {k: v for k, v in redone.items() if k not in TIMING} == {
        k: v for k, v in whole.items() if k not in TIMING
    }
    # The damaged folder was replaced by the redone epoch; the model is the best intact one.
    assert loop.verify_checkpoint(copy.run_dir / "checkpoint_epoch_0001")
    assert load_model(again.model_path).meta["val_loss"] == again.best_val_loss
    # The next run removed the leftovers.
    assert sorted(p.name for p in copy.run_dir.glob(".*")) == []


@pytest.mark.slow
def test_a_failed_resume_leaves_a_finished_run_finished(finished) -> None:
    from mlflow.tracking import MlflowClient

    cfg, first = finished
    client = MlflowClient(first.tracking_uri)
    assert client.get_run(first.mlflow_run_id).info.status == "FINISHED"
    copy = copy_run(cfg, "unfit", same_mlflow_run=True)
    # An intact file (its checksum matches) whose weights do not fit the network: the
    # resume fails in the worker, before training starts.
    folder = copy.run_dir / "checkpoint_epoch_0001"
    state = loop.load_checkpoint(folder)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("decoder.")}
    loop.save_checkpoint(folder, state, loop.read_metrics(folder))
    with pytest.raises(Exception, match="decoder"):
        train(copy.model_copy(update={"epochs": 3}))
    run = client.get_run(first.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["registered_model"] == first.registered_model


def test_checksums_empty_files_and_checkpoints_from_before_checksums(
    finished, tmp_path: Path
) -> None:
    cfg, _ = finished
    folder = tmp_path / "checkpoint_epoch_0000"
    shutil.copytree(checkpoint_dirs(cfg.run_dir)[0], folder)
    digest = (folder / "checkpoint.pt.sha256").read_text()
    assert digest.endswith("  checkpoint.pt\n") and len(digest.split()[0]) == 64  # sha256sum -c
    assert loop.verify_checkpoint(folder) and loop.checkpoint_problem(folder) is None
    data = (folder / "checkpoint.pt").read_bytes()
    # Written before checksums: trusted once it loads, refused (named) when it does not.
    (folder / "checkpoint.pt.sha256").unlink()
    assert not loop.verify_checkpoint(folder) and loop.checkpoint_problem(folder) is None
    assert loop.load_checkpoint(folder)["epoch"] == 0
    (folder / "checkpoint.pt").write_bytes(data[:-100])
    problem = loop.checkpoint_problem(folder)
    assert problem.startswith(f"{folder / 'checkpoint.pt'}: damaged or truncated: not a complete")
    # A zero-byte file is called empty.
    (folder / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(loop.DamagedCheckpoint, match=r"checkpoint\.pt: empty \(0 bytes"):
        loop.load_checkpoint(folder)
    # The newest intact of several, and what was passed over.
    assert loop.newest_intact([str(checkpoint_dirs(cfg.run_dir)[0]), str(folder)]) == (
        str(checkpoint_dirs(cfg.run_dir)[0]),
        [f"{folder / 'checkpoint.pt'}: empty (0 bytes; the save never wrote it)"],
    )


def test_refused_files_say_what_they_hold(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"config": "{}", "state_dict": {}, "obj": Path("x")}, evil)
    with pytest.raises(WeightsError) as refused:
        load_model(evil)
    text = str(refused.value)
    assert text.startswith(f"{evil}: holds pickled Python objects (pathlib.")
    assert "would run code" in text and "refused" in text
    assert "weights_only=False" not in text and "succeed" not in text  # no advice to unpickle
    empty = tmp_path / "model.pt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"model\.pt: empty \(0 bytes\)"):
        load_model(empty)
    notes = tmp_path / "notes.pt"  # not a pickle at all: not called "pickled objects"
    notes.write_text("not a model")
    with pytest.raises(WeightsError, match=r"notes\.pt: not a loadable AVRSP model: not a Py"):
        load_model(notes)
    json.dumps(text)  # one plain line
    assert "\n" not in text


@pytest.mark.slow
def test_ray_workers_pass_over_a_damaged_checkpoint_ray_still_holds(finished) -> None:
    """With Ray Train workers ``ray.train.get_checkpoint()`` hands out the damaged newest
    checkpoint (Ray registered it): the worker falls back to the one before, and the redone
    epoch gets a folder of its own, which Ray's retention cannot prune with the damaged one."""
    cfg, _ = finished
    ray_cfg = cfg.model_copy(
        update={"run_name": "workers", "num_workers": 1, "cpus_per_worker": 0.5,
                "register_as": ""}
    )  # fmt: skip
    first = train(ray_cfg)
    newest = first.run_dir / "checkpoint_epoch_0001" / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    said: list[str] = []
    again = train(ray_cfg, log=said.append)
    assert said[0].startswith(f"[avrsp train] skipping a damaged checkpoint: {newest}: damaged")
    assert "from checkpoint_epoch_0000" in said[1]
    names = [d.name for d in checkpoint_dirs(again.run_dir)]
    assert "checkpoint_epoch_0001.1" in names
    assert [h["epoch"] for h in again.history] == [0, 1]
    assert Path(again.best_checkpoint).name != "checkpoint_epoch_0001"
    assert loop.checkpoint_problem(again.best_checkpoint) is None
