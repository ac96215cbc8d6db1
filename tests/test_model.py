"""The network (``avrsp/model``): every ablation row of the paper's Tables III–V, the parts.

Sweeps use the ``tiny`` preset on the smallest window S3D accepts (``MIN_FRAMES`` frames of
64×64, so X0 is 1×2×2) and 1.5 s of audio (two SoundNet steps); each distinct model is
built once per module (seeded) and shared. Forward passes run on one thread: on a busy
two-core machine torch's two-thread kernels are an order of magnitude slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avrsp.config import FUSION_METHODS, MIN_AUDIO_SAMPLES, MIN_FRAMES, AVRSPConfig, paper, tiny
from avrsp.errors import InputError
from avrsp.losses import saliency_loss
from avrsp.model import AVRSP, build_model
from avrsp.model.aspp import ASPP, LIP
from avrsp.model.fusion import (
    AddFusion,
    BilinearFusion,
    ConcatFusion,
    MBTFusion,
    MulFusion,
)
from avrsp.model.multiscale import MRG, MS, resample
from avrsp.model.network import LEVELS, paired_levels
from avrsp.model.ravf import RAVF, RelevanceCrossAttention
from avrsp.model.s3d import S3DEncoder
from avrsp.model.soundnet import OUT_CHANNELS, SoundNet8

H = W = 64
SMALL_INPUT = {
    "input.frames": MIN_FRAMES,
    "input.height": H,
    "input.width": W,
    "input.audio_window_s": 1.5,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(**model: object) -> AVRSPConfig:
    """The tiny preset on the small window, with ``model.<key>`` overrides."""
    return tiny().with_overrides(**SMALL_INPUT, **{f"model.{k}": v for k, v in model.items()})


ModelFactory = Callable[..., AVRSP]


@pytest.fixture(scope="module")
def models() -> ModelFactory:
    """``models(**model_overrides)``: a seeded eval-mode model, built once per module."""
    cache: dict[tuple, AVRSP] = {}

    def get(**model: object) -> AVRSP:
        key = tuple(sorted(small_config(**model).model.model_dump().items()))
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = build_model(small_config(**model)).eval()
        return cache[key]

    return get


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The same frames twice ``[2, 3, T, H, W]`` with two different audio windows ``[2, S]``."""
    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 3, MIN_FRAMES, H, W, generator=gen).expand(2, -1, -1, -1, -1)
    samples = small_config().input.audio_samples
    t = torch.arange(samples) / small_config().input.sample_rate
    tone = 0.5 * torch.sin(2 * math.pi * 440.0 * t)
    noise = torch.rand(samples, generator=gen) * 2 - 1
    return frames.contiguous(), torch.stack([tone, noise])


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_forward(model: AVRSP, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Shape, range, and that audio matters exactly when the model uses it.

    The two samples share their frames and differ in audio. At initialisation the map is
    nearly flat (std ~1e-4), so the audio's effect is checked where it enters: on the
    decoder's bottom skip (F_av or its gated form), and only as "not identical" on the map.
    """
    frames, audio = batch
    skips: list[list[torch.Tensor]] = []
    hook = model.decoder.register_forward_pre_hook(lambda m, args: skips.append(args[0]))
    try:
        with torch.no_grad():
            out = model(frames, audio if model.uses_audio else None)
    finally:
        hook.remove()
    assert out.shape == (2, H, W) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() > out.min()  # a map, not a constant
    bottom = skips[0][0]
    if model.uses_audio:
        change = (bottom[0] - bottom[1]).abs().max()
        assert change > 1e-4 * bottom.abs().mean(), "the audio does not reach F_av"
        assert not torch.equal(out[0], out[1]), "the audio does not reach the map"
    else:
        assert torch.equal(bottom[0], bottom[1]) and torch.equal(out[0], out[1])
    return out


# --------------------------------------------------------------------------- Table III

TABLE_III = [
    (audio, ms, mrg)
    for audio in (False, True)
    for ms, mrg in ((False, False), (True, False), (False, True), (True, True))
]


@pytest.mark.parametrize(("audio", "ms", "mrg"), TABLE_III)
def test_table_iii_rows(models: ModelFactory, batch, audio: bool, ms: bool, mrg: bool) -> None:
    model = models(use_audio=audio, use_ms=ms, use_mrg=mrg)
    levels = {str(lv) for lv in paired_levels(3)}
    assert set(model.ms) == (levels if ms else set())
    assert set(model.mrg) == (levels if mrg else set())
    assert (model.audio is not None, model.fusion is not None) == (audio, audio)
    check_forward(model, batch)


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("pairs", [3, 4])
def test_switching_ms_off_removes_exactly_the_ms_modules(
    models: ModelFactory, audio: bool, pairs: int
) -> None:
    full = models(use_audio=audio, ms_mrg_pairs=pairs)
    no_ms = models(use_audio=audio, ms_mrg_pairs=pairs, use_ms=False)
    full_shapes = shapes(full)
    kept = {k: v for k, v in full_shapes.items() if not k.startswith("ms.")}
    assert shapes(no_ms) == kept
    assert n_params(full) - n_params(no_ms) == n_params(full.ms) > 0
    assert len(full.ms) == pairs


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("pairs", [2, 3])  # 4 without MRG is rejected: it builds pairs=3
def test_switching_mrg_off_removes_exactly_the_mrg_gates(
    models: ModelFactory, audio: bool, pairs: int
) -> None:
    full = models(use_audio=audio, ms_mrg_pairs=pairs)
    no_mrg = models(use_audio=audio, ms_mrg_pairs=pairs, use_mrg=False)
    # X̃^0 only feeds MRG, so level 0's MS goes with it (network docstring)
    dropped = ("mrg.", "ms.0.")
    kept = {k: v for k, v in shapes(full).items() if not k.startswith(dropped)}
    assert shapes(no_mrg) == kept
    ms0 = n_params(full.ms["0"]) if "0" in full.ms else 0
    assert n_params(full) - n_params(no_mrg) == n_params(full.mrg) + ms0
    assert len(full.mrg) == pairs and len(no_mrg.mrg) == 0
    assert ("0" in full.ms) == (pairs == 4) and "0" not in no_mrg.ms


def test_both_switches_off_is_the_plain_pairs_zero_network(models: ModelFactory) -> None:
    """MS and MRG off leaves the same modules as zero pairs; only the skips' source differs."""
    assert shapes(models(use_ms=False, use_mrg=False)) == shapes(models(ms_mrg_pairs=0))


def test_mrg_off_skips_are_the_ms_features(models: ModelFactory, batch) -> None:
    """With MRG off, level l ≥ 1 gets X̃^l alone and level 0 gets F_av (docstring, step 4)."""
    model = models(use_mrg=False)
    frames, audio = batch
    seen: list[list[torch.Tensor]] = []
    enhanced: dict[str, torch.Tensor] = {}
    hooks = [model.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0]))]
    for name, ms in model.ms.items():
        hooks.append(
            ms.register_forward_hook(lambda m, a, out, name=name: enhanced.__setitem__(name, out))
        )
    fused: list[torch.Tensor] = []
    hooks.append(model.fusion.register_forward_hook(lambda m, a, out: fused.append(out)))
    with torch.no_grad():
        model(frames, audio)
    for hook in hooks:
        hook.remove()
    skips = seen[0]
    for lv in paired_levels(3):
        assert torch.equal(skips[lv], enhanced[str(lv)])
    b, c, t, h, w = skips[0].shape
    assert torch.equal(skips[0], fused[0].transpose(1, 2).reshape(b, c, t, h, w))


# --------------------------------------------------------------------------- Table IV


def test_paired_levels_follow_table_iv() -> None:
    assert [paired_levels(p) for p in range(5)] == [[], [3], [2, 3], [1, 2, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("pairs", range(5))
def test_table_iv_rows(models: ModelFactory, batch, audio: bool, pairs: int) -> None:
    model = models(use_audio=audio, ms_mrg_pairs=pairs)
    expected = {str(lv) for lv in range(LEVELS - pairs, LEVELS)}
    assert set(model.ms) == expected and set(model.mrg) == expected
    check_forward(model, batch)


@pytest.mark.parametrize("audio", [False, True])
def test_more_pairs_more_parameters(models: ModelFactory, audio: bool) -> None:
    counts = [n_params(models(use_audio=audio, ms_mrg_pairs=p)) for p in range(5)]
    assert counts == sorted(set(counts)), counts


# --------------------------------------------------------------------------- Table V

FUSION_TYPES = {
    "ravf": RAVF,
    "add": AddFusion,
    "mul": MulFusion,
    "concat": ConcatFusion,
    "bilinear": BilinearFusion,
    "mbt": MBTFusion,
}


@pytest.mark.parametrize("method", ["visual-only", *FUSION_METHODS])
def test_table_v_rows(models: ModelFactory, batch, method: str) -> None:
    if method == "visual-only":
        model = models(use_audio=False)
        assert model.fusion is None and model.audio is None and model.audio_proj is None
    else:
        model = models(fusion=method)
        assert type(model.fusion) is FUSION_TYPES[method]
    check_forward(model, batch)


def test_fusion_table_covers_every_method() -> None:
    assert set(FUSION_TYPES) == set(FUSION_METHODS)


@pytest.mark.parametrize("method", ["add", "mul"])
def test_parameter_free_fusion_adds_only_the_audio_branch(models: ModelFactory, method) -> None:
    w0 = small_config().model.level_widths()[0]
    audio_branch = n_params(SoundNet8()) + OUT_CHANNELS * w0 + w0  # SoundNet + projection
    assert n_params(models(fusion=method)) == n_params(models(use_audio=False)) + audio_branch


# --------------------------------------------------------------------------- inputs


def test_visual_only_model_needs_no_audio_and_ignores_it(models: ModelFactory, batch) -> None:
    model = models(use_audio=False)
    frames, audio = batch
    with torch.no_grad():
        assert torch.equal(model(frames[:1]), model(frames[:1], audio[:1]))


def test_av_model_without_audio_raises(models: ModelFactory, batch) -> None:
    with pytest.raises(InputError, match="audio-visual model"):
        models()(batch[0][:1])


@pytest.mark.parametrize(
    ("audio_shape", "match"), [((3, MIN_AUDIO_SAMPLES), "B=1"), ((MIN_AUDIO_SAMPLES,), "B=1")]
)
def test_av_model_rejects_misshaped_audio(models: ModelFactory, batch, audio_shape, match) -> None:
    with pytest.raises(InputError, match=match):
        models()(batch[0][:1], torch.zeros(audio_shape))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 3, 5, 64), r"\[B, 3, T, H, W\]"),
        ((1, 1, 5, 64, 64), r"\[B, 3, T, H, W\]"),
        ((1, 3, MIN_FRAMES - 1, 64, 64), rf"T={MIN_FRAMES - 1} < {MIN_FRAMES}"),
    ],
)
def test_misshaped_frames_raise(models: ModelFactory, shape, match) -> None:
    with pytest.raises(InputError, match=match):
        models(use_audio=False)(torch.zeros(shape))


def test_output_matches_any_input_size(models: ModelFactory) -> None:
    model = models(use_audio=False)
    with torch.no_grad():
        out = model(torch.rand(1, 3, MIN_FRAMES + 2, 40, 72))
    assert out.shape == (1, 40, 72)


def test_untrained_map_starts_at_the_sparse_prior(models: ModelFactory) -> None:
    """The last conv's bias is ``output_bias``, so a fresh network's map is low everywhere
    (sigmoid(−4) ≈ 0.018, docs/MODEL.md): with a zero bias it would sit near 0.5."""
    model = models(use_audio=False)
    assert torch.all(model.decoder.head.bias == -4.0)
    with torch.no_grad():
        out = model(torch.rand(2, 3, MIN_FRAMES, H, W))
    assert 0.005 < float(out.median()) < 0.06
    flat = models(use_audio=False, output_bias=0.0)
    with torch.no_grad():
        assert 0.3 < float(flat(torch.rand(2, 3, MIN_FRAMES, H, W)).median()) < 0.7


def test_s3d_needs_min_frames(models: ModelFactory) -> None:
    """MIN_FRAMES is exact: one frame fewer and S3D's last temporal pool has nothing left."""
    s3d = models(use_audio=False).visual
    with torch.no_grad():
        taps = s3d(torch.zeros(1, 3, MIN_FRAMES, 32, 32))
        assert [t.shape[2] for t in taps] == [3, 3, 2, 1]
        with pytest.raises(RuntimeError):
            s3d(torch.zeros(1, 3, MIN_FRAMES - 1, 32, 32))


def test_soundnet_needs_min_audio_samples() -> None:
    """MIN_AUDIO_SAMPLES is exact for the real SoundNet-8 layer schedule."""
    net = SoundNet8().eval()
    with torch.no_grad():
        assert net(torch.zeros(2, MIN_AUDIO_SAMPLES)).shape == (2, OUT_CHANNELS, 1)
        assert net(torch.zeros(1, paper().input.audio_samples)).shape == (1, OUT_CHANNELS, 2)
        with pytest.raises(RuntimeError):
            net(torch.zeros(1, MIN_AUDIO_SAMPLES - 1))


# --------------------------------------------------------------------------- gradients


# Backward through every fusion and pair count on the shortest window: native kernels with
# unusual shapes, so each case runs in its own process (a crash fails that case only).
#
# A parameter is alive when its gradient is of a size that can move it, not merely nonzero:
# a structurally dead parameter (a bias that a softmax or a BatchNorm cancels) gets a
# rounding residue whose size depends on the CPU's kernels (about 3e-11 with AVX-512, exact
# zero with AVX2, in float32), so `.any()` passes it on one machine and fails it on
# another. In float64 that residue is below 1e-15 of the parameter's size, while the
# smallest living gradient measured over these cases is 7e-7 of it (SoundNet's conv1
# bias, ravf with 4 pairs): the bound 1e-9 separates them on any CPU.
LIVE_GRADIENT = 1e-9


def _backward(cfg: AVRSPConfig, dtype: torch.dtype) -> AVRSP:
    torch.manual_seed(3)
    model = build_model(cfg).train().to(dtype)
    gen = torch.Generator().manual_seed(4)
    frames = torch.rand(2, 3, MIN_FRAMES, H, W, generator=gen).to(dtype)
    audio = (torch.rand(2, cfg.input.audio_samples, generator=gen) * 2 - 1).to(dtype)
    target = (torch.rand(2, H, W, generator=gen) ** 4).to(dtype)
    loss, _ = saliency_loss(model(frames, audio), target, cfg.loss)
    loss.backward()
    return model


@pytest.mark.isolated
@pytest.mark.parametrize(
    ("method", "pairs"),
    [
        *((m, 4) for m in ["ravf", "mbt", "bilinear", "concat", "mul"]),
        *(("ravf", p) for p in range(4)),
    ],
)
def test_gradients_reach_every_parameter_in_av_mode(method: str, pairs: int) -> None:
    cfg = small_config(fusion=method, ms_mrg_pairs=pairs)
    # float32, the kernels training runs: every parameter gets a finite gradient
    model = _backward(cfg, torch.float32)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(model.parameters()))
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, missing
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, bad
    # float64: every gradient is large enough to be real (LIVE_GRADIENT above)
    model = _backward(cfg, torch.float64)
    size = {
        n: p.grad.norm().item() / max(p.norm().item(), 1e-3) for n, p in model.named_parameters()
    }
    dead = {n: f"{v:.1e}" for n, v in size.items() if v < LIVE_GRADIENT}
    assert not dead, dead


# --------------------------------------------------------------------------- RAVF


def _attention(width: int = 16, heads: int = 4, seed: int = 0) -> RelevanceCrossAttention:
    torch.manual_seed(seed)
    return RelevanceCrossAttention(width, heads).eval()


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).permute(0, 2, 1, 3)


def test_retention_is_eq_2_and_3() -> None:
    attn = _attention()
    gen = torch.Generator().manual_seed(5)
    visual, audio = torch.randn(2, 6, 16, generator=gen), torch.randn(2, 3, 16, generator=gen)
    with torch.no_grad():
        _, maps = attn(visual, audio, return_attention=True)
        w = {n: attn.proj[n].weight for n in attn.proj}
        vq, vk = _split(visual @ w["v_q"].T, 4), _split(visual @ w["v_k"].T, 4)
        aq, ak = _split(audio @ w["a_q"].T, 4), _split(audio @ w["a_k"].T, 4)
    assert maps["ret_a"].shape == (2, 4, 6, 3) and maps["ret_v"].shape == (2, 4, 3, 6)
    torch.testing.assert_close(maps["ret_a"], vq @ ak.transpose(-1, -2) / 2.0)  # √d_k = 2
    torch.testing.assert_close(maps["ret_v"], aq @ vk.transpose(-1, -2) / 2.0)
    # no softmax: rows are raw dot products, with negative entries and no unit sums
    assert (maps["ret_a"] < 0).any()
    # the audio share of v2a, eq. (4), per head
    with torch.no_grad():
        a_term = maps["ret_a"] @ _split(audio @ w["a_v"].T, 4)
        v_term = _split(visual @ w["v_v"].T, 4)
    share = a_term.norm(dim=-1) / (a_term.norm(dim=-1) + v_term.norm(dim=-1))
    torch.testing.assert_close(maps["audio_share"], share.mean(-1))
    assert ((maps["audio_share"] > 0) & (maps["audio_share"] < 1)).all()


def _head_logits(attn: RelevanceCrossAttention, v2a: torch.Tensor, a2v: torch.Tensor):
    """Eq. (6)'s MLP written out from the module's weights: per head h and visual token,
    LayerNorm → linear → GELU (shared) → w_h · hidden + b_h (the head's own output)."""
    norm, hidden = attn.head_mlp[0], attn.head_mlp[1]
    x = torch.cat([v2a, a2v.mean(dim=2, keepdim=True).expand_as(v2a)], dim=-1)
    x = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)
    x = F.gelu(x @ hidden.weight.T + hidden.bias)  # [B, H, Nv, dk]
    w, b = attn.head_out.weight, attn.head_out.bias  # [H, dk], [H]
    return (x * w[None, :, None, :]).sum(-1) + b[None, :, None]  # [B, H, Nv]


def _attention_reference(
    attn: RelevanceCrossAttention, visual: torch.Tensor, audio: torch.Tensor
) -> torch.Tensor:
    """Eq. (1)–(7) composed from the module's weights, one equation a line."""
    heads, dk = attn.heads, attn.dk
    w = {n: attn.proj[n].weight for n in attn.proj}
    vq, vk, vv = (_split(visual @ w[n].T, heads) for n in ("v_q", "v_k", "v_v"))  # eq. 1
    aq, ak, av = (_split(audio @ w[n].T, heads) for n in ("a_q", "a_k", "a_v"))  # eq. 1
    ret_a = vq @ ak.transpose(-1, -2) / math.sqrt(dk)  # eq. 2
    ret_v = aq @ vk.transpose(-1, -2) / math.sqrt(dk)  # eq. 3
    v2a = ret_a @ av + vv  # eq. 4
    a2v = ret_v @ vv + av  # eq. 5
    weights = torch.softmax(_head_logits(attn, v2a, a2v), dim=1)  # eq. 6, over heads
    fused = weights.unsqueeze(-1) * v2a  # eq. 7
    b, nv = visual.shape[:2]
    return fused.permute(0, 2, 1, 3).reshape(b, nv, heads * dk) @ attn.out.weight.T + attn.out.bias


def test_attention_is_eq_1_to_7() -> None:
    """The whole cross-attention against its equations (float64, so any wrong term shows)."""
    attn = _attention(width=24, heads=3).double()
    assert all(attn.proj[n].bias is None for n in attn.proj)  # eq. (1): bias-free
    gen = torch.Generator().manual_seed(13)
    visual = torch.randn(2, 7, 24, generator=gen, dtype=torch.float64)
    audio = torch.randn(2, 3, 24, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        # the per-head outputs start random; make them clearly different per head too
        attn.head_out.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        out, maps = attn(visual, audio, return_attention=True)
        reference = _attention_reference(attn, visual, audio)
    torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-10)
    # the head weights of eq. (6) are exposed as computed
    with torch.no_grad():
        v2a = maps["ret_a"] @ _split(audio @ attn.proj["a_v"].weight.T, 3)
        v2a = v2a + _split(visual @ attn.proj["v_v"].weight.T, 3)
        a2v = maps["ret_v"] @ _split(visual @ attn.proj["v_v"].weight.T, 3)
        a2v = a2v + _split(audio @ attn.proj["a_v"].weight.T, 3)
        weights = torch.softmax(_head_logits(attn, v2a, a2v), dim=1).transpose(1, 2)
    torch.testing.assert_close(maps["head_weights"], weights, rtol=1e-10, atol=1e-10)


def test_ravf_blocks_are_attention_residual_norm_ffn_residual_norm() -> None:
    """§III-B: each block is cross-attention → residual + LayerNorm → FFN → residual +
    LayerNorm, and every stacked block attends to the same audio tokens."""
    torch.manual_seed(0)
    ravf = RAVF(width=16, heads=4, blocks=2, ffn_mult=2).double().eval()
    gen = torch.Generator().manual_seed(16)
    visual = torch.randn(2, 5, 16, generator=gen, dtype=torch.float64)
    audio = torch.randn(2, 3, 16, generator=gen, dtype=torch.float64)

    def norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
        return F.layer_norm(x, (16,), ln.weight, ln.bias, ln.eps)

    with torch.no_grad():
        x = visual
        for block in ravf.blocks:
            x = norm(x + _attention_reference(block.attn, x, audio), block.norm1)
            lin1, lin2 = block.ffn[0], block.ffn[2]
            x = norm(
                x + F.gelu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias, block.norm2
            )
        torch.testing.assert_close(ravf(visual, audio), x, rtol=1e-10, atol=1e-10)


def test_each_head_has_a_prior_of_its_own() -> None:
    """Eq. (6)'s per-head output: a head's bias moves the weights (it is not cancelled by
    the softmax, as one bias shared by all heads would be); a constant added to every
    head's bias is, and only that."""
    attn = _attention(width=16, heads=4).double()
    gen = torch.Generator().manual_seed(14)
    visual = torch.randn(1, 5, 16, generator=gen, dtype=torch.float64)
    audio = torch.randn(1, 2, 16, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        _, before = attn(visual, audio, return_attention=True)
        attn.head_out.bias[2] += 3.0
        _, raised = attn(visual, audio, return_attention=True)
        attn.head_out.bias += 5.0
        _, shifted = attn(visual, audio, return_attention=True)
    assert (raised["head_weights"][..., 2] > before["head_weights"][..., 2] + 0.05).all()
    torch.testing.assert_close(shifted["head_weights"], raised["head_weights"])


def test_checkpoints_with_a_shared_head_output_load_unchanged() -> None:
    """A state dict from before the per-head output (one ``head_mlp.3`` for all heads)
    loads, and predicts what the shared output predicted."""
    attn = _attention(width=16, heads=4)
    gen = torch.Generator().manual_seed(15)
    visual, audio = torch.randn(2, 6, 16, generator=gen), torch.randn(2, 3, 16, generator=gen)
    old = {k: v for k, v in attn.state_dict().items() if not k.startswith("head_out.")}
    old["head_mlp.3.weight"] = torch.randn(1, attn.dk, generator=gen)
    old["head_mlp.3.bias"] = torch.randn(1, generator=gen)
    loaded = _attention(width=16, heads=4, seed=1)
    loaded.load_state_dict(old)
    with torch.no_grad():
        out = loaded(visual, audio)
        vv = _split(visual @ old["proj.v_v.weight"].T, 4)
        av = _split(audio @ old["proj.a_v.weight"].T, 4)
        ret_a = (
            _split(visual @ old["proj.v_q.weight"].T, 4)
            @ _split(audio @ old["proj.a_k.weight"].T, 4).transpose(-1, -2)
            / 2.0
        )
        ret_v = (
            _split(audio @ old["proj.a_q.weight"].T, 4)
            @ _split(visual @ old["proj.v_k.weight"].T, 4).transpose(-1, -2)
            / 2.0
        )
        v2a, a2v = ret_a @ av + vv, ret_v @ vv + av
        shared = loaded.head_mlp(torch.cat([v2a, a2v.mean(2, keepdim=True).expand_as(v2a)], -1))
        # the old shared output, bias included
        logits = (shared @ old["head_mlp.3.weight"].T + old["head_mlp.3.bias"]).squeeze(-1)
        fused = torch.softmax(logits, dim=1).unsqueeze(-1) * v2a
        expected = loaded.out(fused.permute(0, 2, 1, 3).reshape(2, 6, 16))
    torch.testing.assert_close(out, expected)


def test_checkpoints_from_before_2026_12_07_load_and_predict_the_same(batch) -> None:
    """A whole network saved in the old layout — one head-MLP output shared by the heads
    (``head_mlp.3``) and a bias on LIP's logit convolution — loads strictly and predicts
    what it predicted: the shared output repeated per head, the LIP bias folded into the
    BatchNorm's running mean (the bias cancelled in training, and met the running mean in
    eval mode)."""
    torch.manual_seed(17)
    model = build_model(small_config()).double().eval()  # float64: the untrained features
    gen = torch.Generator().manual_seed(18)  # are small, and a wrong fold moves them by 1e-7
    old: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for block in model.fusion.blocks:  # make the network one the old layout can hold
            block.attn.head_out.weight.copy_(block.attn.head_out.weight[:1].expand(4, -1))
            block.attn.head_out.bias.fill_(0.3)  # one bias for all heads: the softmax drops it
        for name, value in model.state_dict().items():
            if name.endswith("head_out.weight"):
                old[name.replace("head_out", "head_mlp.3")] = value[:1].clone()
            elif name.endswith("head_out.bias"):
                old[name.replace("head_out", "head_mlp.3")] = torch.randn(1, generator=gen).double()
            elif name.endswith("lip.logit.1.running_mean"):
                bias = torch.randn(value.shape, generator=gen, dtype=value.dtype)
                old[name.replace("logit.1.running_mean", "logit.0.bias")] = bias
                old[name] = value + bias
            else:
                old[name] = value.clone()
    torch.manual_seed(19)
    loaded = build_model(small_config()).double().eval()
    loaded.load_state_dict(old)  # strict
    inputs = [x.double() for x in batch]
    # the map of an untrained network is nearly flat; compare the decoder's inputs too
    for net in (model, loaded):
        seen: list[list[torch.Tensor]] = []
        hook = net.decoder.register_forward_pre_hook(
            lambda m, args, seen=seen: seen.append(args[0])
        )
        with torch.no_grad():
            seen.append(net(*inputs))
        hook.remove()
        if net is model:
            expected = seen
    for got, want in zip(seen, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _visual_only_reference(attn: RelevanceCrossAttention, visual: torch.Tensor) -> torch.Tensor:
    """Eq. (4)–(7) with Ret = 0, v2a = V_v and a2v = 0, written out."""
    heads, dk = attn.heads, attn.dk
    vv = _split(attn.proj["v_v"](visual), heads)  # [B, H, Nv, dk]
    weights = torch.softmax(_head_logits(attn, vv, torch.zeros_like(vv)), dim=1)
    fused = (weights.unsqueeze(-1) * vv).permute(0, 2, 1, 3).reshape(*visual.shape[:2], heads * dk)
    return attn.out(fused)


@pytest.mark.parametrize("n_audio", [1, 2, 7])
def test_all_zero_audio_reduces_to_visual_values(n_audio: int) -> None:
    attn = _attention()
    visual = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out, maps = attn(visual, torch.zeros(2, n_audio, 16), return_attention=True)
        reference = _visual_only_reference(attn, visual)
        one_token = attn(visual, torch.zeros(2, 1, 16))
    assert torch.count_nonzero(maps["ret_a"]) == 0 and torch.count_nonzero(maps["ret_v"]) == 0
    assert torch.count_nonzero(maps["audio_share"]) == 0
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    assert torch.equal(out, one_token)  # independent of the number of silent tokens


def test_all_zero_audio_leaks_nothing_from_the_audio_projections() -> None:
    attn = _attention()
    visual = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(7))
    silence = torch.zeros(1, 2, 16)
    with torch.no_grad():
        before = attn(visual, silence)
        for name in ("a_q", "a_k", "a_v"):
            attn.proj[name].weight.normal_()
        after = attn(visual, silence)
        assert torch.equal(before, after)
        assert not torch.equal(attn(visual, torch.ones(1, 2, 16)), before)


def test_head_weights_sum_to_one_over_heads() -> None:
    attn = _attention(width=24, heads=3)
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        visual, audio = (
            torch.randn(2, 10, 24, generator=gen) * 5,
            torch.randn(2, 4, 24, generator=gen),
        )
        plain = attn(visual, audio)
        out, maps = attn(visual, audio, return_attention=True)
    assert torch.equal(plain, out)  # the flag changes what is returned, not the result
    weights = maps["head_weights"]
    assert weights.shape == (2, 10, 3)
    assert (weights >= 0).all() and (weights <= 1).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 10))
    assert weights.std() > 0  # per token, not uniform


def test_retention_maps_of_stacked_blocks() -> None:
    torch.manual_seed(0)
    ravf = RAVF(width=16, heads=4, blocks=2, ffn_mult=2).eval()
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        visual, audio = torch.randn(3, 8, 16, generator=gen), torch.randn(3, 2, 16, generator=gen)
        out, maps = ravf(visual, audio, return_attention=True)
        assert torch.equal(out, ravf(visual, audio))
    assert out.shape == (3, 8, 16)
    assert len(maps) == 2
    for block in maps:
        assert block["ret_a"].shape == (3, 4, 8, 2)
        assert block["ret_v"].shape == (3, 4, 2, 8)
        assert block["head_weights"].shape == (3, 8, 4)
        torch.testing.assert_close(block["head_weights"].sum(-1), torch.ones(3, 8))
    assert not torch.equal(maps[0]["ret_a"], maps[1]["ret_a"])  # each block its own


def test_retention_maps_in_the_network(models: ModelFactory, batch) -> None:
    model = models()
    with torch.no_grad():
        maps, attention = model(*batch, return_attention=True)
        assert torch.equal(maps, model(*batch))
    nv, na, heads = 1 * 2 * 2, 2, small_config().model.heads  # X0 of 5×64×64 is 1×2×2
    assert len(attention["ravf"]) == small_config().model.ravf_blocks
    for block in attention["ravf"]:
        assert block["ret_a"].shape == (2, heads, nv, na)
        assert block["ret_v"].shape == (2, heads, na, nv)
        torch.testing.assert_close(block["head_weights"].sum(-1), torch.ones(2, nv))


# --------------------------------------------------------------------------- MS and MRG


def test_ms_output_has_the_middle_shape() -> None:
    torch.manual_seed(0)
    ms = MS(8, higher=4, lower=16).eval()
    mid = torch.randn(2, 8, 2, 6, 10)
    higher, lower = torch.randn(2, 4, 4, 12, 20), torch.randn(2, 16, 1, 3, 5)
    with torch.no_grad():
        out = ms(mid, higher=higher, lower=lower)
        assert out.shape == mid.shape
        # each neighbour contributes
        assert not torch.equal(out, ms(mid, higher=higher, lower=lower * 2))
        assert not torch.equal(out, ms(mid, higher=higher * 2, lower=lower))
    with pytest.raises(ValueError, match="lower-resolution"):
        ms(mid, higher=higher)
    with pytest.raises(ValueError, match="higher-resolution"):
        ms(mid, lower=lower)


def test_ms_is_eq_9_to_12_with_both_neighbours_second_round() -> None:
    """X̃^m = X^m + D(X_2^h) + C(X_2^m) + U(X_2^l), each X_2 from eq. (10) at its own scale."""
    torch.manual_seed(0)
    ms = MS(8, higher=4, lower=16).eval()
    mid = torch.randn(2, 8, 2, 6, 10)
    higher, lower = torch.randn(2, 4, 4, 12, 20), torch.randn(2, 16, 1, 3, 5)
    hs, ms_, ls = higher.shape[2:], mid.shape[2:], lower.shape[2:]
    with torch.no_grad():
        x1 = {"h": ms.c1_high(higher), "m": ms.c1_mid(mid), "l": ms.c1_low(lower)}  # eq. 9
        x2_h = ms.c2_high(x1["h"]) + ms.u2_high(resample(x1["m"], hs))  # eq. 10, i = h
        x2_m = (
            ms.d2_mid(resample(x1["h"], ms_))
            + ms.c2_mid(x1["m"])
            + ms.u2_mid(resample(x1["l"], ms_))
        )  # eq. 10, i = m
        x2_l = ms.d2_low(resample(x1["m"], ls)) + ms.c2_low(x1["l"])  # eq. 10, i = l
        x3_m = ms.d3(resample(x2_h, ms_)) + ms.c3(x2_m) + ms.u3(resample(x2_l, ms_))  # eq. 11
        torch.testing.assert_close(ms(mid, higher=higher, lower=lower), mid + x3_m)  # eq. 12
    # The neighbours' second-round features are used: their own exchange convolutions
    # (which only X_2^h and X_2^l pass through) get gradient.
    ms.train()
    ms(mid, higher=higher, lower=lower).sum().backward()
    for part in (ms.u2_high, ms.d2_low, ms.c2_high, ms.c2_low):
        assert part[0].weight.grad.abs().sum() > 0


def test_ms_at_an_edge_level_has_one_neighbour() -> None:
    top = MS(8, higher=None, lower=16).eval()  # X3: nothing above
    assert top.c1_high is None and top.d2_mid is None and top.d3 is None
    assert top.c1_low is not None and top.u3 is not None
    mid = torch.randn(1, 8, 2, 8, 8)
    with torch.no_grad():
        assert top(mid, lower=torch.randn(1, 16, 1, 4, 4)).shape == mid.shape


def test_mrg_gate_is_a_channel_gate_in_unit_range() -> None:
    torch.manual_seed(0)
    mrg = MRG(16, 8).eval()
    fused, visual = torch.randn(2, 16, 1, 2, 3) * 4, torch.randn(2, 8, 2, 8, 12)
    with torch.no_grad():
        out, gate = mrg(fused, visual, return_gate=True)
    assert out.shape == visual.shape
    assert gate.shape == (2, 16, 1, 1, 1)
    assert (gate >= 0).all() and (gate <= 1).all()
    assert gate.std() > 0


def test_network_mrg_gates_are_in_unit_range(models: ModelFactory, batch) -> None:
    model = models(ms_mrg_pairs=4)
    with torch.no_grad():
        _, attention = model(*batch, return_attention=True)
    assert sorted(attention["gates"]) == [0, 1, 2, 3]
    for gate in attention["gates"].values():
        assert gate.shape[0] == 2 and gate.ndim == 2
        assert (gate >= 0).all() and (gate <= 1).all()


def test_resample_hits_the_exact_size() -> None:
    x = torch.randn(1, 2, 3, 7, 9)
    assert resample(x, x.shape[2:]) is x
    assert resample(x, (2, 4, 5)).shape == (1, 2, 2, 4, 5)
    assert resample(x, (5, 14, 18)).shape == (1, 2, 5, 14, 18)


# --------------------------------------------------------------------------- fusion, ASPP, LIP


@pytest.mark.parametrize("layers", [1, 2])
def test_mbt_audio_reaches_the_visual_tokens_in_every_layer(layers: int) -> None:
    torch.manual_seed(0)
    mbt = MBTFusion(16, heads=4, layers=layers, bottlenecks=2, ffn_mult=2).eval()
    gen = torch.Generator().manual_seed(10)
    visual = torch.randn(1, 5, 16, generator=gen)
    a1, a2 = torch.randn(1, 3, 16, generator=gen), torch.randn(1, 3, 16, generator=gen)
    out = mbt(visual, a1)
    with torch.no_grad():
        assert (out - mbt(visual, a2)).abs().max() > 1e-3
    out.sum().backward()
    dead = [n for n, p in mbt.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, dead  # the last audio layer too


def test_lip_keeps_the_shape_and_is_a_local_weighted_mean() -> None:
    torch.manual_seed(0)
    lip = LIP(4).eval()
    constant = torch.full((1, 4, 2, 5, 7), 3.0)
    with torch.no_grad():
        # border-correct: a constant map stays constant, corners included
        torch.testing.assert_close(lip(constant), constant)
        x = torch.randn(2, 4, 2, 5, 7)
        out = lip(x)
        assert out.shape == x.shape
        lo = -F.max_pool3d(-x, (1, 3, 3), stride=1, padding=(0, 1, 1))
        hi = F.max_pool3d(x, (1, 3, 3), stride=1, padding=(0, 1, 1))
    assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all()  # within each 3×3 window
    assert not torch.allclose(out, F.avg_pool3d(x, (1, 3, 3), stride=1, padding=(0, 1, 1)))


def test_aspp_maps_any_tap_to_the_level_width() -> None:
    torch.manual_seed(0)
    aspp = ASPP(12, 8, rates=(1, 2, 3)).eval()
    assert len(aspp.branches) == 4  # 1×1×1 plus one per rate
    with torch.no_grad():
        assert aspp(torch.randn(1, 12, 3, 5, 9)).shape == (1, 8, 3, 5, 9)
        assert aspp(torch.randn(2, 12, 1, 1, 1)).shape == (2, 8, 1, 1, 1)


# --------------------------------------------------------------------------- determinism


def test_seeded_builds_are_bit_identical(batch) -> None:
    cfg = small_config()

    def build(seed: int) -> AVRSP:
        torch.manual_seed(seed)
        return build_model(cfg).eval()

    a, b, c = build(11), build(11), build(12)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    frames, audio = batch
    with torch.no_grad():
        out_a, out_b, out_c = a(frames, audio), b(frames, audio), c(frames, audio)
        again = a(frames, audio)
    assert torch.equal(out_a, out_b) and torch.equal(out_a, again)
    assert not torch.equal(out_a, out_c)


# --------------------------------------------------------------------------- presets


def test_tiny_preset_forward_at_its_own_size(models: ModelFactory) -> None:
    cfg = tiny()
    model = models()  # the sweeps' models differ from tiny only in the input window
    # the network records the S3D input normalisation it resolved ("auto", no weights)
    assert model.config == cfg.model.model_copy(update={"s3d_input": "minus_one_one"})
    gen = torch.Generator().manual_seed(12)
    frames = torch.rand(2, 3, cfg.input.frames, cfg.input.height, cfg.input.width, generator=gen)
    audio = torch.rand(2, cfg.input.audio_samples, generator=gen) * 2 - 1
    with torch.no_grad():
        out = model(frames, audio)
    assert out.shape == (2, cfg.input.height, cfg.input.width)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# --------------------------------------------------------------------------- paper preset


@pytest.fixture(scope="module")
def paper_model() -> AVRSP:
    torch.manual_seed(0)
    return build_model(paper()).eval()


@pytest.mark.slow
def test_s3d_taps_at_paper_size(paper_model: AVRSP) -> None:
    """The four taps at 32×224×384 (one no-grad pass, several seconds)."""
    with torch.no_grad():
        taps = paper_model.visual(torch.zeros(1, 3, 32, 224, 384))
    assert [tuple(t.shape[1:]) for t in taps] == [
        (192, 16, 56, 96),
        (480, 16, 28, 48),
        (832, 8, 14, 24),
        (1024, 4, 7, 12),
    ]


def test_paper_preset_forward_at_reduced_size(paper_model: AVRSP) -> None:
    """The paper network, all 32 frames, on 64×96 pixels: a full-size pass takes ~30 s on
    two busy cores, so the full size is checked on the S3D taps alone (above)."""
    cfg = paper().input
    gen = torch.Generator().manual_seed(2)
    frames = torch.rand(1, 3, cfg.frames, 64, 96, generator=gen)
    audio = torch.rand(1, cfg.audio_samples, generator=gen) * 2 - 1
    with torch.no_grad():
        out, attention = paper_model(frames, audio, return_attention=True)
    assert out.shape == (1, 64, 96)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    maps = attention["ravf"]
    assert maps[-1]["ret_a"].shape == (1, paper().model.heads, 4 * 2 * 3, 2)  # X0: 4×2×3


def test_s3d_encoder_is_torchvisions_s3d_features() -> None:
    from torchvision.models.video import s3d

    ours = S3DEncoder()
    theirs = s3d(weights=None).features
    assert [(k, v.shape) for k, v in ours.features.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
