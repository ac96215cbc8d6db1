"""Visual backbone: torchvision's S3D with four stage taps (paper §III-A; docs/MODEL.md).

torchvision's ``s3d().features`` is a 16-block ``nn.Sequential`` with the same blocks as
kylemin's original ``base`` (the one ViNet and TASED-Net load). The four encoder stages
end at blocks 3, 6, 12 and 15; their outputs are X3 (highest resolution) … X0 (lowest):

====  =====  =========  ==========================  =================
tap   block  channels   shape at T×H×W              at 32×224×384
====  =====  =========  ==========================  =================
X3    3      192        T/2 × H/4 × W/4             16 × 56 × 96
X2    6      480        T/2 × H/8 × W/8             16 × 28 × 48
X1    12     832        T/4 × H/16 × W/16           8 × 14 × 24
X0    15     1024       T/8 × H/32 × W/32           4 × 7 × 12
====  =====  =========  ==========================  =================

Input is RGB scaled to [-1, 1], the scale the original Kinetics-400 S3D weights expect.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import s3d

from avrsp.model.onednn import guard_strided_temporal_convs

TAP_BLOCKS: tuple[int, int, int, int] = (3, 6, 12, 15)
TAP_CHANNELS: tuple[int, int, int, int] = (192, 480, 832, 1024)


class S3DEncoder(nn.Module):
    """S3D feature blocks 0–15, returning the taps ``[X3, X2, X1, X0]``.

    ``bn_momentum`` replaces torchvision's 0.001 (a fine-tuning value that leaves the
    running statistics near their initial values when training from scratch). The stem's
    strided temporal convolution is guarded against a oneDNN crash on short windows
    (:mod:`avrsp.model.onednn`).
    """

    def __init__(self, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.features: nn.Sequential = s3d(weights=None).features
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.momentum = bn_momentum
        guard_strided_temporal_convs(self.features)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """``frames [B, 3, T, H, W]`` in [-1, 1] → the four taps.

        Returns ``[X3, X2, X1, X0]``, each ``[B, C, t, h, w]``.
        """
        taps: list[torch.Tensor] = []
        x = frames
        for index, block in enumerate(self.features):
            x = block(x)
            if index in TAP_BLOCKS:
                taps.append(x)
        return taps
