"""Saliency decoder (paper §III-D): four blocks of convolution + up-sampling.

Block k takes the previous block's output (up-sampled to level k's size) concatenated with
level k's skip feature, convolves, and hands on. The last block's output goes through a
1×1×1 convolution to one channel, is read out over its remaining time steps, up-sampled
to the input's H×W and passed through a sigmoid: a non-negative map of the window's last
frame, ``[B, H, W]`` in (0, 1).

The paper does not say how the decoder reaches one frame from the t time steps left
(t = T/2 at X3's level). ``ModelConfig.temporal_readout``: ``mean`` averages the logits
over time (every step counts the same, the last frame no more than the first);
``attention`` weights them per pixel with a softmax over time of a learned 1×1×1
convolution of the last block's features, initialised to zero so that it starts as the
mean and learns which steps matter.

The last convolution's bias starts at ``output_bias`` (−4 by default), so an untrained
network predicts a low background (sigmoid(−4) ≈ 0.018) and the training raises the salient
places. Started at 0, the background sits at sigmoid ≈ 0.5, and the maps stay flat for a
long time: Adam moves the bias by about the learning rate per step, and a sum-normalised
sigmoid map cannot be more than twice as high at its peak as at a background of 0.5
(measured in docs/RESULTS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avrsp.model.aspp import conv_bn_relu
from avrsp.model.multiscale import resample


class SaliencyDecoder(nn.Module):
    def __init__(
        self,
        level_widths: tuple[int, int, int, int],
        widths: tuple[int, int, int, int],
        output_bias: float = -4.0,
        temporal_readout: str = "mean",
    ) -> None:
        """``level_widths``: channels of the level 0…3 skips; ``widths``: of the blocks;
        ``output_bias``: initial bias of the last convolution (``ModelConfig.output_bias``);
        ``temporal_readout``: ``mean`` or ``attention`` (module docstring)."""
        super().__init__()
        c0, c1, c2, c3 = level_widths
        ins = (c0, widths[0] + c1, widths[1] + c2, widths[2] + c3)
        self.blocks = nn.ModuleList(conv_bn_relu(i, o) for i, o in zip(ins, widths, strict=True))
        self.head = nn.Conv3d(widths[3], 1, 1)
        nn.init.constant_(self.head.bias, output_bias)
        if temporal_readout not in ("mean", "attention"):
            raise ValueError(
                f"temporal_readout must be mean or attention, got {temporal_readout!r}"
            )
        self.time_weights: nn.Conv3d | None = None
        if temporal_readout == "attention":
            self.time_weights = nn.Conv3d(widths[3], 1, 1)
            nn.init.zeros_(self.time_weights.weight)
            nn.init.zeros_(self.time_weights.bias)

    def forward(self, skips: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """Level 0 (bottom) … level 3 skips, each ``[B, c_l, t, h, w]`` → ``[B, H, W]``."""
        x = self.blocks[0](skips[0])
        for block, skip in zip(self.blocks[1:], skips[1:], strict=True):
            x = block(torch.cat([resample(x, skip.shape[2:]), skip], dim=1))
        logits = self.head(x)  # [B, 1, t, h, w]
        if self.time_weights is None:
            logits = logits.mean(dim=2)  # [B, 1, h, w]
        else:
            weights = torch.softmax(self.time_weights(x), dim=2)
            logits = (weights * logits).sum(dim=2)
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits[:, 0])
