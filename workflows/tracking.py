"""MLflow tracking for training runs (docs/TRAINING.md).

One MLflow run per training job. The driver creates it (or finds it again when the same
run is resumed: its id is kept in ``RUN_DIR/mlflow_run.json``) and logs every config value
as a parameter with flattened dotted keys (``network.model.width``) and the tags
``dataset``, ``stage``, ``preset``, ``git_commit``, ``parent_run``. Rank 0 of the Ray Train
workers logs the per-epoch metrics, system metrics and a PNG grid per epoch through
:class:`EpochLogger`; the driver logs the config and the final model at the end.

Store: ``MLFLOW_TRACKING_URI`` when set, else a SQLite file in the project folder
(``sqlite:///<cwd>/mlflow.db``, artifacts in ``<cwd>/mlartifacts``). Browse it with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``. SQLite suits one writer at a time;
for many concurrent jobs run ``mlflow server`` and point ``--mlflow-uri`` at it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_EXPERIMENT = "avrsp"
RUN_FILE = "mlflow_run.json"
GRID_DIR = "val_grid"


def default_tracking_uri(project: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else ``sqlite:///<project>/mlflow.db`` (absolute path)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    folder = Path(project or Path.cwd()).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database file (not into the cwd)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → ``{"a.b.c": "value"}`` with JSON-ish values (MLflow parameters)."""
    from avrsp.config import flatten as flatten_config

    def text(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return json.dumps(list(value))
        return "null" if value is None else str(value)

    return {name: text(value) for name, value in flatten_config(data, prefix).items()}


def git_commit(folder: str | Path | None = None) -> str:
    """The checkout's commit (``-dirty`` when it has changes), or ``unknown``."""
    cwd = Path(folder or Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def _sqlite_lock(uri: str) -> Any:
    """For a SQLite store, an exclusive lock on ``<db>.lock`` beside the database.

    Two jobs started together on a new database both ran MLflow's schema migrations and
    one died ("Online migration expected to match one row … 0 found", measured: two
    ``avrsp train`` at once). Creating the store and the experiment under this lock
    serialises them; other stores need nothing.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    with _sqlite_lock(uri):
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # creates or migrates the database, locked
    return c


def experiment_id(uri: str, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment ``name``, created (with its artifact folder) when new."""
    c = client(uri)
    with _sqlite_lock(uri):
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return c.create_experiment(name, artifact_location=_artifact_root(uri))


def start_or_resume_run(
    uri: str,
    run_dir: Path,
    *,
    run_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    experiment: str = DEFAULT_EXPERIMENT,
) -> tuple[str, bool]:
    """The MLflow run of the training run in ``run_dir``: ``(run_id, resumed)``.

    A new run gets every parameter and tag; a resumed one (``run_dir/mlflow_run.json``
    names a run the store still has) keeps its parameters and is set back to RUNNING.
    """
    c = client(uri)
    marker = run_dir / RUN_FILE
    if marker.is_file():
        try:
            known = json.loads(marker.read_text())
            run = c.get_run(known["run_id"])
            if known.get("tracking_uri") == uri:
                c.update_run(run.info.run_id, status="RUNNING")
                for key, value in tags.items():
                    c.set_tag(run.info.run_id, key, value)
                return run.info.run_id, True
        except Exception:  # marker from another store, or a deleted run: start afresh
            pass
    exp_id = experiment_id(uri, experiment)
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    from mlflow.entities import Param

    items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params
        c.log_batch(run_id, params=items[start : start + 100])
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    return run_id, False


def saliency_grid(frames: np.ndarray, target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """One row per window: last frame | ground truth | prediction, ``uint8 [K·H, 3·W, 3]``.

    ``frames``: uint8 ``[K, H, W, 3]`` (the windows' last frames); ``target`` and ``pred``:
    ``[K, H, W]`` non-negative maps, each scaled to its own maximum and shown in grey.
    """

    def grey(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float32)
        peak = float(m.max()) if m.size else 0.0
        g = np.clip(m / peak * 255.0, 0, 255) if peak > 0 else np.zeros_like(m)
        return np.repeat(g.astype(np.uint8)[..., None], 3, axis=-1)

    rows = [
        np.concatenate([np.asarray(f, np.uint8), grey(t), grey(p)], axis=1)
        for f, t, p in zip(frames, target, pred, strict=True)
    ]
    return np.concatenate(rows, axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class EpochLogger:
    """Rank 0's logger: per-epoch metrics, images, and system metrics in a background thread."""

    def __init__(
        self, uri: str, run_id: str, *, system_metrics: bool = True, sampling_s: float = 10.0
    ) -> None:
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)
        self._monitor = None
        if system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._monitor = SystemMetricsMonitor(
                    run_id, sampling_interval=sampling_s, resume_logging=True, tracking_uri=uri
                )
                self._monitor.start()
            except Exception:  # psutil missing or no sampler for this machine: skip
                self._monitor = None

    def logged_steps(self, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and np.isfinite(v)
        ]
        self.client.log_batch(self.run_id, metrics=items)

    def log_grid(self, image: np.ndarray, epoch: int) -> None:
        """The epoch's grid as ``val_grid/epoch_0003.png``."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"epoch_{epoch:04d}.png"
            path.write_bytes(png_bytes(image))
            self.client.log_artifact(self.run_id, str(path), GRID_DIR)

    def close(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):  # never fail a run over its monitor
                self._monitor.finish()
            self._monitor = None


def finish_run(
    uri: str,
    run_id: str,
    *,
    status: str,
    files: list[tuple[str, Path]] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Driver side, at the end: artifacts (``(artifact_dir, path)`` pairs), tags, status."""
    c = client(uri)
    for folder, path in files or []:
        c.log_artifact(run_id, str(path), folder or None)
    for key, value in (tags or {}).items():
        c.set_tag(run_id, key, value)
    c.set_terminated(run_id, status=status)
