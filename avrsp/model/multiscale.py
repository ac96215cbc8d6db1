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
- eq. (10): the second exchange, for each i ∈ {h, m, l}, among the three inputs:
  X_2^m = D(X_1^h) + C(X_1^m) + U(X_1^l), X_2^h = C(X_1^h) + U(X_1^m),
  X_2^l = D(X_1^m) + C(X_1^l) — U up-samples then convolves, D down-samples then
  convolves, each to the size of the scale it feeds;
- eq. (11): X_3^m = D(X_2^h) + C(X_2^m) + U(X_2^l), both neighbours' second-round
  features;
- eq. (12): X̃^m = X^m + X_3^m, the residual add.

U and D convolve spatially (1×3×3), the C of eq. (10)–(11) at the middle scale over
3×3×3; an edge level (X0 or X3) has one neighbour and drops the other's terms.

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
        # eq. (9): X_1^i = C(X^i)
        self.c1_mid = conv_bn_relu(width, width, spatial)
        self.c1_high = conv_bn_relu(higher, higher, spatial) if higher else None
        self.c1_low = conv_bn_relu(lower, lower, spatial) if lower else None
        # eq. (10), i = m: D(X_1^h) + C(X_1^m) + U(X_1^l)
        self.c2_mid = conv_bn_relu(width, width)
        self.d2_mid = conv_bn_relu(higher, width, spatial) if higher else None
        self.u2_mid = conv_bn_relu(lower, width, spatial) if lower else None
        # eq. (10), i = h: C(X_1^h) + U(X_1^m); i = l: D(X_1^m) + C(X_1^l)
        self.c2_high = conv_bn_relu(higher, higher, spatial) if higher else None
        self.u2_high = conv_bn_relu(width, higher, spatial) if higher else None
        self.c2_low = conv_bn_relu(lower, lower, spatial) if lower else None
        self.d2_low = conv_bn_relu(width, lower, spatial) if lower else None
        # eq. (11): D(X_2^h) + C(X_2^m) + U(X_2^l)
        self.c3 = conv_bn_relu(width, width)
        self.d3 = conv_bn_relu(higher, width, spatial) if higher else None
        self.u3 = conv_bn_relu(lower, width, spatial) if lower else None

    def forward(
        self,
        mid: torch.Tensor,
        higher: torch.Tensor | None = None,
        lower: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mid [B, d, t, h, w]`` (+ neighbours at their own sizes) → X̃^m, same shape as mid."""
        if (self.c1_high is None) != (higher is None):
            raise ValueError(
                f"this MS level was built {'with' if self.c1_high else 'without'} a "
                "higher-resolution neighbour"
            )
        if (self.c1_low is None) != (lower is None):
            raise ValueError(
                f"this MS level was built {'with' if self.c1_low else 'without'} a "
                "lower-resolution neighbour"
            )
        size = mid.shape[2:]
        x1_m = self.c1_mid(mid)
        x2_m = self.c2_mid(x1_m)
        x3_parts: list[torch.Tensor] = []
        if higher is not None:
            x1_h = self.c1_high(higher)
            x2_m = x2_m + self.d2_mid(resample(x1_h, size))
            x2_h = self.c2_high(x1_h) + self.u2_high(resample(x1_m, higher.shape[2:]))
            x3_parts.append(self.d3(resample(x2_h, size)))
        if lower is not None:
            x1_l = self.c1_low(lower)
            x2_m = x2_m + self.u2_mid(resample(x1_l, size))
            x2_l = self.c2_low(x1_l) + self.d2_low(resample(x1_m, lower.shape[2:]))
            x3_parts.append(self.u3(resample(x2_l, size)))
        x3_m = self.c3(x2_m)
        for part in x3_parts:
            x3_m = x3_m + part
        return mid + x3_m  # eq. (12)


class MRG(nn.Module):
    """Multi-scale regulator gate for one level, eq. (13)–(15)."""

    def __init__(self, fused_width: int, visual_width: int) -> None:
        """``fused_width``: channels of the incoming F; ``visual_width``: of X^l (and of the
        output, so the next gate and the decoder see this level's width)."""
        super().__init__()
        self.gate = nn.Conv3d(fused_width + visual_width, fused_width, 3, padding=1)
        self.out = conv_bn_relu(fused_width, visual_width)

    def forward(
        self, fused: torch.Tensor, visual: torch.Tensor, return_gate: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``fused [B, c_f, …]``, ``visual [B, c_l, t, h, w]`` → ``[B, c_l, t, h, w]``; with
        ``return_gate`` also the gate of eq. (14), ``[B, c_f, 1, 1, 1]`` in [0, 1]."""
        f = resample(fused, visual.shape[2:])  # eq. (13)
        gate = torch.sigmoid(self.gate(torch.cat([f, visual], dim=1)))
        gate = gate.mean(dim=(2, 3, 4), keepdim=True)  # eq. (14): GAP
        out = self.out(gate * f)  # eq. (15)
        return (out, gate.detach()) if return_gate else out
