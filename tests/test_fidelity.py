"""The fidelity fixes of the network against the paper (docs/MODEL.md, "Read against the
paper"): S3D's input normalisation per weight layout, SoundNet's normalisation, the audio
taper's alignment, the decoder's temporal read-out, and the switch combinations the
config rejects or treats as the same network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avrsp.audio import audio_window, buffer_span
from avrsp.config import AVRSPConfig, ModelConfig, tiny
from avrsp.errors import ConfigError
from avrsp.model import build_model
from avrsp.model.decoder import SaliencyDecoder
from avrsp.model.network import KINETICS_MEAN, KINETICS_STD
from avrsp.model.s3d import S3DEncoder
from avrsp.model.soundnet import FrozenStatsBatchNorm2d, SoundNet8

SMALL = {"input.frames": 5, "input.height": 64, "input.width": 64, "input.audio_window_s": 1.5}


def _small(**model: object) -> AVRSPConfig:
    return tiny().with_overrides(**SMALL, **{f"model.{k}": v for k, v in model.items()})


# --------------------------------------------------------------------------- S3D input


def _s3d_input_seen(model, frames: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = model.visual.features[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model.eval()(frames, None)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("layout", ["torchvision", "kylemin", None])
def test_s3d_input_follows_the_weights_layout(tmp_path: Path, layout: str | None) -> None:
    state = S3DEncoder().state_dict()
    path = None
    if layout == "torchvision":
        path = tmp_path / "s3d.pth"
        torch.save(state, path)
    elif layout == "kylemin":
        path = tmp_path / "S3D_kinetics400.pt"
        torch.save(_as_kylemin(state), path)
    cfg = _small(use_audio=False, s3d_weights=str(path) if path else None)
    model = build_model(cfg)
    frames = torch.rand(1, 3, 5, 64, 64, generator=torch.Generator().manual_seed(0))
    seen = _s3d_input_seen(model, frames)
    if layout == "torchvision":
        mean = torch.tensor(KINETICS_MEAN).reshape(1, 3, 1, 1, 1)
        std = torch.tensor(KINETICS_STD).reshape(1, 3, 1, 1, 1)
        torch.testing.assert_close(seen, (frames - mean) / std)
        assert model.config.s3d_input == "kinetics"
    else:
        torch.testing.assert_close(seen, frames * 2 - 1)
        assert model.config.s3d_input == "minus_one_one"


def _as_kylemin(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our torchvision-layout state under kylemin's names (the inverse of the loader's map)."""
    from avrsp.weights import kylemin_to_torchvision

    names = _kylemin_names()
    inverse = {kylemin_to_torchvision(k): k for k in names}
    return {f"module.{inverse[k]}": v for k, v in state.items() if k in inverse}


def _kylemin_names() -> list[str]:
    import tests.test_weights as tw

    return list(tw._KyleminS3D().state_dict())


def test_s3d_input_can_be_set_explicitly() -> None:
    model = build_model(_small(use_audio=False, s3d_input="kinetics"))
    frames = torch.full((1, 3, 5, 64, 64), 0.5)
    seen = _s3d_input_seen(model, frames)
    want = (0.5 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)
    torch.testing.assert_close(seen[0, :, 0, 0, 0], want)


# --------------------------------------------------------------------------- SoundNet norm


def test_soundnet_norm_defaults_follow_the_weights() -> None:
    assert ModelConfig().resolved_soundnet_norm() == "group"
    assert ModelConfig(soundnet_weights="x.pth").resolved_soundnet_norm() == "frozen"
    assert ModelConfig(soundnet_norm="batch").resolved_soundnet_norm() == "batch"


def test_batch_norm_on_two_values_gives_one_bit_and_the_others_do_not() -> None:
    """The defect: conv7's BatchNorm over one clip's 2 time steps outputs ±1 per channel."""
    torch.manual_seed(0)
    audio = torch.randn(1, 33075) * 100
    outs = {}
    for norm in ("batch", "group", "frozen"):
        net = SoundNet8(norm).train()
        captured: list[torch.Tensor] = []
        net.conv7[1].register_forward_hook(lambda m, a, o, c=captured: c.append(o.clone()))
        net(audio)
        outs[norm] = captured[0]  # [1, 1024, 2, 1], after the norm, before the ReLU
    assert outs["batch"].shape[2] == 2

    # one bit per channel: the two steps are ±the same value, |x| ≤ 1 (the eps shrinks it)
    def one_bit(o: torch.Tensor) -> bool:
        return bool(torch.allclose(o[:, :, 0], -o[:, :, 1], atol=1e-5) and o.abs().max() <= 1)

    assert one_bit(outs["batch"])
    for norm in ("group", "frozen"):
        assert not one_bit(outs[norm]), norm


def test_frozen_soundnet_norm_keeps_its_statistics_and_keys() -> None:
    net = SoundNet8("frozen").train()
    assert list(net.state_dict()) == list(SoundNet8("batch").state_dict())
    bn = net.conv7[1]
    assert isinstance(bn, FrozenStatsBatchNorm2d)
    bn.running_mean.fill_(0.5)
    before = bn.running_mean.clone()
    net(torch.randn(2, 33075))
    torch.testing.assert_close(bn.running_mean, before)
    x = torch.randn(2, 1024, 2, 1)
    torch.testing.assert_close(bn(x), bn.eval()(x))  # train mode = eval mode


def test_group_norm_soundnet_is_batch_independent() -> None:
    torch.manual_seed(0)
    net = SoundNet8("group").train()
    audio = torch.randn(3, 33075)
    together = net(audio)
    alone = net(audio[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- audio taper


def _peak_time(buf: np.ndarray, span: tuple[int, int]) -> int:
    """Sample index (in the recording) where the taper of a constant signal peaks."""
    start, stop = span
    carried = buf[buf.shape[0] - (stop - start) :]
    return start + int(np.argmax(carried))


@pytest.mark.parametrize("alignment", ["span", "centred", "end"])
def test_where_the_taper_peaks(alignment: str) -> None:
    fps, rate, frames, last, buffer = 25.0, 22050, 8, 40, 16538
    wave = np.ones(rate * 4, np.float32)
    kw = dict(frames=frames, fps=fps, sample_rate=rate, buffer_samples=buffer)
    buf = audio_window(wave, last_frame=last, alignment=alignment, **kw)
    span = buffer_span(last, frames, fps, rate, buffer, alignment)
    peak = _peak_time(buf, span)
    frame_of_peak = peak / rate * fps
    if alignment == "span":  # the middle of the T frames: the predicted frame is muted
        assert abs(frame_of_peak - (last - (frames - 1) / 2)) < 0.6
        assert buf[-1] < 0.01
    else:  # weight ≈ 1 on the predicted (last) frame
        assert abs(frame_of_peak - last) < 0.6, (alignment, frame_of_peak)
    if alignment == "centred":
        assert span[1] - span[0] == buffer and span[1] > (last + 0.5) / fps * rate  # future too
    if alignment == "end":
        assert span[1] == round((last + 0.5) / fps * rate) and buf[-1] > 0.99


def test_alignment_is_validated() -> None:
    with pytest.raises(ConfigError, match="audio_alignment"):
        tiny().with_overrides(**{"input.audio_alignment": "middle"})


# --------------------------------------------------------------------------- read-out


def test_attention_readout_starts_as_the_mean_and_learns_weights() -> None:
    torch.manual_seed(0)
    widths, dec = (16, 8, 8, 8), (8, 8, 8, 4)
    mean = SaliencyDecoder(widths, dec, temporal_readout="mean").eval()
    attn = SaliencyDecoder(widths, dec, temporal_readout="attention").eval()
    attn.load_state_dict(mean.state_dict(), strict=False)
    skips = [torch.randn(2, w, 4, 2 * 2**i, 2 * 2**i) for i, w in enumerate(widths)]
    with torch.no_grad():
        torch.testing.assert_close(attn(skips, (16, 16)), mean(skips, (16, 16)))
        attn.time_weights.weight.normal_()
        assert not torch.allclose(attn(skips, (16, 16)), mean(skips, (16, 16)))


# --------------------------------------------------------------------------- switches


def test_pairs_4_without_mrg_is_rejected() -> None:
    with pytest.raises(ConfigError, match="builds the ms_mrg_pairs=3 network"):
        tiny().with_overrides(**{"model.ms_mrg_pairs": 4, "model.use_mrg": False})
    tiny().with_overrides(
        **{"model.ms_mrg_pairs": 4, "model.use_mrg": False, "model.use_ms": False}
    )


@pytest.mark.parametrize("fusion", ["ravf", "mbt"])
def test_one_head_is_rejected_where_heads_are_weighted(fusion: str) -> None:
    with pytest.raises(ConfigError, match="softmax over heads"):
        tiny().with_overrides(**{"model.heads": 1, "model.fusion": fusion})
    tiny().with_overrides(**{"model.heads": 1, "model.fusion": "add"})  # not read: allowed


def test_identity_drops_what_a_fusion_does_not_read() -> None:
    add4 = ModelConfig(fusion="add", heads=4, ravf_blocks=2)
    add1 = ModelConfig(fusion="add", heads=1, ravf_blocks=6, ffn_mult=8)
    assert add4.identity() == add1.identity()
    ravf = ModelConfig(fusion="ravf")
    assert ravf.identity() != ravf.model_copy(update={"heads": 8}).identity()
    assert (
        ModelConfig(use_audio=False, fusion="mul").identity()
        == ModelConfig(use_audio=False, fusion="ravf", heads=2).identity()
    )
    both_off = ModelConfig(use_ms=False, use_mrg=False, ms_mrg_pairs=3)
    assert both_off.identity()["use_ms"] is False and "ms_mrg_pairs" not in both_off.identity()
    assert "use_ms" not in ModelConfig(ms_mrg_pairs=0).identity()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"fusion": "add", "heads": 4}, {"fusion": "add", "heads": 2, "ravf_blocks": 3}),
        ({"use_audio": False, "fusion": "ravf"}, {"use_audio": False, "fusion": "concat"}),
        ({"ms_mrg_pairs": 0, "use_ms": True}, {"ms_mrg_pairs": 0, "use_ms": False}),
    ],
)
def test_same_identity_builds_the_same_network(a: dict, b: dict) -> None:
    ca, cb = _small(**a), _small(**b)
    assert ca.model.identity() == cb.model.identity()
    torch.manual_seed(0)
    na = build_model(ca)
    torch.manual_seed(0)
    nb = build_model(cb)
    sa, sb = na.state_dict(), nb.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
