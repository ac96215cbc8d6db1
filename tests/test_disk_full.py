"""A full disk under every command's output (issue 26): one line naming the file and the
cause, exit 2 (1 where the other items are done), nothing half-written left under a final
name or presented as done, no empty folder the run made.

Each test mounts a small real tmpfs (``mount -t tmpfs``, so root) and, where the failure
must come after the first writes, fills it up to the few KiB it leaves free. The commands
run in-process through :func:`workflows.cli.main`; their inputs (a synthetic clip, a small
random-init model, shards) are made once per module outside the tmpfs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_train as tt
import torch
import yaml
from test_predict import SMALL, _one_thread  # noqa: F401 (its module-wide one-thread fixture)

from avrsp.config import tiny
from avrsp.errors import StorageError, storage_error
from avrsp.model import build_model
from workflows.cli import main
from workflows.export import export_model

FULL = "no space left on device"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``disk(size, free=None)``: a tmpfs of ``size`` (``"1m"``) mounted at
    ``tmp_path/disk``; with ``free`` (bytes), a file ``filler`` takes all but that much.
    Unmounted after the test; skips where mounting is not permitted (not root)."""
    mounted: list[Path] = []

    def mount(size: str, free: int | None = None) -> Path:
        point = tmp_path / "disk"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {done.stderr.strip()}")
        mounted.append(point)
        if free is not None:
            st = os.statvfs(point)
            (point / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - free))
        return point

    yield mount
    for point in mounted:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=True)  # still busy: detach


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic clips (3.2 s, 160×96, 25 fps), one ``train`` split."""
    root = tmp_path_factory.mktemp("synth")
    args = ["--out", str(root), "--videos", "2", "--seconds", "3.2", "--seed", "1"]
    assert main(["synth", *args, "--workers", "1"]) == 0
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random-init AV model at tests/test_predict.py's small window."""
    cfg = tiny().with_overrides(**SMALL, **{"model.use_audio": True})
    torch.manual_seed(0)
    return export_model(tmp_path_factory.mktemp("model") / "av", build_model(cfg), cfg)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_train.py's shards and a train.yaml of its fast config (2 epochs of one
    step; no storage, no MLflow URI: the command line gives them)."""
    root = tt.write_shards(
        tmp_path_factory.mktemp("data"), tt.small_network(), {"train": 2, "val": 1}
    )
    config = tt.fast_config(root, root / "unused", "").to_dict()
    for key in ("storage_path", "mlflow_uri"):
        config.pop(key, None)
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    return root


def one_error(command: str, err: str, under: Path) -> str:
    """The command's only error line; it names a file under the folder ``under`` and the
    full disk, and no traceback is printed."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"avrsp {command}: error:")]
    assert len(lines) == 1, err
    assert f" {under}/" in lines[0] and FULL in lines[0], lines[0]
    return lines[0]


def left_on(disk: Path) -> list[str]:
    """What is on the disk (the filler left out), relative paths, folders with a ``/``."""
    return sorted(
        str(p.relative_to(disk)) + "/" * p.is_dir() for p in disk.rglob("*") if p.name != "filler"
    )


# --------------------------------------------------------------------------- the translation


def test_storage_errors_are_found_inside_the_wrappers() -> None:
    """Ray's task error, Ray Train's worker-group error, a shutil.Error's text list and
    pyarrow's errno-less text all give the file and the cause; other errors give None."""
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    full = OSError(28, "No space left on device", "/d/maps/000012.png")
    task = RayTaskError("work", "Traceback …", full)
    assert str(storage_error(task)).startswith(f"/d/maps/000012.png: {FULL}")
    group = WorkerGroupError("rank 0 failed", {0: task})
    assert str(storage_error(group)).startswith(f"/d/maps/000012.png: {FULL}")
    copy = shutil.Error([("/s/a", "/d/a", "[Errno 28] No space left on device: '/s/a' -> '/d/a'")])
    assert str(storage_error(copy)).startswith(f"/d/a: {FULL}")
    arrow = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(storage_error(arrow, where="/d/x.parquet")).startswith(f"/d/x.parquet: {FULL}")
    quota = storage_error(OSError(122, "Disk quota exceeded", "/q"))
    assert isinstance(quota, StorageError) and str(quota).startswith("/q: disk quota exceeded")
    assert storage_error(OSError(2, "No such file", "/x")) is None
    assert storage_error(ValueError("[Errno 28] in a message")) is not None  # text counts
    assert storage_error(ValueError("bad value")) is None


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_predict_on_a_full_disk(fmt, disk, synth: Path, model: Path, capsys) -> None:
    """Some maps fit, then the disk is full: one line, exit 2, and no folder is left (the
    staging folder with its maps and the open ``.maps.raw`` are removed, then the folders
    the run made)."""
    root = disk("1m", free=64 * 1024)
    video = synth / "videos" / "clip_000.mp4"
    args = ["predict", str(video), "--model", str(model), "--out", str(root / "out"), "-q"]
    code = main([*args, "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 2
    one_error("predict", err, root / "out" / "clip_000")
    assert "maps in" not in out  # no summary line of a finished video
    assert left_on(root) == []


def test_predict_of_a_folder_reports_each_video_that_does_not_fit(disk, synth, model, capsys):
    """A folder, 64 KiB free: each clip fails after its first maps, as a per-item failure
    (exit 1) whose one-line reason names its file; their folders are removed and
    failures.json (which fits once they are) lists both."""
    root = disk("1m", free=64 * 1024)
    out = root / "out"
    code = main(["predict", str(synth / "videos"), "--model", str(model), "--out", str(out),
                 "--workers", "0", "-q"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 1, printed.err
    assert "Traceback" not in printed.err and "0 of 2 videos done" in printed.out
    failures = json.loads((out / "failures.json").read_text())
    assert [f["name"] for f in failures] == ["clip_000", "clip_001"]
    for failure in failures:
        reason = failure["reason"]
        assert reason.startswith(f"{out}/{failure['name']}/") and FULL in reason, reason
        assert "\n" not in reason
    assert left_on(root) == ["out/", "out/failures.json"]


def test_the_overlay_on_a_full_disk_names_its_file(disk, synth: Path) -> None:
    """ffmpeg writing overlay.mp4 runs out of room: its words become the same one line
    (:class:`StorageError` naming the file), not ffmpeg's log."""
    import numpy as np

    from workflows.predict_outputs import Overlay

    root = disk("64k")
    video = synth / "videos" / "clip_000.mp4"
    overlay = Overlay(root, video, (96, 160), 25.0, audio=False, start_s=0.0, duration_s=2.0)
    rng = np.random.default_rng(0)  # noise: frames that do not compress
    with pytest.raises(StorageError) as error:
        try:
            for _ in range(50):
                frame = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
                overlay.add(frame, rng.random((96, 160)).astype(np.float32))
            overlay.close()
        finally:
            overlay.abort()
    assert str(error.value).startswith(f"{root}/overlay.mp4: {FULL}")


def test_evaluate_on_a_full_disk(disk, synth: Path, capsys) -> None:
    """The first outputs fit, a frames table does not: one line, exit 2, the files written
    are removed again (no table.md presents the rest as done), no --out folder is left."""
    root = disk("1m", free=16 * 1024)
    code = main(["evaluate", "--baseline", "centre", "--source", f"synthetic:{synth}",
                 "--split", "all", "--limit", "1", "--workers", "0", "--no-mlflow",
                 "--out", str(root / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    one_error("evaluate", err, root / "out")
    assert left_on(root) == []


def test_preprocess_on_a_full_disk_fails_the_videos_that_do_not_fit(disk, synth: Path, capsys):
    """1 MiB: the first clip's shard (0.65 MiB) fits, the second's does not. That video is
    a per-item failure (exit 1) whose one line names its shard; no partial or hidden shard
    is left, and only the finished video has a done-marker."""
    root = disk("1m")
    out = root / "out"
    code = main(["preprocess", "--no-ray", "--num-cpus", "1", "--preset", "tiny",
                 "--source", f"synthetic:{synth}", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in err.out + err.err
    failures = json.loads((out / "failures.json").read_text())
    assert len(failures) == 1 and "\n" not in failures[0]["reason"]
    shard = out / "shards" / "train" / "synthetic" / f"{failures[0]['video']}-00000.parquet"
    assert failures[0]["reason"].startswith(f"{shard}: {FULL}")
    assert not shard.exists()
    assert not [p for p in out.rglob(".*") if p.name != "."]  # no hidden .tmp leftovers
    assert [p.stem for p in (out / "done").iterdir()] == ["synthetic__clip_000"]
    assert json.loads((out / "manifest.json").read_text())["failed"] == 1


def test_preprocess_without_room_for_its_manifest(disk, synth: Path, capsys) -> None:
    """8 KiB free: every video fails, and then the manifest does not fit either: one line,
    exit 2, no manifest.json (the done-marker of the job), no empty shard folder."""
    root = disk("1m", free=8 * 1024)
    out = root / "out"
    code = main(["preprocess", "--no-ray", "--num-cpus", "1", "--preset", "tiny",
                 "--source", f"synthetic:{synth}", "--out", str(out)])  # fmt: skip
    assert code == 2
    line = one_error("preprocess", capsys.readouterr().err, out)
    assert str(out / "manifest.json") in line
    assert "out/manifest.json" not in left_on(root)
    assert "out/shards/" not in left_on(root)


def test_train_on_a_full_disk(ray_session, disk, shards: Path, tmp_path: Path, capsys) -> None:
    """The run's config files fit, its first checkpoint (tens of MiB) does not: one line
    naming the checkpoint file, exit 2, no hidden half-copied checkpoint folder, no
    model.pt, and the MLflow run is FAILED, not left RUNNING."""
    from mlflow.tracking import MlflowClient

    root = disk("1m")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["train", "--config", str(shards / "train.yaml"), "--data", str(shards),
                 "--storage", str(root / "runs"), "--num-workers", "0", "--from-scratch",
                 "--mlflow-uri", uri])  # fmt: skip
    assert code == 2
    run_dir = root / "runs" / "stage1"
    line = one_error("train", capsys.readouterr().err, run_dir)
    assert "checkpoint" in line
    left = left_on(run_dir)
    assert "train_config.json" in left  # written before: the run started
    assert not [name for name in left if "checkpoint" in name or name.startswith("model")]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("avrsp").experiment_id])
    assert run.info.status == "FAILED"


def test_tune_on_a_full_disk(disk, shards: Path, tmp_path: Path, capsys) -> None:
    """A sweep whose --storage has no room for its first file: one line naming it, exit 2,
    and the sweep folder it made is removed again (before any trial or Ray starts)."""
    root = disk("1m", free=0)
    (tmp_path / "space.yaml").write_text(
        "name: mini\nparams:\n  lr: {kind: grid, values: [0.001]}\n"
    )
    code = main(["tune", "--space", str(tmp_path / "space.yaml"),
                 "--config", str(shards / "train.yaml"), "--data", str(shards),
                 "--eval-split", "val", "--storage", str(root / "tune"),
                 "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])  # fmt: skip
    assert code == 2
    one_error("tune", capsys.readouterr().err, root / "tune" / "mini")
    assert left_on(root) == []
