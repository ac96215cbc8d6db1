"""The MLflow tracking server going away during training (issue 26): training goes on, says
so once, keeps the metrics and sends them when the server is back; a server still away at
the end is one line, and the same command run again fills in what MLflow lacks.

The first tests need no server (a fake client behind :class:`~workflows.tracking.EpochLogger`).
The slow ones run a real ``mlflow server`` (SQLite store, artifacts in a folder) and
``avrsp train`` as a subprocess on the tiny shards of tests/test_train.py, in-process mode
(``num_workers 0``), whose terminal output is what a user sees. The subprocess is the CLI's
``main`` with one change: before an epoch whose ``hold-EPOCH`` file exists it waits until
the test removes it (having written ``waiting-EPOCH``), so the server is killed and
restarted between epochs rather than at some moment of a race.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_train as tt
import yaml
from services import Service, Workspace, _http_ok, log_tail, start_service
from waiting import wait_until

from workflows import tracking

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
RUN = "outage"


# =========================================================================== no server


class FakeClient:
    """The calls EpochLogger makes, recorded; every one fails while ``down`` (as MLflow's
    client does when the server is gone: an MlflowException with HTTP status 500)."""

    def __init__(self) -> None:
        self.down, self.calls, self.steps = False, [], set()

    def _call(self, *what: Any) -> None:
        from mlflow.exceptions import MlflowException

        if self.down:
            raise MlflowException(
                "API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with "
                "exception HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded "
                "(Caused by NewConnectionError(...: [Errno 111] Connection refused))"
            )
        self.calls.append(what)

    def search_experiments(self, **_: Any) -> list[Any]:
        self._call("search")
        return []

    def get_metric_history(self, run_id: str, key: str) -> list[Any]:
        self._call("history", key)
        return [type("M", (), {"step": s})() for s in sorted(self.steps)]

    def log_batch(self, run_id: str, metrics: list[Any]) -> None:
        self._call("metrics", metrics[0].step)
        self.steps.add(metrics[0].step)

    def log_image(self, run_id: str, image: Any, key: str, step: int) -> None:
        self._call("grid", step)

    def update_run(self, run_id: str, status: str) -> None:
        self._call("status", status)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    server = FakeClient()
    monkeypatch.setattr(tracking, "client", lambda uri: server)
    monkeypatch.setattr(
        tracking, "unreachable", lambda uri: "connection refused" if server.down else None
    )
    return server


def new_logger(lines: list[str]) -> tracking.EpochLogger:
    return tracking.EpochLogger(
        "http://127.0.0.1:9", "run", system_metrics=False, name=RUN, say=lines.append
    )


def test_metrics_are_kept_while_the_server_is_away_and_sent_when_it_is_back(
    fake: FakeClient,
) -> None:
    """One line when lost, one when back; what was kept goes out in order, once."""
    lines: list[str] = []
    logger = new_logger(lines)
    assert logger.logged_steps("val_loss") == set()
    logger.log_metrics({"epoch": 0, "val_loss": 2.0}, step=0)
    fake.down = True
    logger.log_metrics({"epoch": 1, "val_loss": 1.5, "val_cc": float("nan")}, step=1)
    logger.log_grid(np.zeros((2, 3, 3), np.uint8), epoch=1)
    logger.log_metrics({"epoch": 2, "val_loss": 1.2}, step=2)
    assert lines == [
        f"[train {RUN}] tracking: lost http://127.0.0.1:9 (connection refused); training goes "
        "on, and its metrics are kept and sent when the server is back"
    ]
    assert logger.logged_steps("val_loss") == {0, 1, 2}  # asked while away: no call
    fake.down = False
    logger.log_metrics({"epoch": 3, "val_loss": 1.1}, step=3)
    assert lines[1:] == [
        f"[train {RUN}] tracking: http://127.0.0.1:9 is back: sent the metrics of 2 epochs "
        "kept meanwhile"
    ]
    sent = [c for c in fake.calls if c[0] in ("metrics", "grid")]
    assert sent == [("metrics", 0), ("metrics", 1), ("grid", 1), ("metrics", 2), ("metrics", 3)]
    logger.close()
    assert len(lines) == 2 and not logger.pending


def test_a_server_away_at_the_start_is_asked_once_back_and_nothing_is_doubled(
    fake: FakeClient,
) -> None:
    """Lost before the first answer: the epochs a resumed run re-logs are kept, and when
    the server is back those it already has are left out; reopening the run waits too."""
    fake.steps = {0}  # logged before the crash that this resume follows
    fake.down = True
    lines: list[str] = []
    logger = new_logger(lines)
    assert logger.logged_steps("val_loss") == set()  # unknown yet
    for step in (0, 1):
        logger.log_metrics({"epoch": step, "val_loss": 2.0 - step}, step=step, probe=False)
    logger.reopen_run()
    assert len(lines) == 1 and "lost" in lines[0] and fake.calls == []
    fake.down = False
    logger.log_metrics({"epoch": 2, "val_loss": 0.5}, step=2)
    assert fake.calls == [
        ("history", "val_loss"),
        ("metrics", 1),
        ("status", "RUNNING"),
        ("metrics", 2),
    ]
    assert lines[1].endswith("is back: sent the metrics of 1 epoch kept meanwhile")


def test_a_wrong_request_is_not_an_outage() -> None:
    """A 4xx (a bug, a deleted run) still stops training; no answer, a 5xx or 429 is an
    outage, named in a few words."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

    assert not tracking.is_outage(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not tracking.is_outage(MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST))
    assert tracking.is_outage(MlflowException("API request … failed"))  # INTERNAL_ERROR: 500
    assert tracking.is_outage(ConnectionError("x"))
    err = MlflowException("… (Caused by NewConnectionError('[Errno 111] Connection refused'))")
    assert tracking.outage_cause(err) == "connection refused"
    assert tracking.outage_cause(TimeoutError("read timed out")) == "timed out"


def test_bounds_apply_within_and_yield_to_the_users_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in tracking.HTTP_BOUNDS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    with tracking.bounded_requests():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"  # the user's
        assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20"
    with tracking.bounded_requests(timeout=False):
        assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" not in os.environ


# =========================================================================== a real server


GATED_CLI = """
import sys, time
from pathlib import Path
import workflows.loop as loop
gates, real = Path(sys.argv[1]), loop.train_epoch
def gated(*args, epoch, **kwargs):
    hold = gates / f"hold-{epoch}"
    if hold.exists():
        (gates / f"waiting-{epoch}").touch()
        while hold.exists():
            time.sleep(0.05)
    return real(*args, epoch=epoch, **kwargs)
loop.train_epoch = gated
from workflows.cli import main
sys.exit(main(sys.argv[2:]))
"""


class Server:
    """``mlflow server`` over one SQLite store and artifact folder, on one port: killed
    (SIGKILL, as a crash or an OOM kill does) and started again on the same store."""

    def __init__(self, workspace: Workspace, folder: Path, port: int) -> None:
        self.workspace, self.folder, self.port = workspace, folder, port
        self.uri = f"http://{HOST}:{port}"
        self.service: Service | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", HOST, "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.service = start_service(self.workspace, "mlflow", command, env=env, cwd=self.folder)
        self.service.wait_ready(lambda: _http_ok(f"{self.uri}/health", expect="OK"), 90)

    def kill(self) -> None:
        assert self.service is not None
        os.killpg(self.service.process.pid, signal.SIGKILL)
        self.service.process.wait()
        self.service = None

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    from services import free_port

    workspace = Workspace()
    server = Server(workspace, tmp_path / "mlflow", free_port())
    try:
        server.start()
        yield server
    finally:
        server.close()
        workspace.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tt.write_shards(
        tmp_path_factory.mktemp("data"), tt.small_network(), {"train": 2, "val": 1}
    )


class Training:
    """``avrsp train`` (4 epochs of one step, in-process) as a subprocess, its output in a
    file; ``hold-EPOCH`` files made here hold it before those epochs."""

    def __init__(self, tmp_path: Path, shards: Path, uri: str, hold: tuple[int, ...]) -> None:
        self.root, self.gates, self.log = tmp_path, tmp_path / "gates", tmp_path / "train.log"
        self.gates.mkdir(exist_ok=True)
        for epoch in hold:
            (self.gates / f"hold-{epoch}").touch()
        config = tt.fast_config(shards / "shards", tmp_path / "runs", "", epochs=4).to_dict()
        config.pop("mlflow_uri")
        (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
        self.argv = ["train", "--config", str(tmp_path / "train.yaml"),
                     "--data", str(shards / "shards"),
                     "--from-scratch", "--storage", str(tmp_path / "runs"),
                     "--mlflow-uri", uri, "--run-name", RUN, "--epochs", "4"]  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_USAGE_STATS_ENABLED="0", AVRSP_LOG_DIR=str(self.root / "logs"))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", GATED_CLI, str(self.gates), *self.argv],
                cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, done: Any, timeout_s: float = 120.0) -> None:
        def done_while_running() -> bool:
            if done():
                return True
            assert self.proc is not None and self.proc.poll() is None, (
                f"avrsp train ended (rc {self.proc.returncode}) before {what}:\n{self.output}"
            )
            return False

        wait_until(done_while_running, timeout_s, 0.05, lambda: f"{what}:\n{self.output}")

    def release(self, epoch: int) -> None:
        self.wait_for(f"epoch {epoch} held", (self.gates / f"waiting-{epoch}").exists)
        (self.gates / f"hold-{epoch}").unlink()

    def finish(self, timeout_s: float = 180.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"avrsp train still running:\n{self.output}") from None
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def tracked(uri: str) -> tuple[Any, list[int]]:
    """The run named RUN and the steps of its val_loss history (sorted, repeats kept)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("avrsp").experiment_id],
        filter_string=f"attributes.run_name = '{RUN}'",
    )
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
    return run, steps


def registered_versions(uri: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).search_model_versions(f"name = '{RUN}'")


def lines_with(text: str, words: str) -> list[str]:
    return [line for line in text.splitlines() if words in line]


def test_a_server_away_at_the_start_is_one_line_before_anything_is_trained(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """No server on the port: exit 2 at once (a probe, not MLflow's minutes of retries),
    one line naming the URI, no checkpoint."""
    from services import free_port

    from workflows.cli import main

    monkeypatch.setenv("AVRSP_LOG_DIR", str(tmp_path / "logs"))
    uri = f"http://{HOST}:{free_port()}"
    training = Training(tmp_path, shards, uri, hold=())
    started = time.monotonic()
    assert main(training.argv) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"avrsp train: error: MLflow tracking server {uri} is unreachable (connection "
        "refused): start it or pass another --mlflow-uri; nothing was trained"
    )
    assert not (tmp_path / "runs" / RUN).exists()


@pytest.mark.slow
def test_training_goes_on_while_the_server_is_away_and_logs_everything_when_it_is_back(
    server: Server, shards: Path, tmp_path: Path
) -> None:
    """The server SIGKILLed after epoch 0 (its checkpoint written, its metrics logged),
    started again on the same store after epoch 1: training never stops; one "lost" line
    naming the URI and the cause, one "back" line; at the end every epoch's val_loss is in
    MLflow once, epoch 1's grid too, the run FINISHED and the model registered. (About a
    minute on 2 cores: two server starts and one training.)"""
    training = Training(tmp_path, shards, server.uri, hold=(1, 2))
    training.start()
    try:
        training.wait_for("epoch 0 held", (training.gates / "waiting-1").exists)
        assert (tmp_path / "runs" / RUN / "checkpoint_epoch_0000").is_dir()
        server.kill()
        training.release(1)
        training.wait_for("epoch 1 held", (training.gates / "waiting-2").exists)
        lost = lines_with(training.output, "tracking: lost")
        assert lost == [
            f"[train {RUN}] tracking: lost {server.uri} (connection refused); training goes "
            "on, and its metrics are kept and sent when the server is back"
        ], training.output
        server.start()
        training.release(2)
        rc = training.finish()
    finally:
        training.stop()
    out = training.output
    assert rc == 0, out
    assert len(lines_with(out, "tracking: lost")) == 1, out
    assert lines_with(out, "tracking:") == [
        *lost,
        f"[train {RUN}] tracking: {server.uri} is back: sent the metrics of 1 epoch kept meanwhile",
    ], out
    said = [line.split(" in ")[0] for line in out.splitlines() if line.startswith(f"[train {RUN}]")]
    assert said[1:4] == [f"[train {RUN}] epoch 2/4 done", *lost, f"[train {RUN}] epoch 3/4 done"]
    assert "Traceback" not in out, out
    run, steps = tracked(server.uri)
    assert steps == [0, 1, 2, 3] and run.info.status == "FINISHED"
    assert [v.version for v in registered_versions(server.uri)] == ["1"]
    from mlflow.tracking import MlflowClient

    images = [a.path for a in MlflowClient(server.uri).list_artifacts(run.info.run_id, "images")]
    assert sorted({int(p.split("+")[2]) for p in images}) == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_server_still_away_at_the_end_is_one_line_and_a_rerun_fills_in(
    server: Server, shards: Path, tmp_path: Path
) -> None:
    """The server SIGKILLed after epoch 0 and back only after training ended: exit 2 with
    one line (model.pt written, the URI unreachable, re-run when it is back); the same
    command then trains nothing and leaves every epoch in MLflow, FINISHED, registered.
    (About a minute and a half on 2 cores: two trainings.)"""
    training = Training(tmp_path, shards, server.uri, hold=(1,))
    training.start()
    try:
        training.wait_for("epoch 0 held", (training.gates / "waiting-1").exists)
        server.kill()
        training.release(1)
        rc = training.finish()
    finally:
        training.stop()
    out = training.output
    assert rc == 2, out
    model = tmp_path / "runs" / RUN / "model.pt"
    assert model.is_file()
    assert out.strip().splitlines()[-1] == (
        f"avrsp train: error: MLflow tracking server {server.uri} is unreachable (connection "
        f"refused): training run {RUN!r} is done and {model} is written; when the server is "
        "back, re-running the same command logs the model and the missing metrics without "
        "training again"
    ), out
    assert len(lines_with(out, "tracking: lost")) == 1 and "Traceback" not in out, out

    server.start()
    again = Training(tmp_path, shards, server.uri, hold=())
    again.log = tmp_path / "rerun.log"
    again.start()
    try:
        assert again.finish() == 0, again.output
    finally:
        again.stop()
    assert not re.search(r"epoch \d/4 done", again.output), again.output  # nothing trained
    run, steps = tracked(server.uri)
    assert steps == [0, 1, 2, 3] and run.info.status == "FINISHED"
    assert [v.version for v in registered_versions(server.uri)] == ["1"]
    assert "Traceback" not in again.output, log_tail(again.log)
