"""The training workflow: the Ray-free loop (workflows/loop.py), the Ray Train job
(workflows/train.py), data.py and export.py.

Shards are written here with the preprocessing code's own row encoders
(:mod:`preprocessing.segments`), at a smaller input than ``tiny`` (T=8 at 32×48, 0.25 s of
audio) so that a step takes about a second on one core. The loop tests feed it lists of
batch dicts decoded from those shards (no Ray). The Ray tests share one local Ray
(``ray_session`` in conftest.py) and one SQLite MLflow store per module; faults are
injected from here (``crash_once`` in conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from avrsp.config import AVRSPConfig, preset
from avrsp.errors import ConfigError, InputError, WeightsError
from avrsp.model import build_model
from preprocessing.schema import SCHEMA_VERSION, encode_jpeg, encode_map_png, rows_to_table
from workflows.data import check_shards, decode_batch, fixation_map, flip_batch, split_files
from workflows.export import export_model, load_model, load_stage1_weights
from workflows.loop import fit, initial_model, load_checkpoint, save_checkpoint
from workflows.train import TrainConfig, checkpoint_dirs, train

REPO = Path(__file__).resolve().parents[1]


def small_network(use_audio: bool = False, **overrides) -> AVRSPConfig:
    """``tiny`` at T=8, 32×48, 0.25 s audio (S3D needs T >= 8 to keep a time step)."""
    return preset("tiny").with_overrides(
        **{
            "input.frames": 8,
            "input.height": 32,
            "input.width": 48,
            "input.audio_window_s": 0.25,
            "model.use_audio": use_audio,
            **overrides,
        }
    )


def write_shards(
    root: Path, net: AVRSPConfig, videos: dict[str, int], rows: int = 6, seed: int = 0
) -> Path:
    """``root/shards/<split>/toy/<video>-00000.parquet``: a bright square moving per row,
    its Gaussian as target, two fixation points on it (native size = 2× model size)."""
    rng = np.random.default_rng(seed)
    T, H, W = net.input.frames, net.input.height, net.input.width
    yy, xx = np.mgrid[0:H, 0:W]
    for split, count in videos.items():
        for v in range(count):
            out = []
            for r in range(rows):
                cx, cy = rng.uniform(6, W - 6), rng.uniform(6, H - 6)
                img = np.full((H, W, 3), 40, np.uint8)
                img[int(cy) - 3 : int(cy) + 3, int(cx) - 3 : int(cx) + 3] = 230
                frames = [encode_jpeg(img, 90)] * T
                sal = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 18.0)
                pts = np.array([[2 * cx, 2 * cy], [2 * cx + 1.5, 2 * cy - 1.5]], np.float32)
                out.append(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "dataset": "toy",
                        "video": f"{split}{v}",
                        "split": split,
                        "fold": 0,
                        "last_frame": T - 1 + 4 * r,
                        "num_frames": T,
                        "fps": 25.0,
                        "native_height": 2 * H,
                        "native_width": 2 * W,
                        "height": H,
                        "width": W,
                        "frames_jpeg": frames,
                        "has_audio": True,
                        "sample_rate": net.input.sample_rate,
                        "audio": (rng.standard_normal(net.input.audio_samples) * 0.1).astype(
                            np.float32
                        ),
                        "target_png": encode_map_png(sal),
                        "target_source": "fixations",
                        "fixations": pts.reshape(-1),
                        "fixations_dropped": 0,
                    }
                )
            folder = root / "shards" / split / "toy"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows_to_table(out), folder / f"{split}{v}-00000.parquet")
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("data"), small_network(), {"train": 2, "val": 1})


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def fast_config(data: Path, storage: Path, uri: str, **kw) -> TrainConfig:
    values = {
        "network": small_network(),
        "data": data,
        "epochs": 2,
        "batch_size": 2,
        "max_steps_per_epoch": 1,
        "max_val_batches": 1,
        "grid_windows": 2,
        "storage_path": storage,
        "mlflow_uri": uri,
        "system_metrics_interval_s": 0.5,
        "run_name": "stage1",
        **kw,
    }
    return TrainConfig(**values)


# =========================================================================== config


def test_stage_configs_are_configs_not_code() -> None:
    s1 = TrainConfig.load(REPO / "configs" / "stage1.yaml")
    s2 = TrainConfig.load(REPO / "configs" / "stage2.yaml")
    assert (s1.stage, s1.network.model.use_audio) == (1, False)
    assert (s2.stage, s2.network.model.use_audio) == (2, True)
    # Both inherit the paper preset except where the file says otherwise.
    assert s1.network.input.frames == s2.network.input.frames == 32
    assert (s1.lr, s1.weight_decay, s1.lr_factor) == (1e-4, 1e-5, 0.5)
    # Paths in a config file are relative to the file.
    assert s2.init_from == REPO / "runs" / "stage1-dhf1k" / "model.pt"


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig.from_dict({"stage": 2})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        TrainConfig.load(bad)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 1})
    with pytest.raises(ConfigError, match=r"network\.model\.width"):
        TrainConfig.from_dict({"network": {"model": {"width": 0}}})
    cfg = TrainConfig().with_overrides(**{"network.model.heads": 2, "epochs": 5})
    width = preset("tiny").model.width
    assert (cfg.network.model.heads, cfg.epochs, cfg.network.model.width) == (2, 5, width)
    with pytest.raises(ConfigError, match="nope"):
        TrainConfig().with_overrides(nope=1)


def test_cli_maps_flags_to_the_config(tmp_path: Path) -> None:
    from workflows.cli import build_parser
    from workflows.commands.train import build_config

    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(REPO / "configs" / "stage1.yaml"),
            "--data",
            str(tmp_path),
            "--num-workers",
            "2",
            "--gpu",
            "--run-name",
            "x1",
            "--set",
            "network.model.width=64",
            "--set",
            "flip_prob=0",
        ]
    )
    cfg = build_config(args)
    assert (cfg.num_workers, cfg.use_gpu, cfg.run_name, cfg.data) == (2, True, "x1", str(tmp_path))
    assert (cfg.network.model.width, cfg.flip_prob, cfg.epochs) == (64, 0.0, 80)
    with pytest.raises(ConfigError, match="--data"):
        build_config(build_parser().parse_args(["train", "--preset", "tiny"]))
    # Object-store locations stay URIs (a Path would fold s3:// into s3:/).
    remote = ["--data", "s3://b/shards", "--storage", "s3://b/runs", "--num-workers", "2"]
    args = build_parser().parse_args(["train", *remote, "--placement-strategy", "SPREAD"])
    cfg = build_config(args)
    assert (cfg.data, cfg.storage_path, cfg.run_location) == (
        "s3://b/shards",
        "s3://b/runs",
        "s3://b/runs/avrsp",
    )
    assert cfg.placement_strategy == "SPREAD"
    assert cfg.run_dir.is_absolute() and "avrsp-runs" in str(cfg.run_dir)  # local staging
    with pytest.raises(ConfigError, match="in-process runs"):
        build_config(build_parser().parse_args(["train", *remote[:4]]))


# =========================================================================== the loop, no Ray


@pytest.fixture
def one_thread():
    """One torch thread, as a training worker on one CPU (two threads on a busy two-core
    machine spin against each other: ten times slower, docs/PERFORMANCE.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batches_of(shards: Path, split: str, size: int = 2) -> list[dict[str, np.ndarray]]:
    """The split's rows as the loop receives them (decode_batch), ``size`` rows a batch."""
    rows = [r for f in split_files(shards, split) for r in pq.read_table(f).to_pylist()]
    batches = []
    for start in range(0, len(rows) - size + 1, size):
        chunk = rows[start : start + size]
        columns = {k: np.array([r[k] for r in chunk], dtype=object) for k in chunk[0]}
        batches.append(decode_batch(columns, size=(32, 48)))
    return batches


def loop_config(**kw) -> TrainConfig:
    values = {"network": small_network(), "epochs": 2, "batch_size": 2, "max_steps_per_epoch": 2,
              "max_val_batches": 1, "progress_every": 0, **kw}  # fmt: skip
    return TrainConfig(**values)


def run_loop(shards: Path, cfg: TrainConfig, resume=None, step_hook=None):
    """``fit`` on in-memory batches; returns (history, [(metrics, state, files)] reported)."""
    train_b, val_b = batches_of(shards, "train"), batches_of(shards, "val")
    reports = []

    def report(metrics, folder):
        reports.append((metrics, load_checkpoint(folder), sorted(p.name for p in folder.iterdir())))

    history = fit(cfg.to_dict(), initial_model(cfg, resume), lambda epoch: iter(train_b),
                  lambda: iter(val_b), report, resume=resume, step_hook=step_hook)  # fmt: skip
    return history, reports


def test_loop_trains_validates_and_checkpoints_on_batches_in_memory(
    shards: Path, one_thread
) -> None:
    cfg = loop_config()
    before = {k: v.clone() for k, v in initial_model(cfg).state_dict().items()}
    calls = []
    history, reports = run_loop(shards, cfg, step_hook=lambda *a: calls.append(a))
    assert calls == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)]  # (epoch, step, rank)
    assert [m["epoch"] for m, _, _ in reports] == [0, 1] and history == [m for m, _, _ in reports]
    assert [m["global_step"] for m in history] == [2, 4]
    assert [m["train_windows"] for m in history] == [4, 4]  # 2 steps × batch 2
    assert history[-1]["val_windows"] == 2  # max_val_batches=1
    assert -1 <= history[-1]["val_cc"] <= 1 and 0 <= history[-1]["val_auc_judd"] <= 1
    _, state, files = reports[-1]
    assert files == ["checkpoint.pt", "checkpoint.pt.sha256", "metrics.json", "train_config.json"]
    assert state["epoch"] == 1 and state["global_step"] == 4 and state["history"] == history
    assert state["scheduler"]["factor"] == 0.5
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 1e-5
    assert json.loads(state["config"])["network"] == cfg.network.to_dict()
    assert any(not torch.equal(before[k], v) for k, v in state["model"].items())  # it learnt


def test_loop_resumed_from_a_checkpoint_repeats_the_uninterrupted_run(
    shards: Path, one_thread
) -> None:
    timing = ("train_windows_per_s", "epoch_s")
    whole, _ = run_loop(shards, loop_config(epochs=2))
    first, reports = run_loop(shards, loop_config(epochs=1))
    state = reports[-1][1]
    resumed, again = run_loop(shards, loop_config(epochs=2), resume=state)
    assert [m["epoch"] for m, _, _ in again] == [1]  # epoch 0 is not redone
    assert resumed[0] == first[0] and resumed[-1]["global_step"] == 4
    for key, value in whole[1].items():
        if key not in timing:
            assert resumed[1][key] == pytest.approx(value, rel=1e-5, nan_ok=True), key


def test_loop_without_batches_names_the_split(shards: Path, one_thread) -> None:
    cfg = loop_config()
    with pytest.raises(InputError, match="train: no training batch of 2 rows"):
        fit(cfg, initial_model(cfg), lambda epoch: iter([]), lambda: iter([]), lambda *a: None)


def test_the_loop_imports_no_ray() -> None:
    modules = "workflows.loop, workflows.data, workflows.export, avrsp.model, avrsp.losses"
    code = (f"import sys, {modules}, avrsp.metrics; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_in_process_checkpoints_follow_the_checkpoint_config(tmp_path: Path) -> None:
    """Ray's local mode stores nothing: LocalModeCheckpoints keeps what Ray would keep."""
    import ray.train

    from workflows.train import LocalModeCheckpoints

    config = ray.train.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
    )
    store = LocalModeCheckpoints(tmp_path / "run", config)
    assert store.latest() is None
    for epoch, val_loss in enumerate([3.0, 1.0, 2.0, 5.0, 1.0]):
        folder = tmp_path / f"reported{epoch}"
        save_checkpoint(folder, {"config": "{}"}, {"epoch": epoch, "val_loss": val_loss})
        assert store.persist(folder, f"checkpoint_epoch_{epoch:04d}") == store.latest()
        kept = [int(d.name[-4:]) for d in checkpoint_dirs(tmp_path / "run")]
        assert kept == [[0], [0, 1], [1, 2], [1, 2, 3], [1, 4]][epoch]  # 2 best + the latest
    assert store.best().name == "checkpoint_epoch_0004"  # ties: the latest
    assert not list((tmp_path / "run").glob(".*"))  # no temporary folders left
    # A damaged best is passed over for the best intact one.
    (tmp_path / "run" / "checkpoint_epoch_0004" / "checkpoint.pt").write_bytes(b"")
    assert store.best().name == "checkpoint_epoch_0001"


# =========================================================================== export / stage 2


def test_export_round_trip_and_config_mismatch(tmp_path: Path) -> None:
    net = small_network()
    torch.manual_seed(0)
    model = build_model(net).eval()
    path = export_model(tmp_path / "out", model, net, meta={"run_name": "r", "epoch": 3})
    assert path == tmp_path / "out" / "model.pt"
    assert json.loads(path.with_suffix(".config.json").read_text())["meta"]["epoch"] == 3
    loaded = load_model(path)
    x = torch.rand(1, 3, 8, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.config == net and loaded.meta["run_name"] == "r"
    assert load_model(path, config=net.with_overrides(**{"loss.a1": -0.5})).config == net
    width = net.model.width
    with pytest.raises(ConfigError, match=rf"model\.width: stored {width}, given 16"):
        load_model(path, config=net.with_overrides(**{"model.width": 16, "model.heads": 2}))
    # A file that needs pickled code is refused, not executed.
    evil = tmp_path / "evil.pt"
    torch.save({"config": "{}", "state_dict": {}, "obj": Path("x")}, evil)
    with pytest.raises(WeightsError, match=r"evil\.pt"):
        load_model(evil)
    # Weights that do not fit their own config.
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    export_model(tmp_path / "cut.pt", state, net)
    with pytest.raises(WeightsError, match=r"cut\.pt.*missing: decoder\."):
        load_model(tmp_path / "cut.pt")


def test_stage1_weights_land_in_stage2(tmp_path: Path) -> None:
    torch.manual_seed(0)
    v_model = build_model(small_network(use_audio=False))
    path = export_model(tmp_path / "v.pt", v_model, small_network(), meta={"mlflow_run_id": "p"})
    torch.manual_seed(1)
    av_model = build_model(small_network(use_audio=True))
    report = load_stage1_weights(av_model, path)
    v_state, av_state = v_model.state_dict(), av_model.state_dict()
    assert report.loaded == len(v_state) and report.meta["mlflow_run_id"] == "p"
    assert all(torch.equal(av_state[k], v) for k, v in v_state.items())
    assert report.new
    assert all(k.split(".")[0] in ("audio", "audio_proj", "fusion") for k in report.new)
    assert set(report.new) == set(av_state) - set(v_state)
    # Another visual width: a clear error naming the config field.
    other = build_model(small_network(use_audio=True, **{"model.width": 16, "model.heads": 2}))
    width = small_network().model.width
    with pytest.raises(WeightsError, match=rf"mis-shaped.*model\.width: stage 1 {width}, here 16"):
        load_stage1_weights(other, path)


# =========================================================================== data


def test_decode_flip_and_fixation_maps(shards: Path) -> None:
    files = split_files(shards, "val")
    table = pq.read_table(files[0]).slice(0, 3)
    batch = {name: np.array(table[name].to_pylist(), dtype=object) for name in table.column_names}
    plain = decode_batch(batch, size=(32, 48))
    flipped = flip_batch(plain, np.ones(3, dtype=bool))
    assert plain["frames"].shape == (3, 8, 32, 48, 3) and plain["frames"].dtype == np.uint8
    assert plain["audio"].shape == (3, 5512) and plain["target"].max() == pytest.approx(1.0)
    # Frames, target and fixations are mirrored together.
    np.testing.assert_array_equal(flipped["frames"], plain["frames"][:, :, :, ::-1])
    np.testing.assert_array_equal(flipped["target"], plain["target"][:, :, ::-1])
    np.testing.assert_array_equal(flipped["fixmap"], plain["fixmap"][:, :, ::-1])
    np.testing.assert_array_equal(flipped["audio"], plain["audio"])
    # Fixation points (native 64×96) land on the model-resolution pixel that holds them.
    pts = np.array(table["fixations"][0].as_py(), np.float32).reshape(-1, 2)
    ys, xs = np.nonzero(plain["fixmap"][0])
    assert sorted(zip(xs, ys, strict=True)) == sorted({(int(x // 2), int(y // 2)) for x, y in pts})
    # The fixated pixel is where the target peaks (the map was made around the point).
    peak = np.unravel_index(np.argmax(plain["target"][0]), (32, 48))
    assert abs(peak[0] - pts[0, 1] / 2) <= 1.5 and abs(peak[1] - pts[0, 0] / 2) <= 1.5
    assert fixation_map(np.array([[95.9, 63.9]]), (64, 96), (32, 48))[31, 47] == 1


def test_shards_of_another_config_are_refused(shards: Path) -> None:
    files = split_files(shards, "train")
    check_shards(files, small_network())
    with pytest.raises(InputError, match=r"height 32 \(config wants 64\)"):
        check_shards(files, preset("tiny"))
    with pytest.raises(InputError, match=r"split 'test'.*train, val"):
        split_files(shards, "test")


def test_shards_cut_with_another_audio_alignment_are_refused(tmp_path: Path) -> None:
    root = write_shards(tmp_path, small_network(), {"train": 1})
    files = split_files(root, "train")
    centred = small_network().with_overrides(**{"input.audio_alignment": "centred"})
    check_shards(files, centred)  # no manifest: the rows cannot tell
    (root / "manifest.json").write_text(json.dumps({"options": {"stride": 4}}))  # older
    check_shards(files, small_network())
    with pytest.raises(InputError, match=r"audio alignment span \(config wants centred\)"):
        check_shards(files, centred)
    (root / "manifest.json").write_text(json.dumps({"options": {"audio_alignment": "centred"}}))
    check_shards(files, centred)


# =========================================================================== Ray Train runs


@pytest.fixture(scope="module")
def stage1(ray_session, shards: Path, mlflow_uri: str, tmp_path_factory):
    """A local-mode (in-process) stage-1 run of 2 epochs × 1 step."""
    cfg = fast_config(shards, tmp_path_factory.mktemp("runs"), mlflow_uri)
    return cfg, train(cfg)


@pytest.mark.slow
def test_local_run_checkpoints_exports_and_tracks(stage1, monkeypatch, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg, result = stage1
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert result.history[-1]["global_step"] == 2
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    for key in ("val_loss", "val_cc", "val_nss", "val_sim", "val_kld", "val_auc_judd"):
        assert np.isfinite(result.history[-1][key]), key
    assert -1 <= result.history[-1]["val_cc"] <= 1 and 0 <= result.history[-1]["val_auc_judd"] <= 1
    # Checkpoints: one per epoch (2 <= num_to_keep), each with the full training state.
    dirs = checkpoint_dirs(result.run_dir)
    assert [d.name for d in dirs] == ["checkpoint_epoch_0000", "checkpoint_epoch_0001"]
    state = torch.load(dirs[-1] / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "config"} <= set(state)
    assert state["scheduler"]["factor"] == 0.5
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 1e-5
    # The exported model is the best checkpoint's weights and loads on its own.
    loaded = load_model(result.model_path, config=cfg.network)
    best = torch.load(Path(result.best_checkpoint) / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in best.items())
    assert load_model(result.best_checkpoint).config == cfg.network  # a checkpoint loads too
    # MLflow, read back.
    client = MlflowClient(tracking_uri=result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["network.model.use_audio"] == "False" and params["lr"] == "0.0001"
    assert params["network.input.frames"] == "8" and params["stage"] == "1"
    assert params["network.model.decoder_widths"] == "[32, 24, 16, 8]"
    tags = run.data.tags
    assert (tags["dataset"], tags["stage"], tags["preset"]) == ("toy", "1", "tiny")
    assert tags["git_commit"] and tags["parent_run"] == ""
    history = client.get_metric_history(result.mlflow_run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [h["val_loss"] for h in result.history]
    )
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    files = {a.path for a in client.list_artifacts(result.mlflow_run_id, "config")}
    assert files == {"config/train_config.json"}
    images = [a.path for a in client.list_artifacts(result.mlflow_run_id, "images")]
    assert sorted({p.split("+")[2] for p in images if p.endswith(".png")}) == ["0", "1"]
    # The exported model is the run's MLflow model, registered under the run name, and
    # loads back from the registry with the same weights.
    assert result.registered_model == "models:/stage1/1" == tags["registered_model"]
    assert tags["model_uri"] == result.model_uri
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the download cache
    again = load_model(result.registered_model, tracking_uri=result.tracking_uri)
    assert again.path.read_bytes() == result.model_path.read_bytes()
    logged = client.get_logged_model(result.model_uri.removeprefix("models:/"))
    assert logged.tags["avrsp.format"] == "pt2" and logged.source_run_id == run.info.run_id


@pytest.mark.slow
def test_rerun_resumes_and_refuses_another_network(stage1) -> None:
    from mlflow.tracking import MlflowClient

    cfg, first = stage1
    said: list[str] = []
    again = train(cfg.model_copy(update={"epochs": 3}), log=said.append)
    assert again.resumed and again.mlflow_run_id == first.mlflow_run_id
    assert len(said) == 1 and "resuming run 'stage1' from checkpoint_epoch_0001" in said[0]
    assert "(epoch 1 done, val loss" in said[0]
    assert [h["epoch"] for h in again.history] == [0, 1, 2]
    assert again.history[:2] == first.history  # the first two epochs were not redone
    assert again.history[-1]["global_step"] == 3
    client = MlflowClient(again.tracking_uri)
    steps = [m.step for m in client.get_metric_history(again.mlflow_run_id, "train_loss")]
    assert sorted(steps) == [0, 1, 2]
    # num_to_keep=2 best plus the latest survive.
    assert len(checkpoint_dirs(again.run_dir)) <= 3
    narrow = small_network(**{"model.width": 16, "model.heads": 2})
    other = cfg.model_copy(update={"network": narrow})
    width = cfg.network.model.width
    with pytest.raises(ConfigError, match=rf"stage1.*model\.width: stored {width}, given 16"):
        train(other)
    # Other optimiser settings or other data would mix two runs in one: refused, by name.
    # (On a copy of the run: the stage-2 test below starts from this one's model.)
    storage = Path(cfg.storage_path).parent / "copied-runs"
    shutil.copytree(again.run_dir, storage / cfg.run_name)
    copy = cfg.model_copy(update={"storage_path": storage, "epochs": 4})
    with pytest.raises(ConfigError, match=r"other settings.*lr 0\.0001 → 0\.01.*--overwrite"):
        train(copy.model_copy(update={"lr": 0.01}))
    elsewhere = Path(cfg.data).parent / "copied-data"
    shutil.copytree(cfg.data, elsewhere)
    with pytest.raises(ConfigError, match=r"other settings.*data .* → .*copied-data"):
        train(copy.model_copy(update={"data": elsewhere}))
    # --overwrite starts the run again: a new MLflow run, the old checkpoints gone.
    fresh = train(
        copy.model_copy(update={"epochs": 1, "lr": 0.01}), overwrite=True, log=said.append
    )
    assert not fresh.resumed and fresh.mlflow_run_id != first.mlflow_run_id
    assert [d.name for d in checkpoint_dirs(fresh.run_dir)] == ["checkpoint_epoch_0000"]
    assert len(said) == 1  # no "resuming" line


@pytest.mark.slow
def test_stage2_starts_from_stage1(stage1, shards: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    cfg, s1 = stage1
    s2_cfg = cfg.model_copy(
        update={
            "stage": 2,
            "network": small_network(use_audio=True),
            "init_from": s1.model_path,
            "run_name": "stage2",
            "epochs": 1,
        }
    )
    s2 = train(s2_cfg)
    tags = MlflowClient(s2.tracking_uri).get_run(s2.mlflow_run_id).data.tags
    assert tags["parent_run"] == s1.mlflow_run_id and tags["stage"] == "2"
    assert tags["parent_run_name"] == "stage1" and tags["variant"] == "AV"
    loaded = load_model(s2.model_path)
    assert loaded.model.uses_audio and loaded.meta["parent_run"] == s1.mlflow_run_id


@pytest.mark.slow
def test_two_workers_survive_a_crash(
    ray_session, shards: Path, mlflow_uri: str, tmp_path: Path, crash_once
) -> None:
    """Rank 1 dies (os._exit) at epoch 1, step 0 on the first attempt; Ray restarts the
    worker group from epoch 0's checkpoint and the run finishes with epochs 0, 1 once each."""
    from mlflow.tracking import MlflowClient

    hook, marker, calls = crash_once(epoch=1, step=0, rank=1)
    cfg = fast_config(
        shards,
        tmp_path / "runs",
        mlflow_uri,
        run_name="ddp",
        num_workers=2,
        cpus_per_worker=0.5,
        system_metrics=False,
    )
    result = train(cfg, step_hook=hook)
    assert marker.read_text().startswith("crashed at epoch 1 step 0 rank 1")
    steps = calls.read_text().splitlines()
    assert steps.count("0 0 0") == steps.count("0 0 1") == 1  # epoch 0 was not redone
    assert [h["epoch"] for h in result.history] == [0, 1]
    # Two workers × batch 2 × 1 step per epoch, summed over the DDP group.
    assert [h["train_windows"] for h in result.history] == [4, 4]
    assert result.history[-1]["global_step"] == 2
    assert result.history[-1]["val_windows"] == 4  # one batch of 2 per worker, summed
    client = MlflowClient(result.tracking_uri)
    history = client.get_metric_history(result.mlflow_run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1]


def test_flips_are_seeded_and_mirror_rows_together() -> None:
    import torch

    from workflows.data import flipped_batches

    def batches():
        for i in range(4):
            g = torch.Generator().manual_seed(i)
            yield {
                "frames": torch.randint(0, 255, (6, 2, 4, 5, 3), dtype=torch.uint8, generator=g),
                "target": torch.rand(6, 4, 5, generator=g),
                "fixmap": torch.randint(0, 2, (6, 4, 5), dtype=torch.uint8, generator=g),
                "audio": torch.rand(6, 10, generator=g),
            }

    one = list(flipped_batches(batches(), 0.5, seed=3))
    two = list(flipped_batches(batches(), 0.5, seed=3))
    other = list(flipped_batches(batches(), 0.5, seed=4))
    for a, b in zip(one, two, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key])
    assert any(not torch.equal(a["frames"], b["frames"]) for a, b in zip(one, other, strict=True))
    flipped = 0
    for out, src in zip(one, batches(), strict=True):
        for r in range(6):
            mirrored = torch.equal(out["frames"][r], src["frames"][r].flip(2))
            assert mirrored or torch.equal(out["frames"][r], src["frames"][r])
            assert torch.equal(
                out["target"][r], src["target"][r].flip(1) if mirrored else src["target"][r]
            )
            assert torch.equal(
                out["fixmap"][r], src["fixmap"][r].flip(1) if mirrored else src["fixmap"][r]
            )
            assert torch.equal(out["audio"][r], src["audio"][r])
            flipped += mirrored
    assert 4 <= flipped <= 20  # about half of 24


@pytest.mark.slow
def test_same_seed_same_model(ray_session, shards: Path, mlflow_uri: str, tmp_path: Path) -> None:
    """Two runs with one seed (shuffled blocks, shuffle buffer, flips) train the same weights;
    another seed does not."""
    models = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        cfg = fast_config(
            shards, tmp_path, mlflow_uri, run_name=name, seed=seed, epochs=1,
            max_steps_per_epoch=3, flip_prob=0.5, grid_windows=0, mlflow_model_format="pickle",
        )  # fmt: skip
        models[name] = load_model(train(cfg).model_path).model.state_dict()
    assert all(torch.equal(models["a"][k], models["b"][k]) for k in models["a"])
    assert not all(torch.equal(models["a"][k], models["c"][k]) for k in models["a"])


@pytest.mark.slow
def test_a_resumed_run_trains_what_the_uninterrupted_run_trains(
    ray_session, shards: Path, mlflow_uri: str, tmp_path: Path
) -> None:
    """Issue 26: a resumed run's next epoch once validated differently from other resumes.
    Through Ray Train (shuffled blocks, shuffle buffer, flips, Adam and the plateau
    scheduler restored): 2 epochs in one go, and 1 epoch then a resume to 2, give the same
    weights and the same epoch-1 numbers."""
    common = dict(seed=3, max_steps_per_epoch=2, flip_prob=0.5, grid_windows=0,
                  mlflow_model_format="pickle", lr_patience=0)  # fmt: skip
    whole = train(fast_config(shards, tmp_path, mlflow_uri, run_name="whole", epochs=2, **common))
    cut = fast_config(shards, tmp_path, mlflow_uri, run_name="cut", epochs=1, **common)
    train(cut)
    resumed = train(cut.model_copy(update={"epochs": 2}))
    assert resumed.resumed
    timing = ("train_windows_per_s", "epoch_s")
    for key, value in whole.history[1].items():
        if key not in timing:
            assert resumed.history[1][key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
    a, b = (load_model(r.model_path).model.state_dict() for r in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
