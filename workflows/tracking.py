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

A tracking server that goes away does not hold training up: :class:`EpochLogger` bounds
each call, says once that the server is lost, keeps the metrics and sends them when it is
back; the driver fills in what is still missing at the end (docs/TRAINING.md, "When the
tracking server goes away").

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
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avrsp.errors import AVRSPError, InputError
from avrsp.io import write_json

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
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.with_name(db.name + ".lock")):
        yield


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
    known = read_run_file(marker)
    if known is not None and known.get("tracking_uri") == uri:  # else: another store's
        run = _existing_run(c, str(known.get("run_id", "")))
        if run is not None:  # None: deleted from the store, start afresh
            if reopen:
                c.update_run(run.info.run_id, status="RUNNING")
            for key, value in tags.items():
                c.set_tag(run.info.run_id, key, value)
            return run.info.run_id, True
    exp_id = experiment_id(uri, experiment)
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    _log_params(c, run_id, params)
    write_json(marker, {"run_id": run_id, "tracking_uri": uri})  # atomic: the resume key
    return run_id, False


def _log_params(c: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    """Every parameter of a new run in one call, each value cut to MLflow's limit (6000
    characters). ``log_batch`` itself sends them 100 to a request, the store's limit."""
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in sorted(params.items())])


def read_run_file(marker: Path) -> dict[str, Any] | None:
    """``RUN_DIR/mlflow_run.json`` (None when there is none). One that cannot be read is
    named rather than passed over: starting a new MLflow run silently would split the
    run's history in two."""
    if not marker.is_file():
        return None
    try:
        known = json.loads(marker.read_text())
        if not isinstance(known, dict) or not known.get("run_id"):
            raise ValueError("no run_id")
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{marker}: unreadable ({exc}); it names the MLflow run this run resumes: "
            "restore it, or delete it to log the rest of the run to a new MLflow run"
        ) from None
    return known


def _existing_run(c: MlflowClient, run_id: str) -> Any | None:
    """The run, or None when the store no longer has it (deleted); any other error (the
    server out of reach) is raised: it is no reason to start a second run."""
    from mlflow.exceptions import MlflowException

    try:
        run = c.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    return None if run.info.lifecycle_stage == "deleted" else run


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


#: Bounds on each MLflow HTTP call of a training job, where the environment does not set
#: them. MLflow's own (7 retries, backoff factor 2, a 120 s timeout) let one call to a
#: server that went away wait for minutes, and the training waited with it (issue 26): a
#: refused connection now fails in about 3 s, a silent host in about a minute.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
#: Seconds one reachability probe (:func:`unreachable`) waits for an answer.
PROBE_TIMEOUT_S = 5


@contextlib.contextmanager
def bounded_requests(*, timeout: bool = True) -> Iterator[None]:
    """Within: MLflow's HTTP calls of this process are bounded by :data:`HTTP_BOUNDS`
    (MLflow reads them from the environment at each call), those the user set excepted.
    ``timeout=False`` keeps MLflow's timeout: uploading a large model may take longer
    than the bound, and a probe has said the server answers. Process-wide while it lasts
    (the system metrics thread's calls too)."""
    ours = {
        key: value
        for key, value in HTTP_BOUNDS.items()
        if key not in os.environ and (timeout or not key.endswith("_TIMEOUT"))
    }
    os.environ.update(ours)
    try:
        yield
    finally:
        for key in ours:
            os.environ.pop(key, None)


def outage_cause(exc: BaseException) -> str:
    """What an unreachable store's error says, in a few words ("connection refused")."""
    texts, seen, each = [], set(), exc
    while each is not None and id(each) not in seen:
        seen.add(id(each))
        texts.append(f"{type(each).__name__}: {each}")
        each = each.__cause__ or each.__context__
    text = " ".join(texts).lower()
    for words, cause in (
        ("connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("timeout", "timed out"),
        ("name or service not known", "host name not found"),
        ("temporary failure in name resolution", "host name not found"),
        ("no route to host", "no route to host"),
        ("connection reset", "connection reset"),
        ("connection aborted", "connection reset"),
        ("remotedisconnected", "connection closed"),
    ):
        if words in text:
            return cause
    status = _http_status(exc)
    if status is not None and status >= 500:
        return f"HTTP {status}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:120]}".rstrip(": ")


def _http_status(exc: BaseException) -> int | None:
    getter = getattr(exc, "get_http_status_code", None)
    with contextlib.suppress(Exception):
        return int(getter()) if getter is not None else None
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is out of reach (no connection, a timeout, a 5xx or
    429 after the retries) rather than that the request was wrong (another 4xx: a bug or
    a deleted run, which training must not hide). Outside MLflow's errors only an
    ``OSError`` (``requests``' errors are ones) is an outage: a ``TypeError`` is a bug."""
    status = _http_status(exc)
    if status is None:
        return isinstance(exc, OSError)
    return status >= 500 or status == 429


def unreachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the tracking store at ``uri`` answers, else the cause in a few words.

    For a server, one ``GET /health`` without retries (MLflow's client, so its TLS and
    authentication settings apply); any answer below 500 counts. Other stores (SQLite)
    answer a query. Cheap: it is how a lost server is looked for once per epoch."""
    try:
        if uri.startswith(("http://", "https://")):
            from mlflow.utils.rest_utils import http_request

            answer = http_request(
                _host_creds(uri), "/health", "GET", max_retries=0, timeout=timeout_s
            )
            return f"HTTP {answer.status_code}" if answer.status_code >= 500 else None
        with bounded_requests():
            client(uri).search_experiments(max_results=1)
    except Exception as exc:
        return outage_cause(exc)
    return None


def _host_creds(uri: str) -> Any:
    """How MLflow's client reaches the server at ``uri`` (its TLS and authentication
    settings), or plain HTTP where MLflow's internals have moved."""
    from mlflow.tracking import MlflowClient
    from mlflow.utils.rest_utils import MlflowHostCreds

    try:
        return MlflowClient(tracking_uri=uri)._tracking_client.store.get_host_creds()
    except Exception:
        return MlflowHostCreds(uri)


def require_reachable(uri: str, what: str) -> None:
    """Raise :class:`TrackingUnreachable` (one line: the URI, the cause, ``what``) when
    the store at ``uri`` does not answer a probe."""
    cause = unreachable(uri)
    if cause is not None:
        raise TrackingUnreachable(f"MLflow tracking server {uri} is unreachable ({cause}): {what}")


class TrackingUnreachable(AVRSPError):
    """The MLflow tracking store does not answer (the message names it and the way out)."""


class EpochLogger:
    """Rank 0's logger: per-epoch metrics, images, and system metrics in a background thread.

    Training never waits on the tracking server for long (issue 26): each call is bounded
    (:func:`bounded_requests`, for the logger's life), and when one fails because the server
    is out of reach, the logger says so once (``[train NAME] tracking: lost URI (cause)``),
    keeps the epoch's metrics and grid in memory in order, and from then on only probes the
    server once per epoch (:func:`unreachable`, one short request) instead of sending each
    item through MLflow's retries. When the server answers again it sends what was kept and
    says so once (``… back: sent the metrics of N epochs``). What is still kept when training
    ends is not lost: the checkpoint's history holds it, and the driver (or a re-run of the
    same command) logs the epochs MLflow lacks (:func:`log_missing_history`).
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        *,
        system_metrics: bool = True,
        sampling_s: float = 10.0,
        name: str = "",
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.uri, self.run_id = uri, run_id
        self._prefix = f"[train {name}] tracking:" if name else "[avrsp train] tracking:"
        self._say = say or (lambda line: print(line, flush=True))
        self._bounds = contextlib.ExitStack()
        self._bounds.enter_context(bounded_requests())
        self.lost: str | None = None  # the cause, while the store is out of reach
        self.pending: list[tuple[str, Any, int]] = []  # (kind, payload, step), in order
        self._steps: dict[str, set[int] | None] = {}  # per key: logged steps (None: unknown)
        self._sampling_s, self._monitor = sampling_s, None
        try:
            self.client = client(uri)
        except Exception as exc:
            if not is_outage(exc):
                self._bounds.close()
                raise
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)
            self._lose(exc)
        if system_metrics:
            self._start_monitor()

    def _start_monitor(self) -> None:
        """MLflow's system metrics thread. It ends itself when it cannot reach the server
        (its ``get_run`` fails); :meth:`_recover` starts a new one."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(
                self.run_id,
                sampling_interval=self._sampling_s,
                resume_logging=True,
                tracking_uri=self.uri,
            )
            self._monitor.start()
        except Exception:  # psutil missing or no sampler for this machine: skip
            self._monitor = None

    # ------------------------------------------------------------------ outage handling

    def _lose(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = outage_cause(exc)
            self._say(
                f"{self._prefix} lost {self.uri} ({self.lost}); training goes on, and its "
                "metrics are kept and sent when the server is back"
            )

    def _send(self, kind: str, payload: Any, step: int) -> None:
        if kind == "metrics":
            self.client.log_batch(self.run_id, metrics=payload)
            for key, known in self._steps.items():
                if known is not None and any(m.key == key for m in payload):
                    known.add(step)
        elif kind == "grid":
            self.client.log_image(self.run_id, payload, key=GRID_KEY, step=step)
        else:  # "status"
            self.client.update_run(self.run_id, status=payload)

    def _submit(self, kind: str, payload: Any, step: int, *, probe: bool = False) -> None:
        """Send now, or keep it when the store is out of reach (``probe``: look once
        whether it is back first)."""
        if self.lost is not None and probe:
            self._recover()
        if self.lost is None:
            try:
                self._send(kind, payload, step)
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._lose(exc)
        self.pending.append((kind, payload, step))

    def _recover(self) -> bool:
        """One probe; when the store answers, send what was kept, in order. Returns
        whether the store is reachable (nothing kept any more)."""
        if self.lost is None:
            return True
        if unreachable(self.uri) is not None:
            return False
        try:
            for key, known in self._steps.items():  # lost before the first answer
                if known is None:
                    self._steps[key] = self._query_steps(key)
            epochs = set()
            while self.pending:
                kind, payload, step = self.pending[0]
                if not (kind == "metrics" and self._already_logged(payload, step)):
                    self._send(kind, payload, step)
                    if kind == "metrics":
                        epochs.add(step)
                self.pending.pop(0)
        except Exception as exc:
            if not is_outage(exc):
                raise
            return False  # gone again: still lost, the rest kept (no second line)
        self.lost = None
        count = len(epochs)
        self._say(
            f"{self._prefix} {self.uri} is back: sent the metrics of {count} "
            f"epoch{'s' if count != 1 else ''} kept meanwhile"
        )
        thread = getattr(self._monitor, "_process", None)  # MLflow's monitor thread
        if self._monitor is not None and (thread is None or not thread.is_alive()):
            self._start_monitor()
        return True

    def _already_logged(self, metrics: list[Any], step: int) -> bool:
        return any(
            known is not None and step in known and any(m.key == key for m in metrics)
            for key, known in self._steps.items()
        )

    def _query_steps(self, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    # ------------------------------------------------------------------ the logger's calls

    def logged_steps(self, key: str) -> set[int]:
        """The steps of metric ``key`` the run has or will have: asked from the store once,
        then kept here with the steps logged or kept since (so that asking again each
        epoch costs nothing and works while the store is out of reach)."""
        if self._steps.get(key) is None and self.lost is None:
            try:
                self._steps[key] = self._query_steps(key)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._lose(exc)
        self._steps.setdefault(key, None)
        kept = {
            step
            for kind, payload, step in self.pending
            if kind == "metrics" and any(m.key == key for m in payload)
        }
        return set(self._steps[key] or ()) | kept

    def reopen_run(self) -> None:
        """Set the run back to RUNNING (:func:`reopen_run`), or when the store is back."""
        self._submit("status", "RUNNING", -1)

    def log_metrics(self, metrics: dict[str, float], step: int, *, probe: bool = True) -> None:
        """Log one epoch's metrics (finite numbers only). While the store is out of reach,
        the one probe of the epoch happens here (``probe=False``: none, for a batch of
        earlier epochs)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and np.isfinite(v)
        ]
        self._submit("metrics", items, step, probe=probe)

    def log_grid(self, image: np.ndarray, epoch: int) -> None:
        """The epoch's grid as image ``val_grid`` at step ``epoch`` (the run page's image
        viewer; the files are ``images/val_grid+step+EPOCH+…png``, plus a WebP preview)."""
        self._submit("grid", np.asarray(image, np.uint8), epoch)

    def close(self) -> None:
        """A last look for a lost store (what it still lacks is in the checkpoint's history:
        see the class), then the monitor stopped without waiting on an unreachable server,
        and MLflow's own call bounds back."""
        with contextlib.suppress(Exception):  # never fail a run over its tracking
            self._recover()
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            if self.lost is not None:  # its last flush could only fail: let its thread go
                getattr(monitor, "_shutdown_event", threading.Event()).set()
            else:
                # finish() joins the thread and flushes; bounded calls, and at worst left
                # behind (a daemon) rather than holding up the end of training.
                done = threading.Thread(target=monitor.finish, daemon=True)
                done.start()
                done.join(timeout=3 * int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
        self._bounds.close()


def log_missing_history(uri: str, run_id: str, history: list[dict[str, float]]) -> int:
    """Log the epochs of ``history`` (a checkpoint's) whose ``val_loss`` the run lacks:
    what the workers kept while the server was out of reach and could not send before
    training ended. Returns how many epochs were logged."""
    from mlflow.entities import Metric

    c = client(uri)
    logged = {m.step for m in c.get_metric_history(run_id, "val_loss")}
    missing = [entry for entry in history if int(entry["epoch"]) not in logged]
    for entry in missing:
        step, now = int(entry["epoch"]), int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in entry.items()
            if isinstance(v, (int, float)) and np.isfinite(v)
        ]
        c.log_batch(run_id, metrics=items)
    return len(missing)


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
    from mlflow.entities import LoggedModelInput

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
    _log_params(c, run.info.run_id, flatten(params or {}))
    if model_id:
        c.log_inputs(run.info.run_id, models=[LoggedModelInput(model_id)])
    return run.info.run_id
