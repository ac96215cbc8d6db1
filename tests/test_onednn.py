"""The guard around oneDNN's crash in short strided temporal convolutions (avrsp.model.onednn).

The condition and the guarded route are checked on any CPU: the guarded convolution gives
the plain convolution's outputs and gradients (the reference runs with oneDNN switched
off, so it cannot crash), and it takes the padded route exactly inside the condition. The
issue's reproduction — the ``tiny`` network on the shortest window, backward — runs in a
process of its own, so on an affected CPU a regression fails one test instead of killing
the suite.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.video import s3d

from avrsp.config import MIN_FRAMES, tiny
from avrsp.losses import saliency_loss
from avrsp.model import build_model, onednn
from avrsp.model.onednn import TemporalPadConv3d, guard_strided_temporal_convs, onednn_may_crash
from avrsp.model.s3d import S3DEncoder

# (kernel, stride, padding, input frames): shapes that crashed on an AVX-512 Xeon
# (benchmarks/onednn_shapes.py), the S3D stem (7, 2, 3) at 4–6 frames among them.
CRASHED = [(7, 2, 3, 5), (7, 2, 4, 4), (7, 2, 6, 2), (4, 2, 3, 2), (9, 2, 3, 7), (8, 4, 5, 4)]
# Neighbours that ran fine and lie outside the condition.
FINE = [
    (7, 2, 3, 7),  # kernel fits the input
    (7, 2, 3, 3),  # one side's padding and the input do not reach the kernel's length
    (7, 1, 3, 5),  # stride 1
    (3, 1, 1, 1),  # S3D's inception temporal convolutions on one frame
    (3, 1, 1, 2),
    (5, 2, 2, 9),
]


@pytest.mark.parametrize("shape", CRASHED)
def test_every_crashing_shape_is_inside_the_condition(shape: tuple[int, int, int, int]) -> None:
    assert onednn_may_crash(*shape)


@pytest.mark.parametrize("shape", FINE)
def test_shapes_that_run_are_outside_the_condition(shape: tuple[int, int, int, int]) -> None:
    assert not onednn_may_crash(*shape)


def _pair(kernel: int, stride: int, pad: int, bias: bool = True) -> tuple[nn.Conv3d, nn.Conv3d]:
    """A plain Conv3d (kernel × 3 × 3) and a guarded one with the same parameters."""
    torch.manual_seed(0)
    plain = nn.Conv3d(6, 5, (kernel, 3, 3), stride=(stride, 1, 2), padding=(pad, 1, 1), bias=bias)
    guarded = TemporalPadConv3d(
        6, 5, (kernel, 3, 3), stride=(stride, 1, 2), padding=(pad, 1, 1), bias=bias
    )
    guarded.load_state_dict(plain.state_dict())
    return plain, guarded


def _outputs_and_grads(conv: nn.Conv3d, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = conv(x)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)  # a non-uniform upstream
    params = [p for p in conv.parameters()]
    grads = torch.autograd.grad((out * weights).sum(), [x, *params])
    return [out.detach(), *grads]


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # from flags()
@pytest.mark.parametrize("shape", [*CRASHED[:4], *FINE[:3]])
@pytest.mark.parametrize("bias", [True, False])
def test_guarded_conv_gives_the_plain_results(shape: tuple[int, int, int, int], bias: bool) -> None:
    kernel, stride, pad, frames = shape
    plain, guarded = _pair(kernel, stride, pad, bias)
    x = torch.randn(2, 6, frames, 7, 9, generator=torch.Generator().manual_seed(1))
    with torch.backends.mkldnn.flags(enabled=False):  # the reference cannot crash
        expected = _outputs_and_grads(plain, x)
    got = _outputs_and_grads(guarded, x)
    assert guarded.pads_explicitly(x) == onednn_may_crash(*shape)
    for name, e, g in zip(
        ["output", "input grad", "weight grad", "bias grad"], expected, got, strict=False
    ):
        assert g.shape == e.shape, name
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5, msg=name)


def test_guard_pads_exactly_inside_the_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    pad = onednn.F.pad

    def counting_pad(x: torch.Tensor, padding: tuple, *args, **kwargs) -> torch.Tensor:
        calls.append(tuple(padding))
        return pad(x, padding, *args, **kwargs)

    monkeypatch.setattr(onednn.F, "pad", counting_pad)
    stem = TemporalPadConv3d(4, 4, (7, 1, 1), stride=(2, 1, 1), padding=(3, 0, 0))
    for frames in range(1, 11):
        calls.clear()
        x = torch.randn(1, 4, frames, 3, 3)
        with torch.no_grad():
            stem(x)
        inside = frames in (4, 5, 6)  # 7 > t and 3 + t >= 7
        assert stem.pads_explicitly(x) is inside, frames
        assert calls == ([(0, 0, 0, 0, 3, 3)] if inside else []), frames
    # Other devices keep their own kernels: no guard there.
    assert not stem.pads_explicitly(torch.empty(1, 4, 5, 3, 3, device="meta"))


def test_only_strided_temporal_convs_are_guarded_and_keys_are_unchanged() -> None:
    encoder = S3DEncoder()
    guarded = [n for n, m in encoder.named_modules() if isinstance(m, TemporalPadConv3d)]
    assert guarded == ["features.0.1.0"]  # the stem's temporal convolution (7, 2, 3)
    stem = encoder.features[0][1][0]
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 1, 1), (2, 1, 1), (3, 0, 0))
    assert list(encoder.features.state_dict()) == list(s3d(weights=None).features.state_dict())
    # Idempotent, and the parameters stay the same objects (optimisers hold them).
    before = [id(p) for p in encoder.parameters()]
    assert guard_strided_temporal_convs(encoder) == 0
    assert [id(p) for p in encoder.parameters()] == before


def test_the_whole_network_is_guarded() -> None:
    model = build_model(tiny().with_overrides(**{"input.frames": MIN_FRAMES}))
    strided = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv3d) and m.stride[0] > 1 and not isinstance(m, TemporalPadConv3d)
    ]
    assert strided == []


@pytest.mark.isolated
@pytest.mark.parametrize(("frames", "batch"), [(MIN_FRAMES, 2), (MIN_FRAMES + 1, 8)])
def test_shortest_windows_train_without_crashing(frames: int, batch: int) -> None:
    """The issue's reproduction: tiny preset, shortest windows, train mode, backward."""
    torch.manual_seed(0)
    cfg = tiny().with_overrides(**{"input.frames": frames})
    model = build_model(cfg).train()
    gen = torch.Generator().manual_seed(1)
    h, w = cfg.input.height, cfg.input.width
    frames_in = torch.rand(batch, 3, frames, h, w, generator=gen)
    audio = torch.rand(batch, cfg.input.audio_samples, generator=gen) * 2 - 1
    target = torch.rand(batch, h, w, generator=gen) ** 4
    loss, _ = saliency_loss(model(frames_in, audio), target, cfg.loss)
    loss.backward()
    stem = model.visual.features[0][1][0]
    assert stem.weight.grad is not None and torch.isfinite(stem.weight.grad).all()
    assert stem.weight.grad.abs().sum() > 0


def test_info_names_the_cpu_capability_and_onednn(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import re

    from workflows.commands import info

    assert info.run(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert f"PyTorch dispatches to {torch.backends.cpu.get_cpu_capability()}" in out
    version = re.search(r"oneDNN\s+(\S+)", out)
    assert version and (
        re.fullmatch(r"\d+\.\d+(\.\d+)?", version.group(1))
        or not torch.backends.mkldnn.is_available()
    )
