"""Quiet by default (workflows/logs.py): framework logs in a file, the terminal for us."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A Ray Data job, an MLflow run and a warning of ours, in a fresh process (the routing
# changes the process's logging for good).
SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from workflows.logs import route_framework_logs

    path = route_framework_logs("probe", folder=Path(sys.argv[1]))
    import mlflow, ray, ray.data
    ray.init(num_cpus=1, include_dashboard=False)
    assert ray.data.range(20).map_batches(lambda b: b).count() == 20
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1] + "/mlflow.db")
    with mlflow.start_run():
        mlflow.log_metric("x", 1.0)
    logging.getLogger("preprocessing.segments").warning("clip.mp4: our own warning")
    logging.getLogger("ray.data").error("a framework error")
    print("LOG", path)
    ray.shutdown()
    """
)


def test_framework_logs_go_to_the_file_and_ours_to_the_terminal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    path = Path(done.stdout.split("LOG ", 1)[1].split()[0])
    log = path.read_text()
    # Ray Data's execution records and MLflow's database set-up are in the file …
    assert "Execution plan of Dataset" in log and "mlflow.store.db" in log
    # … and not on the terminal, which shows our warning and the framework's error only.
    terminal = done.stdout + done.stderr
    for noise in ("Execution plan", "logging_progress", "Creating initial MLflow", "INFO"):
        assert noise not in terminal, (noise, terminal[-2000:])
    assert "clip.mp4: our own warning" in done.stderr
    assert "a framework error" in done.stderr
    assert done.stderr.count("our own warning") == 1


def test_verbose_is_accepted_before_and_after_the_command() -> None:
    from workflows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--verbose", "demo"]).verbose is True
    assert parser.parse_args(["demo", "--verbose"]).verbose is True
    assert parser.parse_args(["demo"]).verbose is False


@pytest.mark.slow
def test_two_worker_training_shows_our_lines_once_each(tmp_path: Path) -> None:
    """`avrsp train` with 2 Ray Train workers, as a user runs it: the terminal holds the
    project's lines only, each once (no Ray Train, MLflow, alembic or C++ lines, no epoch
    line twice); the workers' other output is in the log file."""
    import test_train as tt
    import yaml

    net = tt.small_network(use_audio=True)
    tt.write_shards(tmp_path, net, {"train": 2, "val": 1})
    config = tt.fast_config(tmp_path / "shards", tmp_path / "runs", "", network=net).to_dict()
    for key in ("mlflow_uri", "storage_path", "data"):
        config.pop(key)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AVRSP_LOG_FILE")}
    env["AVRSP_LOG_DIR"] = str(tmp_path / "logs")
    done = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "train", "--config", str(tmp_path / "train.yaml"),
         "--data", str(tmp_path / "shards"), "--from-scratch", "--num-workers", "2",
         "--cpus-per-worker", "0.5", "--storage", str(tmp_path / "runs"), "--run-name", "two",
         "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, timeout=400, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    expected = [
        r"avrsp train: Ray and MLflow log to ",
        r"\[avrsp train\] backbones: s3d:scratch",
        r"\[train two\] epoch 1/2 done in ",
        r"\[train two\] epoch 2/2 done in ",
        r"run two: 2 epochs, best epoch \d",
        r"model: ",
        r"MLflow run [0-9a-f]{32} in sqlite:",
        r"registered model: models:/two/1 ",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for pattern, line in zip(expected, sorted(lines, key=_order(expected)), strict=True):
        assert re.match(pattern, line), (pattern, line)
    log = next((tmp_path / "logs").glob("train-*.log")).read_text()
    assert "(RayTrainWorker pid=" in log and "Moving model to device" in log  # kept, there
    assert "Created version '1' of model 'two'" in log


def _order(patterns: list[str]):
    """Sort key: the index of the first pattern a line matches (stdout and stderr are
    read apart, so their interleaving is lost)."""

    def key(line: str) -> int:
        return next((i for i, p in enumerate(patterns) if re.match(p, line)), len(patterns))

    return key
