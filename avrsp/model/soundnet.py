"""Audio backbone: SoundNet-8, layers conv1–conv7, on raw mono waveform (paper §III-A).

The layer schedule follows the original 8-layer SoundNet (Aytar et al., 2016) as in its
public PyTorch ports: 1-D convolutions written as ``Conv2d`` with ``(k, 1)`` kernels so
that those ports' weights (``conv1.0.weight`` …) load unchanged. The conv8 classifier
heads are not built: saliency needs the features, not the object/scene labels.

Total stride is 2·8·2·8·2·2·2·4·2·2 = 32,768 samples (≈1.49 s at 22,050 Hz per output
step); a buffer of at least :data:`avrsp.config.MIN_AUDIO_SAMPLES` samples yields one step.

Normalisation (``ModelConfig.soundnet_norm``): conv7 has only L = 2 time steps at both
presets (1.5 s and 0.75 s buffers), so a BatchNorm on batch statistics normalises each
channel over 2·(clips per worker) values — exactly ±1 per channel with one clip, noisy
running statistics with 4–8. Hence:

- ``frozen`` (the default with pretrained SoundNet weights): BatchNorm on its running
  statistics in train mode too; its scale and shift still learn;
- ``group`` (the default from scratch): GroupNorm, 16 channels a group, per clip over
  channels × time — the same in train and eval mode, whatever the batch;
- ``batch``: plain BatchNorm (the original network), for comparison.

``frozen`` and ``batch`` keep the weight files' keys (``convN.1.running_mean`` …).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (in, out, kernel, stride, padding, pool after) per layer, conv1..conv7.
SOUNDNET8_LAYERS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 16, 64, 2, 32, 8),
    (16, 32, 32, 2, 16, 8),
    (32, 64, 16, 2, 8, 1),
    (64, 128, 8, 2, 4, 1),
    (128, 256, 4, 2, 2, 4),
    (256, 512, 4, 2, 2, 1),
    (512, 1024, 4, 2, 2, 1),
)
OUT_CHANNELS = 1024


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics (which it never
    updates); weight and bias still train."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def _norm(channels: int, norm: str) -> nn.Module:
    if norm == "group":
        return nn.GroupNorm(max(1, channels // 16), channels)
    if norm == "frozen":
        return FrozenStatsBatchNorm2d(channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"soundnet norm must be frozen, group or batch, got {norm!r}")


def _layer(
    cin: int, cout: int, kernel: int, stride: int, pad: int, pool: int, norm: str
) -> nn.Sequential:
    parts: list[nn.Module] = [
        nn.Conv2d(cin, cout, (kernel, 1), (stride, 1), (pad, 0)),
        _norm(cout, norm),
        nn.ReLU(inplace=True),
    ]
    if pool > 1:
        parts.append(nn.MaxPool2d((pool, 1), (pool, 1)))
    return nn.Sequential(*parts)


class SoundNet8(nn.Module):
    """``waveform [B, S]`` (already scaled, see ``ModelConfig.audio_scale``) → ``[B, 1024, L]``."""

    def __init__(self, norm: str = "batch") -> None:
        """``norm``: ``frozen``, ``group`` or ``batch`` (see the module docstring)."""
        super().__init__()
        for index, spec in enumerate(SOUNDNET8_LAYERS, start=1):
            self.add_module(f"conv{index}", _layer(*spec, norm))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None, :, None]  # [B, 1, S, 1]
        for index in range(1, len(SOUNDNET8_LAYERS) + 1):
            x = getattr(self, f"conv{index}")(x)
        return x.squeeze(-1)
