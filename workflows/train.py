"""The training workflow: Ray Train ``TorchTrainer`` over Ray Data segment shards (DESIGN §6).

``train(TrainConfig) -> TrainResult`` is the whole job; ``avrsp train`` only builds the
config. What happens, in order:

1. The driver checks the shards (``docs/DATA.md``) against the model's input config, finds
   or creates the MLflow run (:mod:`workflows.tracking`), and builds two lazy Ray Datasets:
   ``train`` (decoded and randomly flipped in Ray Data tasks, :mod:`workflows.data`) and
   ``val`` (decoded only). Ray Train's ``DataConfig`` splits both across the workers.
2. Each worker runs :func:`train_loop`: DDP (gloo on CPU, NCCL on GPU), bf16 autocast on GPU,
   AdamW (lr 1e-4, weight decay 1e-5, paper §IV-B), gradient clipping, the loss of eq. (19)
   (:func:`avrsp.losses.saliency_loss`), and per epoch a validation pass (loss, CC, NSS,
   SIM, KLD, AUC-Judd, AUC-Borji; :func:`avrsp.metrics.all_metrics`, summed over workers),
   ``ReduceLROnPlateau(factor 0.5)`` on the validation loss, and a checkpoint (model,
   optimizer, scheduler, epoch, history, config) reported through ``ray.train.report``.
3. Ray Train keeps the ``num_to_keep`` best checkpoints by validation loss (and always the
   latest). A crashed worker makes Ray restart the worker group (``FailureConfig``); the
   loop resumes from the latest checkpoint, so no finished epoch is repeated or lost.
   Re-running with the same ``run_name`` and ``storage_path`` resumes the same way.
4. The driver exports the best checkpoint as ``RUN_DIR/model.pt``
   (:func:`workflows.export.export_model`, what ``evaluate`` and ``predict`` load) and
   logs it, with the config, to the MLflow run.

Two stages (paper §IV-B) are two configs: stage 1 trains the V variant
(``network.model.use_audio: false``); stage 2 sets ``init_from`` to the stage-1 model,
switches the audio branch on and trains on the AV data. Stage-1 weights load strictly
(:func:`workflows.export.load_stage1_weights`), and the stage-2 run is tagged with the
stage-1 MLflow run (``parent_run``).

``num_workers = 0`` runs the loop in the driver process (Ray Train's local mode; Ray Data
still does the ingest): no DDP, checkpoints written to ``RUN_DIR`` by this module with the
same layout, so resuming and best-checkpoint selection behave the same.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avrsp.config import AVRSPConfig, format_validation_error, preset, read_config_file
from avrsp.errors import AVRSPError, ConfigError, InputError

CHECKPOINT_PREFIX = "checkpoint_epoch_"
TRAIN_CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
VAL_METRICS = ("cc", "nss", "sim", "kld", "auc_judd", "auc_borji")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class CrashAt(BaseModel):
    """Fault injection for tests: the worker of ``rank`` exits hard (``os._exit``) at
    ``step`` of ``epoch``, once — only while the file ``marker`` does not exist yet."""

    model_config = ConfigDict(extra="forbid")
    epoch: int = Field(ge=0)
    step: int = Field(ge=0)
    rank: int = Field(0, ge=0)
    marker: Path


class TrainConfig(BaseModel):
    """Everything a training job needs besides the data itself (paper §IV-B defaults).

    ``network`` is the model config (:class:`avrsp.config.AVRSPConfig`); given as a partial
    mapping it is merged onto the ``preset``, so a config file says only what differs.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    preset: Literal["tiny", "paper"] = Field("tiny", description="base of `network`")
    network: AVRSPConfig = Field(default_factory=AVRSPConfig)
    stage: Literal[1, 2] = Field(1, description="1: visual branch; 2: from stage 1, with audio")
    init_from: Path | None = Field(
        None, description="stage 2: the stage-1 model (model.pt, or a checkpoint folder)"
    )
    # data
    data: Path | None = Field(None, description="preprocess output folder (or its shards/)")
    train_split: str = Field("train", description="split folder of the training rows")
    val_split: str = Field("val", description="split folder of the validation rows")
    fold: int = Field(
        0, ge=0, le=3, description="k-fold datasets: validate on cv fold k, train on the others"
    )
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="horizontal flip chance")
    shuffle_buffer: int = Field(16, ge=0, description="local shuffle buffer, rows")
    # optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(
        4,
        ge=2,
        description="per worker; >= 2 because BatchNorm after global pooling (MRG gate) "
        "cannot normalise a batch of one in training",
    )
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    clip_grad_norm: float | None = Field(1.0, gt=0, description="None: no clipping")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="ReduceLROnPlateau factor")
    lr_patience: int = Field(2, ge=0, description="ReduceLROnPlateau patience, epochs")
    seed: int = 0
    max_steps_per_epoch: int | None = Field(None, ge=1)
    max_val_batches: int | None = Field(None, ge=1)
    # Ray
    num_workers: int = Field(0, ge=0, description="Ray Train workers; 0 = in-process")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    address: str | None = Field(None, description="Ray cluster (default RAY_ADDRESS or local)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts before giving up")
    num_to_keep: int = Field(2, ge=1, description="best checkpoints kept (plus the latest)")
    # bookkeeping
    run_name: str = Field("avrsp", pattern=r"^[A-Za-z0-9._-]+$")
    storage_path: Path = Field(Path("runs"), description="runs live in STORAGE/RUN_NAME")
    mlflow_uri: str | None = Field(None, description="default MLFLOW_TRACKING_URI or SQLite")
    experiment: str = "avrsp"
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(10.0, gt=0)
    grid_windows: int = Field(4, ge=0, description="validation windows drawn every epoch")
    progress_every: int = Field(10, ge=0, description="print progress every N steps (0: off)")
    crash_at: CrashAt | None = Field(None, description="test hook (see CrashAt)")

    @model_validator(mode="before")
    @classmethod
    def _network_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("network"), AVRSPConfig):
            base = preset(data.get("preset", "tiny")).to_dict()
            data = {**data, "network": _merge(base, data.get("network") or {})}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.stage == 2 and self.init_from is None:
            raise ValueError("init_from: stage 2 starts from a stage-1 model; name its model.pt")
        if self.crash_at is not None and self.num_workers == 0:
            raise ValueError("crash_at: needs num_workers >= 1 (it would kill this process)")
        return self

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> TrainConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A YAML/JSON file (configs/stage1.yaml), with top-level ``overrides`` on top."""
        path = Path(path)
        data = read_config_file(path)
        # Relative paths in a config file are relative to the file.
        for key in ("init_from", "data"):
            if data.get(key) and key not in overrides and not Path(data[key]).is_absolute():
                data[key] = os.path.normpath(path.parent / data[key])
        return cls.from_dict(_merge(data, overrides), source=str(path))

    def with_overrides(self, **dotted: Any) -> TrainConfig:
        """A copy with ``key=value`` / ``network.model.width=16`` overrides."""
        data = self.model_dump(mode="json")
        for key, value in dotted.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown config key {key!r}")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"unknown config key {key!r}")
            node[leaf] = value
        return TrainConfig.from_dict(data, source="overrides")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def run_dir(self) -> Path:
        return (self.storage_path / self.run_name).resolve()


@dataclass
class TrainResult:
    """What a finished training job left behind."""

    run_name: str
    run_dir: Path
    model_path: Path
    best_checkpoint: Path
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]]
    mlflow_run_id: str
    tracking_uri: str
    resumed: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


# =========================================================================== helpers


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest epoch first."""
    if not run_dir.is_dir():
        return []
    found = [
        p
        for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if (p / "checkpoint.pt").is_file() and (p / METRICS_FILE).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def _read_metrics(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / METRICS_FILE).read_text())


def best_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint with the lowest validation loss (the latest epoch on ties)."""
    dirs = checkpoint_dirs(run_dir)
    if not dirs:
        raise AVRSPError(f"{run_dir}: the run left no checkpoint")
    scored = [(d, _read_metrics(d)) for d in dirs]
    return min(scored, key=lambda dm: (dm[1]["val_loss"], -dm[1]["epoch"]))


def check_resume_compatible(config: TrainConfig) -> Path | None:
    """The latest checkpoint of ``config.run_dir``, after checking it was made with the same
    network and input config (ConfigError listing the differences otherwise)."""
    from workflows.export import config_differences

    dirs = checkpoint_dirs(config.run_dir)
    if not dirs:
        return None
    latest = dirs[-1]
    stored = json.loads((latest / TRAIN_CONFIG_FILE).read_text())
    stored_net = AVRSPConfig.from_dict(stored["network"], source=str(latest / TRAIN_CONFIG_FILE))
    diffs = config_differences(stored_net, config.network)
    if diffs:
        raise ConfigError(
            f"{latest}: run {config.run_name!r} was trained with another network config; "
            "resuming it with this one cannot work (use a new --run-name): " + "; ".join(diffs)
        )
    return latest


def _prune_local(run_dir: Path, keep: int) -> None:
    """Local mode: keep the ``keep`` best checkpoints by validation loss, plus the latest."""
    dirs = checkpoint_dirs(run_dir)
    if len(dirs) <= keep:
        return
    ranked = sorted(dirs, key=lambda d: _read_metrics(d)["val_loss"])
    survivors = set(ranked[:keep]) | {dirs[-1]}
    for d in dirs:
        if d not in survivors:
            shutil.rmtree(d, ignore_errors=True)


# =========================================================================== worker loop


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    _, world = _distributed()
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _all_have(flag: bool, device: Any) -> bool:
    """True when every worker has a batch (keeps DDP's collectives in step)."""
    import torch
    import torch.distributed as dist

    _, world = _distributed()
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _to_inputs(batch: dict[str, Any], device: Any, uses_audio: bool) -> tuple[Any, Any, Any]:
    """uint8 frames ``[B, T, H, W, 3]`` → float ``[B, 3, T, H, W]`` in [0, 1]; audio; target."""
    import torch

    frames = torch.as_tensor(batch["frames"]).to(device, non_blocking=True)
    frames = frames.permute(0, 4, 1, 2, 3).float().div_(255.0)
    audio = torch.as_tensor(batch["audio"]).to(device).float() if uses_audio else None
    target = torch.as_tensor(batch["target"]).to(device).float()
    return frames, audio, target


def _autocast(device: Any) -> contextlib.AbstractContextManager[Any]:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: Any, cfg: TrainConfig) -> Any:
    """AdamW with the run's learning rate and weight decay (paper §IV-B: 1e-4, 1e-5)."""
    import torch

    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(
    model: Any, optimizer: Any, batch: dict[str, Any], cfg: TrainConfig, device: Any
) -> tuple[float, np.ndarray, int]:
    """One optimisation step on one batch (the body of :func:`train_loop`'s step loop).

    ``batch``: ``frames`` uint8 ``[B, T, H, W, 3]``, ``audio`` ``[B, S]``, ``target``
    ``[B, H, W]`` (:mod:`workflows.data`). Forward (bf16 autocast on GPU), the loss of
    eq. (19) on float32 maps, backward, gradient-norm clipping, optimizer step. Returns the
    batch's loss, its ``(kl, cc, sim)`` terms as float64 ``[3]``, and ``B``; reading them
    as Python floats waits for the step to finish on a GPU.
    """
    import torch

    from avrsp.losses import saliency_loss

    frames, audio, target = _to_inputs(batch, device, cfg.network.model.use_audio)
    with _autocast(device):
        pred = model(frames, audio)
    loss, terms = saliency_loss(pred.float(), target, cfg.network.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
    optimizer.step()
    values = np.array([float(terms[k]) for k in ("kl", "cc", "sim")])
    return float(loss.detach()), values, int(frames.shape[0])


def _iterate(shard: Any, cfg: TrainConfig, *, train: bool, epoch: int, rank: int) -> Any:
    kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "drop_last": train, "device": "cpu"}
    if train and cfg.shuffle_buffer:
        kwargs["local_shuffle_buffer_size"] = cfg.shuffle_buffer
        kwargs["local_shuffle_seed"] = cfg.seed * 100_003 + epoch * 101 + rank
    return iter(shard.iter_torch_batches(**kwargs))


def _validate(model: Any, shard: Any, cfg: TrainConfig, device: Any, rank: int) -> dict[str, float]:
    """Loss and saliency metrics over this worker's validation rows, summed over workers."""
    import torch

    from avrsp.losses import saliency_loss
    from avrsp.metrics import all_metrics

    net = getattr(model, "module", model)
    net.eval()
    loss_sum, count = 0.0, 0
    sums = dict.fromkeys(VAL_METRICS, 0.0)
    counts = dict.fromkeys(VAL_METRICS, 0.0)
    batches = _iterate(shard, cfg, train=False, epoch=0, rank=rank)
    step = 0
    with torch.no_grad():
        while True:
            batch = next(batches, None)
            if batch is None or (cfg.max_val_batches and step >= cfg.max_val_batches):
                break
            frames, audio, target = _to_inputs(batch, device, net.uses_audio)
            with _autocast(device):
                pred = net(frames, audio)
            pred = pred.float()
            loss, _ = saliency_loss(pred, target, cfg.network.loss)
            b = frames.shape[0]
            loss_sum += float(loss) * b
            fixmap = torch.as_tensor(batch["fixmap"]).numpy()
            scores = all_metrics(
                pred.cpu().numpy(),
                target.cpu().numpy(),
                fixmap,
                seed=cfg.seed,
                index_offset=rank * 1_000_000 + count,
            )
            for m in VAL_METRICS:
                v = scores[m]
                ok = np.isfinite(v)
                sums[m] += float(v[ok].sum())
                counts[m] += float(ok.sum())
            count += b
            step += 1
    totals = _all_sum(
        [loss_sum, float(count)]
        + [sums[m] for m in VAL_METRICS]
        + [counts[m] for m in VAL_METRICS],
        device,
    )
    n = totals[1]
    if n == 0:
        raise InputError(f"{cfg.val_split}: the validation split gave no rows to this run")
    k = len(VAL_METRICS)
    out = {"val_loss": totals[0] / n, "val_windows": n}
    for i, m in enumerate(VAL_METRICS):
        c = totals[2 + k + i]
        out[f"val_{m}"] = totals[2 + i] / c if c else float("nan")
    return out


def _grid(model: Any, windows: dict[str, np.ndarray], device: Any) -> np.ndarray | None:
    import torch

    from workflows.tracking import saliency_grid

    if not windows:
        return None
    net = getattr(model, "module", model)
    net.eval()
    with torch.no_grad():
        frames, audio, _ = _to_inputs(windows, device, net.uses_audio)
        with _autocast(device):
            pred = net(frames, audio).float().cpu().numpy()
    return saliency_grid(windows["frames"][:, -1], windows["target"], pred)


def _save_checkpoint(folder: Path, state: dict[str, Any], cfg: TrainConfig, metrics: dict) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "checkpoint.pt")
    (folder / TRAIN_CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))


def _load_checkpoint(folder: Path) -> dict[str, Any]:
    import torch

    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)


def _resume_state(ckpt: Any, run_dir: Path) -> dict[str, Any] | None:
    """The newest training state: Ray's latest registered checkpoint, or a newer complete
    one in ``run_dir``.

    Why both: a checkpoint reported just before a worker dies is written to storage but
    may not be registered by the controller yet (seen here: a crash one second after the
    epoch-0 report restarted the group with no checkpoint, repeating epoch 0). Local mode
    has no Ray checkpoint at all. Unreadable (partly written) folders are skipped.
    """
    state: dict[str, Any] | None = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = _load_checkpoint(Path(d))
    newest = -1 if state is None else int(state["epoch"])
    for folder in reversed(checkpoint_dirs(run_dir)):
        if int(folder.name.removeprefix(CHECKPOINT_PREFIX)) <= newest:
            break
        try:
            return _load_checkpoint(folder)
        except Exception:  # truncated by a crash mid-write: try the one before
            continue
    return state


def _maybe_crash(cfg: TrainConfig, epoch: int, step: int, rank: int) -> None:
    c = cfg.crash_at
    if c is None or (c.epoch, c.step, c.rank) != (epoch, step, rank) or c.marker.exists():
        return
    c.marker.parent.mkdir(parents=True, exist_ok=True)
    c.marker.write_text(f"crashed at epoch {epoch} step {step} rank {rank} pid {os.getpid()}\n")
    os._exit(1)


def train_loop(loop_config: dict[str, Any]) -> None:
    """One worker's training (Ray Train calls it on every worker; module docstring, step 2)."""
    import ray.train
    import torch

    from avrsp.model import build_model
    from workflows.data import SplitSpec, fixed_windows, split_files
    from workflows.export import cpu_state_dict, load_stage1_weights
    from workflows.tracking import EpochLogger

    cfg = TrainConfig.model_validate(loop_config["config"])
    local_mode = bool(loop_config["local_mode"])
    run_dir = Path(loop_config["run_dir"])
    rank, world = _distributed()
    if cfg.use_gpu and torch.cuda.is_available():
        device = ray.train.torch.get_device() if not local_mode else torch.device("cuda")
    else:
        device = torch.device("cpu")
        # As many intra-op threads as CPUs reserved for this worker. Measured on 2 cores
        # with Ray Data decoding beside the loop: 2 threads 22.6 s/step, 1 thread 2.2 s/step
        # (tiny, batch 8) — oversubscribed OpenMP threads spin against each other.
        torch.set_num_threads(max(1, math.floor(cfg.cpus_per_worker)))

    # -- model, optimiser, scheduler; resume or stage-1 init --------------------------
    seed_everything(cfg.seed)  # the same initial weights on every worker
    model = build_model(cfg.network)
    resume = _resume_state(ray.train.get_checkpoint(), run_dir)
    if resume is not None:
        model.load_state_dict(resume["model"])
    elif cfg.init_from is not None:
        report = load_stage1_weights(model, cfg.init_from)
        if rank == 0:
            print(f"[avrsp train] {report}")
    model.to(device)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
    )
    start_epoch, global_step, history = 0, 0, []
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start_epoch = int(resume["epoch"]) + 1
        global_step = int(resume["global_step"])
        history = list(resume["history"])
    seed_everything(cfg.seed + 7919 * rank + 104_729 * start_epoch)

    # -- data and logging ------------------------------------------------------------
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    logger: EpochLogger | None = None
    windows: dict[str, np.ndarray] = {}
    if rank == 0:
        logger = EpochLogger(
            loop_config["tracking_uri"],
            loop_config["mlflow_run_id"],
            system_metrics=cfg.system_metrics,
            sampling_s=cfg.system_metrics_interval_s,
        )
        # A crash between a checkpoint and its MLflow line leaves a hole: fill it.
        done = logger.logged_steps("val_loss")
        for entry in history:
            if int(entry["epoch"]) not in done:
                logger.log_metrics(entry, step=int(entry["epoch"]))
        if cfg.grid_windows:
            val_split = "cv" if cfg.fold else cfg.val_split
            spec = SplitSpec(val_split, cfg.fold, keep_fold=True)
            windows = fixed_windows(
                split_files(cfg.data, val_split), cfg.grid_windows, cfg.network, spec
            )

    try:
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            model.train()
            batches = _iterate(train_shard, cfg, train=True, epoch=epoch, rank=rank)
            loss_sum, terms_sum, seen, step = 0.0, np.zeros(3), 0, 0
            while not (cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch):
                batch = next(batches, None)
                if not _all_have(batch is not None, device):
                    break
                _maybe_crash(cfg, epoch, step, rank)
                loss, terms, b = train_step(model, optimizer, batch, cfg, device)
                loss_sum += loss * b
                terms_sum += terms * b
                seen += b
                step += 1
                global_step += 1
                if rank == 0 and cfg.progress_every and step % cfg.progress_every == 0:
                    per_step = (time.perf_counter() - started) / step
                    total = cfg.max_steps_per_epoch or "?"
                    print(f"[train {cfg.run_name}] epoch {epoch + 1}/{cfg.epochs} step "
                          f"{step}/{total}: loss {loss_sum / seen:.4f} ({per_step:.2f} s/step)",
                          flush=True)  # fmt: skip
            # An epoch cut short (max_steps_per_epoch): stop Ray Data's executor now, not
            # when the generator is collected, so it does not decode during validation.
            batches.close()
            totals = _all_sum([loss_sum, float(seen), *terms_sum.tolist()], device)
            if totals[1] == 0:
                raise InputError(
                    f"{cfg.train_split}: no training batch of {cfg.batch_size} rows per worker "
                    f"({cfg.num_workers or 1} workers); lower batch_size or add data"
                )
            train_seconds = time.perf_counter() - started
            val = _validate(model, val_shard, cfg, device, rank)
            scheduler.step(val["val_loss"])
            metrics: dict[str, float] = {
                "epoch": epoch,
                "global_step": global_step,
                "train_loss": totals[0] / totals[1],
                "train_kl": totals[2] / totals[1],
                "train_cc": totals[3] / totals[1],
                "train_sim": totals[4] / totals[1],
                "train_windows": totals[1],
                "train_windows_per_s": totals[1] / max(train_seconds, 1e-9),
                **val,
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_s": time.perf_counter() - started,
            }
            history.append(metrics)
            if rank == 0 and cfg.progress_every:
                print(f"[train {cfg.run_name}] epoch {epoch + 1}/{cfg.epochs} done in "
                      f"{metrics['epoch_s']:.0f} s: train loss {metrics['train_loss']:.4f}, "
                      f"val loss {val['val_loss']:.4f}, val CC {val.get('val_cc', np.nan):.3f}",
                      flush=True)  # fmt: skip
            grid = _grid(model, windows, device) if rank == 0 and windows else None
            name = f"{CHECKPOINT_PREFIX}{epoch:04d}"
            if rank == 0:
                state = {
                    "format": "avrsp-checkpoint",
                    "model": cpu_state_dict(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "global_step": global_step,
                    "history": history,
                    "config": json.dumps(cfg.to_dict()),
                    "mlflow_run_id": loop_config["mlflow_run_id"],
                }
                if local_mode:
                    folder = run_dir / name
                    _save_checkpoint(folder, state, cfg, metrics)
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint(str(folder)))
                    _prune_local(run_dir, cfg.num_to_keep)
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        _save_checkpoint(Path(tmp), state, cfg, metrics)
                        ray.train.report(
                            metrics,
                            checkpoint=ray.train.Checkpoint.from_directory(tmp),
                            checkpoint_dir_name=name,
                        )
            else:
                ray.train.report(metrics, checkpoint_dir_name=name)
            # After the checkpoint exists, so a crash cannot make an epoch appear twice.
            if logger is not None and epoch not in logger.logged_steps("val_loss"):
                logger.log_metrics(metrics, step=epoch)
                if grid is not None:
                    logger.log_grid(grid, epoch)
    finally:
        if logger is not None:
            logger.close()


# =========================================================================== driver


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        import avrsp
        import preprocessing
        import workflows

        modules = [str(Path(m.__file__).parent) for m in (avrsp, preprocessing, workflows)]
        ray.init(address=address, runtime_env={"py_modules": modules})
    else:
        ray.init(include_dashboard=False)


def _dataset_files(cfg: TrainConfig) -> tuple[list[Path], list[Path], Any, Any]:
    from workflows.data import SplitSpec, split_files

    if cfg.data is None:
        raise ConfigError("data: no shards given (--data DIR, the output of avrsp preprocess)")
    if cfg.fold:
        files = split_files(cfg.data, "cv")
        return files, files, SplitSpec("cv", cfg.fold, False), SplitSpec("cv", cfg.fold, True)
    train_files = split_files(cfg.data, cfg.train_split)
    val_files = split_files(cfg.data, cfg.val_split)
    return train_files, val_files, None, None


def _parent_meta(cfg: TrainConfig) -> dict[str, Any]:
    """The stage-1 model's metadata (run name, MLflow run id), checked to fit first."""
    if cfg.init_from is None:
        return {}
    from avrsp.model import build_model
    from workflows.export import load_stage1_weights

    report = load_stage1_weights(build_model(cfg.network), cfg.init_from)
    return {**report.meta, "path": str(report.path)}


def train(config: TrainConfig, *, callbacks: list[Any] | None = None) -> TrainResult:
    """Run (or resume) a training job; returns where its model, checkpoints and run are.

    ``callbacks``: Ray Train callbacks for the trainer's ``RunConfig`` (e.g. Tune's
    ``TuneReportCallback()`` when a Tune trial drives this run).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from workflows import tracking
    from workflows.data import check_shards, datasets_of, segment_dataset
    from workflows.export import export_model

    cfg = config.model_copy(update={"storage_path": config.storage_path.resolve()})
    if cfg.data is not None:
        cfg = cfg.model_copy(update={"data": Path(cfg.data).resolve()})
    if cfg.init_from is not None:
        cfg = cfg.model_copy(update={"init_from": Path(cfg.init_from).resolve()})
    train_files, val_files, train_spec, val_spec = _dataset_files(cfg)
    check_shards(train_files, cfg.network)
    check_shards(val_files, cfg.network)
    run_dir = cfg.run_dir
    check_resume_compatible(cfg)
    parent = _parent_meta(cfg)

    uri = cfg.mlflow_uri or tracking.default_tracking_uri()
    tags = {
        "dataset": ",".join(datasets_of(train_files)),
        "stage": str(cfg.stage),
        "preset": cfg.preset,
        "variant": "AV" if cfg.network.model.use_audio else "V",
        "git_commit": tracking.git_commit(),
        "run_dir": str(run_dir),
        "parent_run": str(parent.get("mlflow_run_id", "")),
        "parent_run_name": str(parent.get("run_name", "")),
        "init_from": str(parent.get("path", "")),
    }
    run_id, resumed = tracking.start_or_resume_run(
        uri,
        run_dir,
        run_name=cfg.run_name,
        params=tracking.flatten(cfg.to_dict()),
        tags=tags,
        experiment=cfg.experiment,
    )

    _init_ray(cfg.address)
    datasets = {
        "train": segment_dataset(
            train_files, cfg.network, spec=train_spec, flip_prob=cfg.flip_prob, shuffle=True
        ),
        "val": segment_dataset(val_files, cfg.network, spec=val_spec),
    }
    local_mode = cfg.num_workers == 0
    scaling = ray.train.ScalingConfig(
        num_workers=cfg.num_workers,
        use_gpu=cfg.use_gpu and not local_mode,
        resources_per_worker=None if local_mode else {"CPU": cfg.cpus_per_worker},
    )
    run_config = ray.train.RunConfig(
        name=cfg.run_name,
        storage_path=str(cfg.storage_path),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.num_to_keep,
            checkpoint_score_attribute="val_loss",
            checkpoint_score_order="min",
        ),
        failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        callbacks=callbacks or None,
    )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "config": cfg.to_dict(),
            "local_mode": local_mode,
            "run_dir": str(run_dir),
            "tracking_uri": uri,
            "mlflow_run_id": run_id,
        },
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=scaling,
        run_config=run_config,
        datasets=datasets,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRAIN_CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    try:
        trainer.fit()
    except Exception as exc:
        tracking.finish_run(uri, run_id, status="FAILED")
        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, AVRSPError):
            cause = cause.__cause__
        if isinstance(cause, AVRSPError):
            raise type(cause)(str(cause)) from exc
        raise AVRSPError(f"training run {cfg.run_name!r} failed: {exc}") from exc

    best, best_metrics = best_checkpoint(run_dir)
    latest = checkpoint_dirs(run_dir)[-1]
    history = _load_checkpoint(latest)["history"]
    model_path = export_model(
        run_dir / "model.pt",
        _load_checkpoint(best)["model"],
        cfg.network,
        meta={
            "run_name": cfg.run_name,
            "mlflow_run_id": run_id,
            "tracking_uri": uri,
            "stage": cfg.stage,
            "epoch": int(best_metrics["epoch"]),
            "val_loss": float(best_metrics["val_loss"]),
            "checkpoint": str(best),
            "parent_run": parent.get("mlflow_run_id", ""),
        },
    )
    tracking.finish_run(
        uri,
        run_id,
        status="FINISHED",
        files=[
            ("model", model_path),
            ("model", model_path.with_suffix(".config.json")),
            ("config", run_dir / TRAIN_CONFIG_FILE),
        ],
        tags={"best_epoch": str(best_metrics["epoch"]), "model_path": str(model_path)},
    )
    return TrainResult(
        run_name=cfg.run_name,
        run_dir=run_dir,
        model_path=model_path,
        best_checkpoint=best,
        best_epoch=int(best_metrics["epoch"]),
        best_val_loss=float(best_metrics["val_loss"]),
        history=history,
        mlflow_run_id=run_id,
        tracking_uri=uri,
        resumed=resumed,
        metrics=history[-1] if history else {},
    )
