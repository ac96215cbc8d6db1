"""MS (Multi-scale feature Synergy) and MRG (Multi-scale Regulator Gate), paper §III-C.

Scales are indexed by level: 0 = X0 (lowest resolution, where audio and vision are fused)
… 3 = X3 (highest resolution). Each level has its own channel count (``ModelConfig.
level_widths``: halved per level towards the high resolutions, which keeps the
full-resolution convolutions affordable) and its own ``[t, h, w]``; resampling is
trilinear to the target's exact size, so any input size works, and the convolutions of
U, D and the gates map between the levels' channel counts.

MS, eq. (8)–(12), for a level m with its higher-resolution neighbour h and lower one l
(an edge level has one neighbour):

- eq. (9):  X_1^i = C(X^i) for i ∈ {h, m, l} (a convolution per input);
- eq. (10): X_2^m = U(X_1^l) + C(X_1^m) + D(X_1^h) — U up-samples then convolves, D
  down-samples then convolves, both to level m's size;
- eq. (11)–(12): X̃^m = X^m + C(X_2^m), the residual add.

MRG, eq. (13)–(15), for level l with the fused feature F from the level below (or RAVF):

- eq. (13): F = UpSample(F_prev) to level l's size;
- eq. (14): G = GAP(σ(Conv(Cat(F, X^l)))), a channel gate ``[B, c_F, 1, 1, 1]``;
- eq. (15): F_gated = Conv(G ⊙ F).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avrsp.model.aspp import conv_bn_relu


def resample(x: torch.Tensor, size: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Trilinear resize of ``[B, C, t, h, w]`` to ``size = (t, h, w)``."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


class MS(nn.Module):
    """Multi-scale synergy for one level, eq. (8)–(12)."""

    def __init__(self, width: int, higher: int | None, lower: int | None) -> None:
        """``width``: this level's channels; ``higher``/``lower``: the neighbours' (None at
        an edge)."""
        super().__init__()
        spatial = (1, 3, 3)
        self.c_mid_in = conv_bn_relu(width, width, spatial)  # eq. (9), i = m
        self.c_mid = conv_bn_relu(width, width)  # C of eq. (10)
        self.c_out = conv_bn_relu(width, width)  # C of eq. (11)
        self.c_high = conv_bn_relu(higher, higher, spatial) if higher else None
        self.down = conv_bn_relu(higher, width, spatial) if higher else None
        self.c_low = conv_bn_relu(lower, lower, spatial) if lower else None
        self.up = conv_bn_relu(lower, width, spatial) if lower else None

    def forward(
        self,
        mid: torch.Tensor,
        higher: torch.Tensor | None = None,
        lower: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mid [B, d, t, h, w]`` (+ neighbours at their own sizes) → X̃^m, same shape as mid."""

        size = mid.shape[2:]
        mix = self.c_mid(self.c_mid_in(mid))
        if self.c_high is not None:
            if higher is None:
                raise ValueError("this MS level was built with a higher-resolution neighbour")
            mix = mix + self.down(resample(self.c_high(higher), size))  # D: down, then conv
        if self.c_low is not None:
            if lower is None:
                raise ValueError("this MS level was built with a lower-resolution neighbour")
            mix = mix + self.up(resample(self.c_low(lower), size))  # U: up, then conv
        return mid + self.c_out(mix)


class MRG(nn.Module):
    """Multi-scale regulator gate for one level, eq. (13)–(15)."""

    def __init__(self, fused_width: int, visual_width: int) -> None:
        """``fused_width``: channels of the incoming F; ``visual_width``: of X^l (and of the
        output, so the next gate and the decoder see this level's width)."""
        super().__init__()
        self.gate = nn.Conv3d(fused_width + visual_width, fused_width, 3, padding=1)
        self.out = conv_bn_relu(fused_width, visual_width)
        self.last_gate: torch.Tensor | None = None

    def forward(self, fused: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """``fused [B, c_f, …]``, ``visual [B, c_l, t, h, w]`` → ``[B, c_l, t, h, w]``."""
        f = resample(fused, visual.shape[2:])  # eq. (13)
        gate = torch.sigmoid(self.gate(torch.cat([f, visual], dim=1)))
        gate = gate.mean(dim=(2, 3, 4), keepdim=True)  # eq. (14): GAP
        self.last_gate = gate.detach()
        return self.out(gate * f)  # eq. (15)
