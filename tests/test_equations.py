"""The paper's equations outside RAVF, each composed here independently and compared.

Every test builds the expected value from the module's own weight tensors with
``torch.nn.functional`` (``F.conv3d`` with ``padding="same"``, ``F.batch_norm`` on the
running statistics, ``F.interpolate``, ``torch.sigmoid``, ``.mean``) or, for the loss, in
float64 numpy, and never through the module's own code path, so a wrong order of
operations, a dropped term or a wrong input fails it:

- MS, eq. (8)–(12), and MRG, eq. (13)–(15) (paper §III-C);
- the network's wiring (``AVRSP.forward``, docstring step 4): which tensor reaches each
  MS, MRG and decoder input;
- SoundNet's input scaling (× 256, the original SoundNet's) and the decoder (§III-D);
- the loss, eq. (16)–(19) (§III-E);
- the paper preset's documented sizes (docs/MODEL.md), as literals against the built network.

Module-level tests run in float64 (``module.double()``) so that the comparisons are tight;
BatchNorm statistics are randomised so that no normalisation is an identity.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

# The same small window as the model tests, and their module fixture: one torch thread.
from test_model import SMALL_INPUT, H, W, _one_thread  # noqa: F401
from torch import nn

from avrsp.config import MIN_FRAMES, LossConfig, ModelConfig, paper, tiny
from avrsp.losses import correlation, kl_divergence, saliency_loss, similarity
from avrsp.model import AVRSP, build_model
from avrsp.model.decoder import SaliencyDecoder
from avrsp.model.multiscale import MRG, MS

# --------------------------------------------------------------------------- helpers


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and affine parameters away from identity (seeded); float64, eval
    mode. Build the module after ``torch.manual_seed`` for seeded weights."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.normal_(0.0, 0.3, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.3, generator=gen)
    return module.double().eval()


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double() * scale


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Trilinear resize of ``x`` to ``like``'s ``[t, h, w]`` (U and D's resampling, eq. 13)."""
    return F.interpolate(x, size=like.shape[2:], mode="trilinear", align_corners=False)


def _conv_bn_relu(x: torch.Tensor, block: nn.Sequential) -> torch.Tensor:
    """C, U's and D's convolution: 3-D conv (same padding) → BatchNorm (running stats) → ReLU,
    from the block's weights."""
    conv, bn = block[0], block[1]
    y = F.conv3d(x, conv.weight, conv.bias, padding="same")
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.relu(y)


# --------------------------------------------------------------------------- MS, eq. (8)–(12)


def _ms_reference(
    ms: MS, mid: torch.Tensor, higher: torch.Tensor | None, lower: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """X̃^m of eq. (9)–(12), and every term of eq. (10) and (11) by name."""
    terms: dict[str, torch.Tensor] = {}
    x1_m = _conv_bn_relu(mid, ms.c1_mid)  # eq. (9), i = m
    terms["10m:C(X1m)"] = _conv_bn_relu(x1_m, ms.c2_mid)
    x3 = []
    if higher is not None:
        x1_h = _conv_bn_relu(higher, ms.c1_high)  # eq. (9), i = h
        terms["10m:D(X1h)"] = _conv_bn_relu(_up(x1_h, mid), ms.d2_mid)
        terms["10h:C(X1h)"] = _conv_bn_relu(x1_h, ms.c2_high)
        terms["10h:U(X1m)"] = _conv_bn_relu(_up(x1_m, higher), ms.u2_high)
        x2_h = terms["10h:C(X1h)"] + terms["10h:U(X1m)"]  # eq. (10), i = h
        terms["11:D(X2h)"] = _conv_bn_relu(_up(x2_h, mid), ms.d3)
        x3.append(terms["11:D(X2h)"])
    if lower is not None:
        x1_l = _conv_bn_relu(lower, ms.c1_low)  # eq. (9), i = l
        terms["10m:U(X1l)"] = _conv_bn_relu(_up(x1_l, mid), ms.u2_mid)
        terms["10l:D(X1m)"] = _conv_bn_relu(_up(x1_m, lower), ms.d2_low)
        terms["10l:C(X1l)"] = _conv_bn_relu(x1_l, ms.c2_low)
        x2_l = terms["10l:D(X1m)"] + terms["10l:C(X1l)"]  # eq. (10), i = l
        terms["11:U(X2l)"] = _conv_bn_relu(_up(x2_l, mid), ms.u3)
        x3.append(terms["11:U(X2l)"])
    x2_m = sum(v for k, v in terms.items() if k.startswith("10m:"))  # eq. (10), i = m
    terms["11:C(X2m)"] = _conv_bn_relu(x2_m, ms.c3)
    x3_m = terms["11:C(X2m)"] + sum(x3)  # eq. (11)
    return mid + x3_m, terms  # eq. (12)


MS_CASES = {
    # level m with both neighbours (X1, X2), the top edge (X3) and the bottom edge (X0)
    "both": (8, 4, 16),
    "top": (8, None, 16),
    "bottom": (8, 4, None),
}


@pytest.mark.parametrize("case", list(MS_CASES))
def test_ms_is_eq_9_to_12_composed_from_its_weights(case: str) -> None:
    width, hi, lo = MS_CASES[case]
    torch.manual_seed(1)
    ms = _randomise(MS(width, higher=hi, lower=lo), seed=1)
    # documented kernels (docs/MODEL.md): 3×3×3 for the middle scale's C of eq. (10)–(11),
    # 1×3×3 for the convolutions of eq. (9), U, D and the outer scales' C
    cube = {"c2_mid", "c3"}
    for name, block in ms.named_children():
        assert tuple(block[0].kernel_size) == ((3, 3, 3) if name in cube else (1, 3, 3)), name
    mid = _randn(2, width, 2, 6, 10, seed=2)
    higher = _randn(2, hi, 4, 12, 20, seed=3) if hi else None
    lower = _randn(2, lo, 1, 3, 5, seed=4) if lo else None
    with torch.no_grad():
        got = ms(mid, higher=higher, lower=lower)
        want, terms = _ms_reference(ms, mid, higher, lower)
    expected_terms = {"10m:C(X1m)", "11:C(X2m)"}
    if hi:
        expected_terms |= {"10m:D(X1h)", "10h:C(X1h)", "10h:U(X1m)", "11:D(X2h)"}
    if lo:
        expected_terms |= {"10m:U(X1l)", "10l:D(X1m)", "10l:C(X1l)", "11:U(X2l)"}
    assert set(terms) == expected_terms
    for name, term in terms.items():  # every term carries signal, so dropping one shows
        assert term.abs().max() > 0.1, name
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # eq. (12)'s residual: X̃^m − X^m is X_3^m, not X̃^m itself
    assert (got - mid - (want - mid)).abs().max() < 1e-10
    assert (got - mid).abs().max() > 0.1


# --------------------------------------------------------------------------- MRG, eq. (13)–(15)


def _mrg_reference(
    mrg: MRG, fused: torch.Tensor, visual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """F_gated and G of eq. (13)–(15) from the module's weights."""
    f = _up(fused, visual)  # eq. (13): F to X^l's size
    logits = F.conv3d(torch.cat([f, visual], dim=1), mrg.gate.weight, mrg.gate.bias, padding=1)
    gate = torch.sigmoid(logits).mean(dim=(2, 3, 4), keepdim=True)  # eq. (14): GAP(σ(·))
    return _conv_bn_relu(gate * f, mrg.out), gate  # eq. (15)


def _mrg_inputs() -> tuple[MRG, torch.Tensor, torch.Tensor]:
    c_f, c_l = 12, 6
    torch.manual_seed(5)
    mrg = _randomise(MRG(c_f, c_l), seed=5)
    # F at the lower level's size (eq. 13 must up-sample it), X^l at this level's
    fused = _randn(2, c_f, 1, 3, 4, seed=6, scale=3.0)
    visual = _randn(2, c_l, 2, 6, 8, seed=7, scale=3.0)
    return mrg, fused, visual


def test_mrg_is_eq_13_to_15_composed_from_its_weights() -> None:
    mrg, fused, visual = _mrg_inputs()
    c_f, c_l = fused.shape[1], visual.shape[1]
    # eq. (14)'s Conv reads Cat(F, X^l) (3×3×3, docs/MODEL.md) and gives F's channels
    assert tuple(mrg.gate.weight.shape) == (c_f, c_f + c_l, 3, 3, 3)
    with torch.no_grad():
        out, gate = mrg(fused, visual, return_gate=True)
        want, want_gate = _mrg_reference(mrg, fused, visual)
        # the alternatives eq. (14) rules out differ here by far more than the tolerance
        f = _up(fused, visual)
        logits = F.conv3d(torch.cat([f, visual], 1), mrg.gate.weight, mrg.gate.bias, padding=1)
        swapped = torch.sigmoid(logits.mean(dim=(2, 3, 4), keepdim=True))  # σ(GAP(·))
    assert out.shape == visual.shape and gate.shape == (2, c_f, 1, 1, 1)
    torch.testing.assert_close(gate, want_gate, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    assert (swapped - want_gate).abs().max() > 1e-3
    assert want_gate.std() > 1e-3 and want.abs().max() > 0.1


def test_mrg_gate_reads_x_l() -> None:
    """G depends on X^l (eq. 14), not on F alone: a gate from Cat(F, 0) is another gate."""
    mrg, fused, visual = _mrg_inputs()
    with torch.no_grad():
        _, gate = mrg(fused, visual, return_gate=True)
        _, other = mrg(fused, visual.flip(-1) * 0.5, return_gate=True)
        _, want_blind = _mrg_reference(mrg, fused, torch.zeros_like(visual))
    assert (gate - other).abs().max() > 1e-3
    assert (gate - want_blind).abs().max() > 1e-3


# --------------------------------------------------------------------------- the network's wiring


def _small_model(**model: object) -> AVRSP:
    cfg = tiny().with_overrides(**SMALL_INPUT, **{f"model.{k}": v for k, v in model.items()})
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _batch(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 3, MIN_FRAMES, H, W, generator=gen)
    return frames, torch.rand(2, samples, generator=gen) * 2 - 1


def _bound(forward, args: tuple, kwargs: dict) -> dict[str, object]:
    """A call's arguments by parameter name, however they were passed."""
    bound = inspect.signature(forward).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _same(a: object, b: torch.Tensor | None) -> bool:
    return a is None if b is None else isinstance(a, torch.Tensor) and torch.equal(a, b)


# pairs → the levels with an MS&MRG pair (Table IV): the p highest-resolution ones
PAIRED = {2: [2, 3], 3: [1, 2, 3], 4: [0, 1, 2, 3]}


@pytest.mark.parametrize(
    ("pairs", "audio"), [(3, False), (3, True), (4, False), (4, True), (2, True)]
)
def test_network_wiring_of_ms_mrg_and_the_decoder_skips(pairs: int, audio: bool) -> None:
    """Docstring step 4 of ``avrsp/model/network.py``, tensor by tensor.

    MS at level l reads X^l with X^{l+1} and X^{l-1} (eq. 8, the stage heads' outputs); the
    MRG chain starts at F_av and each gate takes F from the previous gated level and X̃^l;
    the decoder's skips are F_av at level 0 (its gated form when level 0 has a pair),
    X̃^l + F_gated^l at a paired level l ≥ 1 and the plain X^l at an unpaired one.
    """
    model = _small_model(ms_mrg_pairs=pairs, use_audio=audio)
    assert sorted(int(k) for k in model.ms) == sorted(int(k) for k in model.mrg) == PAIRED[pairs]
    x: dict[int, torch.Tensor] = {}  # X^l, the stage heads' outputs, by level
    ms_in: dict[int, dict[str, object]] = {}
    ms_out: dict[int, torch.Tensor] = {}
    mrg_in: dict[int, dict[str, object]] = {}
    mrg_out: dict[int, torch.Tensor] = {}
    fusion: list[tuple[torch.Tensor, torch.Tensor]] = []
    skips: list[list[torch.Tensor]] = []
    hooks = []
    for i, head in enumerate(model.stage_heads):  # stage_heads[i] makes X^{3-i}
        hooks.append(head.register_forward_hook(lambda m, a, out, lv=3 - i: x.setdefault(lv, out)))
    for name, ms in model.ms.items():

        def on_ms(m, args, kwargs, out, lv=int(name)):
            ms_in[lv], ms_out[lv] = _bound(m.forward, args, kwargs), out

        hooks.append(ms.register_forward_hook(on_ms, with_kwargs=True))
    for name, mrg in model.mrg.items():

        def on_mrg(m, args, kwargs, out, lv=int(name)):
            mrg_in[lv] = _bound(m.forward, args, kwargs)
            mrg_out[lv] = out[0] if isinstance(out, tuple) else out

        hooks.append(mrg.register_forward_hook(on_mrg, with_kwargs=True))
    if audio:
        hooks.append(model.fusion.register_forward_hook(lambda m, a, o: fusion.append((a[0], o))))
    hooks.append(model.decoder.register_forward_pre_hook(lambda m, a: skips.append(a[0])))
    frames, waveform = _batch(tiny().with_overrides(**SMALL_INPUT).input.audio_samples)
    try:
        with torch.no_grad():
            model(frames, waveform if audio else None)
    finally:
        for hook in hooks:
            hook.remove()

    x0 = x[0]
    if audio:  # F_av: RAVF on X0's tokens, back in X0's shape
        tokens_in, tokens_out = fusion[0]
        assert torch.equal(tokens_in, x0.flatten(2).transpose(1, 2))
        f_av = tokens_out.transpose(1, 2).reshape(x0.shape)
        assert not torch.equal(f_av, x0)
    else:  # the V variant: F_av = X0
        f_av = x0
    # eq. (8): each MS reads the plain features of its level and its neighbours
    for lv in PAIRED[pairs]:
        assert _same(ms_in[lv]["mid"], x[lv]), f"MS {lv}: X^m"
        assert _same(ms_in[lv]["higher"], x.get(lv + 1)), f"MS {lv}: X^h"
        assert _same(ms_in[lv]["lower"], x.get(lv - 1)), f"MS {lv}: X^l"
    # the MRG chain, and the decoder's skips
    fused = f_av
    want: list[torch.Tensor] = []
    for lv in range(4):
        if lv in PAIRED[pairs]:
            assert torch.equal(mrg_in[lv]["fused"], fused), f"MRG {lv}: F is not the previous"
            assert _same(mrg_in[lv]["visual"], ms_out[lv]), f"MRG {lv} does not read X̃^{lv}"
            fused = mrg_out[lv]
            assert fused.abs().max() > 0 and ms_out[lv].abs().max() > 0
            want.append(fused if lv == 0 else ms_out[lv] + fused)
        else:
            want.append(f_av if lv == 0 else x[lv])
    got = skips[0]
    assert len(got) == 4
    for lv in range(4):
        assert got[lv].shape == want[lv].shape, lv
        assert torch.equal(got[lv], want[lv]), f"decoder skip {lv}"


# --------------------------------------------------------------------------- audio scaling

# SoundNet was trained on waveforms in [-256, 256]: the original code scales Torch's int32
# samples by 2^-23 (cvondrick/soundnet, extract_feat.lua), i.e. int16 PCM / 128, i.e. a
# waveform in [-1, 1] × 256.
SOUNDNET_SCALE = 256.0


def test_audio_scale_default_is_soundnets() -> None:
    assert ModelConfig().audio_scale == SOUNDNET_SCALE
    assert paper().model.audio_scale == tiny().model.audio_scale == SOUNDNET_SCALE


def test_soundnet_gets_the_waveform_times_256() -> None:
    model = _small_model()
    seen: list[torch.Tensor] = []
    hook = model.audio.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    frames, waveform = _batch(tiny().with_overrides(**SMALL_INPUT).input.audio_samples)
    try:
        with torch.no_grad():
            model(frames, waveform)
    finally:
        hook.remove()
    assert len(seen) == 1
    assert torch.equal(seen[0], waveform * 256.0)  # × 2^8 is exact in float32


# --------------------------------------------------------------------------- decoder, §III-D


def _decoder_reference(
    dec: SaliencyDecoder, skips: list[torch.Tensor], out_size: tuple[int, int]
) -> torch.Tensor:
    """Block 0 on F_av's skip; block k on Cat(Up(previous), skip_k); 1×1×1 head; readout over
    time (mean, or the softmax-over-time weights); bilinear to H×W; sigmoid."""
    x = _conv_bn_relu(skips[0], dec.blocks[0])
    for block, skip in zip(dec.blocks[1:], skips[1:], strict=True):
        x = _conv_bn_relu(torch.cat([_up(x, skip), skip], dim=1), block)
    logits = F.conv3d(x, dec.head.weight, dec.head.bias)  # [B, 1, t, h, w]
    if dec.time_weights is None:
        logits = logits.mean(dim=2)
    else:
        scores = F.conv3d(x, dec.time_weights.weight, dec.time_weights.bias)
        logits = (torch.softmax(scores, dim=2) * logits).sum(dim=2)
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)[:, 0]


def _decoder_skips() -> list[torch.Tensor]:
    # level 0 … 3: growing in time and space, as the S3D levels do
    sizes = [(1, 2, 3), (2, 4, 6), (2, 8, 12), (4, 16, 24)]
    return [
        _randn(2, c, *s, seed=20 + i)
        for i, (c, s) in enumerate(zip((16, 8, 6, 4), sizes, strict=True))
    ]


@pytest.mark.parametrize("readout", ["mean", "attention"])
def test_decoder_is_its_composition(readout: str) -> None:
    torch.manual_seed(8)
    dec = _randomise(SaliencyDecoder((16, 8, 6, 4), (10, 8, 6, 5), -1.0, readout), seed=8)
    skips, out_size = _decoder_skips(), (37, 53)
    with torch.no_grad():
        if readout == "attention":
            # starts as the mean (zero scores), then a learned softmax over time
            start = dec(skips, out_size)
            dec.time_weights.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(9))
            dec.time_weights.bias.fill_(0.3)
        got = dec(skips, out_size)
        want = _decoder_reference(dec, skips, out_size)
    assert got.shape == (2, *out_size)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert want.std() > 1e-3
    if readout == "attention":
        mean = SaliencyDecoder((16, 8, 6, 4), (10, 8, 6, 5), -1.0, "mean")
        mean.load_state_dict(
            {k: v for k, v in dec.state_dict().items() if not k.startswith("time_weights")}
        )
        with torch.no_grad():
            mean_map = mean.double().eval()(skips, out_size)
        torch.testing.assert_close(start, mean_map, rtol=1e-10, atol=1e-12)
        assert (got - mean_map).abs().max() > 1e-4  # the weights do weigh


# --------------------------------------------------------------------------- loss, eq. (16)–(19)

# Eq. (19): a1 = a2 = -0.1 (§III-E).
A1 = A2 = -0.1


def _np_loss(pred: np.ndarray, gt: np.ndarray, eps: float) -> dict[str, float]:
    """Eq. (16)–(19) in float64 for one map pair; P and G normalised to sum to one."""
    p = pred.astype(np.float64).ravel()
    g = gt.astype(np.float64).ravel()
    p, g = p / (p.sum() + eps), g / (g.sum() + eps)
    kl = np.sum(g * np.log(eps + g / (p + eps)))  # eq. (16): G against P
    dp, dg = p - p.mean(), g - g.mean()
    cc = np.sum(dp * dg) / np.sqrt(np.sum(dp**2) * np.sum(dg**2))  # eq. (17)
    sim = np.sum(np.minimum(p, g))  # eq. (18)
    return {"kl": kl, "cc": cc, "sim": sim, "loss": kl + A1 * cc + A2 * sim}  # eq. (19)


def _map_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(17)
    smooth = (rng.random((6, 7)) + 0.2, rng.random((6, 7)) ** 3)
    zeros = rng.random((5, 4)), rng.random((5, 4)) ** 2
    zeros[0][1, 2] = 0.0  # a zero prediction where the target has mass: eps matters
    zeros[1][0, :] = 0.0
    return [smooth, zeros]


@pytest.mark.parametrize("pair", [0, 1])
def test_loss_is_eq_16_to_19(pair: int) -> None:
    assert (LossConfig().a1, LossConfig().a2) == (A1, A2)
    pred, gt = _map_pairs()[pair]
    # the scale of the maps is irrelevant: each term normalises them
    p = torch.tensor(pred[None] * 7.0, dtype=torch.float32)
    g = torch.tensor(gt[None] * 0.3, dtype=torch.float32)
    eps = LossConfig().eps
    want = _np_loss(pred, gt, eps)
    assert kl_divergence(p, g, eps).item() == pytest.approx(want["kl"], rel=1e-5)
    assert correlation(p, g, eps).item() == pytest.approx(want["cc"], rel=1e-5)
    assert similarity(p, g, eps).item() == pytest.approx(want["sim"], rel=1e-5)
    loss, terms = saliency_loss(p, g)
    assert loss.item() == pytest.approx(want["loss"], rel=1e-5)
    for key in ("kl", "cc", "sim"):
        assert terms[key].item() == pytest.approx(want[key], rel=1e-5), key
    # the wrong readings this rules out are far from it
    flat_p, flat_g = pred.ravel() / pred.sum(), gt.ravel() / gt.sum()
    reverse_kl = np.sum(flat_p * np.log(eps + flat_p / (flat_g + eps)))
    raw_sim = np.sum(np.minimum(pred * 7.0, gt * 0.3))
    assert abs(reverse_kl - want["kl"]) > 1e-2 and abs(raw_sim - want["sim"]) > 1e-2
    assert abs((want["kl"] - A1 * want["cc"] - A2 * want["sim"]) - want["loss"]) > 1e-2


# --------------------------------------------------------------------------- the paper preset


def test_paper_preset_is_the_documented_network() -> None:
    """docs/MODEL.md: input 32×224×384, width 256, heads 4, RAVF blocks 2, MS&MRG pairs 3,
    level widths 256/128/64/32 (X0 … X3) — read off the built modules (on the meta device:
    no memory, no arithmetic)."""
    cfg = paper()
    assert (cfg.input.frames, cfg.input.height, cfg.input.width) == (32, 224, 384)
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.uses_audio
    blocks = model.fusion.blocks
    assert len(blocks) == 2
    assert {block.attn.heads for block in blocks} == {4}
    assert model.audio_proj.in_features == 1024 and model.audio_proj.out_features == 256
    # stage_heads[i] makes X^{3-i} from S3D's taps of 192, 480, 832, 1024 channels
    assert [h.aspp.branches[0][0].in_channels for h in model.stage_heads] == [192, 480, 832, 1024]
    assert [h.aspp.project[0].out_channels for h in model.stage_heads] == [32, 64, 128, 256]
    assert [h.lip.logit[0].out_channels for h in model.stage_heads] == [32, 64, 128, 256]
    assert sorted(model.ms) == sorted(model.mrg) == ["1", "2", "3"]
    for level, width in ((1, 128), (2, 64), (3, 32)):
        assert model.ms[str(level)].c1_mid[0].in_channels == width
        assert model.mrg[str(level)].out[0].out_channels == width
    assert len(model.decoder.blocks) == 4  # §III-D: four blocks
    assert model.decoder.blocks[0][0].in_channels == 256  # fed by F_av, X0's width


def test_soundnet_output_length_follows_its_stride() -> None:
    """The paper's 1.5 s at 22,050 Hz gives conv7 two time steps (docs/MODEL.md)."""
    assert paper().input.audio_samples == 33075
    lengths = []
    model = _small_model()
    for samples in (33075, 4574, 12766, 12765):
        with torch.no_grad():
            lengths.append(model.audio.eval()(torch.zeros(1, samples)).shape[-1])
    assert lengths == [2, 1, 2, 1]
