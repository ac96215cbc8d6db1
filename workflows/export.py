"""Exported models and stage-1 → stage-2 weight transfer (docs/TRAINING.md).

An *exported model* is what training leaves for ``evaluate`` and ``predict``: one file
``model.pt`` holding a plain dict (so it loads with ``torch.load(weights_only=True)``, no
pickle of code)::

    {"format": "avrsp-model", "version": 1,
     "state_dict": {name: tensor, ...},        # the network's weights, on the CPU
     "config": "<AVRSPConfig as JSON>",         # input, model, loss
     "meta": {"run_name": ..., "mlflow_run_id": ..., "stage": ..., "epoch": ..., ...}}

and a human-readable copy of the config beside it (``model.config.json``). Only
:func:`load_model` needs to read the ``.pt`` file. It also takes the MLflow URIs of a logged
model (``runs:/RUN_ID/model``, ``models:/NAME/VERSION``): :func:`workflows.models.resolve_model`
downloads the logged model, which carries this same ``model.pt``, and the file is read the
same way — never by unpickling MLflow's copy of the network.

Stage 2 (paper §IV-B) starts from stage 1: :func:`load_stage1_weights` copies every tensor
of a stage-1 model into the stage-2 network — strictly: each stage-1 tensor must land on a
parameter of the same name and shape, and the only stage-2 parameters left untouched must
belong to the audio branch and the fusion (``audio.*``, ``audio_proj.*``, ``fusion.*``).
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avrsp.config import AVRSPConfig, flatten
from avrsp.errors import ConfigError, WeightsError
from avrsp.io import atomic_write, write_json

FORMAT = "avrsp-model"
VERSION = 1
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
#: Parameter prefixes that exist only in the AV variant: new in stage 2.
AUDIO_PREFIXES = ("audio.", "audio_proj.", "fusion.")


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare network under a DDP / compiled wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict on the CPU, without DDP's ``module.`` prefix."""
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`avrsp.io.atomic_write`."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def export_model(
    path: str | Path,
    model: nn.Module | dict[str, torch.Tensor],
    config: AVRSPConfig,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (a ``.pt`` file, or a folder that gets ``model.pt``) and its config JSON.

    ``model`` is the network (DDP-wrapped is fine) or its state dict. ``meta`` holds
    JSON-able facts (run name, MLflow run id, stage, epoch, validation loss, …).
    Returns the path of the ``.pt`` file.
    """
    path = Path(path)
    if path.suffix != ".pt":
        path = path / MODEL_FILE
    state = model if isinstance(model, dict) else cpu_state_dict(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "config": config.to_json(),
        "meta": json.loads(json.dumps(meta or {})),  # JSON-able only: weights_only loads it
    }
    atomic_torch_save(payload, path)
    write_json(
        path.with_suffix(".config.json"), {"config": config.to_dict(), "meta": payload["meta"]}
    )
    return path


def read_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, its failures as a
    :class:`WeightsError` that says what the file holds: empty (0 bytes); pickled Python
    objects, refused because unpickling them would run code named by the file (an AVRSP
    model or checkpoint holds only tensors and plain containers); or not a complete PyTorch
    file (cut short or damaged)."""
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty (0 bytes), not an AVRSP model or checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only's refusal, or no pickle at all
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise WeightsError(
                f"{path}: not a loadable AVRSP model: not a PyTorch file "
                f"({path.stat().st_size:,} bytes)"
            ) from None
        raise WeightsError(
            f"{path}: holds pickled Python objects ({found.group(1)}) besides tensors; "
            "loading them would run code the file names, so it is refused (an AVRSP model "
            "or checkpoint holds only tensors, numbers and text)"
        ) from None
    except Exception as exc:  # zip and stream errors come in many types
        first = str(exc).split(". ")[0].splitlines()[0] if str(exc) else ""
        raise WeightsError(
            f"{path}: damaged or truncated: not a complete PyTorch file "
            f"({path.stat().st_size:,} bytes; {type(exc).__name__}: {first})"
        ) from None


def _read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise WeightsError(f"{path}: folder holds neither {MODEL_FILE} nor {CHECKPOINT_FILE}")
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    data = read_torch_file(path)
    if not isinstance(data, dict) or "config" not in data:
        raise WeightsError(f"{path}: not an AVRSP model file (no 'config' entry)")
    state = data.get("state_dict", data.get("model"))
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: no state dict ('state_dict' or 'model' entry)")
    data["state_dict"] = state
    data["path"] = path
    return data


def _config_of(data: dict[str, Any]) -> AVRSPConfig:
    raw = data["config"]
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise WeightsError(f"{data['path']}: the stored config is not valid JSON") from None
    # A training checkpoint stores the whole TrainConfig; its network part is the model's.
    if isinstance(parsed, dict) and "network" in parsed:
        parsed = parsed["network"]
    return AVRSPConfig.from_dict(parsed, source=f"{data['path']} (stored config)")


def config_differences(
    stored: AVRSPConfig, wanted: AVRSPConfig, ignore: tuple[str, ...] = ()
) -> list[str]:
    """``"model.width: stored 32, given 16"`` for every differing field (dotted keys)."""
    a, b = flatten(stored.to_dict()), flatten(wanted.to_dict())
    return [
        f"{k}: stored {a.get(k)!r}, given {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not k.startswith(ignore)
    ]


@dataclass
class LoadedModel:
    """An exported model read back: the network (eval mode, CPU), its config and metadata."""

    model: nn.Module
    config: AVRSPConfig
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source: str = ""  # what the caller named: a path, runs:/… or models:/…


def _fit_report(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    own = model.state_dict()
    lines = [f"missing: {k}" for k in own if k not in state]
    lines += [f"unexpected: {k}" for k in state if k not in own]
    lines += [
        f"mis-shaped: {k} expects {list(own[k].shape)}, file has {list(v.shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    return lines


def load_model(
    path: str | Path, config: AVRSPConfig | None = None, *, tracking_uri: str | None = None
) -> LoadedModel:
    """Read an exported model (or a training checkpoint) with ``weights_only=True``.

    ``path``: a ``.pt`` file, a folder holding ``model.pt`` / ``checkpoint.pt``, or an MLflow
    URI (``runs:/RUN_ID/model``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
    ``models:/NAME/latest``) read from ``tracking_uri`` through
    :func:`workflows.models.resolve_model`. ``config``: the config the caller means to run;
    when given and different from the stored one in any input/model field, a
    :class:`ConfigError` lists every difference (loss weights do not matter for inference
    and are not compared). A state dict that does not fit the network its own config builds
    raises :class:`WeightsError`.
    """
    from avrsp.model import build_model

    source = str(path)
    if source.startswith(("runs:/", "models:/")):
        from workflows.models import resolve_model

        path = resolve_model(source, tracking_uri=tracking_uri)
    data = _read(Path(path))
    stored = _config_of(data)
    if config is not None:
        diffs = config_differences(stored, config, ignore=("loss.",))
        if diffs:
            raise ConfigError(
                f"{data['path']}: the model was trained with another config than the one "
                "given: " + "; ".join(diffs)
            )
    # Pretrained backbone files are already inside the state dict: do not read them again.
    clean = stored.model_copy(deep=True)
    clean.model.s3d_weights = None
    clean.model.soundnet_weights = None
    clean.model.bn_momentum = stored.model.effective_bn_momentum()
    model = build_model(clean)
    problems = _fit_report(model, data["state_dict"])
    if problems:
        shown = "; ".join(problems[:6]) + (
            f"; … {len(problems) - 6} more" if len(problems) > 6 else ""
        )
        raise WeightsError(
            f"{data['path']}: the weights do not fit the network of the stored config "
            f"({len(problems)} problems): {shown}"
        )
    model.load_state_dict(data["state_dict"], strict=True)
    model.eval()
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return LoadedModel(
        model=model, config=stored, meta=dict(meta), path=data["path"], source=source
    )


@dataclass
class InitReport:
    """What :func:`load_stage1_weights` did."""

    path: Path
    loaded: int
    new: list[str]
    meta: dict[str, Any]

    def __str__(self) -> str:
        groups = sorted({k.split(".")[0] for k in self.new})
        return (
            f"stage-1 weights from {self.path}: {self.loaded} tensors loaded, "
            f"{len(self.new)} new tensors ({', '.join(groups) or 'none'})"
        )


def load_stage1_weights(model: nn.Module, path: str | Path) -> InitReport:
    """Load a stage-1 model (exported file or training checkpoint) into a stage-2 network.

    Strict for the visual part: every stage-1 tensor must exist in ``model`` with the same
    shape, and every ``model`` tensor not in the file must be audio or fusion
    (:data:`AUDIO_PREFIXES`). Otherwise a :class:`WeightsError` lists the keys, with the
    config fields that differ between the two runs when those explain it.
    """
    data = _read(Path(path))
    state: dict[str, torch.Tensor] = data["state_dict"]
    net = _unwrap(model)
    own = net.state_dict()
    problems = [
        f"mis-shaped: {k} is {list(own[k].shape)} here, {list(v.shape)} in stage 1"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    problems += [f"not in this network: {k}" for k in state if k not in own]
    new = [k for k in own if k not in state]
    problems += [
        f"visual tensor missing from stage 1: {k}" for k in new if not k.startswith(AUDIO_PREFIXES)
    ]
    if problems:
        hint = ""
        config = getattr(net, "config", None)
        if config is not None:
            stored = _config_of(data).model
            diffs = [
                f"model.{k}: stage 1 {getattr(stored, k)!r}, here {getattr(config, k)!r}"
                for k in type(stored).model_fields
                if getattr(stored, k) != getattr(config, k)
                and k not in ("use_audio", "fusion", "ravf_blocks", "heads", "ffn_mult")
                and k not in ("mbt_bottlenecks", "audio_scale", "soundnet_weights", "s3d_weights")
            ]
            if diffs:
                hint = " — the configs differ: " + "; ".join(diffs)
        shown = "; ".join(problems[:6]) + (
            f"; … {len(problems) - 6} more" if len(problems) > 6 else ""
        )
        raise WeightsError(
            f"{data['path']}: stage-1 weights do not fit this network ({len(problems)} "
            f"problems): {shown}{hint}"
        )
    net.load_state_dict(state, strict=False)  # checked above: only audio/fusion stay new
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return InitReport(path=data["path"], loaded=len(state), new=new, meta=dict(meta))
