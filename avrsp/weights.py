"""Pretrained backbone weights from local files (paper §III-A; docs/MODEL.md).

The paper initialises the visual encoder with S3D trained on Kinetics-400 and the audio
encoder with SoundNet-8. Neither file can be fetched by this code: users pass a local path.

Layouts read (detected from the key names; a leading ``module.`` from ``DataParallel`` is
stripped and ``{"state_dict": …}`` / ``{"model": …}`` containers are unwrapped):

S3D → :class:`avrsp.model.s3d.S3DEncoder` (keys ``features.N.…``)

- ``torchvision``: ``features.N.…`` as in torchvision's ``s3d`` (e.g. ``s3d-d76dad2f.pth``);
  the ``classifier.*`` head is reported as an unused head.
- ``kylemin``: ``module.base.N.…`` as in kylemin/S3D's ``S3D_kinetics400.pt`` (the file
  ViNet and TASED-Net load). Its blocks name their parts differently; the mapping is

  ==================================  ==================================
  kylemin                             torchvision
  ==================================  ==================================
  ``BasicConv3d.conv`` / ``.bn``      ``Conv3dNormActivation.0`` / ``.1``
  ``SepConv3d.conv_s`` / ``.bn_s``    ``TemporalSeparableConv.0.0`` / ``.0.1``
  ``SepConv3d.conv_t`` / ``.bn_t``    ``TemporalSeparableConv.1.0`` / ``.1.1``
  ``Mixed_*.branch0.0.<BasicConv3d>`` ``SepInceptionBlock3D.branch0`` (no ``Sequential``)
  ``Mixed_*.branch1..3.i``            ``SepInceptionBlock3D.branch1..3.i``
  ``base.N``                          ``features.N``
  ==================================  ==================================

  and the ``fc.*`` head is reported as an unused head.

SoundNet-8 → :class:`avrsp.model.soundnet.SoundNet8` (keys ``convI.0.*`` conv, ``convI.1.*``
BatchNorm, I = 1…7)

- ``sequential``: ``convI.0.*`` / ``convI.1.*`` with heads ``conv8.0.*`` / ``conv8_2.0.*``
  (smallflyingpig/SoundNet_Pytorch's ``sound8.pth`` layout; also our own).
- ``flat``: ``convI.*`` / ``batchnormI.*`` with heads ``conv8_objs.*`` / ``conv8_scns.*``
  (keunhong/pytorch-soundnet's ``soundnet8_final.pth`` and the ports that share its names).

Conv weights stored as ``Conv1d`` (``[out, in, k]``) rather than ``Conv2d`` (``[out, in, k, 1]``)
are accepted: a tensor whose shape equals the target's once size-1 dimensions are dropped is
reshaped, and the report lists it. Anything else that differs in shape is *mis-shaped*.

Files are read with ``torch.load(..., weights_only=True)``: no pickled code runs.
``BatchNorm`` ``num_batches_tracked`` counters absent from a file are not counted as missing
(older files lack them; they do not affect the forward pass).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from avrsp.errors import WeightsError

__all__ = [
    "LoadReport",
    "MisShaped",
    "detect_s3d_layout",
    "detect_soundnet_layout",
    "kylemin_to_torchvision",
    "load_pretrained",
    "load_s3d",
    "load_soundnet",
    "read_state_dict",
    "soundnet_flat_to_ours",
]

S3D = "S3D"
SOUNDNET = "SoundNet-8"

# Container keys under which training scripts commonly nest a state dict.
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_BOOKKEEPING = "num_batches_tracked"

# kylemin/S3D part names → torchvision's Sequential indices (see the module docstring).
_KYLEMIN_PARTS: dict[str, str] = {
    "conv": "0",
    "bn": "1",
    "conv_s": "0.0",
    "bn_s": "0.1",
    "conv_t": "1.0",
    "bn_t": "1.1",
}
_S3D_HEADS = ("fc.", "classifier.")
_SOUNDNET_HEADS = ("conv8.", "conv8_2.", "conv8_objs.", "conv8_scns.")

_SOUNDNET_SEQUENTIAL = re.compile(r"^conv[1-7]\.[01]\.")
_SOUNDNET_FLAT = re.compile(r"^(batchnorm[1-7]\.|conv[1-7]\.(weight|bias)$)")
_SOUNDNET_FLAT_KEY = re.compile(r"^(conv|batchnorm)([1-7])\.(.+)$")


class MisShaped(NamedTuple):
    """A file tensor whose shape does not fit the parameter it maps to."""

    key: str
    """The model's parameter or buffer name."""
    expected: tuple[int, ...]
    """The model's shape."""
    got: tuple[int, ...]
    """The file's shape."""
    source: str
    """The key in the file."""


@dataclass
class LoadReport:
    """What a weight load did: counts and the keys that did not fit.

    ``missing`` are model keys nothing in the file maps to; ``unexpected`` are file keys
    that map to no model key; ``unused_heads`` are the classifier heads of the original
    networks (expected in the file, deliberately not loaded); ``reshaped`` are model keys
    filled from a ``Conv1d``-shaped tensor.
    """

    network: str
    path: Path
    layout: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mis_shaped: list[MisShaped] = field(default_factory=list)
    unused_heads: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model tensor was filled (``strict`` raises otherwise)."""
        return not self.missing and not self.mis_shaped

    def __str__(self) -> str:
        lines = [
            f"{self.network} weights from {self.path} (layout: {self.layout}): "
            f"{self.loaded} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.mis_shaped)} mis-shaped, {len(self.unexpected)} unexpected, "
            f"{len(self.unused_heads)} unused head tensors, {len(self.reshaped)} reshaped"
        ]
        lines += [f"  missing: {key}" for key in self.missing]
        lines += [
            f"  mis-shaped: {m.key} expects {list(m.expected)}, file has {list(m.got)}"
            + ("" if m.source == m.key else f" (file key {m.source})")
            for m in self.mis_shaped
        ]
        lines += [f"  unexpected: {key}" for key in self.unexpected]
        if self.unused_heads:
            lines.append(f"  unused heads (not loaded): {', '.join(self.unused_heads)}")
        if self.reshaped:
            lines.append(f"  reshaped from Conv1d layout: {', '.join(self.reshaped)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{key: tensor}`` dict on the CPU.

    Uses ``torch.load(weights_only=True)``, unwraps ``{"state_dict": …}``-style containers,
    drops non-tensor entries and strips leading ``module.`` prefixes.

    Raises:
        WeightsError: the file is missing, not a PyTorch file, holds pickled objects that
            ``weights_only`` refuses, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types; translate them all at this boundary
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            problem = (
                "holds pickled Python objects that torch.load(weights_only=True) refuses; "
                "re-save it as a plain state dict (torch.save(model.state_dict(), path))"
            )
        else:
            problem = f"is not a PyTorch weights file ({type(exc).__name__}: {text[:200]})"
        raise WeightsError(f"{path}: {problem}") from exc

    for _ in range(4):  # unwrap nested containers, e.g. {"model": {"state_dict": …}}
        if not isinstance(obj, Mapping) or _tensor_items(obj):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path}: holds a {type(obj).__name__}, not a state dict of named tensors"
        )
    tensors = _tensor_items(obj)
    if not tensors:
        raise WeightsError(
            f"{path}: holds a dict with no tensors (keys: {_preview(list(obj.keys()))})"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = key
        while name.startswith("module."):
            name = name[len("module.") :]
        state[name] = value
    return state


def _tensor_items(obj: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _preview(keys: list[Any], count: int = 4) -> str:
    shown = ", ".join(str(k) for k in keys[:count])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > count else "")


# --------------------------------------------------------------------------- layouts


def detect_s3d_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """``"torchvision"``, ``"kylemin"`` or None from the key names (``module.`` stripped)."""
    if any(re.match(r"^features\.\d+\.", k) for k in state):
        return "torchvision"
    if any(re.match(r"^base\.\d+\.", k) for k in state):
        return "kylemin"
    return None


def detect_soundnet_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """``"sequential"``, ``"flat"`` or None from the key names."""
    if any(_SOUNDNET_SEQUENTIAL.match(k) for k in state):
        return "sequential"
    if any(_SOUNDNET_FLAT.match(k) for k in state):
        return "flat"
    return None


def kylemin_to_torchvision(key: str) -> str | None:
    """Map a kylemin/S3D key (``module.`` stripped) to torchvision's ``features`` name.

    ``base.5.branch1.1.conv_t.weight`` → ``features.5.branch1.1.1.0.weight``;
    ``base.5.branch0.0.bn.running_mean`` → ``features.5.branch0.1.running_mean``.
    Returns None for keys outside ``base`` (the ``fc`` head).
    """
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "base" or not parts[1].isdigit():
        return None
    out = ["features", parts[1]]
    rest = parts[2:]
    if rest[0].startswith("branch"):
        out.append(rest[0])
        rest = rest[1:]
        # kylemin wraps branch0's single BasicConv3d in a Sequential; torchvision does not.
        if out[-1] == "branch0" and rest and rest[0] == "0":
            rest = rest[1:]
    out += [_KYLEMIN_PARTS.get(part, part) for part in rest]
    return ".".join(out)


def soundnet_flat_to_ours(key: str) -> str | None:
    """``conv3.weight`` → ``conv3.0.weight``; ``batchnorm3.bias`` → ``conv3.1.bias``."""
    match = _SOUNDNET_FLAT_KEY.match(key)
    if match is None:
        return None
    kind, index, leaf = match.groups()
    return f"conv{index}.{0 if kind == 'conv' else 1}.{leaf}"


def _identity(key: str) -> str | None:
    return key


def _describe(state: Mapping[str, torch.Tensor]) -> str:
    """What a state dict looks like, for error messages."""
    keys = list(state)
    soundnet = detect_soundnet_layout(state)
    if soundnet is not None:
        return f"SoundNet-8 weights ({soundnet} layout; keys like {_preview(keys, 3)})"
    s3d_layout = detect_s3d_layout(state)
    if s3d_layout is not None:
        return f"S3D weights ({s3d_layout} layout; keys like {_preview(keys, 3)})"
    return f"{len(keys)} tensors with keys like {_preview(keys, 3)}"


# --------------------------------------------------------------------------- loading


def _fits(source: torch.Tensor, target: torch.Tensor) -> tuple[bool, bool]:
    """(fits, needs reshape): shapes equal, or equal once size-1 dims are dropped."""
    if source.shape == target.shape:
        return True, False
    squeeze = [d for d in source.shape if d != 1] == [d for d in target.shape if d != 1]
    return squeeze, squeeze


def _load_mapped(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    mapper: Callable[[str], str | None],
    heads: tuple[str, ...],
    report: LoadReport,
    strict: bool,
) -> LoadReport:
    """Map file keys to ``module``'s keys, check shapes, fill the report and load.

    Nothing is written to ``module`` when ``strict`` and the report is not ok.
    """
    targets = module.state_dict()
    ready: dict[str, torch.Tensor] = {}
    for source_key, tensor in state.items():
        if source_key.startswith(heads):
            report.unused_heads.append(source_key)
            continue
        key = mapper(source_key)
        if key is None or key not in targets:
            report.unexpected.append(source_key)
            continue
        if key in ready:
            raise WeightsError(
                f"{report.path}: two file tensors map to {key} (second: {source_key})"
            )
        target = targets[key]
        fits, reshape = _fits(tensor, target)
        if not fits:
            report.mis_shaped.append(
                MisShaped(key, tuple(target.shape), tuple(tensor.shape), source_key)
            )
            continue
        if reshape:
            report.reshaped.append(key)
        ready[key] = tensor.reshape(target.shape).to(dtype=target.dtype)

    if not ready and not report.mis_shaped:
        raise WeightsError(
            f"{report.path}: no tensor in the file maps to the {report.network} model "
            f"({report.layout} layout detected, file keys like {_preview(list(state), 3)})"
        )
    mis_shaped_keys = {m.key for m in report.mis_shaped}
    report.missing = [
        key
        for key in targets
        if key not in ready and key not in mis_shaped_keys and not key.endswith("." + _BOOKKEEPING)
    ]
    if strict and not report.ok:
        raise WeightsError(
            f"{report.path}: does not fit the {report.network} model (strict=True: nothing "
            f"loaded, {len(ready)} tensors would fit; strict=False loads those)\n{report}"
        )
    report.loaded = len(ready)
    module.load_state_dict(ready, strict=False)
    return report


def load_s3d(encoder: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load Kinetics-400 S3D weights into ``encoder`` (an ``S3DEncoder``: ``.features``).

    Args:
        encoder: module whose state dict keys are ``features.N.…`` (torchvision's S3D
            ``features`` blocks 0–15).
        path: a torchvision-layout or kylemin-layout file (see the module docstring).
        strict: raise :class:`WeightsError` (loading nothing) when a model tensor is missing
            from the file or mis-shaped; with False, load what fits and report the rest.

    Returns:
        The :class:`LoadReport`.

    Raises:
        WeightsError: unreadable file, a file of another network, no S3D keys, or
            (``strict``) missing/mis-shaped tensors.
    """
    path = Path(path)
    state = read_state_dict(path)
    layout = detect_s3d_layout(state)
    if layout is None:
        raise WeightsError(
            f"{path}: not S3D weights in torchvision (features.N.*) or kylemin "
            f"(module.base.N.*) layout; it looks like {_describe(state)}"
        )
    mapper = _identity if layout == "torchvision" else kylemin_to_torchvision
    report = LoadReport(network=S3D, path=path, layout=layout)
    return _load_mapped(encoder, state, mapper, _S3D_HEADS, report, strict)


def load_soundnet(soundnet: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load SoundNet-8 conv1–conv7 weights into ``soundnet`` (a ``SoundNet8``).

    Args:
        soundnet: module whose keys are ``convI.0.*`` (Conv2d) and ``convI.1.*`` (BatchNorm2d).
        path: a ``sequential``- or ``flat``-layout file (see the module docstring); the conv8
            object/scene heads are reported as unused heads.
        strict: as in :func:`load_s3d`.

    Returns:
        The :class:`LoadReport`.

    Raises:
        WeightsError: unreadable file, a file of another network, no SoundNet keys, or
            (``strict``) missing/mis-shaped tensors.
    """
    path = Path(path)
    state = read_state_dict(path)
    layout = detect_soundnet_layout(state)
    if layout is None:
        raise WeightsError(
            f"{path}: not SoundNet-8 weights (convI.0.* / convI.weight + batchnormI.* keys); "
            f"it looks like {_describe(state)}"
        )
    mapper = _identity if layout == "sequential" else soundnet_flat_to_ours
    report = LoadReport(network=SOUNDNET, path=path, layout=layout)
    return _load_mapped(soundnet, state, mapper, _SOUNDNET_HEADS, report, strict)


def load_pretrained(
    model: nn.Module,
    s3d_path: str | Path | None = None,
    soundnet_path: str | Path | None = None,
    *,
    strict: bool = True,
) -> list[LoadReport]:
    """Load the backbones of an ``AVRSP`` model (``model.visual``, ``model.audio``).

    Each path that is given is loaded with :func:`load_s3d` / :func:`load_soundnet`; the
    reports come back in that order (an empty list when neither path is given).

    Raises:
        WeightsError: a path is given for a backbone the model lacks (e.g. ``soundnet_path``
            for the visual-only variant, whose ``audio`` is None), or a load fails.
    """
    reports: list[LoadReport] = []
    if s3d_path is not None:
        visual = getattr(model, "visual", None)
        if not isinstance(visual, nn.Module):
            raise WeightsError(
                f"{s3d_path}: the model ({type(model).__name__}) has no visual backbone "
                "(.visual) to load S3D weights into"
            )
        reports.append(load_s3d(visual, s3d_path, strict=strict))
    if soundnet_path is not None:
        audio = getattr(model, "audio", None)
        if not isinstance(audio, nn.Module):
            raise WeightsError(
                f"{soundnet_path}: the model ({type(model).__name__}) has no audio backbone "
                "(.audio is None: the visual-only variant?); drop the SoundNet weights file"
            )
        reports.append(load_soundnet(audio, soundnet_path, strict=strict))
    return reports
