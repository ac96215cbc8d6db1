"""The training loop, without Ray: AVRSP's epochs over any iterable of batch dicts.

:func:`fit` is the whole loop (paper §IV-B): per epoch :func:`train_epoch` (AdamW, the loss
of eq. (19), gradient-norm clipping, bf16 autocast on GPU), :func:`validate` (loss, CC, NSS,
SIM, KLD, AUC-Judd, AUC-Borji), ``ReduceLROnPlateau`` on the validation loss, and a
checkpoint folder (:func:`save_checkpoint`) handed to an injected ``report`` callback with
the epoch's metrics. Where the batches come from and where checkpoints and metrics go is the
caller's business: :mod:`workflows.train` feeds Ray Data shards and reports through
``ray.train.report``; the tests feed a list of batch dicts. A batch is what
:func:`workflows.data.decode_batch` makes: ``frames`` uint8 ``[B, T, H, W, 3]``, ``audio``
``[B, S]``, ``target`` ``[B, H, W]``, ``fixmap`` ``[B, H, W]`` (numpy or torch).

Under DDP (``torch.distributed`` initialised, one process per worker) the loop keeps the
workers in step (an epoch ends when any worker runs out of batches) and sums the train and
validation figures over them; only rank 0 writes a checkpoint. This module imports no Ray.

:class:`TrainConfig` is the training job's configuration (this loop's and the Ray job's).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from avrsp.config import (
    AVRSPConfig,
    deep_merge,
    format_validation_error,
    preset,
    read_config_file,
)
from avrsp.errors import ConfigError, InputError, WeightsError
from avrsp.inference import autocast, frames_to_input
from preprocessing import storage
from preprocessing.fingerprints import FINGERPRINT_FILE, differences

#: A storage location (:mod:`preprocessing.storage`): kept as text, so that ``s3://b/x``
#: is not folded into a path; a ``Path`` given in code is accepted.
Location = Annotated[
    str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)
]

#: The paper's pretrained backbones (§III-A) and the ``network.model`` keys naming their files.
BACKBONE_FILES = {"s3d": "s3d_weights", "soundnet": "soundnet_weights"}
BACKBONE_NAMES = {"s3d": "S3D", "soundnet": "SoundNet-8"}

CHECKPOINT_PREFIX = "checkpoint_epoch_"
CHECKPOINT_FILE = "checkpoint.pt"
#: Beside it: its SHA-256, written at save, checked before a resume trusts it.
CHECKSUM_FILE = "checkpoint.pt.sha256"
TRAIN_CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
VAL_METRICS = ("cc", "nss", "sim", "kld", "auc_judd", "auc_borji")

#: ``report(metrics, checkpoint_folder)``: called by every worker after every epoch; the
#: folder (rank 0 only, else None) is temporary: copy or upload it before returning.
Report = Callable[[dict[str, float], Path | None], None]
#: ``step_hook(epoch, step, rank)``: called before every training step (tests, diagnostics).
StepHook = Callable[[int, int, int], None]


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
    from_scratch: bool = Field(
        False,
        strict=True,  # a real boolean, as the validator that drops the weight files reads it
        description="train S3D and SoundNet-8 from random weights and load no pretrained "
        "file even where network.model.s3d_weights / soundnet_weights name one (the paper "
        "starts from pretrained backbones; docs/TRAINING.md); the run records it",
    )
    # data
    data: Location | None = Field(
        None, description="preprocess output folder or object-store URI (or its shards/)"
    )
    train_split: str = Field("train", description="split folder of the training rows")
    val_split: str = Field("val", description="split folder of the validation rows")
    fold: int = Field(
        0, ge=0, le=3, description="k-fold datasets: validate on cv fold k, train on the others"
    )
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="horizontal flip chance")
    shuffle_buffer: int = Field(16, ge=0, description="local shuffle buffer, rows")
    deterministic: bool = Field(
        True,
        description="the same training order and flips for the same seed (Ray Data keeps "
        "block order; docs/TRAINING.md gives the cost)",
    )
    # optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(
        4,
        ge=2,
        description="per worker; >= 2 as a guard: a BatchNorm on batch statistics cannot "
        "train on one value per channel, which one window gives SoundNet-8 with "
        "soundnet_norm=batch and a single time step (audio_window_s < 0.58 s at 22,050 Hz) "
        "and S3D's last blocks on the smallest inputs (T=8 at 32x48); at the presets' "
        "sizes a batch of one trains (docs/TRAINING.md)",
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
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="where Ray places the workers: SPREAD puts them on different nodes"
    )
    address: str | None = Field(None, description="Ray cluster (default RAY_ADDRESS or local)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts before giving up")
    num_to_keep: int = Field(2, ge=1, description="best checkpoints kept (plus the latest)")
    # bookkeeping
    run_name: str = Field("avrsp", pattern=r"^[A-Za-z0-9._-]+$")
    storage_path: Location = Field(
        "runs", description="runs live in STORAGE/RUN_NAME: a folder or an object-store URI"
    )
    mlflow_uri: str | None = Field(None, description="default MLFLOW_TRACKING_URI or SQLite")
    experiment: str = "avrsp"
    register_as: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="registered model name of the logged model (default: run_name); "
        "'' logs the MLflow model without registering it",
    )
    mlflow_model_format: Literal["pt2", "pickle"] = Field(
        "pt2",
        description="MLflow's copy of the network: a torch.export program (pt2) or a pickle; "
        "our weights-only model.pt is inside either way",
    )
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(10.0, gt=0)
    grid_windows: int = Field(4, ge=0, description="validation windows drawn every epoch")
    progress_every: int = Field(10, ge=0, description="print progress every N steps (0: off)")

    @model_validator(mode="before")
    @classmethod
    def _network_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("network"), AVRSPConfig):
            base = preset(data.get("preset", "tiny")).to_dict()
            data = {**data, "network": deep_merge(base, data.get("network") or {})}
        if isinstance(data, dict) and data.get("from_scratch") is True:
            # From scratch means no file is read: the recorded network names none either.
            none = dict.fromkeys(BACKBONE_FILES.values())
            net = data["network"]
            data = {
                **data,
                "network": net.with_overrides(**{f"model.{k}": v for k, v in none.items()})
                if isinstance(net, AVRSPConfig)
                else deep_merge(net, {"model": none}),
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.stage == 2 and self.init_from is None:
            raise ValueError("init_from: stage 2 starts from a stage-1 model; name its model.pt")
        if self.num_workers == 0 and storage.is_uri(self.storage_path):
            raise ValueError(
                f"storage_path: {self.storage_path} is an object store, but in-process runs "
                "(num_workers 0) keep their checkpoints in a local folder; use Ray Train "
                "workers (--num-workers 1 or more) or a local --storage"
            )
        return self

    @property
    def registered_name(self) -> str:
        """The registry name the finished run's model gets (``""``: not registered)."""
        return self.run_name if self.register_as is None else self.register_as

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
            value = data.get(key)
            if (
                value
                and key not in overrides
                and not storage.is_uri(value)
                and not Path(value).is_absolute()
            ):
                data[key] = os.path.normpath(path.parent / data[key])
        network = data.get("network")
        model = network.get("model") if isinstance(network, dict) else None
        if isinstance(model, dict):  # so are the pretrained weights (network.model.*_weights)
            for key in BACKBONE_FILES.values():
                value = model.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    model[key] = os.path.normpath(path.parent / value)
        return cls.from_dict(deep_merge(data, overrides), source=str(path))

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
    def run_location(self) -> str:
        """Where the run lives: ``STORAGE/RUN_NAME``, a folder or an object-store URI."""
        return storage.join(storage.as_location(self.storage_path), self.run_name)

    @property
    def run_dir(self) -> Path:
        """The run's local folder: the run itself on a file system; for an object store, a
        local staging folder for the files the driver writes before they are uploaded."""
        if not storage.is_uri(self.storage_path):
            return Path(self.run_location)
        digest = hashlib.sha256(self.run_location.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "avrsp-runs" / digest / self.run_name


def dataset_files(cfg: TrainConfig) -> tuple[list[Path], list[Path], Any, Any]:
    """The shard files of the config's train and validation rows, with their fold filters
    (:class:`workflows.data.SplitSpec`, None without folds)."""
    from workflows.data import SplitSpec, split_files

    if cfg.data is None:
        raise ConfigError("data: no shards given (--data DIR, the output of avrsp preprocess)")
    if cfg.fold:
        files = split_files(cfg.data, "cv")
        return files, files, SplitSpec("cv", cfg.fold, False), SplitSpec("cv", cfg.fold, True)
    train_files = split_files(cfg.data, cfg.train_split)
    return train_files, split_files(cfg.data, cfg.val_split), None, None


# =========================================================================== pieces


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: Any, cfg: TrainConfig) -> Any:
    """AdamW with the run's learning rate and weight decay (paper §IV-B: 1e-4, 1e-5)."""
    import torch

    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: Any, cfg: TrainConfig) -> Any:
    """``ReduceLROnPlateau`` on the validation loss (paper §IV-B: factor 0.5)."""
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
    )


def _world() -> tuple[int, int]:
    """(rank, world size) of this process in the DDP group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    if _world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _all_have(flag: bool, device: Any) -> bool:
    """True when every worker has a batch (keeps DDP's collectives in step)."""
    import torch
    import torch.distributed as dist

    if _world()[1] == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _to_inputs(batch: dict[str, Any], device: Any, uses_audio: bool) -> tuple[Any, Any, Any]:
    """A batch's model input (:func:`avrsp.inference.frames_to_input`), audio and target."""
    import torch

    audio = torch.as_tensor(batch["audio"]).to(device).float() if uses_audio else None
    target = torch.as_tensor(batch["target"]).to(device).float()
    return frames_to_input(batch["frames"], device), audio, target


def _close(batches: Iterator[Any]) -> None:
    # A Ray Data iterator left open keeps its executor decoding (e.g. during validation).
    close = getattr(batches, "close", None)
    if close is not None:
        close()


def train_step(
    model: Any, optimizer: Any, batch: dict[str, Any], cfg: TrainConfig, device: Any
) -> tuple[float, np.ndarray, int]:
    """One optimisation step on one batch (the body of :func:`train_epoch`).

    Forward (bf16 autocast on GPU), the loss of eq. (19) on float32 maps, backward,
    gradient-norm clipping, optimizer step. Returns the batch's loss, its ``(kl, cc, sim)``
    terms as float64 ``[3]``, and ``B``; reading them waits for the step on a GPU.
    """
    import torch

    from avrsp.losses import saliency_loss

    frames, audio, target = _to_inputs(batch, device, cfg.network.model.use_audio)
    with autocast(device):
        pred = model(frames, audio)
    loss, terms = saliency_loss(pred.float(), target, cfg.network.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
    optimizer.step()
    values = np.array([float(terms[k]) for k in ("kl", "cc", "sim")])
    return float(loss.detach()), values, int(frames.shape[0])


def train_epoch(
    model: Any,
    optimizer: Any,
    batches: Iterable[dict[str, Any]],
    cfg: TrainConfig,
    device: Any,
    *,
    epoch: int = 0,
    step_hook: StepHook | None = None,
) -> dict[str, float]:
    """One epoch of :func:`train_step` over ``batches`` (at most ``max_steps_per_epoch``).

    Returns ``train_loss``, ``train_kl``, ``train_cc``, ``train_sim`` (window-weighted
    means), ``train_windows`` and ``train_windows_per_s`` (summed over DDP workers) and
    ``steps`` (this worker's; the same on every worker).
    """
    rank, world = _world()
    model.train()
    started = time.perf_counter()
    it = iter(batches)
    loss_sum, terms_sum, seen, step = 0.0, np.zeros(3), 0, 0
    try:
        while not (cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch):
            batch = next(it, None)
            if not _all_have(batch is not None, device):
                break
            if step_hook is not None:
                step_hook(epoch, step, rank)
            loss, terms, b = train_step(model, optimizer, batch, cfg, device)
            loss_sum += loss * b
            terms_sum += terms * b
            seen += b
            step += 1
            if rank == 0 and cfg.progress_every and step % cfg.progress_every == 0:
                per_step = (time.perf_counter() - started) / step
                print(f"[train {cfg.run_name}] epoch {epoch + 1}/{cfg.epochs} step {step}/"
                      f"{cfg.max_steps_per_epoch or '?'}: loss {loss_sum / seen:.4f} "
                      f"({per_step:.2f} s/step)", flush=True)  # fmt: skip
    finally:
        _close(it)
    totals = _all_sum([loss_sum, float(seen), *terms_sum.tolist()], device)
    if totals[1] == 0:
        raise InputError(
            f"{cfg.train_split}: no training batch of {cfg.batch_size} rows per worker "
            f"({world} workers); lower batch_size or add data"
        )
    n = totals[1]
    return {
        "train_loss": totals[0] / n,
        "train_kl": totals[2] / n,
        "train_cc": totals[3] / n,
        "train_sim": totals[4] / n,
        "train_windows": n,
        "train_windows_per_s": n / max(time.perf_counter() - started, 1e-9),
        "steps": step,
    }


def validate(
    model: Any, batches: Iterable[dict[str, Any]], cfg: TrainConfig, device: Any
) -> dict[str, float]:
    """``val_loss`` and the saliency metrics (:func:`avrsp.metrics.all_metrics`, per window
    at model resolution) over at most ``max_val_batches`` batches, summed over workers."""
    import torch

    from avrsp.losses import saliency_loss
    from avrsp.metrics import all_metrics

    rank, _ = _world()
    net = getattr(model, "module", model)
    net.eval()
    loss_sum, count, step = 0.0, 0, 0
    sums = dict.fromkeys(VAL_METRICS, 0.0)
    counts = dict.fromkeys(VAL_METRICS, 0.0)
    it = iter(batches)
    try:
        with torch.no_grad():
            while not (cfg.max_val_batches and step >= cfg.max_val_batches):
                batch = next(it, None)
                if batch is None:
                    break
                frames, audio, target = _to_inputs(batch, device, net.uses_audio)
                with autocast(device):
                    pred = net(frames, audio).float()
                loss, _ = saliency_loss(pred, target, cfg.network.loss)
                b = frames.shape[0]
                loss_sum += float(loss) * b
                fixmap = torch.as_tensor(batch["fixmap"]).numpy()
                pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
                offset = rank * 1_000_000 + count  # distinct random splits per window
                scores = all_metrics(pred_np, target_np, fixmap, seed=cfg.seed, index_offset=offset)
                for m in VAL_METRICS:
                    ok = np.isfinite(scores[m])
                    sums[m] += float(scores[m][ok].sum())
                    counts[m] += float(ok.sum())
                count += b
                step += 1
    finally:
        _close(it)
    k = len(VAL_METRICS)
    totals = _all_sum([loss_sum, float(count), *sums.values(), *counts.values()], device)
    n = totals[1]
    if n == 0:
        raise InputError(f"{cfg.val_split}: the validation split gave no rows to this run")
    out = {"val_loss": totals[0] / n, "val_windows": n}
    for i, m in enumerate(VAL_METRICS):
        c = totals[2 + k + i]
        out[f"val_{m}"] = totals[2 + i] / c if c else float("nan")
    return out


def predict(model: Any, windows: dict[str, Any], device: Any) -> np.ndarray:
    """Maps ``[N, H, W]`` (float32) the model predicts for a batch dict, in eval mode."""
    import torch

    net = getattr(model, "module", model)
    net.eval()
    with torch.no_grad():
        frames, audio, _ = _to_inputs(windows, device, net.uses_audio)
        with autocast(device):
            return net(frames, audio).float().cpu().numpy()


# =========================================================================== checkpoints


def training_state(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    cfg: TrainConfig,
    *,
    epoch: int,
    global_step: int,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """Everything a run resumes from, as plain data (loads with ``weights_only=True``)."""
    from workflows.export import cpu_state_dict

    return {
        "format": "avrsp-checkpoint",
        "model": cpu_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "global_step": global_step,
        "history": history,
        "config": json.dumps(cfg.to_dict()),
    }


def checkpoint_locations(run: str | Path) -> list[str]:
    """The complete checkpoint folders (``checkpoint_epoch_NNNN``) of a run, oldest first:
    a local folder's or an object store's (both files present)."""
    found = [
        storage.join(run, name)
        for name in storage.list_dirs(run)
        if name.startswith(CHECKPOINT_PREFIX)
        and storage.is_file(storage.join(run, name, CHECKPOINT_FILE))
        and storage.is_file(storage.join(run, name, METRICS_FILE))
    ]
    return sorted(found, key=storage.name)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """:func:`checkpoint_locations` of a local run folder, as paths."""
    return [Path(p) for p in checkpoint_locations(run_dir)]


def save_checkpoint(folder: Path, state: dict[str, Any], metrics: dict[str, float]) -> Path:
    """``folder``/``checkpoint.pt`` (the state), its SHA-256 (``checkpoint.pt.sha256``,
    ``sha256sum`` format, written after it: :func:`verify_checkpoint`), ``train_config.json``,
    ``metrics.json``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / CHECKPOINT_FILE)
    with open(folder / CHECKPOINT_FILE, "rb") as f:  # the bytes on disk, as a resume reads them
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    (folder / CHECKSUM_FILE).write_text(f"{digest}  {CHECKPOINT_FILE}\n")
    config = json.loads(state["config"])
    (folder / TRAIN_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return folder


class DamagedCheckpoint(WeightsError):
    """A checkpoint that cannot be trusted: empty, not the bytes written, or unreadable."""


def _digest(location: str) -> tuple[str, int]:
    """SHA-256 and size of a file (local or in an object store), streamed."""
    filesystem, path = storage.resolve(location)
    digest, size = hashlib.sha256(), 0
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_checkpoint(location: str | Path) -> bool:
    """Check a checkpoint folder's ``checkpoint.pt`` against the SHA-256 written beside it at
    save. Returns False for a checkpoint written before checksums (no ``checkpoint.pt.sha256``:
    only loading it can tell, :func:`load_checkpoint`). Raises :class:`DamagedCheckpoint`
    naming the file: empty (0 bytes), or other bytes than were saved (cut short, damaged)."""
    file = storage.join(location, CHECKPOINT_FILE)
    size = storage.size(file) if storage.is_file(file) else None
    if size is None:
        raise DamagedCheckpoint(f"{file}: missing")
    if size == 0:
        raise DamagedCheckpoint(f"{file}: empty (0 bytes; the save never wrote it)")
    recorded = storage.join(location, CHECKSUM_FILE)
    if not storage.is_file(recorded):
        return False
    expected = storage.read_text(recorded).split(maxsplit=1)[0] if storage.size(recorded) else ""
    actual, size = _digest(file)
    if actual != expected:
        raise DamagedCheckpoint(
            f"{file}: damaged or truncated: its {size:,} bytes do not have the SHA-256 "
            f"recorded at save in {CHECKSUM_FILE}"
        )
    return True


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote (``weights_only=True``, on the CPU), after
    :func:`verify_checkpoint`; a folder or an object-store location. Raises
    :class:`DamagedCheckpoint` naming the file when it cannot be trusted or read."""
    from workflows.export import read_torch_file

    verify_checkpoint(folder)
    file = storage.join(folder, CHECKPOINT_FILE)
    with storage.local_file(file) as local:
        try:
            return read_torch_file(local)
        except WeightsError as exc:
            raise DamagedCheckpoint(str(exc).replace(str(local), file, 1)) from None


def checkpoint_problem(location: str | Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it can): its checksum when it has one,
    else (written before checksums) whether it loads."""
    try:
        if not verify_checkpoint(location):
            load_checkpoint(location)
    except DamagedCheckpoint as exc:
        return str(exc)
    return None


def newest_intact(candidates: list[str]) -> tuple[str | None, list[str]]:
    """The newest of ``candidates`` (checkpoint locations, oldest first) that
    :func:`checkpoint_problem` finds intact (None: none is), and the problems of the newer
    ones it skipped, newest first."""
    problems = []
    for location in reversed(candidates):
        problem = checkpoint_problem(location)
        if problem is None:
            return location, problems
        problems.append(problem)
    return None, problems


def read_metrics(folder: Path) -> dict[str, float]:
    """The metrics a checkpoint folder was reported with."""
    return json.loads((folder / METRICS_FILE).read_text())


#: What makes a run, beside its network: a resumed run must have the same (docs/TRAINING.md,
#: "Re-runs"). Epochs, steps per epoch, workers' resources, logging may change on resume.
RUN_IDENTITY = (
    "data", "train_split", "val_split", "fold", "stage", "init_from", "flip_prob",
    "shuffle_buffer", "deterministic", "batch_size", "lr", "weight_decay", "clip_grad_norm",
    "lr_factor", "lr_patience", "seed",
)  # fmt: skip


def data_fingerprint(data: str | Path | None) -> dict[str, Any] | None:
    """The fingerprint ``avrsp preprocess`` recorded for the shards (None when absent)."""
    if data is None:
        return None
    location = storage.join(data, FINGERPRINT_FILE)
    if not storage.is_file(location):
        return None
    return storage.read_json(location)


def run_fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    """What made a run: the :data:`RUN_IDENTITY` settings, what its backbones started from
    (:func:`backbones`) and the data's own fingerprint."""
    values = cfg.to_dict()
    return {
        **{k: values[k] for k in RUN_IDENTITY},
        # The start, not the from_scratch switch: with no file named it changes nothing, and
        # a run begun from pretrained weights must not resume as one from scratch.
        "backbones": backbones(cfg),
        "shards": data_fingerprint(cfg.data),
    }


def check_resume(cfg: TrainConfig) -> str | None:
    """Before a re-run of ``cfg.run_location``: ConfigError when it cannot resume its
    checkpoints (another network or input config, other data or optimiser settings, listing
    the differences; or in-process after Ray Train workers or the other way round, whose
    checkpoint indexes are separate). Returns the checkpoint it resumes from (None: new)."""
    from workflows.export import config_differences

    found = checkpoint_locations(cfg.run_location)
    if not found:
        return None
    advice = "use a new --run-name, or --overwrite to discard the run and start it again"
    recorded = storage.join(cfg.run_location, FINGERPRINT_FILE)
    if storage.is_file(recorded):
        before, now = storage.read_json(recorded), run_fingerprint(cfg)
        # Recorded before backbones were: the network check below compares the weight files.
        before.setdefault("backbones", now["backbones"])
        diffs = differences(before, now)
        if diffs:
            raise ConfigError(
                f"{cfg.run_location}: run {cfg.run_name!r} was made with other settings, and "
                f"resuming it would mix them ({'; '.join(diffs)}): {advice}"
            )
    stored = storage.join(cfg.run_location, TRAIN_CONFIG_FILE)  # the config of the run before
    before = (
        storage.read_json(stored)["num_workers"] if storage.is_file(stored) else cfg.num_workers
    )
    if (before == 0) != (cfg.num_workers == 0):
        raise ConfigError(
            f"{cfg.run_location}: run {cfg.run_name!r} has checkpoints of num_workers={before}; "
            "in-process runs (0) and Ray Train workers keep separate checkpoint indexes: "
            "resume it the same way, or use a new --run-name"
        )
    # Every checkpoint of a run has the same network: this check keeps it so.
    last = storage.join(found[-1], TRAIN_CONFIG_FILE)
    net = AVRSPConfig.from_dict(storage.read_json(last)["network"], source=last)
    diffs = config_differences(net, cfg.network)
    if diffs:
        raise ConfigError(
            f"{found[-1]}: run {cfg.run_name!r} was trained with another network config; "
            f"resuming it with this one cannot work ({advice}): " + "; ".join(diffs)
        )
    return found[-1]


# =========================================================================== backbones


def backbones(cfg: TrainConfig) -> dict[str, str]:
    """What the run's backbones start from, as the run records it (the MLflow param and tag
    ``backbones``, its fingerprint, the exported model's metadata): ``s3d`` is
    ``pretrained(FILE)``, ``scratch``, or in stage 2 ``stage1`` (from ``init_from``); with
    audio, ``soundnet`` likewise and ``soundnet_norm``, the normalisation that start picks
    (``frozen`` BatchNorm with weights, ``group`` without, unless the config sets one)."""
    model = cfg.network.model

    def start(name: str) -> str:
        path = getattr(model, BACKBONE_FILES[name])
        return "scratch" if path is None else f"pretrained({Path(path).name})"

    out = {"s3d": "stage1" if cfg.stage == 2 else start("s3d")}
    if model.use_audio:
        out["soundnet"] = start("soundnet")
        out["soundnet_norm"] = model.resolved_soundnet_norm()
    return out


def absolute_weights(network: AVRSPConfig) -> AVRSPConfig:
    """``network`` with its pretrained weight files as absolute paths, as the driver sees
    them (Ray workers and Tune trials may run in another folder)."""
    model = network.model
    update = {
        f"model.{key}": str(Path(path).resolve())
        for key in BACKBONE_FILES.values()
        if (path := getattr(model, key)) is not None and not Path(path).is_absolute()
    }
    return network.with_overrides(**update) if update else network


def backbones_text(cfg: TrainConfig) -> str:
    """:func:`backbones` on one line: ``s3d:pretrained(S3D_kinetics400.pt) soundnet:…``."""
    return " ".join(f"{name}:{start}" for name, start in backbones(cfg).items())


def check_backbones(cfg: TrainConfig) -> list[str]:
    """Before any Ray work: every pretrained file the config names exists and fits the
    variant, and a stage-2 run names no S3D file (its S3D comes from ``init_from``, which
    would overwrite the file's). Returns the lines to print at the start of the run: what
    the backbones start from (not for the ``tiny`` preset from scratch, which tests and the
    demo run on purpose; the run records it all the same), and a warning where the
    ``paper`` preset starts one from random weights without ``from_scratch`` saying that
    is meant.

    Raises :class:`WeightsError` naming each missing file and its key (and how to go on),
    :class:`ConfigError` for a file the run cannot use.
    """
    model = cfg.network.model
    if cfg.stage == 2 and model.s3d_weights is not None:
        raise ConfigError(
            f"network.model.s3d_weights: {model.s3d_weights}: a stage-2 run takes S3D from "
            f"init_from ({cfg.init_from}, the stage-1 model, which began from pretrained "
            "S3D); the file would be read and then overwritten: remove the key"
        )
    if not model.use_audio and model.soundnet_weights is not None:
        raise ConfigError(
            f"network.model.soundnet_weights: {model.soundnet_weights}: the visual-only "
            "variant (use_audio: false) has no audio branch to load it into: remove the key"
        )
    missing = [
        f"network.model.{key} = {path} ({BACKBONE_NAMES[name]})"
        for name, key in BACKBONE_FILES.items()
        if (path := getattr(model, key)) is not None and not Path(path).is_file()
    ]
    if missing:
        raise WeightsError(
            "the paper starts from pretrained backbones (S3D trained on Kinetics-400, "
            "SoundNet-8; §III-A, §IV-B), and the weight files this config names are not "
            f"there: {'; '.join(missing)}. Put the files there (docs/TRAINING.md, "
            '"Pretrained backbones", says which projects publish them), or train the '
            "backbones from random weights on purpose with --from-scratch "
            "(from_scratch: true), which the run records"
        )
    starts = backbones(cfg)
    lines = []
    if (
        cfg.preset == "paper"
        or cfg.from_scratch
        or any(start.startswith("pretrained(") for start in starts.values())
    ):
        lines.append(
            f"backbones: {backbones_text(cfg)}"
            + (" (from_scratch: no pretrained file is read)" if cfg.from_scratch else "")
        )
    scratch = [k for k, start in starts.items() if start == "scratch"]
    if cfg.preset == "paper" and scratch and not cfg.from_scratch:
        names = " and ".join(BACKBONE_NAMES[k] for k in scratch)
        keys = " / ".join(f"network.model.{BACKBONE_FILES[k]}" for k in scratch)
        lines.append(
            f"warning: {names} {'starts' if len(scratch) == 1 else 'start'} from random "
            "weights, but the paper starts "
            f"from pretrained backbones (§III-A, §IV-B): name the files in {keys} "
            "(configs/stage1.yaml and configs/stage2.yaml do; docs/TRAINING.md), or pass "
            "--from-scratch to say this is meant"
        )
    return lines


def stage1_metadata(cfg: TrainConfig) -> dict[str, Any]:
    """The stage-1 model's metadata (run name, MLflow run id, path), after checking that it
    fits this network (:func:`workflows.export.load_stage1_weights`); {} without one."""
    if cfg.init_from is None:
        return {}
    from avrsp.model import build_model
    from workflows.export import load_stage1_weights

    loaded = load_stage1_weights(build_model(cfg.network), cfg.init_from)
    return {**loaded.meta, "path": str(loaded.path)}


def initial_model(cfg: TrainConfig, resume: dict[str, Any] | None = None) -> Any:
    """The network a run starts from, on the CPU: seeded (the same weights on every worker),
    then the ``resume`` state's weights, or else the stage-1 model of ``init_from``."""
    from avrsp.model import build_model
    from workflows.export import load_stage1_weights

    seed_everything(cfg.seed)
    model = build_model(cfg.network)
    if resume is not None:
        model.load_state_dict(resume["model"])
    elif cfg.init_from is not None:
        loaded = load_stage1_weights(model, cfg.init_from)
        if _world()[0] == 0:
            print(f"[avrsp train] {loaded}", flush=True)
    return model


def export_best(
    cfg: TrainConfig, best: Path, meta: dict[str, Any], *, location: str | None = None
) -> tuple[Path, dict[str, float]]:
    """The best checkpoint's weights as ``RUN_DIR/model.pt`` (:func:`workflows.export.export_model`,
    what evaluation and prediction load), with ``meta`` plus its epoch and validation loss.
    ``best`` is a local folder; ``location``: where that checkpoint is stored, when elsewhere."""
    from workflows.export import export_model

    scores = read_metrics(best)
    meta = {**meta, "stage": cfg.stage, "epoch": int(scores["epoch"]),
            "val_loss": float(scores["val_loss"]), "checkpoint": location or str(best)}  # fmt: skip
    weights = load_checkpoint(best)["model"]
    return export_model(cfg.run_dir / "model.pt", weights, cfg.network, meta=meta), scores


# =========================================================================== the loop


def fit(
    config: TrainConfig | dict[str, Any],
    model: Any,
    train_batches: Callable[[int], Iterable[dict[str, Any]]],
    val_batches: Callable[[], Iterable[dict[str, Any]]],
    report: Report,
    *,
    device: Any = "cpu",
    resume: dict[str, Any] | None = None,
    step_hook: StepHook | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (on ``device``, DDP-wrapped or not) from epoch 0 or from ``resume``
    (a :func:`load_checkpoint` state) to ``config.epochs``; returns the per-epoch history.

    ``train_batches(epoch)`` and ``val_batches()`` give each epoch's batches. After each
    epoch every worker calls ``report(metrics, folder)``: ``metrics`` holds ``epoch``,
    ``global_step``, the :func:`train_epoch` and :func:`validate` figures, ``lr`` and
    ``epoch_s``; ``folder`` (rank 0; None elsewhere) a temporary checkpoint.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
    rank, _ = _world()
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    start_epoch, global_step, history = 0, 0, []
    if resume is not None:
        getattr(model, "module", model).load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start_epoch, global_step = int(resume["epoch"]) + 1, int(resume["global_step"])
        history = list(resume["history"])
    for epoch in range(start_epoch, cfg.epochs):
        # Seeded per epoch and worker, so a resumed run repeats the uninterrupted one.
        seed_everything(cfg.seed + 7919 * rank + 104_729 * epoch)
        started = time.perf_counter()
        train = train_epoch(
            model, optimizer, train_batches(epoch), cfg, device, epoch=epoch, step_hook=step_hook
        )
        val = validate(model, val_batches(), cfg, device)
        scheduler.step(val["val_loss"])
        global_step += int(train.pop("steps"))
        metrics = {
            "epoch": epoch,
            "global_step": global_step,
            **train,
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
        with tempfile.TemporaryDirectory(prefix="avrsp-checkpoint-") as tmp:
            folder = None
            if rank == 0:
                state = training_state(model, optimizer, scheduler, cfg, epoch=epoch,
                                       global_step=global_step, history=history)  # fmt: skip
                folder = save_checkpoint(Path(tmp), state, metrics)
            report(metrics, folder)
    return history
