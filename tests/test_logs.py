"""Quiet by default (workflows/logs.py): framework logs in a file, the terminal for us."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
