"""MLflow tracking for training and evaluation runs (docs/TRAINING.md).

One MLflow run per training job. The driver creates it (or finds it again when the same
run is resumed: its id is kept in ``RUN_DIR/mlflow_run.json``) and logs every config value
as a parameter with flattened dotted keys (``network.model.width``) and the tags
``dataset``, ``stage``, ``preset``, ``git_commit``, ``parent_run``. Rank 0 of the Ray Train
workers logs the per-epoch metrics, system metrics and the validation grid per epoch
(``log_image`` with ``step=epoch``: the run page's image viewer with a step slider) through
:class:`EpochLogger`; the driver logs the config and the final model at the end (the
MLflow model and its registry version: :mod:`workflows.models`).

Made for the MLflow UI: the experiments this project creates carry the tag
``mlflow.experimentKind=custom_model_development``, which says what they hold (MLflow
3.17.2's UI does not read it yet: its "Model training" view is a toggle the browser keeps,
or ``?workflowType=machine_learning`` in the address; docs/MLFLOW.md).
:func:`start_linked_run` opens an evaluation run that names the training run of the model
it scores (tags and a note with a link) and lists the logged model as its input;
:func:`log_table` puts a results table on a run page (a table artifact, Markdown, CSV).

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
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avrsp.errors import InputError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from avrsp.tables import ResultsTable

DEFAULT_EXPERIMENT = "avrsp"
RUN_FILE = "mlflow_run.json"
#: Image key of the per-epoch validation grid (``mlflow.log_image(key=..., step=epoch)``).
GRID_KEY = "val_grid"
#: The experiment tag the MLflow 3 UI reads to open an experiment in its training view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: Tag of an evaluation run: the MLflow run that trained the model it scores.
MODEL_RUN_TAG = "avrsp.model_run_id"
NOTE_TAG = "mlflow.note.content"
TABLE_DIR = "tables"


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


def client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` of store ``uri``, the SQLite schema created or migrated locked."""
    from mlflow.tracking import MlflowClient

    with _sqlite_lock(uri):
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # creates or migrates the database, locked
    return c


def experiment_id(uri: str, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment ``name``, created (with its artifact folder) when new.

    Tagged ``mlflow.experimentKind=custom_model_development`` when created, and when found
    without that tag (experiments made before the tag existed); a kind set by someone
    else is left alone.
    """
    c = client(uri)
    with _sqlite_lock(uri):
        exp = c.get_experiment_by_name(name)
        if exp is None:
            return c.create_experiment(
                name,
                artifact_location=_artifact_root(uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        if EXPERIMENT_KIND_TAG not in exp.tags:
            c.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id


def start_or_resume_run(
    uri: str,
    run_dir: Path,
    *,
    run_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    experiment: str = DEFAULT_EXPERIMENT,
    reopen: bool = True,
) -> tuple[str, bool]:
    """The MLflow run of the training run in ``run_dir``: ``(run_id, resumed)``.

    A new run gets every parameter and tag; a resumed one (``run_dir/mlflow_run.json``
    names a run the store still has) keeps its parameters and is set back to RUNNING, or
    with ``reopen=False`` keeps its status until the caller's :func:`reopen_run` (training
    waits for its start, so that a resume that fails before it leaves a finished run
    FINISHED: :func:`fail_run`).
    """
    c = client(uri)
    marker = run_dir / RUN_FILE
    if marker.is_file():
        try:
            known = json.loads(marker.read_text())
            run = c.get_run(known["run_id"])
            if known.get("tracking_uri") == uri:
                if reopen:
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
        """The epoch's grid as image ``val_grid`` at step ``epoch`` (the run page's image
        viewer; the files are ``images/val_grid+step+EPOCH+…png``, plus a WebP preview)."""
        self.client.log_image(self.run_id, np.asarray(image, np.uint8), key=GRID_KEY, step=epoch)

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


def reopen_run(uri: str, run_id: str) -> None:
    """Set a resumed run back to RUNNING: its training has started again."""
    client(uri).update_run(run_id, status="RUNNING")


def fail_run(uri: str, run_id: str) -> bool:
    """Mark a run FAILED if it is RUNNING; a run whose resume failed before
    :func:`reopen_run` keeps the status it had (FINISHED stays FINISHED). Returns whether
    it was marked."""
    c = client(uri)
    if c.get_run(run_id).info.status != "RUNNING":
        return False
    c.set_terminated(run_id, status="FAILED")
    return True


# =========================================================================== evaluation runs


def _client_of(client_or_uri: str | MlflowClient) -> MlflowClient:
    return client(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri


def table_columns(table: ResultsTable) -> dict[str, list[Any]]:
    """``{column: values}`` of a results table for ``mlflow.log_table``: the label columns,
    then one column per dataset and metric (``"DIEM CC"``), full precision, None if missing."""
    from avrsp.tables import metric_label

    columns: dict[str, list[Any]] = {
        label: [row.labels[k] for row in table.rows] for k, label in enumerate(table.label_columns)
    }
    for dataset in table.datasets:
        for metric in table.metrics:
            columns[f"{dataset} {metric_label(metric)}"] = [
                row.get(dataset, metric) for row in table.rows
            ]
    return columns


def log_table(
    client_or_uri: str | MlflowClient, run_id: str, table: ResultsTable, name: str
) -> None:
    """Show ``table`` on run ``run_id``'s page: ``tables/NAME.json`` (``log_table``, the
    artifact viewer's table), ``tables/NAME.md`` (Markdown, the paper's rounding) and
    ``tables/NAME.csv`` (full precision; ``ResultsTable.from_csv`` reads it back).

    MLflow appends rows to a table file that exists, so a name already logged in the run
    is refused (:class:`InputError`) rather than silently doubled.
    """
    import pandas as pd

    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name.startswith("."):
        raise InputError(f"table name {name!r}: use letters, digits, '.', '_' and '-'")
    c = _client_of(client_or_uri)
    stem = f"{TABLE_DIR}/{name}"
    if any(a.path == f"{stem}.json" for a in c.list_artifacts(run_id, TABLE_DIR)):
        raise InputError(f"MLflow run {run_id} already has table {name!r} ({stem}.json)")
    c.log_table(run_id, pd.DataFrame(table_columns(table)), artifact_file=f"{stem}.json")
    c.log_text(run_id, table.to_markdown(), f"{stem}.md")
    c.log_text(run_id, table.to_csv(rounded=False), f"{stem}.csv")


def _training_run(c: MlflowClient, run_id: str) -> Any | None:
    if not run_id:
        return None
    try:
        return c.get_run(run_id)
    except Exception:  # not in this store (trained against another one), or deleted
        return None


def start_linked_run(
    uri: str,
    *,
    run_name: str,
    model_meta: dict[str, Any],
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
) -> str:
    """A new RUNNING run for evaluating a model, linked to the run that trained it.

    ``model_meta``: the exported model's metadata (``LoadedModel.meta``); its
    ``mlflow_run_id`` becomes the tag ``avrsp.model_run_id`` and the run's note (the
    description on its page) says which run trained the model, with a link when that run is
    in this store. There, the logged model made from the same checkpoint (see
    :func:`workflows.models.log_mlflow_model`) is also logged as the run's input model, so
    the model's page lists the evaluation. ``mlflow.parentRunId`` is not set: the UI would
    nest the evaluation under the training run as if it were one of its steps.
    ``params``: the run's parameters (text as :func:`flatten` writes it). ``experiment``:
    default the training run's experiment (else ``avrsp``). Returns the run id.
    """
    from mlflow.entities import LoggedModelInput, Param

    c = client(uri)
    trained_by = str(model_meta.get("mlflow_run_id") or "")
    train_run = _training_run(c, trained_by)
    if experiment is None and train_run is not None:
        exp_id = train_run.info.experiment_id
    else:
        exp_id = experiment_id(uri, experiment or DEFAULT_EXPERIMENT)
    name = str(model_meta.get("run_name") or (train_run.info.run_name if train_run else ""))
    model_id = None
    if train_run is not None:
        from workflows.models import find_logged_model

        checkpoint = str(model_meta.get("checkpoint") or "")
        found = find_logged_model(c, trained_by, checkpoint) if checkpoint else None
        model_id = found.model_id if found is not None else None
        page = (
            f"#/experiments/{train_run.info.experiment_id}/runs/{trained_by}"
            "?workflowType=machine_learning"  # the UI's training view (docs/MLFLOW.md)
        )
        link = f"[{name or trained_by}]({page})"
        note = f"Evaluation of the model trained in run {link}"
        note += f" (logged model `{model_id}`)." if model_id else "."
    elif trained_by:
        where = model_meta.get("tracking_uri") or "another store"
        note = f"Evaluation of the model trained in run `{trained_by}` ({name}) of {where}."
    else:
        note = "Evaluation without an MLflow training run (a model file without one, or none)."
    links = {MODEL_RUN_TAG: trained_by, "avrsp.model_run_name": name, "avrsp.model_id": model_id}
    all_tags = {**(tags or {}), **{k: v for k, v in links.items() if v}, NOTE_TAG: note}
    run = c.create_run(exp_id, run_name=run_name, tags=all_tags)
    items = [Param(k, v[:6000]) for k, v in sorted(flatten(params or {}).items())]
    for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params
        c.log_batch(run.info.run_id, params=items[start : start + 100])
    if model_id:
        c.log_inputs(run.info.run_id, models=[LoggedModelInput(model_id)])
    return run.info.run_id
