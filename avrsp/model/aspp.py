"""ASPP and LIP after each S3D stage (paper §III-A).

- **ASPP** (Atrous Spatial Pyramid Pooling, Chen et al. 2017): parallel 3-D convolutions
  with growing spatial dilation plus a global-context branch, concatenated and projected to
  the common ``width``. Dilation is spatial only (time kernel 1 for rate > 1, as the S3D
  taps have few time steps).
- **LIP** (Local Importance-based Pooling, Gao et al. 2019): ``out = avg(x·w) / avg(w)``
  with ``w = exp(logit(x))`` learned per position. Here it runs with stride 1, so it
  re-weights locally and keeps each tap's shape (the MS module needs the four scales
  intact); the logits are bounded with a sigmoid-scaled ``exp`` for numerical safety.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel=(3, 3, 3), dilation=(1, 1, 1)) -> nn.Sequential:
    """3-D conv (same padding) + BatchNorm + ReLU."""
    padding = tuple(d * (k // 2) for k, d in zip(kernel, dilation, strict=True))
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """``[B, cin, t, h, w]`` → ``[B, width, t, h, w]``."""

    def __init__(self, cin: int, width: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        branches = [conv_bn_relu(cin, width, kernel=(1, 1, 1))]
        for rate in rates:
            branches.append(conv_bn_relu(cin, width, kernel=(1, 3, 3), dilation=(1, rate, rate)))
        self.branches = nn.ModuleList(branches)
        # no BatchNorm on the pooled branch: one value per channel in a batch of one
        self.context = nn.Sequential(nn.Conv3d(cin, width, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(width * (len(branches) + 1), width, kernel=(1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.context(x.mean(dim=(2, 3, 4), keepdim=True))
        outs.append(pooled.expand_as(outs[0]))
        return self.project(torch.cat(outs, dim=1))


class LIP(nn.Module):
    """Stride-1 local importance pooling over a 3×3 spatial neighbourhood, same shape out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # No bias before the BatchNorm: in training it subtracts the batch mean per channel,
        # which cancels a per-channel bias exactly (a parameter that could never learn).
        self.logit = nn.Sequential(
            nn.Conv3d(
                channels, channels, (1, 3, 3), padding=(0, 1, 1), groups=channels, bias=False
            ),
            nn.BatchNorm3d(channels),
        )

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: object, **kwargs: object
    ) -> None:
        # Checkpoints from before 2026-12-07 carry that bias. In eval mode it met the running
        # mean, which had learned it: (Wx + b − μ)/σ = (Wx − (μ − b))/σ, so folding it into
        # the running mean keeps what they predict; in training it cancelled anyway.
        bias, mean = f"{prefix}logit.0.bias", f"{prefix}logit.1.running_mean"
        if bias in state_dict and mean in state_dict:
            state_dict[mean] = state_dict[mean] - state_dict.pop(bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.exp(4.0 * torch.sigmoid(self.logit(x)) - 2.0)  # in [e^-2, e^2]

        # Zero padding adds nothing to either sum, so the ratio is the border-correct
        # weighted mean (and avg_pool3d's padding rejects maps smaller than the kernel).
        def pool(t: torch.Tensor) -> torch.Tensor:
            return F.avg_pool3d(F.pad(t, (1, 1, 1, 1)), kernel_size=(1, 3, 3), stride=1)

        return pool(x * weight) / pool(weight)


class StageHead(nn.Module):
    """ASPP then LIP: one stage tap → the multi-scale feature X^i."""

    def __init__(self, cin: int, width: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.aspp = ASPP(cin, width, rates)
        self.lip = LIP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lip(self.aspp(x))
