"""A guard around a oneDNN crash in short, strided temporal convolutions (CPU only).

oneDNN's AVX-512 JIT kernel for the weight gradient of a 3-D convolution (as shipped with
PyTorch 2.11: oneDNN 3.10.2, ``jit:avx512_core backward_weights``) crashes the process
(SIGSEGV, SIGABRT from a corrupted heap) or hangs when the temporal kernel is longer than
the temporal input, the temporal stride is above 1, and the padding on one side plus the
input reaches the kernel's length:

    stride_t > 1  and  kernel_t > input_t  and  pad_t + input_t >= kernel_t

(``kernel_t`` is the dilated extent). S3D's stem (kernel 7, stride 2, padding 3) is such a
convolution on 4–6 frames, so the shortest windows the network accepts (``MIN_FRAMES`` = 5
and 6) died in ``loss.backward()``. The forward pass, the input gradient, Conv2d and CPUs
without AVX-512 are not affected.

The condition was found by running the forward and backward pass of every
``Conv3d(k×1×1)`` with kernel 2–11, stride 1–4, every padding and temporal inputs 1–16,
each in a forked process (``benchmarks/onednn_shapes.py``). On an AVX-512 Xeon every
crash lay inside it and none outside, for five channel/batch combinations; within it,
whether a given shape crashes depends on channels and batch size, so the guard takes the
whole region.

The guard keeps oneDNN and the arithmetic: inside the region it pads the input in time
explicitly with zeros (what the convolution's own padding does) and runs the convolution
without temporal padding. Its kernel then fits its input, which is outside the crashing
region (checked for every shape that crashed). Outside the region, and on other devices,
it is the plain :class:`torch.nn.Conv3d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def onednn_may_crash(kernel_t: int, stride_t: int, pad_t: int, input_t: int) -> bool:
    """Whether a 3-D convolution with these temporal sizes is in the crashing region."""
    return stride_t > 1 and kernel_t > input_t and pad_t + input_t >= kernel_t


class TemporalPadConv3d(nn.Conv3d):
    """:class:`torch.nn.Conv3d` that pads in time itself where oneDNN would crash.

    Same parameters, state-dict keys and results as ``nn.Conv3d``; only the route
    differs, on CPU, for the shapes :func:`onednn_may_crash` names.
    """

    def pads_explicitly(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` takes the explicitly padded route."""
        if x.device.type != "cpu" or self.padding_mode != "zeros":
            return False
        if isinstance(self.padding, str):  # "valid" (strided convolutions cannot be "same")
            return False
        extent = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        return onednn_may_crash(extent, self.stride[0], self.padding[0], x.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pads_explicitly(x):
            return super().forward(x)
        pad_t, pad_h, pad_w = self.padding
        x = F.pad(x, (0, 0, 0, 0, pad_t, pad_t))
        return F.conv3d(
            x, self.weight, self.bias, self.stride, (0, pad_h, pad_w), self.dilation, self.groups
        )


def guard_strided_temporal_convs(module: nn.Module) -> int:
    """Replace every ``nn.Conv3d`` with temporal stride > 1 in ``module`` by a
    :class:`TemporalPadConv3d` holding the same parameters; returns how many.

    Only strided temporal convolutions can enter the crashing region, so the others are
    left alone. Call it right after building a network.
    """
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if type(child) is nn.Conv3d and child.stride[0] > 1
    ]
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        guarded = TemporalPadConv3d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",  # parameters come from the original below
        )
        guarded.weight = conv.weight
        guarded.bias = conv.bias
        setattr(parent, attr, guarded)
    return len(targets)
