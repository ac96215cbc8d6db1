"""The training recipe tells the truth (issue 25): the stage configs name the pretrained
backbones the paper starts from (§III-A, §IV-B); without the files a run stops before any
Ray work, and it trains them from random weights only when told to (``--from-scratch``),
recording which in MLflow, in its fingerprint and on the terminal.

No Ray here: ``init_ray`` is replaced by a function that fails the test, so each test also
shows that its checks come first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import test_train as tt  # the tiny shard writer; a module import, so its tests stay theirs

from avrsp.errors import ConfigError
from avrsp.io import write_json
from preprocessing.fingerprints import FINGERPRINT_FILE
from workflows.cli import build_parser, main
from workflows.commands.train import build_config
from workflows.loop import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    TRAIN_CONFIG_FILE,
    TrainConfig,
    backbones,
    check_backbones,
    check_resume,
    run_fingerprint,
)

REPO = Path(__file__).resolve().parents[1]
S3D_FILE, SOUNDNET_FILE = "S3D_kinetics400.pt", "sound8.pth"


def copied_configs(root: Path) -> Path:
    """``configs/`` copied to ``root/configs``: its weight paths then point into
    ``root/weights`` (absent unless a test puts files there), whatever this checkout's
    ``weights/`` holds."""
    shutil.copytree(REPO / "configs", root / "configs")
    return root / "configs"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import workflows.train

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started before the checks")

    monkeypatch.setattr(workflows.train, "init_ray", refuse)


class RayStarted(Exception):
    """Raised where Ray would start: everything before it (checks, MLflow) has run."""


def test_stage_configs_name_the_pretrained_backbones(tmp_path: Path) -> None:
    s1 = TrainConfig.load(REPO / "configs" / "stage1.yaml")
    s2 = TrainConfig.load(REPO / "configs" / "stage2.yaml")
    # Paths in a config file are relative to the file: weights/ at the repository root.
    assert s1.network.model.s3d_weights == REPO / "weights" / S3D_FILE
    assert s1.network.model.soundnet_weights is None  # stage 1 has no audio branch
    assert s2.network.model.soundnet_weights == REPO / "weights" / SOUNDNET_FILE
    assert s2.network.model.s3d_weights is None  # S3D comes from init_from, once
    assert (backbones(s1), backbones(s2)) == (
        {"s3d": f"pretrained({S3D_FILE})"},
        {"s3d": "stage1", "soundnet": f"pretrained({SOUNDNET_FILE})", "soundnet_norm": "frozen"},
    )
    # Stage 2 fine-tunes stage 1's S3D with the momentum stage 1 used (0.001 with weights).
    assert s2.network.model.effective_bn_momentum() == s1.network.model.effective_bn_momentum()
    assert s1.network.model.effective_bn_momentum() == 0.001
    # Relative to the file, wherever it is; weights/README.md names the same files.
    moved = TrainConfig.load(copied_configs(tmp_path) / "stage1.yaml")
    assert moved.network.model.s3d_weights == tmp_path / "weights" / S3D_FILE
    readme = (REPO / "weights" / "README.md").read_text()
    assert f"`{S3D_FILE}`" in readme and f"`{SOUNDNET_FILE}`" in readme


@pytest.mark.parametrize(
    ("stage", "key", "name"),
    [
        ("stage1", "network.model.s3d_weights", S3D_FILE),
        ("stage2", "network.model.soundnet_weights", SOUNDNET_FILE),
    ],
)
def test_train_without_the_weight_files_stops_before_ray(
    no_ray: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stage: str,
    key: str,
    name: str,
) -> None:
    configs = copied_configs(tmp_path)
    argv = ["--verbose", "train", "--config", str(configs / f"{stage}.yaml"),
            "--data", str(tmp_path / "shards"), "--storage", str(tmp_path / "runs")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("avrsp train: error: the paper starts from pretrained backbones")
    assert f"{key} = {tmp_path / 'weights' / name}" in err  # the key and the missing file
    assert "Put the files there" in err and "--from-scratch" in err  # how to go on
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing of a run was made


def test_from_scratch_is_a_switch_the_run_records(no_ray: None, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    import workflows.train

    def stop(*args: object, **kwargs: object) -> None:
        raise RayStarted

    configs = copied_configs(tmp_path)
    shards = tt.write_shards(
        tmp_path / "data", TrainConfig.load(configs / "stage1.yaml").network,
        {"train": 1, "val": 1}, rows=1,
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def started(*flags: str) -> tuple[str, list[str]]:
        """``avrsp train --config stage1.yaml FLAGS`` up to where Ray would start: the
        run's MLflow id and the lines it printed."""
        args = build_parser().parse_args(
            ["train", "--config", str(configs / "stage1.yaml"), "--data", str(shards),
             "--storage", str(tmp_path / "runs"), "--mlflow-uri", uri, *flags]
        )  # fmt: skip
        cfg, lines = build_config(args), []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(workflows.train, "init_ray", stop)
            with pytest.raises(RayStarted):
                workflows.train.train(cfg, log=lines.append)
        run_id = json.loads((cfg.run_dir / "mlflow_run.json").read_text())["run_id"]
        return run_id, lines

    scratch_id, scratch_lines = started("--from-scratch", "--run-name", "scratch")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / S3D_FILE).write_bytes(b"")  # only its presence is checked here
    pretrained_id, pretrained_lines = started("--run-name", "pretrained")

    client = MlflowClient(uri)
    scratch, pretrained = client.get_run(scratch_id).data, client.get_run(pretrained_id).data
    assert scratch.params["from_scratch"] == "True"
    assert scratch.params["network.model.s3d_weights"] == "null"  # no file read, none named
    assert scratch.params["backbones"] == scratch.tags["backbones"] == "s3d:scratch"
    assert scratch_lines[0] == "[avrsp train] backbones: s3d:scratch (from_scratch: no " \
        "pretrained file is read)"  # fmt: skip
    record = f"s3d:pretrained({S3D_FILE})"
    assert pretrained.params["backbones"] == pretrained.tags["backbones"] == record
    assert pretrained.params["from_scratch"] == "False"
    assert pretrained_lines == [f"[avrsp train] backbones: {record}"]


def test_a_resumed_run_keeps_how_its_backbones_started(tmp_path: Path) -> None:
    weights = tmp_path / "weights" / S3D_FILE
    weights.parent.mkdir()
    weights.write_bytes(b"")
    net = tt.small_network().with_overrides(**{"model.s3d_weights": str(weights)})
    pretrained = TrainConfig(network=net, storage_path=tmp_path / "runs", run_name="r")
    run = tmp_path / "runs" / "r"
    checkpoint = run / "checkpoint_epoch_0000"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_FILE).write_bytes(b"")
    (checkpoint / METRICS_FILE).write_text("{}")
    (checkpoint / TRAIN_CONFIG_FILE).write_text(json.dumps(pretrained.to_dict()))
    recorded = run_fingerprint(pretrained)
    write_json(run / FINGERPRINT_FILE, recorded)
    assert check_resume(pretrained) == str(checkpoint)
    scratch = pretrained.with_overrides(from_scratch=True)
    with pytest.raises(ConfigError, match=rf"backbones: s3d pretrained\({S3D_FILE}\) → scratch"):
        check_resume(scratch)
    # A run recorded before backbones were resumes (its network names the same file).
    write_json(run / FINGERPRINT_FILE, {k: v for k, v in recorded.items() if k != "backbones"})
    assert check_resume(pretrained) == str(checkpoint)


def test_the_paper_preset_from_scratch_is_not_silent() -> None:
    lines = check_backbones(TrainConfig(preset="paper"))
    assert lines[0] == "backbones: s3d:scratch soundnet:scratch soundnet_norm:group"
    assert lines[1].startswith("warning: S3D and SoundNet-8 start from random weights")
    assert "network.model.s3d_weights" in lines[1] and "--from-scratch" in lines[1]
    # Said on purpose: printed and recorded, no warning. The tiny preset (tests, the demo)
    # trains from scratch on purpose: it prints nothing (its record is the same).
    chosen = check_backbones(TrainConfig(preset="paper", from_scratch=True))
    assert len(chosen) == 1 and chosen[0].endswith("(from_scratch: no pretrained file is read)")
    assert check_backbones(TrainConfig(preset="tiny")) == []
    assert backbones(TrainConfig(preset="tiny")) == backbones(TrainConfig(preset="paper"))


def test_files_a_run_would_not_use_are_refused(tmp_path: Path) -> None:
    s3d, soundnet = tmp_path / S3D_FILE, tmp_path / SOUNDNET_FILE
    s3d.write_bytes(b"")
    soundnet.write_bytes(b"")
    stage2 = TrainConfig.load(REPO / "configs" / "stage2.yaml")
    both = stage2.with_overrides(
        **{"network.model.s3d_weights": str(s3d), "network.model.soundnet_weights": str(soundnet)}
    )
    with pytest.raises(ConfigError, match=r"s3d_weights: .*takes S3D from init_from"):
        check_backbones(both)  # read, then overwritten by the stage-1 model
    visual = TrainConfig(network=tt.small_network(**{"model.soundnet_weights": str(soundnet)}))
    with pytest.raises(ConfigError, match=r"soundnet_weights: .*no audio branch"):
        check_backbones(visual)
