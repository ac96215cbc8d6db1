"""The smaller faults of issue 26, item 10: what ``avrsp submit`` sends (no secrets, no
weights, a config checked first), the mode of atomically written files, an empty video
called empty, ``evaluate`` on a csv source without splits, and no empty ``--out`` folder
left by a refused run. No Ray cluster: ``build_submission`` sends nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from avrsp.errors import ConfigError, InputError, WeightsError
from avrsp.io import write_json, write_text
from preprocessing.media import ffmpeg_exe, probe
from workflows.cli import main
from workflows.submit import EXCLUDES, build_submission

HEAD = "http://head:8265"


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test and restore it."""
    before = os.umask(0o022)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(before)


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path: Path, umask) -> None:
    for mask, mode in ((0o022, 0o644), (0o027, 0o640)):
        umask(mask)
        written = write_json(tmp_path / f"summary-{mask:o}.json", {"frames": 3})
        plain = tmp_path / f"plain-{mask:o}.txt"
        plain.write_text("x")
        assert stat.S_IMODE(written.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
    # Replacing a file goes through a new one too; no temporary name is left.
    write_text(tmp_path / "summary-22.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_zero_byte_video_is_called_empty(tmp_path: Path) -> None:
    empty = tmp_path / "clip.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as err:
        probe(empty)
    assert str(err.value) == f"{empty}: empty (0 bytes), not a video"


# --------------------------------------------------------------------------- avrsp submit


def uploaded(root: Path) -> set[str]:
    """The files of ``root`` that Ray's runtime_env packaging uploads with ``EXCLUDES``
    (Ray's own traversal and matcher; its .gitignore reading left out)."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    files: set[str] = set()

    def handler(path: Path) -> None:
        if path.is_file():
            files.add(path.relative_to(root).as_posix())

    _dir_travel(root, [_get_excludes(root, EXCLUDES)], handler, include_gitignore=False)
    return files


def test_submit_uploads_the_code_without_secrets_or_weights(tmp_path: Path) -> None:
    project = tmp_path / "project"
    names = [
        "workflows/cli.py", "configs/stage1.yaml", "docs/ENV.md", "tests/test_env.py",
        ".env", ".env.local", "cluster/tls.pem", "cluster/tls.key",
        "weights/S3D_kinetics400.pt", "weights/sound8.pth", "weights/README.md",
        "soundnet8_final.pth", "runs/x/model.pt",
    ]  # fmt: skip
    for name in names:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    assert uploaded(project) == {
        "workflows/cli.py", "configs/stage1.yaml", "docs/ENV.md", "tests/test_env.py",
    }  # fmt: skip


def test_submit_sends_no_credentials_in_a_uri(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:s3cret@mlflow.example.com:5000/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    sub = build_submission("train", ["--data", "s3://b/shards"], address=HEAD)
    env = sub.runtime_env["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com:5000/x"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "s3cret" not in json.dumps(sub.runtime_env) + sub.entrypoint
    assert len(sub.warnings) == 1 and sub.warnings[0].startswith(
        "MLFLOW_TRACKING_URI holds a user name and password: sent to the job as "
        "https://mlflow.example.com:5000/x without them"
    )
    assert "MLFLOW_TRACKING_USERNAME" in sub.warnings[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert build_submission("train", ["--data", "s3://b/x"], address=HEAD).warnings == []
    # In the command's own options too, in both spellings.
    for uri in (
        ["--mlflow-uri", "http://bob:pw@mlflow:5000"],
        ["--mlflow-uri=http://bob:pw@mlflow:5000"],
    ):
        sub = build_submission("train", ["--data", "s3://b/x", *uri], address=HEAD)
        assert "pw" not in sub.entrypoint and "http://mlflow:5000" in sub.entrypoint
        assert len(sub.warnings) == 1 and "left out of the job's command" in sub.warnings[0]


@pytest.mark.parametrize(
    ("command", "args", "problem"),
    [
        ("train", ["--data", "s3://b/x", "--lr", "-1"], "lr"),
        ("train", ["--lr", "0.1"], "--data: no shards given"),
        ("train", ["--data", "s3://b/x", "--set", "network.model.widht=16"], "widht"),
        ("train", ["--config", "configs/nope.yaml", "--data", "s3://b/x"], "configs/nope.yaml"),
        ("preprocess", ["--source", "csv:/d", "--out", "s3://b/o", "--stride", "0"], "--stride"),
        ("evaluate", ["--source", "csv:/d", "--baseline", "centre", "--limit", "0"], "--limit"),
        ("evaluate", ["--source", "csv:/d"], "--model is needed"),
        ("evaluate", ["--source", "csv:/d", "--model", "m.pt", "--batch-size", "0"], "--batch"),
        ("predict", ["/v.mp4", "--batch-size", "0"], "--batch-size must be >= 1"),
        (
            "tune",
            ["--ablation", "table5", "--data", "s3://b/x", "--max-concurrent", "0"],
            "--max-concurrent: need >= 1",
        ),
        ("tune", ["--ablation", "table5", "--data", "s3://b/x", "--set", "lr=-1"], "lr"),
        ("tune", ["--space", "/nope/space.yaml", "--data", "s3://b/x"], "/nope/space.yaml"),
    ],
)
def test_submit_checks_the_commands_config_before_sending(command, args, problem) -> None:
    with pytest.raises(ConfigError, match=f"avrsp {command}: .*{problem}"):
        build_submission(command, args, address=HEAD)


def test_submit_reads_a_relative_config_from_the_code_it_sends() -> None:
    args = ["--config", "configs/stage1.yaml", "--data", "s3://b/x", "--lr", "0.001"]
    assert build_submission("train", args, address=HEAD).entrypoint.endswith("--lr 0.001")
    with pytest.raises(ConfigError, match="lr"):
        build_submission("train", [*args, "--lr", "-1"], address=HEAD)
    # An absolute path that only the cluster's image holds is left to the job.
    image = ["--config", "/home/ray/avrsp/configs/stage1.yaml", "--data", "s3://b/x"]
    assert build_submission("train", image, address=HEAD).runtime_env


# --------------------------------------------------------------------------- evaluate, predict


def make_clip(path: Path, seconds: float = 1.0) -> Path:
    """A small real clip with a soundtrack (lavfi test pattern and a tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def csv_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A csv source of two clips with gaze and no splits.csv."""
    root = tmp_path_factory.mktemp("csv")
    rows = ["video,frame,observer,x,y"]
    for clip in ("a", "b"):
        make_clip(root / "videos" / f"{clip}.mp4")
        rows += [f"{clip},{f},1,{20 + f},{24}" for f in range(10)]
    (root / "gaze.csv").write_text("\n".join(rows) + "\n")
    return root


def test_evaluate_scores_every_video_of_a_csv_source_without_splits(
    csv_source: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    base = ["--verbose", "evaluate", "--baseline", "centre", "--source", f"csv:{csv_source}",
            "--workers", "0", "--no-mlflow"]  # fmt: skip
    code = main([*base, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "split all: every video" in captured.err
    videos = (out / "videos.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[2] for line in videos) == ["a", "b"]
    # A split that the source does not have still says which it has.
    code = main([*base, "--split", "test", "--out", str(tmp_path / "t")])
    assert code == 2
    assert "no videos in split 'test'; splits found: train (--split all" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_refused_evaluate_leaves_no_out_folder(csv_source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fresh" / "eval"
    for bad in (["--model", str(tmp_path / "absent.pt")], ["--baseline", "centre", "--limit", "0"]):
        code = main(["--verbose", "evaluate", "--source", f"csv:{csv_source}", *bad,
                     "--workers", "0", "--no-mlflow", "--out", str(out)])  # fmt: skip
        assert code == 2
        assert not (tmp_path / "fresh").exists()
    assert "absent.pt" in capsys.readouterr().err
    # A folder that was there before stays, empty or not.
    out.mkdir(parents=True)
    with pytest.raises(WeightsError):
        from workflows.evaluate import EvalOptions, evaluate

        absent = str(tmp_path / "absent.pt")
        evaluate(EvalOptions(source=f"csv:{csv_source}", model=absent, split="all", out=out))
    assert out.is_dir()


def test_a_failed_predict_leaves_no_out_folder(tmp_path: Path) -> None:
    """The video opens and the output folders are made; then the model fails."""
    from avrsp.config import tiny
    from avrsp.errors import AVRSPError
    from avrsp.model import build_model
    from workflows.export import export_model
    from workflows.predict import predict

    small = {"input.frames": 5, "input.height": 32, "input.width": 64, "model.use_audio": False}
    cfg = tiny().with_overrides(**small)
    net = build_model(cfg)
    for weight in net.parameters():
        weight.data.fill_(float("nan"))
    model = export_model(tmp_path / "model", net, cfg)
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "fresh" / "sub"
    with pytest.raises(AVRSPError, match="non-finite values at frame 0"):
        predict(clip, out, model=model, progress=False)
    assert not (tmp_path / "fresh").exists()
