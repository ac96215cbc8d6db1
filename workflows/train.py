"""The training job on Ray: a ``TorchTrainer`` around the Ray-free loop of :mod:`workflows.loop`.

:func:`train` is the whole job (``avrsp train`` only builds its :class:`TrainConfig`). The
driver checks the shards and a resumed run, opens the MLflow run, builds the Ray Datasets
``train`` (decoded in Ray Data tasks, flipped as batches arrive) and ``val``, and fits a
``TorchTrainer``.
Every worker runs :func:`train_loop_per_worker`: ``ray.train.torch.prepare_model`` (DDP with
more than one worker), ``ray.train.get_checkpoint()`` to resume, and
:func:`workflows.loop.fit`, whose ``report`` hands each epoch's checkpoint folder
(``STORAGE/RUN_NAME/checkpoint_epoch_NNNN``) to ``ray.train.report`` and logs to MLflow on
rank 0. ``CheckpointConfig`` keeps the ``num_to_keep`` best by ``val_loss`` and the latest;
``FailureConfig`` restarts a failed worker group, which resumes from the latest checkpoint,
as a re-run with the same ``run_name`` and ``storage_path`` does. The best checkpoint
becomes ``RUN_DIR/model.pt`` (:func:`workflows.export.export_model`), which the driver logs
as the run's MLflow model and registers (:func:`workflows.models.log_mlflow_model`).
``num_workers = 0`` runs the loop in this process (Ray Train's local mode, see
:class:`LocalModeCheckpoints`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch

from avrsp.errors import AVRSPError, storage_error
from avrsp.io import write_bytes, write_json, write_text
from preprocessing import storage
from preprocessing.fingerprints import FINGERPRINT_FILE
from preprocessing.ray_runtime import init_ray
from workflows import loop
from workflows.loop import TrainConfig, checkpoint_dirs, dataset_files
from workflows.tracking import RUN_FILE

__all__ = ["TrainConfig", "TrainResult", "checkpoint_dirs", "dataset_files", "train"]


@dataclass
class TrainResult:
    """What a finished training job left behind."""

    run_name: str
    run_dir: Path  # local: the run; for an object store, the local staging folder
    model_path: Path  # the local model.pt (in run_dir)
    best_checkpoint: str  # a location (:mod:`preprocessing.storage`)
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]]
    mlflow_run_id: str
    tracking_uri: str
    resumed: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str = ""  # the logged MLflow model, models:/m-…
    registered_model: str = ""  # models:/NAME/VERSION, "" when not registered
    run_location: str = ""  # STORAGE/RUN_NAME: the run_dir, or an object-store URI
    model_location: str = ""  # model.pt where the run lives


class LocalModeCheckpoints:
    """Checkpoint storage for Ray Train's local mode (``num_workers=0``), which has none.

    Ray 2.60's local mode keeps only the last reported checkpoint, in memory
    (``LocalTrainFnUtils.report``, ``ray/train/v2/_internal/execution/train_fn_utils.py``):
    it ignores ``RunConfig.storage_path`` and ``CheckpointConfig``, and a re-run's
    ``ray.train.get_checkpoint()`` is None. This does the controller's part in that mode
    only: the folders where Ray puts them, and the same ``CheckpointConfig`` applied as Ray
    applies it (the ``num_to_keep`` best by its score attribute, and always the latest).
    """

    def __init__(self, run_dir: Path, config: ray.train.CheckpointConfig) -> None:
        self.run_dir, self.config = run_dir, config

    def _score(self, folder: Path) -> float:
        value = loop.read_metrics(folder)[self.config.checkpoint_score_attribute]
        return value if self.config.checkpoint_score_order == "min" else -value

    def latest(self) -> Path | None:
        return (checkpoint_dirs(self.run_dir) or [None])[-1]

    def best(self) -> Path:
        """The best checkpoint by the score (ties: the latest) that is intact."""
        ranked = sorted(reversed(checkpoint_dirs(self.run_dir)), key=self._score)
        intact = next((f for f in ranked if loop.checkpoint_problem(f) is None), None)
        if intact is None:
            raise loop.DamagedCheckpoint(f"{self.run_dir}: no intact checkpoint")
        return intact

    def remove_leftovers(self) -> list[Path]:
        """Remove what an interrupted :meth:`persist` left: hidden ``.checkpoint_epoch_*.tmp…``
        folders, and ``.NAME.*.tmp`` files of an interrupted atomic write
        (:mod:`avrsp.io`) beside them. Returns what it removed."""
        found = [
            *self.run_dir.glob(f".{loop.CHECKPOINT_PREFIX}*.tmp*"),
            *(f for f in self.run_dir.glob(".*.tmp") if f.is_file()),
        ]
        for leftover in found:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return found

    def persist(self, folder: Path, name: str) -> Path:
        """Copy a reported checkpoint in (a crash leaves no half-written folder), then prune."""
        target, temp = self.run_dir / name, self.run_dir / f".{name}.tmp{os.getpid()}"
        try:
            shutil.copytree(folder, temp)
        except BaseException:  # a full disk: no hidden half-copy left behind
            shutil.rmtree(temp, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)  # an epoch redone replaces its folder
        temp.rename(target)
        ranked = sorted(checkpoint_dirs(self.run_dir), key=self._score)
        for stale in set(ranked[self.config.num_to_keep :]) - {target}:
            shutil.rmtree(stale, ignore_errors=True)
        return target


def checkpoint_config(cfg: TrainConfig) -> ray.train.CheckpointConfig:
    """Retention: the ``num_to_keep`` best checkpoints by validation loss (and the latest)."""
    return ray.train.CheckpointConfig(
        num_to_keep=cfg.num_to_keep,
        checkpoint_score_attribute="val_loss",
        checkpoint_score_order="min",
    )


def training_dataset(cfg: TrainConfig, files: list[Path], spec: Any) -> ray.data.Dataset:
    """The ``train`` dataset: decoded windows, block order shuffled (seeded when
    ``cfg.deterministic``)."""
    from workflows.data import segment_dataset

    seed = cfg.seed if cfg.deterministic else None
    return segment_dataset(files, cfg.network, spec=spec, shuffle=True, seed=seed)


def ingest_config(cfg: TrainConfig) -> ray.train.DataConfig:
    """Ray Train's ingest options: with ``cfg.deterministic``, Ray Data hands the blocks
    over in order (``preserve_order``), so the same seed gives the same batches."""
    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = options.preserve_order or cfg.deterministic
    return ray.train.DataConfig(execution_options=options)


def shard_batches(shard: Any, cfg: TrainConfig, *, train: bool, epoch: int, rank: int) -> Any:
    """An epoch's batches of a Ray Data shard. Training: full batches through a seeded local
    shuffle buffer, each row flipped left-right with chance ``flip_prob`` (seeded draws)."""
    kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "drop_last": train, "device": "cpu"}
    seed = cfg.seed * 100_003 + epoch * 101 + rank
    if train and cfg.shuffle_buffer:
        kwargs["local_shuffle_buffer_size"] = cfg.shuffle_buffer
        kwargs["local_shuffle_seed"] = seed
    batches = iter(shard.iter_torch_batches(**kwargs))
    if train and cfg.flip_prob > 0:
        from workflows.data import flipped_batches

        batches = flipped_batches(batches, cfg.flip_prob, seed + 7)
    return batches


def worker_device(cfg: TrainConfig) -> Any:
    """This worker's torch device; on CPU, also its intra-op threads."""
    import torch

    if cfg.use_gpu and torch.cuda.is_available():
        return ray.train.torch.get_device() if cfg.num_workers else torch.device("cuda")
    # As many threads as CPUs reserved for the worker. Measured on 2 cores with Ray Data
    # decoding beside the loop: 2 threads 22.6 s/step, 1 thread 2.2 s/step (tiny, batch 8).
    torch.set_num_threads(max(1, math.floor(cfg.cpus_per_worker)))
    return torch.device("cpu")


def resume_state(cfg: TrainConfig, local_mode: bool) -> tuple[dict[str, Any] | None, set[str]]:
    """The state a worker resumes from: that of Ray's latest checkpoint
    (``ray.train.get_checkpoint()``; in local mode, which keeps none, the run's newest
    folder), or, when that one is damaged (:func:`workflows.loop.load_checkpoint`), of the
    newest intact one before it. Returns it (None: a new run) and the names of the damaged
    checkpoints passed over (the driver has said which, :func:`train`)."""
    found = ray.train.get_checkpoint()
    listed = loop.checkpoint_locations(cfg.run_location)
    if found is not None:
        newest = Path(found.path).name
    elif local_mode and listed:
        newest = storage.name(listed[-1])
    else:
        return None, set()
    older = [loc for loc in reversed(listed) if storage.name(loc) < newest]
    damaged: set[str] = set()
    for location in [storage.join(cfg.run_location, newest), *older]:
        try:
            return loop.load_checkpoint(location), damaged
        except loop.DamagedCheckpoint as exc:
            logging.getLogger(__name__).warning("skipping a damaged checkpoint: %s", exc)
            damaged.add(storage.name(location))
    raise loop.DamagedCheckpoint(
        f"{cfg.run_location}: no intact checkpoint to resume from ({', '.join(sorted(damaged))} "
        "damaged): --overwrite starts the run again"
    )


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """What Ray Train runs on every worker: the Ray side of :func:`workflows.loop.fit`."""
    from workflows.data import fixed_windows
    from workflows.tracking import EpochLogger, saliency_grid

    cfg = TrainConfig.model_validate(loop_config["config"])
    rank = ray.train.get_context().get_world_rank()
    local = None if cfg.num_workers else LocalModeCheckpoints(cfg.run_dir, checkpoint_config(cfg))
    device = worker_device(cfg)
    resume, damaged = resume_state(cfg, local is not None)
    model = ray.train.torch.prepare_model(loop.initial_model(cfg, resume), move_to_device=device)

    logger, windows = None, {}
    if rank == 0:
        logger = EpochLogger(
            loop_config["tracking_uri"],
            loop_config["mlflow_run_id"],
            system_metrics=cfg.system_metrics,
            sampling_s=cfg.system_metrics_interval_s,
            name=cfg.run_name,  # its "[train NAME] tracking: lost/back" lines
        )
        logged = logger.logged_steps("val_loss")  # a crash after a checkpoint left a hole
        for entry in resume["history"] if resume else []:
            if int(entry["epoch"]) not in logged:
                logger.log_metrics(entry, step=int(entry["epoch"]), probe=False)
        if cfg.grid_windows:
            _, val_files, _, val_spec = dataset_files(cfg)
            windows = fixed_windows(val_files, cfg.grid_windows, cfg.network, val_spec)

    def report(metrics: dict[str, float], folder: Path | None) -> None:
        epoch, checkpoint = int(metrics["epoch"]), None
        name = base = f"{loop.CHECKPOINT_PREFIX}{epoch:04d}"
        # Ray still holds the damaged checkpoint of this epoch, and would prune the new one
        # with it if they shared a folder: the redone epoch gets a name of its own. (Local
        # mode replaces the damaged folder.)
        while local is None and name in damaged:
            name = f"{base}.{int(name.rpartition('.')[2]) + 1 if name != base else 1}"
        if folder is not None:
            folder = local.persist(folder, name) if local is not None else folder
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        if local is None:
            # Ray keeps a report in the worker until the controller's next poll (2 s): a
            # worker dying before then loses it, and the group restarts from the checkpoint
            # before (seen here: epoch 0 ran twice). Go on once it is registered.
            ray.train.get_all_reported_checkpoints(
                consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
            )
        if logger is not None and epoch not in logger.logged_steps("val_loss"):
            logger.log_metrics(metrics, step=epoch)
            if windows:
                pred = loop.predict(model, windows, device)
                logger.log_grid(
                    saliency_grid(windows["frames"][:, -1], windows["target"], pred), epoch
                )

    train_shard, val_shard = (ray.train.get_dataset_shard(n) for n in ("train", "val"))

    def train_batches(epoch: int) -> Any:
        return shard_batches(train_shard, cfg, train=True, epoch=epoch, rank=rank)

    def val_batches() -> Any:
        return shard_batches(val_shard, cfg, train=False, epoch=0, rank=rank)

    hook = loop_config.get("step_hook")
    if logger is not None:  # training starts: the run is RUNNING again (tracking.fail_run)
        logger.reopen_run()  # (or once the server is back, if it is out of reach)
    try:
        loop.fit(
            cfg,
            model,
            train_batches,
            val_batches,
            report,
            device=device,
            resume=resume,
            step_hook=hook,
        )
    finally:
        if logger is not None:
            logger.close()


def train(
    config: TrainConfig,
    *,
    callbacks: list[Any] | None = None,
    step_hook: loop.StepHook | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run (or resume) a training job; returns where its model, checkpoints and run are.

    ``callbacks``: Ray Train callbacks for the trainer's ``RunConfig`` (e.g. Tune's
    ``TuneReportCallback()`` when a Tune trial drives this run). ``step_hook(epoch, step,
    rank)`` runs on every worker before every step (the tests inject faults with it).
    ``overwrite``: discard what the run has stored (checkpoints, model, MLflow link) and
    start it again; without it a run resumes, and one made with other settings is refused.
    """
    from ray.train.torch import TorchConfig, TorchTrainer

    from workflows import tracking
    from workflows.data import check_shards, datasets_of, segment_dataset
    from workflows.models import log_mlflow_model

    paths = {
        k: storage.as_location(v) for k in ("storage_path", "data") if (v := getattr(config, k))
    }
    if config.init_from:
        paths["init_from"] = Path(config.init_from).resolve()
    cfg = config.model_copy(update={**paths, "network": loop.absolute_weights(config.network)})
    started = loop.check_backbones(cfg)  # the pretrained files first: before data and Ray
    train_files, val_files, train_spec, val_spec = dataset_files(cfg)
    for files in (train_files, val_files):
        check_shards(files, cfg.network)
    if overwrite:
        storage.delete_tree(cfg.run_location)
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
    local = cfg.num_workers == 0
    if local:  # what an interrupted copy of a checkpoint left
        LocalModeCheckpoints(cfg.run_dir, checkpoint_config(cfg)).remove_leftovers()
    resumed_from = loop.check_resume(cfg)
    if resumed_from is not None:
        # Verified before trusted: a damaged newest checkpoint is named and passed over.
        found = loop.checkpoint_locations(cfg.run_location)
        resumed_from, problems = loop.newest_intact(found)
        for problem in problems:
            log(f"[avrsp train] skipping a damaged checkpoint: {problem}")
        if resumed_from is None:
            raise loop.DamagedCheckpoint(
                f"{cfg.run_location}: run {cfg.run_name!r} has no intact checkpoint to resume "
                "from (above): --overwrite starts it again, or use a new --run-name"
            )
        done = storage.read_json(storage.join(resumed_from, loop.METRICS_FILE))
        log(
            f"[avrsp train] resuming run {cfg.run_name!r} from {storage.name(resumed_from)} "
            f"(epoch {int(done['epoch'])} done, val loss {done['val_loss']:.4f}) "
            f"in {cfg.run_location}"
        )
    parent = loop.stage1_metadata(cfg)  # checked to fit; it tags the run
    if started and parent.get("backbones"):  # what stage 1 recorded (models exported since)
        started.insert(1, f"S3D from {parent['path']} (stage 1: {parent['backbones']})")
    for line in started:
        log(f"[avrsp train] {line}")
    backbones = loop.backbones_text(cfg)
    run_dir, uri = cfg.run_dir, cfg.mlflow_uri or tracking.default_tracking_uri()
    tags = {
        "dataset": ",".join(datasets_of(train_files)),
        "stage": str(cfg.stage),
        "preset": cfg.preset,
        "variant": "AV" if cfg.network.model.use_audio else "V",
        "git_commit": tracking.git_commit(),
        "run_dir": cfg.run_location,
        "parent_run": str(parent.get("mlflow_run_id", "")),
        "parent_run_name": str(parent.get("run_name", "")),
        "init_from": str(parent.get("path", "")),
        "backbones": backbones,
    }
    params = {**tracking.flatten(cfg.to_dict()), "backbones": backbones}
    remote = storage.is_uri(cfg.run_location)
    if remote:  # the driver's files of a run on an object store: staged here, uploaded
        pull_run_files(cfg)
    way_out = "start it or pass another --mlflow-uri; nothing was trained"
    tracking.require_reachable(uri, way_out)  # one line at once, not minutes of retries
    try:
        with tracking.bounded_requests():
            run_id, resumed = tracking.start_or_resume_run(
                uri,
                run_dir,
                run_name=cfg.run_name,
                params=params,
                tags=tags,
                experiment=cfg.experiment,
                reopen=False,  # the workers reopen it when training starts
            )
    except Exception as exc:
        if isinstance(exc, AVRSPError) or not tracking.is_outage(exc):
            raise
        cause = tracking.outage_cause(exc)
        raise tracking.TrackingUnreachable(
            f"MLflow tracking server {uri} is unreachable ({cause}): {way_out}"
        ) from exc
    if remote:
        push_run_files(cfg, RUN_FILE)

    init_ray(cfg.address, packages=("avrsp", "preprocessing", "workflows"))
    train_ds = training_dataset(cfg, train_files, train_spec)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=dict(
            config=cfg.to_dict(), tracking_uri=uri, mlflow_run_id=run_id, step_hook=step_hook
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu and not local,
            resources_per_worker=None if local else {"CPU": cfg.cpus_per_worker},
            placement_strategy=cfg.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run_name,
            storage_path=cfg.storage_path,
            checkpoint_config=checkpoint_config(cfg),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            callbacks=callbacks or None,
        ),
        datasets={"train": train_ds, "val": segment_dataset(val_files, cfg.network, spec=val_spec)},
        dataset_config=ingest_config(cfg),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / loop.TRAIN_CONFIG_FILE, cfg.model_dump_json(indent=2))
    write_json(run_dir / FINGERPRINT_FILE, loop.run_fingerprint(cfg))
    if remote:
        push_run_files(cfg, loop.TRAIN_CONFIG_FILE, FINGERPRINT_FILE)
    try:
        result = trainer.fit()
    except Exception as exc:
        _end_run_quietly(uri, run_id)  # a resume that failed before training: unchanged
        if (full := storage_error(exc, where=cfg.run_location)) is not None:
            raise full from exc  # a full disk under --storage: one line, the file
        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, AVRSPError):
            cause = cause.__cause__
        if isinstance(cause, AVRSPError):
            raise type(cause)(str(cause)) from exc
        raise AVRSPError(f"training run {cfg.run_name!r} failed: {exc}") from exc

    meta = {"run_name": cfg.run_name, "mlflow_run_id": run_id, "tracking_uri": uri,
            "parent_run": parent.get("mlflow_run_id", ""), "backbones": backbones}  # fmt: skip
    if local:
        store = LocalModeCheckpoints(run_dir, checkpoint_config(cfg))
        best, latest = store.best(), store.latest()
        history = loop.load_checkpoint(latest)["history"]
        model_path, best_metrics = loop.export_best(cfg, best, meta)
        best_location = str(best)
    else:
        best_checkpoint = best_intact(cfg, result)
        best_location = storage.join(cfg.run_location, Path(best_checkpoint.path).name)
        with result.checkpoint.as_directory() as latest:  # a download from an object store
            history = loop.load_checkpoint(Path(latest))["history"]
        with best_checkpoint.as_directory() as best:
            model_path, best_metrics = loop.export_best(
                cfg, Path(best), meta, location=best_location
            )
    if remote:
        push_run_files(cfg, model_path.name, model_path.with_suffix(".config.json").name)
    # The server may have gone away during training (the workers went on without it):
    # one line, and a re-run of the same command logs what MLflow lacks without training.
    gone = (
        f"training run {cfg.run_name!r} is done and {model_path} is written; when the server "
        "is back, re-running the same command logs the model and the missing metrics "
        "without training again"
    )
    tracking.require_reachable(uri, gone)
    try:
        with tracking.bounded_requests(timeout=False):  # a large model may upload slowly
            filled = tracking.log_missing_history(uri, run_id, history)
            if filled:
                log(f"[avrsp train] tracking: logged the metrics of {filled} epochs MLflow lacked")
            logged = log_mlflow_model(
                uri,
                run_id,
                model_path,
                registered_name=cfg.registered_name,
                serialization_format=cfg.mlflow_model_format,
                step=int(best_metrics["epoch"]),
            )
    except Exception as exc:
        logging.getLogger(__name__).info("logging the MLflow model failed", exc_info=True)
        if tracking.is_outage(exc) and (cause := tracking.unreachable(uri)) is not None:
            raise tracking.TrackingUnreachable(
                f"MLflow tracking server {uri} is unreachable ({cause}): {gone}"
            ) from exc
        _end_run_quietly(uri, run_id, status="FAILED")
        raise AVRSPError(
            f"training run {cfg.run_name!r}: {model_path} is written, but logging it as an "
            f"MLflow model to {uri} failed ({type(exc).__name__}: {exc}{_where(exc)}); "
            "re-running the same "
            "command retries (the training is not repeated)"
        ) from exc
    files = [("config", run_dir / loop.TRAIN_CONFIG_FILE)]
    model_location = storage.join(cfg.run_location, model_path.name)
    tags = {"best_epoch": str(best_metrics["epoch"]), "model_path": model_location,
            "model_uri": logged.model_uri, "registered_model": logged.registered_uri}  # fmt: skip
    try:
        with tracking.bounded_requests(timeout=False):
            tracking.finish_run(uri, run_id, status="FINISHED", files=files, tags=tags)
    except Exception as exc:
        if not tracking.is_outage(exc) or (cause := tracking.unreachable(uri)) is None:
            raise
        raise tracking.TrackingUnreachable(
            f"MLflow tracking server {uri} is unreachable ({cause}): {gone}"
        ) from exc
    return TrainResult(
        run_name=cfg.run_name,
        run_dir=run_dir,
        model_path=model_path,
        best_checkpoint=best_location,
        best_epoch=int(best_metrics["epoch"]),
        best_val_loss=float(best_metrics["val_loss"]),
        history=history,
        mlflow_run_id=run_id,
        tracking_uri=uri,
        resumed=resumed,
        metrics=history[-1] if history else {},
        model_uri=logged.model_uri,
        registered_model=logged.registered_uri,
        run_location=cfg.run_location,
        model_location=model_location,
    )


def best_intact(cfg: TrainConfig, result: ray.train.Result) -> ray.train.Checkpoint:
    """Ray's best checkpoint by validation loss that is intact: Ray may still keep a
    damaged one that a resume passed over."""
    ranked = sorted(result.best_checkpoints, key=lambda pair: pair[1]["val_loss"])
    for checkpoint, _ in ranked:
        if loop.checkpoint_problem(storage.join(cfg.run_location, Path(checkpoint.path).name)):
            continue
        return checkpoint
    raise loop.DamagedCheckpoint(f"{cfg.run_location}: no intact checkpoint among Ray's best")


def _end_run_quietly(uri: str, run_id: str, status: str | None = None) -> None:
    """Mark a failed run FAILED (``status``), or with None only if it is RUNNING
    (:func:`workflows.tracking.fail_run`), without a second error on top of the one being
    reported: a tracking server that does not answer is named in the log only."""
    from workflows import tracking

    try:
        with tracking.bounded_requests():
            if status is None:
                tracking.fail_run(uri, run_id)
            else:
                tracking.finish_run(uri, run_id, status=status)
    except Exception:  # to the log file: the terminal shows the error being reported
        logging.getLogger(__name__).info(
            "could not mark MLflow run %s of %s %s", run_id, uri, status or "FAILED", exc_info=True
        )


def _where(exc: BaseException) -> str:
    """`` at FILE:LINE`` of the innermost frame that raised ``exc`` (for errors whose own
    text does not say where, such as an ``OSError`` without a file name)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


#: The files the driver keeps beside a run's checkpoints (Ray Train writes those).
RUN_FILES = (RUN_FILE, loop.TRAIN_CONFIG_FILE, "model.pt", "model.config.json")


def pull_run_files(cfg: TrainConfig) -> None:
    """For a run on an object store: fetch its driver files (those that exist) into the
    local staging folder, so that a re-run from any machine resumes the same MLflow run."""
    shutil.rmtree(cfg.run_dir, ignore_errors=True)  # nothing of another run's staging
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES[:2]:
        source = storage.join(cfg.run_location, name)
        if storage.is_file(source):
            write_bytes(cfg.run_dir / name, storage.read_bytes(source))


def push_run_files(cfg: TrainConfig, *names: str) -> None:
    """Upload driver files from the staging folder to the run on the object store."""
    for name in names:
        storage.upload(cfg.run_dir / name, storage.join(cfg.run_location, name))
