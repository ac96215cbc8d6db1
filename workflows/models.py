"""Models in MLflow: the exported model logged and registered, and ``MODEL`` specs resolved.

Training logs its exported model (``RUN_DIR/model.pt``, :mod:`workflows.export`) as an
MLflow model named ``model`` (:func:`log_mlflow_model`): the run page lists it under
"Logged models", the registry gets a version of it (``models:/NAME/VERSION``), and the
LoggedModel carries the best epoch's validation metrics. The logged directory holds

- ``data/model.pt2``: the network as a ``torch.export`` program (MLflow's default ``pt2``
  format; ``mlflow.pytorch.load_model`` loads it without this project's code and without
  unpickling), or, when ``torch.export`` cannot trace a variant, MLflow's ``pickle`` format;
- ``extra_files/model.pt`` and ``extra_files/model.config.json``: our own exported model,
  the only file this project ever reads back (``torch.load(weights_only=True)``);
- ``MLmodel`` with the signature: ``frames`` float32 ``[B, 3, T, H, W]`` in [0, 1],
  ``audio`` float32 ``[B, S]`` (audio-visual models only), output ``[B, H, W]``, at the
  sizes of the model's input config.

:func:`resolve_model` turns what a user gives as ``MODEL`` (``avrsp evaluate --model``,
``avrsp predict --model``, :func:`workflows.export.load_model`) into the path of a local
``model.pt``: a file or folder as it is, or ``runs:/RUN_ID/PATH``, ``models:/NAME/VERSION``,
``models:/NAME@ALIAS``, ``models:/NAME/latest`` and ``models:/MODEL_ID`` downloaded from the
tracking store into a cache folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avrsp.config import AVRSPConfig
from avrsp.errors import AVRSPError, WeightsError
from workflows.export import CHECKPOINT_FILE, MODEL_FILE

#: The name of the logged MLflow model in a training run (``runs:/RUN_ID/model``).
LOGGED_MODEL_NAME = "model"
#: LoggedModel tag holding the best checkpoint the model came from (one model per checkpoint).
CHECKPOINT_TAG = "avrsp.checkpoint"
FORMATS = ("pt2", "pickle")
SCHEMES = ("runs:/", "models:/")


def is_mlflow_uri(spec: str | Path) -> bool:
    """Whether ``spec`` is a ``runs:/`` or ``models:/`` URI (not a local path)."""
    return str(spec).startswith(SCHEMES)


# =========================================================================== logging


def model_signature(config: AVRSPConfig) -> Any:
    """The MLflow signature of a network of ``config``: named tensor inputs ``frames``
    ``[-1, 3, T, H, W]`` (and ``audio`` ``[-1, S]`` when the model uses audio), output
    ``[-1, H, W]``, all float32; -1 is the batch.

    Written from the config rather than inferred from a forward pass: the driver that logs
    the model may have no GPU, and a ``paper``-size forward on its CPU costs seconds and GBs
    for shapes the config already states (the tests check them against a real forward).
    """
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    i, f32 = config.input, np.dtype(np.float32)
    inputs = [TensorSpec(f32, (-1, 3, i.frames, i.height, i.width), "frames")]
    if config.model.use_audio:
        inputs.append(TensorSpec(f32, (-1, i.audio_samples), "audio"))
    return ModelSignature(
        inputs=Schema(inputs), outputs=Schema([TensorSpec(f32, (-1, i.height, i.width))])
    )


def example_inputs(config: AVRSPConfig, batch: int = 2) -> tuple[Any, ...]:
    """``(frames, audio)`` (or ``(frames,)`` for a V model) at the config's sizes: what
    ``torch.export`` traces. Batch 2, because ``torch.export`` fixes a dimension of size 1."""
    import torch

    i = config.input
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 3, i.frames, i.height, i.width, generator=generator)
    if not config.model.use_audio:
        return (frames,)
    return frames, torch.zeros(batch, i.audio_samples)


@dataclass
class MlflowModel:
    """A logged (and maybe registered) MLflow model of a training run."""

    model_id: str
    serialization_format: str
    registered_name: str = ""
    version: str = ""
    reused: bool = False  # a re-run found this checkpoint's model already logged

    @property
    def model_uri(self) -> str:
        """``models:/m-…``: the logged model itself."""
        return f"models:/{self.model_id}"

    @property
    def registered_uri(self) -> str:
        """``models:/NAME/VERSION``, or ``""`` when not registered."""
        return f"models:/{self.registered_name}/{self.version}" if self.version else ""


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """``mlflow.pytorch.log_model`` and registration use the process-wide tracking URI.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the environment (for
    subprocesses), which :func:`workflows.tracking.default_tracking_uri` reads: restore that
    variable as it was, unset included.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets it again


def _run_models(client: Any, run_id: str) -> list[Any]:
    """The logged models of run ``run_id``, newest first."""
    run = client.get_run(run_id)
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    return [m for m in found if m.source_run_id == run_id]


def find_logged_model(client: Any, run_id: str, checkpoint: str) -> Any | None:
    """The READY logged model of ``run_id`` made from ``checkpoint`` (its tag), if any."""
    for model in _run_models(client, run_id):
        if model.tags.get(CHECKPOINT_TAG) == checkpoint and str(model.status) == "READY":
            return model
    return None


def _ensure_registered(client: Any, model_id: str, name: str) -> str:
    """The version of registered model ``name`` that points at ``model_id``, made if new."""
    import mlflow

    source = f"models:/{model_id}"
    with contextlib.suppress(Exception):  # no such registered model yet
        for version in client.search_model_versions(f"name = '{name}'"):
            if version.source == source:
                return str(version.version)
    # MLflow prints "Successfully registered model …" / "Created version …" to stderr
    # itself: into the log, the registered URI is in what training prints at the end.
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        version = mlflow.register_model(source, name).version
    if said.getvalue().strip():
        logging.getLogger(__name__).info("%s", said.getvalue().strip())
    return str(version)


def log_mlflow_model(
    uri: str,
    run_id: str,
    model_path: str | Path,
    *,
    registered_name: str | None = None,
    serialization_format: str = "pt2",
    step: int = 0,
) -> MlflowModel:
    """Log the exported model at ``model_path`` as MLflow model ``model`` of run ``run_id``.

    The network comes from :func:`workflows.export.load_model` (so what is logged is what
    loads); ``model.pt`` and ``model.config.json`` travel inside as extra files.
    ``registered_name``: also register it (a new version of that registered model);
    ``None`` or ``""``: log only. ``serialization_format``: ``"pt2"`` (``torch.export``,
    falls back to ``"pickle"`` with a warning when tracing fails) or ``"pickle"``. ``step``:
    the run's metrics at this step (the best epoch) are linked to the model. A re-run whose
    best checkpoint was already logged reuses that model instead of logging a copy.
    """
    from mlflow.tracking import MlflowClient

    from workflows.export import load_model

    if serialization_format not in FORMATS:
        raise AVRSPError(f"MLflow model format {serialization_format!r}: use one of {FORMATS}")
    model_path = Path(model_path)
    loaded = load_model(model_path)
    checkpoint = str(loaded.meta.get("checkpoint") or model_path)
    client = MlflowClient(tracking_uri=uri)
    with _global_tracking_uri(uri):
        existing = find_logged_model(client, run_id, checkpoint)
        if existing is not None:
            result = MlflowModel(
                existing.model_id, existing.tags.get("avrsp.format", "pt2"), reused=True
            )
        else:
            result = _log_new(client, run_id, loaded, model_path, serialization_format, step)
        if registered_name:
            result.registered_name = registered_name
            result.version = _ensure_registered(client, result.model_id, registered_name)
    return result


def _log_new(
    client: Any, run_id: str, loaded: Any, model_path: Path, fmt: str, step: int
) -> MlflowModel:
    import mlflow

    config: AVRSPConfig = loaded.config
    run = client.get_run(run_id)
    tags = {
        CHECKPOINT_TAG: str(loaded.meta.get("checkpoint") or model_path),
        "avrsp.run_name": str(loaded.meta.get("run_name", run.info.run_name)),
        "avrsp.variant": "AV" if config.model.use_audio else "V",
    }

    def log(attempt: str) -> MlflowModel:
        # The LoggedModel is made here, in the run's experiment: log_model alone takes the
        # experiment from the active fluent run and, without one, uses MLflow's Default.
        logged = mlflow.initialize_logged_model(
            name=LOGGED_MODEL_NAME,
            source_run_id=run_id,
            experiment_id=run.info.experiment_id,
            tags={**tags, "avrsp.format": attempt},
            params=dict(run.data.params),
        )
        try:
            mlflow.pytorch.log_model(
                loaded.model,
                name=LOGGED_MODEL_NAME,
                model_id=logged.model_id,
                run_id=run_id,
                step=step,
                signature=model_signature(config),
                input_example=example_inputs(config) if attempt == "pt2" else None,
                serialization_format=attempt,
                extra_files=[str(model_path), str(model_path.with_suffix(".config.json"))],
                # Given, so MLflow does not load the model in a subprocess to infer them.
                pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            )
        except Exception:
            with contextlib.suppress(Exception):  # leave no FAILED model behind
                client.delete_logged_model(logged.model_id)
            raise
        return MlflowModel(logged.model_id, attempt)

    if fmt == "pt2":
        try:
            return log("pt2")
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            warnings.warn(
                f"{model_path}: logging the MLflow model in the pt2 format (torch.export) "
                f"failed ({type(exc).__name__}: {first}); logging it as a pickle instead",
                RuntimeWarning,
                stacklevel=3,
            )
    return log("pickle")


# =========================================================================== resolving


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/avrsp/models`` (``~/.cache/avrsp/models``): downloaded models."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "avrsp" / "models"


def model_file_in(folder: Path, spec: str) -> Path:
    """Our ``model.pt`` (or a training ``checkpoint.pt``) in a downloaded artifact folder:
    at its top or under ``extra_files/`` (where :func:`log_mlflow_model` puts it)."""
    if folder.is_file():
        return folder
    for sub in (".", "extra_files"):
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            if (folder / sub / name).is_file():
                return (folder / sub / name).resolve()
    if (folder / "MLmodel").is_file():
        raise WeightsError(
            f"{spec}: the MLflow model holds no {MODEL_FILE} (neither at its top nor in "
            f"extra_files/); only models logged by avrsp train carry the weights-only file "
            "this project loads"
        )
    listing = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    raise WeightsError(
        f"{spec}: the artifacts hold no {MODEL_FILE} or {CHECKPOINT_FILE} "
        f"(files: {', '.join(listing[:8]) or 'none'})"
    )


def _local_model_file(path: Path) -> Path:
    """A local path as :func:`workflows.export.load_model` reads it."""
    if path.is_dir():
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            if (path / name).is_file():
                return path / name
        raise WeightsError(f"{path}: folder holds neither {MODEL_FILE} nor {CHECKPOINT_FILE}")
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file or folder")
    return path


def _check_store(uri: str, spec: str) -> None:
    """A SQLite store must exist: MLflow would silently create an empty one."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise WeightsError(
                f"{spec}: no MLflow store at {db} (give the tracking URI of the store that "
                "holds the run: --mlflow-uri or MLFLOW_TRACKING_URI)"
            )


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _registered_version(client: Any, spec: str, name: str, ref: str, sep: str) -> Any:
    """The model version ``models:/NAME/VERSION``, ``NAME/latest`` or ``NAME@ALIAS`` names."""
    from mlflow.exceptions import MlflowException

    try:
        if sep == "@":
            return client.get_model_version_by_alias(name, ref)
        if ref.lower() == "latest":
            versions = client.search_model_versions(
                f"name = '{name}'", order_by=["version_number DESC"], max_results=1
            )
            if not versions:
                raise WeightsError(f"{spec}: registered model {name!r} has no versions")
            return versions[0]
        return client.get_model_version(name, ref)
    except MlflowException as exc:
        if not _not_found(exc) and "not found" not in str(exc).lower():
            raise WeightsError(f"{spec}: {exc.message}") from None
        known = sorted(v.version for v in _safe_versions(client, name))
        hint = (
            f"registered model {name!r} has versions {', '.join(map(str, known))}"
            if known
            else f"no registered model {name!r}"
        )
        raise WeightsError(f"{spec}: no such model version in the registry ({hint})") from None


def _safe_versions(client: Any, name: str) -> list[Any]:
    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except Exception:
        return []


def _download(uri: str, cache: Path, key: str, artifact_uri: str, *, reuse: bool) -> Path:
    """``artifact_uri`` downloaded to ``cache/key`` (atomically: a temporary folder, then a
    rename). ``reuse``: an existing download is kept (for immutable logged models)."""
    import mlflow

    target = cache / key
    if reuse and target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        # The returned path is the downloaded file or folder inside ``tmp`` (its last name).
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri, dst_path=str(tmp), tracking_uri=uri
            )
        )
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            target.rename(old)
        if got.is_dir():
            got.rename(target)
        else:  # one file: keep it under its own name
            tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _download_error(spec: str, exc: Exception) -> WeightsError:
    text = str(getattr(exc, "message", None) or exc)
    text = text.splitlines()[0] if text else ""
    return WeightsError(f"{spec}: cannot download the artifacts ({type(exc).__name__}: {text})")


def resolve_model(
    spec: str | Path, *, tracking_uri: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The local ``model.pt`` (or ``checkpoint.pt``) that ``spec`` names.

    - a local file, or a folder holding ``model.pt`` / ``checkpoint.pt``: that file;
    - ``runs:/RUN_ID/PATH``: the run's logged model ``PATH`` (``runs:/RUN_ID/model``, the
      newest when a re-run logged several) or its artifact ``PATH``;
    - ``models:/NAME/VERSION``, ``models:/NAME/latest``, ``models:/NAME@ALIAS``: a version
      of a registered model; ``models:/m-…``: a logged model by id.

    URIs are read from ``tracking_uri`` (default ``MLFLOW_TRACKING_URI``, else the project's
    SQLite file) and downloaded into ``cache_dir`` (default :func:`default_cache_dir`); a
    logged model is downloaded once (its files never change), run artifacts every time.
    Unknown runs, models and versions raise :class:`WeightsError` naming ``spec``.
    """
    text = str(spec)
    if not is_mlflow_uri(text):
        return _local_model_file(Path(text).expanduser())
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from workflows.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    _check_store(uri, text)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    client = MlflowClient(tracking_uri=uri)
    try:
        if text.startswith("runs:/"):
            folder = _resolve_run(client, uri, cache, text)
        else:
            folder = _resolve_registry(client, uri, cache, text)
    except MlflowException as exc:
        raise _download_error(text, exc) from None
    return model_file_in(folder, text)


def _logged_model_folder(uri: str, cache: Path, model: Any, spec: str) -> Path:
    if str(model.status) != "READY":
        raise WeightsError(f"{spec}: logged model {model.model_id} is {model.status}, not READY")
    return _download(uri, cache, f"models/{model.model_id}", model.artifact_location, reuse=True)


def _resolve_run(client: Any, uri: str, cache: Path, spec: str) -> Path:
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"runs:/([^/]+)(?:/(.*))?", spec)
    if match is None or not match.group(1):
        raise WeightsError(f"{spec}: expected runs:/RUN_ID/PATH (e.g. runs:/RUN_ID/model)")
    run_id, path = match.group(1), (match.group(2) or "").strip("/")
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if _not_found(exc):
            raise WeightsError(f"{spec}: no run {run_id!r} in {uri}") from None
        raise
    name, _, rest = path.partition("/")
    if name and not rest:
        for model in _run_models(client, run_id):
            if model.name == name and str(model.status) == "READY":
                return _logged_model_folder(uri, cache, model, spec)
    if not path:
        raise WeightsError(f"{spec}: name the artifact, e.g. runs:/{run_id}/model")
    key = f"runs/{run_id}/{path}"
    try:
        return _download(uri, cache, key, f"runs:/{run_id}/{path}", reuse=False)
    except MlflowException as exc:
        if _not_found(exc) or "Failed to download" in str(exc):
            raise WeightsError(f"{spec}: run {run_id} has no artifact or model {path!r}") from None
        raise


def _resolve_registry(client: Any, uri: str, cache: Path, spec: str) -> Path:
    from mlflow.exceptions import MlflowException

    body = spec.removeprefix("models:/").strip("/")
    if re.fullmatch(r"m-[0-9a-f]+", body):
        try:
            return _logged_model_folder(uri, cache, client.get_logged_model(body), spec)
        except MlflowException as exc:
            if _not_found(exc):
                raise WeightsError(f"{spec}: no logged model {body!r} in {uri}") from None
            raise
    match = re.fullmatch(r"([^/@]+)(?:(/)([^/]+)|(@)([^/]+))", body)
    if match is None:
        raise WeightsError(
            f"{spec}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
        )
    name = match.group(1)
    sep, ref = (match.group(2), match.group(3)) if match.group(2) else ("@", match.group(5))
    version = _registered_version(client, spec, name, ref, sep)
    source = str(version.source)
    if re.fullmatch(r"models:/m-[0-9a-f]+", source):
        model = client.get_logged_model(source.removeprefix("models:/"))
        return _logged_model_folder(uri, cache, model, spec)
    # An older registry entry (a run artifact or a path): download what it points at.
    return _download(uri, cache, f"registry/{name}/{version.version}", source, reuse=False)
