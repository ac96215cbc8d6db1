"""The training loss (``avrsp/losses.py``, paper eq. 16–19) on maps small enough to check by hand.

References are either worked out by hand (the 2×2 case, in the comments) or computed by an
independent float64 numpy implementation written here from the equations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avrsp.config import LossConfig
from avrsp.losses import correlation, kl_divergence, saliency_loss, similarity

EPS = LossConfig().eps

# --------------------------------------------------------------------------- references

# pred [[1, 2], [3, 4]] → P = [.1, .2, .3, .4]; gt [[0, 1], [1, 2]] → G = [0, .25, .25, .5]
# KL  = .25·ln(.25/.2) + .25·ln(.25/.3) + .5·ln(.5/.4) = .75·ln 1.25 + .25·ln(5/6)
# CC  : P−P̄ = [−.15, −.05, .05, .15], G−Ḡ = [−.25, 0, 0, .25]
#       Σ(P−P̄)(G−Ḡ) = .075, Σ(P−P̄)² = .05, Σ(G−Ḡ)² = .125 → .075/√.00625 = 3/√10
# SIM = min(.1, 0) + min(.2, .25) + min(.3, .25) + min(.4, .5) = .85
PRED_2X2 = [[1.0, 2.0], [3.0, 4.0]]
GT_2X2 = [[0.0, 1.0], [1.0, 2.0]]
KL_2X2 = 0.75 * math.log(1.25) + 0.25 * math.log(5 / 6)
CC_2X2 = 3 / math.sqrt(10)
SIM_2X2 = 0.85


def _np_terms(pred: np.ndarray, gt: np.ndarray, eps: float = EPS) -> tuple[float, float, float]:
    """KL, CC, SIM of one map pair, float64, straight from eq. (16)–(18)."""
    p = pred.astype(np.float64).ravel()
    g = gt.astype(np.float64).ravel()
    p_n, g_n = p / (p.sum() + eps), g / (g.sum() + eps)
    kl = float(np.sum(g_n * np.log(eps + g_n / (p_n + eps))))
    cc = float(np.corrcoef(p, g)[0, 1])  # Pearson: scale-free, no eps needed
    sim = float(np.minimum(p_n, g_n).sum())
    return kl, cc, sim


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def _blob(h: int, w: int, cy: float, cx: float, sigma: float, floor: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return floor + np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


# --------------------------------------------------------------------------- values


def test_terms_on_hand_computed_2x2() -> None:
    pred, gt = _t([PRED_2X2]), _t([GT_2X2])
    assert kl_divergence(pred, gt).item() == pytest.approx(KL_2X2, rel=1e-5)
    assert correlation(pred, gt).item() == pytest.approx(CC_2X2, rel=1e-5)
    assert similarity(pred, gt).item() == pytest.approx(SIM_2X2, rel=1e-5)
    loss, terms = saliency_loss(pred, gt)
    assert loss.item() == pytest.approx(KL_2X2 - 0.1 * CC_2X2 - 0.1 * SIM_2X2, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(KL_2X2, rel=1e-5)
    assert terms["cc"].item() == pytest.approx(CC_2X2, rel=1e-5)
    assert terms["sim"].item() == pytest.approx(SIM_2X2, rel=1e-5)


def test_terms_match_numpy_on_random_3x3_batch() -> None:
    rng = np.random.default_rng(7)
    pred = rng.random((5, 3, 3))
    gt = rng.random((5, 3, 3)) ** 3  # peakier, like a fixation map
    kl, cc, sim = (f(_t(pred), _t(gt)) for f in (kl_divergence, correlation, similarity))
    assert kl.shape == cc.shape == sim.shape == (5,)
    for i in range(5):
        want = _np_terms(pred[i], gt[i])
        got = (kl[i].item(), cc[i].item(), sim[i].item())
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6), i


@pytest.mark.parametrize("size", [(64, 112), (224, 384)])
def test_cc_is_pearson_at_real_map_sizes(size: tuple[int, int]) -> None:
    """CC must not shrink with the number of pixels (eps must stay negligible)."""
    h, w = size
    gt = _blob(h, w, 0.4 * h, 0.6 * w, 0.05 * w)
    pred = _blob(h, w, 0.5 * h, 0.5 * w, 0.2 * w, floor=2.0)  # smooth, low contrast
    want = float(np.corrcoef(pred.ravel(), gt.ravel())[0, 1])
    assert 0.3 < want < 0.6  # a case where shrinkage would show
    assert correlation(_t(pred[None]), _t(gt[None])).item() == pytest.approx(want, abs=1e-4)


def test_identical_maps_are_a_perfect_match() -> None:
    gt = _t(_blob(12, 16, 5, 9, 2.5)[None])
    kl, cc, sim = kl_divergence(gt, gt), correlation(gt, gt), similarity(gt, gt)
    assert kl.item() == pytest.approx(0.0, abs=1e-4)  # eps shifts it by ~1e-5 here
    assert cc.item() == pytest.approx(1.0, abs=1e-5)
    assert sim.item() == pytest.approx(1.0, abs=1e-5)


def test_loss_ranks_predictions() -> None:
    """The loss is lowest for the target itself and highest for its opposite."""
    gt = _t(_blob(16, 16, 4, 4, 2.0)[None])
    uniform = torch.ones_like(gt)
    opposite = gt.max() - gt
    losses = [saliency_loss(p, gt)[0].item() for p in (gt, uniform, opposite)]
    assert losses[0] < losses[1] < losses[2]


def test_terms_are_scale_invariant() -> None:
    rng = np.random.default_rng(3)
    pred, gt = _t(rng.random((2, 6, 5))), _t(rng.random((2, 6, 5)))
    base = saliency_loss(pred, gt)[1]
    scaled = saliency_loss(pred * 250.0, gt * 0.01)[1]
    for key in ("kl", "cc", "sim"):
        assert scaled[key].item() == pytest.approx(base[key].item(), rel=1e-4), key


# --------------------------------------------------------------------------- edge cases


def _map(kind: str) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros(1, 3, 3)
    if kind == "one_hot":
        m = torch.zeros(1, 3, 3)
        m[0, 1, 2] = 1.0
        return m
    return torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(0)) + 0.1


@pytest.mark.parametrize("pred_kind", ["zero", "one_hot", "random"])
@pytest.mark.parametrize("gt_kind", ["zero", "one_hot", "random"])
def test_degenerate_maps_give_finite_loss_and_grads(pred_kind: str, gt_kind: str) -> None:
    pred = _map(pred_kind).requires_grad_(True)
    gt = _map(gt_kind)
    loss, terms = saliency_loss(pred, gt)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in terms.values())
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_all_zero_map_has_zero_cc_and_sim() -> None:
    """Documented: an all-zero map normalises to zeros, so its CC and SIM are 0."""
    zero, other = _map("zero"), _map("random")
    for a, b in ((zero, other), (other, zero), (zero, zero)):
        assert correlation(a, b).item() == 0.0
        assert similarity(a, b).item() == 0.0


def test_one_hot_target_kl_is_minus_log_of_pred_mass_there() -> None:
    """KL against a one-hot G is log(eps + 1/(P_k + eps)) ≈ −log P_k."""
    gt = _map("one_hot")
    pred = torch.arange(1.0, 10.0).reshape(1, 3, 3)  # P at [1, 2] = 6/45
    assert kl_divergence(pred, gt).item() == pytest.approx(-math.log(6 / 45), rel=1e-5)


# --------------------------------------------------------------------------- batch and weights


def test_batch_loss_is_the_mean_of_per_sample_losses() -> None:
    rng = np.random.default_rng(11)
    pred, gt = _t(rng.random((4, 5, 7))), _t(rng.random((4, 5, 7)) ** 4)
    loss, terms = saliency_loss(pred, gt)
    singles = [saliency_loss(pred[i : i + 1], gt[i : i + 1]) for i in range(4)]
    assert loss.item() == pytest.approx(np.mean([s[0].item() for s in singles]), rel=1e-5)
    for key in ("kl", "cc", "sim"):
        want = np.mean([s[1][key].item() for s in singles])
        assert terms[key].item() == pytest.approx(want, rel=1e-5), key
    # one sample's value does not depend on its batch neighbours
    shuffled = saliency_loss(pred[[2, 0, 3, 1]], gt[[2, 0, 3, 1]])[0]
    assert shuffled.item() == pytest.approx(loss.item(), rel=1e-6)


def test_trailing_dims_are_flattened() -> None:
    rng = np.random.default_rng(5)
    pred, gt = _t(rng.random((3, 4, 4))), _t(rng.random((3, 4, 4)))
    flat = saliency_loss(pred, gt)[0]
    chan = saliency_loss(pred[:, None], gt[:, None])[0]
    assert chan.item() == pytest.approx(flat.item(), rel=1e-6)


@pytest.mark.parametrize(("a1", "a2"), [(0.0, 0.0), (-0.1, -0.1), (0.7, -2.5), (-3.0, 1.5)])
def test_a1_a2_weight_cc_and_sim(a1: float, a2: float) -> None:
    rng = np.random.default_rng(2)
    pred, gt = _t(rng.random((2, 4, 6))), _t(rng.random((2, 4, 6)))
    kl, cc, sim = (f(pred, gt).mean().item() for f in (kl_divergence, correlation, similarity))
    loss = saliency_loss(pred, gt, LossConfig(a1=a1, a2=a2))[0].item()
    assert loss == pytest.approx(kl + a1 * cc + a2 * sim, rel=1e-5, abs=1e-6)


def test_half_precision_is_computed_in_float32() -> None:
    rng = np.random.default_rng(9)
    pred, gt = _t(rng.random((2, 8, 8))), _t(rng.random((2, 8, 8)))
    loss32, _ = saliency_loss(pred, gt)
    loss16, terms16 = saliency_loss(pred.half(), gt.bfloat16())
    assert loss16.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in terms16.values())
    assert loss16.item() == pytest.approx(loss32.item(), abs=1e-2)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"prediction \(1, 3, 3\) and target \(1, 3, 4\)"):
        saliency_loss(torch.ones(1, 3, 3), torch.ones(1, 3, 4))
