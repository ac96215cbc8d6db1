"""Audio backbone: SoundNet-8, layers conv1–conv7, on raw mono waveform (paper §III-A).

The layer schedule follows the original 8-layer SoundNet (Aytar et al., 2016) as in its
public PyTorch ports: 1-D convolutions written as ``Conv2d`` with ``(k, 1)`` kernels so
that those ports' weights (``conv1.0.weight`` …) load unchanged. The conv8 classifier
heads are not built: saliency needs the features, not the object/scene labels.

Total stride is 2·8·2·8·2·2·2·4·2·2 = 32,768 samples (≈1.49 s at 22,050 Hz per output
step); a buffer of at least :data:`avrsp.config.MIN_AUDIO_SAMPLES` samples yields one step.
"""

from __future__ import annotations

import torch
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


def _layer(cin: int, cout: int, kernel: int, stride: int, pad: int, pool: int) -> nn.Sequential:
    parts: list[nn.Module] = [
        nn.Conv2d(cin, cout, (kernel, 1), (stride, 1), (pad, 0)),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool > 1:
        parts.append(nn.MaxPool2d((pool, 1), (pool, 1)))
    return nn.Sequential(*parts)


class SoundNet8(nn.Module):
    """``waveform [B, S]`` (already scaled, see ``ModelConfig.audio_scale``) → ``[B, 1024, L]``."""

    def __init__(self) -> None:
        super().__init__()
        for index, spec in enumerate(SOUNDNET8_LAYERS, start=1):
            self.add_module(f"conv{index}", _layer(*spec))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None, :, None]  # [B, 1, S, 1]
        for index in range(1, len(SOUNDNET8_LAYERS) + 1):
            x = getattr(self, f"conv{index}")(x)
        return x.squeeze(-1)
