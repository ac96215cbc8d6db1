"""Saliency metrics against MATLAB reference values, hand computations, the plain MATLAB
transcriptions (``avrsp.metrics.plain``, the definition), invariants and edge cases.

Most tests run on both implementations (the ``impl`` fixture: ``fast`` is what
``avrsp.metrics`` exports, ``plain`` is ``avrsp.metrics.plain``); the "fast equals plain"
section checks that they agree to rounding, with the same random draws, on varied inputs.
The MIT1003 i210 tests need ``shared/data`` (skipped where absent); everything else runs on
maps made here, so CI without the shared folder still tests the metric logic.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from avrsp import metrics as M
from avrsp.errors import InputError
from avrsp.metrics import plain as P


@pytest.fixture(params=[pytest.param(M, id="fast"), pytest.param(P, id="plain")])
def impl(request):
    """The module under test: the fast exports of ``avrsp.metrics`` or the plain ones."""
    return request.param


def matlab_grid(top: float, step: float = 0.1) -> np.ndarray:
    """``0:step:top`` as MATLAB's AUC_Borji.m / AUC_shuffled.m cut it (ascending)."""
    return np.arange(math.floor(top / step * (1 + 1e-10)) + 1) * step


def normalized(sal: np.ndarray) -> np.ndarray:
    s = sal.astype(np.float64)
    return (s - s.min()) / (s.max() - s.min())


def random_case(seed: int, shape=(24, 32), n_fix: int = 15):
    """A smooth-ish prediction, a non-negative GT map, and a binary fixation map."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    pred = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (h / 4) ** 2)) + 0.2 * rng.random(shape)
    gt = np.exp(-((yy - cy - 2) ** 2 + (xx - cx + 3) ** 2) / (2 * (h / 5) ** 2))
    fix = np.zeros(shape, bool)
    fix[rng.integers(0, h, n_fix), rng.integers(0, w, n_fix)] = True
    return pred, gt, fix


def assert_same(a, b, atol: float = 1e-12, what: str = "") -> None:
    """Equal to ``atol``, NaN where the other is NaN."""
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=0, atol=atol, err_msg=what)


# ---------------------------------------------------------------------------------------
# MIT1003 i210: values computed by the benchmark's MATLAB code (REFERENCE.md)

REFERENCE = {
    "pred_judd": dict(
        cc=0.5064007923, sim=0.3185351762, kld=1.4527559489, nss=2.0425793822,
        auc_judd=0.8729486142, auc_borji=0.8699, auc_shuffled=0.6656,
    ),
    "pred_ittikoch": dict(
        cc=0.3129697603, sim=0.2113747206, kld=17.4214824472, nss=1.3818192659,
        auc_judd=0.2775079321, auc_borji=0.5829, auc_shuffled=0.5696,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def i210(shared_data):
    from PIL import Image
    from scipy.io import loadmat

    folder = shared_data / "mit1003-i210"

    def grey(name: str) -> np.ndarray:  # as MATLAB's imread: uint8 greyscale
        return np.asarray(Image.open(folder / name).convert("L"))

    return {
        "fixations": loadmat(folder / "fixations.mat")["fixations"],
        "fixation_map": grey("fixation_map.jpg"),
        "baseline": grey("center_baseline_500x500.jpg"),
        "pred_judd": grey("pred_judd.jpg"),
        "pred_ittikoch": grey("pred_ittikoch.jpg"),
    }


@pytest.mark.shared
@pytest.mark.parametrize("model", ["pred_judd", "pred_ittikoch"])
def test_deterministic_metrics_reproduce_matlab(i210, model, impl):
    sal, fix, fmap = i210[model], i210["fixations"], i210["fixation_map"]
    ref = REFERENCE[model]
    assert fix.shape == fmap.shape == sal.shape == (675, 1024) and fix.sum() == 259
    got = {
        "cc": impl.cc(sal, fmap),
        "sim": impl.sim(sal, fmap),
        "kld": impl.kld(sal, fmap),
        "nss": impl.nss(sal, fix),
        "auc_judd": impl.auc_judd(sal.astype(np.float64), fix, jitter=False),
    }
    for name, value in got.items():
        assert value == pytest.approx(ref[name], abs=1e-6), name
    # The batched path gives the same numbers.
    batch = impl.all_metrics(sal[None], fmap[None], fix[None], jitter=False)
    for name, value in got.items():
        assert batch[name][0] == pytest.approx(value, abs=1e-12), name


@pytest.mark.shared
def test_nss_uses_matlab_std_with_n_minus_1(i210, impl):
    # numpy's default std (ddof=0) gives 2.0425808597 (REFERENCE.md); MATLAB's gives ...793822.
    sal, fix = i210["pred_judd"].astype(np.float64), i210["fixations"] > 0
    ddof0 = ((sal - sal.mean()) / sal.std())[fix].mean()
    assert ddof0 == pytest.approx(2.0425808597, abs=1e-9)
    assert abs(impl.nss(sal, fix) - ddof0) > 1e-6


@pytest.mark.shared
def test_auc_judd_with_jitter_matches_reference_spread(i210, impl):
    fix = i210["fixations"]
    # Itti-Koch: 185 of 259 fixations on exact zeros; MATLAB: about 0.578 ± 0.01.
    ik = [impl.auc_judd(i210["pred_ittikoch"], fix, seed=s) for s in range(32)]
    assert np.mean(ik) == pytest.approx(0.578, abs=0.01)
    assert np.std(ik) > 0.002  # the jitter really is random per seed
    # A smooth map has no ties: jitter barely moves it.
    judd = impl.auc_judd(i210["pred_judd"], fix, seed=0)
    assert judd == pytest.approx(REFERENCE["pred_judd"]["auc_judd"], abs=0.005)


@pytest.mark.shared
@pytest.mark.parametrize("model", ["pred_judd", "pred_ittikoch"])
def test_random_aucs_land_near_matlab(i210, model, impl):
    sal, fix = i210[model], i210["fixations"]
    # REFERENCE.md does not name the "other" map of its shuffled AUC. The folder's only
    # candidate is the centre baseline (MIT's FIXATIONHISTOGRAM, "average of fixations over
    # other images"); binarised at half its range it reproduces both listed values, while
    # "baseline > 0" (98.8% of pixels) gives AUC-Borji-like 0.87 / 0.58. See METRICS.md.
    other = M.imresize(i210["baseline"], fix.shape) >= 128
    ref = REFERENCE[model]
    assert impl.auc_borji(sal, fix) == pytest.approx(ref["auc_borji"], abs=0.01)
    assert impl.auc_shuffled(sal, fix, other) == pytest.approx(ref["auc_shuffled"], abs=0.01)


# ---------------------------------------------------------------------------------------
# Hand-computed values on tiny maps


def test_hand_computed_values(impl):
    pred = np.array([[0.0, 0.0], [0.0, 4.0]])
    fix = np.array([[0, 0], [0, 1]])
    # mean 1, MATLAB std sqrt((1 + 1 + 1 + 9) / 3) = 2  ->  (4 - 1) / 2
    assert impl.nss(pred, fix) == pytest.approx(1.5, abs=1e-15)

    a = np.array([[0.0, 1.0], [1.0, 2.0]])  # -> [0 .25; .25 .5]
    b = np.array([[0.0, 2.0], [0.0, 2.0]])  # -> [0 .5; 0 .5]
    assert impl.sim(a, b) == pytest.approx(0.75, abs=1e-15)

    p = np.ones((2, 2))
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    eps = 2.0**-52
    assert impl.kld(p, g) == pytest.approx(2 * 0.5 * math.log(eps + 0.5 / (0.25 + eps)), abs=1e-15)

    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[1.0, 3.0], [2.0, 5.0]])
    assert impl.cc(x, y) == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], abs=1e-14)

    # AUC-Judd: thresholds 0.8 then 0.35 -> ROC (0,0) (0,.5) (.5,1) (1,1) -> 0.875
    s = np.array([[0.1, 0.4, 0.35, 0.8]])
    f = np.array([[0, 0, 1, 1]])
    assert impl.auc_judd(s, f, jitter=False) == pytest.approx(0.875, abs=1e-15)
    # A map without near-ties: the jitter cannot reorder anything.
    assert impl.auc_judd(s, f, jitter=True) == pytest.approx(0.875, abs=1e-15)


def test_single_fixation_auc_judd_at_extremes(impl):
    s = np.arange(20.0).reshape(4, 5)
    top = np.zeros_like(s)
    top[3, 4] = 1  # the unique maximum: every other pixel below -> area 1
    bottom = np.zeros_like(s)
    bottom[0, 0] = 1  # the unique minimum: ROC straight to (1, 1) -> chance
    assert impl.auc_judd(s, top, jitter=False) == 1.0
    assert impl.auc_judd(s, bottom, jitter=False) == 0.5
    assert impl.nss(s, top) == pytest.approx((19 - s.mean()) / s.std(ddof=1), abs=1e-14)


def test_shuffled_auc_perfect_and_inverted_separation(impl):
    pred = np.zeros((6, 6))
    fix = np.zeros((6, 6), bool)
    fix[2:4, 2:4] = True
    other = np.zeros((6, 6), bool)
    other[0, :] = True
    pred[fix] = 1.0
    assert impl.auc_shuffled(pred, fix, other, seed=3) == 1.0
    assert impl.auc_shuffled(1.0 - pred, fix, other, seed=3) == 0.0


# ---------------------------------------------------------------------------------------
# Against the MATLAB transcriptions (avrsp.metrics.plain) on generated maps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_judd_matches_transcription_with_ties(seed):
    rng = np.random.default_rng(seed)
    sal = rng.integers(0, 6, size=(20, 30)).astype(np.uint8)  # heavy ties, as 8-bit maps
    fix = rng.random((20, 30)) < 0.1
    assert M.auc_judd(sal, fix, jitter=False) == pytest.approx(
        P.auc_judd(sal, fix, jitter=False), abs=1e-12
    )


def test_auc_judd_jitter_has_matlab_distribution_on_ties(impl):
    # Random ties broken at random: the mean over seeds matches the transcription with
    # every pixel jittered (MATLAB's procedure) drawn from another generator.
    rng = np.random.default_rng(7)
    sal = rng.integers(0, 3, size=(30, 30)).astype(np.float64)
    fix = rng.random((30, 30)) < 0.08
    ours = [impl.auc_judd(sal, fix, seed=s) for s in range(60)]
    theirs = [P.auc_judd(sal + rng.random(sal.shape) / 1e7, fix, jitter=False) for _ in range(60)]
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.01)
    assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.35)


def test_auc_shuffled_matches_transcription_when_all_others_are_used(impl):
    # With Nf >= #other, MATLAB's randperm takes every other pixel: deterministic.
    pred, _, fix = random_case(4, (16, 16), n_fix=60)
    other = np.zeros((16, 16), bool)
    other[np.random.default_rng(5).integers(0, 16, 40), np.arange(40) % 16] = True
    S = normalized(pred).ravel()
    Sth, oth = S[fix.ravel()], S[other.ravel()]
    assert oth.size <= Sth.size
    grid = matlab_grid(max(Sth.max(), oth.max()))  # MATLAB's grid, cut at the top value
    expected = P.split_roc_area(Sth, np.tile(oth[:, None], (1, 3)), grid)
    assert impl.auc_shuffled(pred, fix, other, n_splits=7) == pytest.approx(expected, abs=1e-12)


def test_auc_shuffled_on_8bit_values_that_hit_the_thresholds_exactly(impl):
    # uint8 maps normalise to k/255; 51, 102, 153 and 204 give exactly MATLAB's 0.2, 0.4,
    # 0.6 and 0.8 (= 2*0.1 ...): ">=" must count them at their threshold, as MATLAB does.
    rng = np.random.default_rng(23)
    pred = rng.choice(np.array([0, 51, 102, 153, 204, 255, 50, 52], np.uint8), size=(16, 16))
    fix = rng.random((16, 16)) < 0.3
    other = np.zeros((16, 16), bool)
    other.ravel()[rng.choice(256, 30, replace=False)] = True
    S = normalized(pred).ravel()
    Sth, oth = S[fix.ravel()], S[other.ravel()]
    assert oth.size <= Sth.size and np.isin(S, np.arange(11) * 0.1).any()
    grid = matlab_grid(max(Sth.max(), oth.max()))
    expected = P.split_roc_area(Sth, np.tile(oth[:, None], (1, 2)), grid)
    assert impl.auc_shuffled(pred, fix, other, n_splits=5) == pytest.approx(expected, abs=1e-12)
    # The prediction's dtype does not matter (it is read as float64 without a copy).
    for dtype in (np.float32, np.float64, np.int64):
        assert impl.auc_shuffled(pred.astype(dtype), fix, other, n_splits=5) == pytest.approx(
            expected, abs=1e-12
        )


def test_auc_borji_and_shuffled_agree_with_transcription_in_distribution(impl):
    # MATLAB's sampling (pixel indices with replacement, randperm without), then the
    # transcribed ROC loop; the library draws per-interval counts instead.
    pred, _, fix = random_case(8, (30, 40), n_fix=40)
    S = normalized(pred).ravel()
    Sth = S[fix.ravel()]
    grid = P.step_thresholds(0.1)
    rng = np.random.default_rng(9)
    borji_ref = P.split_roc_area(Sth, S[rng.integers(0, S.size, (Sth.size, 800))], grid)
    assert impl.auc_borji(pred, fix, n_splits=800) == pytest.approx(borji_ref, abs=0.01)
    other = np.random.default_rng(10).random((30, 40)) < 0.3
    ind = np.flatnonzero(other)
    n = min(Sth.size, ind.size)
    perms = np.stack([S[ind[rng.permutation(ind.size)[:n]]] for _ in range(800)], axis=1)
    sauc_ref = P.split_roc_area(Sth, perms, grid)
    assert impl.auc_shuffled(pred, fix, other, n_splits=800) == pytest.approx(sauc_ref, abs=0.01)


def test_split_roc_area_is_the_matlab_loop():
    # Two fixated values, two negatives per split; thresholds 0, .5, 1 (swept downwards):
    # split 1 negatives (.1, .6): ROC (0,0) (0,0) (.5,.5) (1,1) (1,1) -> 0.5
    # split 2 negatives (0, 0):   ROC (0,0) (0,0) (0,.5)  (1,1) (1,1) -> 0.75
    Sth = np.array([0.2, 0.9])
    randfix = np.array([[0.1, 0.0], [0.6, 0.0]])
    assert P.split_roc_area(Sth, randfix, np.array([0.0, 0.5, 1.0])) == pytest.approx(0.625)


# ---------------------------------------------------------------------------------------
# Invariants


def test_cc_and_nss_match_extended_precision_sums(impl):
    # CC / NSS come from sums over the normalised map (fast) or MATLAB's z-scores (plain);
    # check them against the textbook formulas in 80-bit long double, on maps with a large
    # offset (cancellation bait).
    rng = np.random.default_rng(25)
    pred, gt, fix = random_case(26, (90, 160), n_fix=40)
    pred32 = (pred * 1000 + 5e4).astype(np.float32)
    gt8 = np.round(gt * 255 * (gt > 0.2)).astype(np.uint8)
    gtf = gt + 7.0 + rng.random(gt.shape) * 1e-3
    ld = np.longdouble

    def cc_ld(p, g):
        a, b = p.astype(ld).ravel(), g.astype(ld).ravel()
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    a = pred32.astype(ld).ravel()
    z = (a - a.mean()) / np.sqrt(((a - a.mean()) ** 2).sum() / (a.size - 1))
    assert impl.nss(pred32, fix) == pytest.approx(float(z[fix.ravel()].mean()), abs=1e-13)
    for g in (gt8, gtf):
        assert impl.cc(pred32, g) == pytest.approx(cc_ld(pred32, g), abs=1e-13)
        assert impl.cc(g, pred32) == pytest.approx(cc_ld(pred32, g), abs=1e-13)


def test_invariants_on_generated_maps(impl):
    pred, gt, fix = random_case(11)
    assert impl.cc(pred, gt) == pytest.approx(impl.cc(gt, pred), abs=1e-14)
    assert impl.cc(3 * pred + 5, gt) == pytest.approx(impl.cc(pred, gt), abs=1e-12)
    assert impl.nss(3 * pred + 5, fix) == pytest.approx(impl.nss(pred, fix), abs=1e-12)
    assert impl.sim(3 * pred + 5, gt) == pytest.approx(impl.sim(pred, gt), abs=1e-12)
    assert impl.sim(pred, pred) == pytest.approx(1.0, abs=1e-12)
    assert impl.cc(pred, pred) == pytest.approx(1.0, abs=1e-12)
    assert impl.kld(pred, pred) == pytest.approx(0.0, abs=1e-12)
    assert impl.kld(pred, gt) > 0
    assert impl.kld(7 * pred, gt) == pytest.approx(impl.kld(pred, gt), abs=1e-12)
    # AUC-Judd depends only on the ordering of the values.
    judd = impl.auc_judd(pred, fix, jitter=False)
    assert impl.auc_judd(np.exp(4 * pred), fix, jitter=False) == pytest.approx(judd, abs=1e-12)
    assert 0 <= judd <= 1 and 0 <= impl.auc_borji(pred, fix) <= 1
    # Random maps score at chance.
    noise = np.random.default_rng(12).random((60, 60))
    many = np.random.default_rng(13).random((60, 60)) < 0.05
    assert impl.auc_borji(noise, many) == pytest.approx(0.5, abs=0.05)
    assert impl.auc_judd(noise, many) == pytest.approx(0.5, abs=0.05)


def test_seeds_reproduce_and_differ(impl):
    pred, _, fix = random_case(14)
    assert impl.auc_borji(pred, fix, seed=1) == impl.auc_borji(pred, fix, seed=1)
    assert impl.auc_borji(pred, fix, seed=1) != impl.auc_borji(pred, fix, seed=2)


def test_random_streams_are_unchanged(impl):
    # Scores computed before the metrics were split into plain and fast versions: the
    # documented streams (plain.py) are the ones stored results were made with.
    pred, gt, fix = random_case(30, (30, 40), n_fix=25)
    tied = np.round(pred * 6).astype(np.uint8)  # 8 values: the jitter decides the ties
    other = np.random.default_rng(31).random((30, 40)) < 0.1
    assert impl.auc_judd(tied, fix, seed=7) == pytest.approx(0.5093276595744681, abs=1e-12)
    assert impl.auc_borji(pred, fix, seed=7) == pytest.approx(0.5120720000000002, abs=1e-12)
    assert impl.auc_shuffled(pred, fix, other, seed=7) == pytest.approx(0.496744, abs=1e-12)
    batch = impl.all_metrics(
        np.stack([tied, tied[::-1]]), np.stack([gt, gt]), np.stack([fix, fix]), other,
        seed=7, index_offset=5,
    )  # fmt: skip
    assert batch["auc_judd"][1] == pytest.approx(0.5234893617021277, abs=1e-12)
    assert batch["auc_borji"][1] == pytest.approx(0.519504, abs=1e-12)
    assert batch["auc_shuffled"][1] == pytest.approx(0.539344, abs=1e-12)


def test_batched_equals_single_map_functions_and_is_chunk_invariant(impl):
    cases = [random_case(s) for s in range(5)]
    preds = np.stack([c[0] for c in cases])
    gts = np.stack([c[1] for c in cases])
    fixs = np.stack([c[2] for c in cases])
    other = fixs.any(axis=0)
    full = impl.all_metrics(preds, gts, fixs, other, seed=4)
    assert set(full) == set(M.METRIC_NAMES)
    p0, g0, f0 = cases[0]
    single = {
        "cc": impl.cc(p0, g0),
        "nss": impl.nss(p0, f0),
        "sim": impl.sim(p0, g0),
        "kld": impl.kld(p0, g0),
        "auc_judd": impl.auc_judd(p0, f0, seed=4),
        "auc_borji": impl.auc_borji(p0, f0, seed=4),
        "auc_shuffled": impl.auc_shuffled(p0, f0, other, seed=4),
    }
    for name, value in single.items():
        assert full[name][0] == pytest.approx(value, abs=1e-12), name
    tail = impl.all_metrics(preds[2:], gts[2:], fixs[2:], other, seed=4, index_offset=2)
    for name in M.METRIC_NAMES:
        np.testing.assert_array_equal(tail[name], full[name][2:])
    if impl is M:  # only the fast version resizes in chunks
        chunked = M.all_metrics(preds, gts, fixs, other, seed=4, chunk=2)
        for name in M.METRIC_NAMES:
            np.testing.assert_array_equal(chunked[name], full[name])
    assert "auc_shuffled" not in impl.all_metrics(preds, gts, fixs)


def test_batched_auc_judd_equals_single_map_on_ties_and_dtypes_agree(impl):
    # 8-bit predictions: heavy ties, so the jitter decides; the fast batch shares one pixel
    # selection between AUC-Judd and AUC-Borji and must still jitter the same pixels.
    rng = np.random.default_rng(24)
    preds = rng.integers(0, 256, size=(4, 30, 40)).astype(np.uint8)
    gts = rng.integers(0, 256, size=(4, 30, 40)).astype(np.uint8) * (rng.random((4, 30, 40)) < 0.4)
    fixs = rng.random((4, 30, 40)) < 0.05
    other = rng.random((30, 40)) < 0.2
    for i in range(4):
        batch = impl.all_metrics(preds[i : i + 1], gts[i : i + 1], fixs[i : i + 1], other, seed=i)
        assert batch["auc_judd"][0] == impl.auc_judd(preds[i], fixs[i], seed=i)
    # float32 (as networks write maps), float64 and uint8 inputs score alike.
    full = impl.all_metrics(preds, gts, fixs, other, seed=5)
    for dtype in (np.float32, np.float64):
        alt = impl.all_metrics(preds.astype(dtype), gts.astype(dtype), fixs, other, seed=5)
        for name in M.METRIC_NAMES:
            np.testing.assert_allclose(alt[name], full[name], rtol=0, atol=1e-13, err_msg=name)


def test_torch_tensors_are_accepted(impl):
    pred, gt, _ = random_case(15)
    assert impl.cc(torch.from_numpy(pred), torch.from_numpy(gt)) == impl.cc(pred, gt)


# ---------------------------------------------------------------------------------------
# The fast versions equal the plain ones


def varied_batch(seed: int):
    """A batch of 3 frames with a randomly chosen prediction dtype and size, GT map kind,
    number of fixations (one, on the border, many), and "other" map layout."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(8, 40)), int(rng.integers(8, 50))
    seeds, n_fix = rng.integers(1 << 30, size=3), rng.integers(1, 40, size=3)
    cases = [random_case(int(s), (h, w), int(n)) for s, n in zip(seeds, n_fix, strict=True)]
    preds = np.stack([c[0] for c in cases])
    gts = np.stack([c[1] for c in cases])
    fixs = np.stack([c[2] for c in cases])
    fixs[0] = False
    fixs[0, 0, w - 1] = True  # one fixation, in a corner
    fixs[1, -1, :] = True  # the whole bottom row
    kind = seed % 4
    if kind == 1:  # 8-bit prediction with heavy ties (the jitter decides)
        preds = np.round(preds * 5).astype(np.uint8)
    elif kind == 2:  # float32, as a network writes maps
        preds = preds.astype(np.float32)
    elif kind == 3:  # negative values: fine except for KLD
        preds = preds - 0.5
    if seed % 3 == 1:  # a prediction of another size: resized first (up or down)
        preds = M.imresize(preds, (max(2, h // 2), w + 7)).astype(preds.dtype)
    if seed % 2:  # DHF1K-like 8-bit GT map with zeros
        gts = np.round(255 * gts * (gts > 0.3)).astype(np.uint8)
    other = fixs.any(axis=0) if seed % 3 else rng.random(fixs.shape) < 0.1
    return preds, gts, fixs, other


def both(call) -> list:
    """``call(fast)`` and ``call(plain)``; where one raises InputError, both must, alike."""
    out = []
    for impl in (M, P):
        try:
            out.append(call(impl))
        except InputError as e:
            out.append(e)
    if any(isinstance(x, InputError) for x in out):
        assert str(out[0]) == str(out[1]), out
    return out


def assert_results_same(fast, plain, what: str) -> None:
    """Two results (a float, an all_metrics dict, or the InputError that both raised) agree."""
    if isinstance(fast, dict):
        assert set(fast) == set(plain), what
        for name in fast:
            assert_same(fast[name], plain[name], what=f"{what}: {name}")
    elif not isinstance(fast, InputError):
        assert_same(fast, plain, what=what)


def assert_both_same(call, what: str) -> None:
    """The fast and the plain version give the same results (or the same error)."""
    assert_results_same(*both(call), what)


def _batch(impl, *args, **kwargs):
    return impl.all_metrics(*args, **kwargs)


def single_map_calls(p, g, f, o, jitter: bool, seed: int) -> dict:
    """Each single-map function on one frame, as ``call(module)``."""
    return {
        "cc": lambda m: m.cc(p, g),
        "nss": lambda m: m.nss(p, f),
        "sim": lambda m: m.sim(p, g),
        "kld": lambda m: m.kld(p, g),
        "auc_judd": lambda m: m.auc_judd(p, f, jitter=jitter, seed=seed),
        "auc_judd_no_jitter": lambda m: m.auc_judd(p, f, jitter=False),
        "auc_borji": lambda m: m.auc_borji(p, f, n_splits=10, step=0.05, seed=seed),
        "auc_shuffled": lambda m: m.auc_shuffled(p, f, o, n_splits=10, step=0.05, seed=seed),
    }


@pytest.mark.parametrize("seed", range(12))
def test_fast_equals_plain_on_varied_inputs(seed):
    preds, gts, fixs, other = varied_batch(seed)
    options = dict(
        jitter=seed % 5 != 0,
        n_splits=(1, 10, 100)[seed % 3],
        step=(0.1, 0.05, 0.3)[seed % 3],
        seed=seed,
        index_offset=seed * 7,
    )
    batch = partial(_batch, preds=preds, gt_maps=gts, fixations=fixs, other=other, **options)
    fast, plain = both(batch)
    if isinstance(fast, InputError):
        # KLD refuses negative maps (also those bicubic resizing undershoots to), in both.
        assert "non-negative" in str(fast)
    else:
        assert_results_same(fast, plain, "batch")
    # The single-map functions, frame by frame (each on the streams of frame 0).
    for i in range(len(preds)):
        o = other if other.ndim == 2 else other[i]
        calls = single_map_calls(preds[i], gts[i], fixs[i], o, options["jitter"], seed + i)
        for name, call in calls.items():
            assert_both_same(call, f"{name}, frame {i}")


def test_fast_equals_plain_on_edge_cases():
    _, gt, fix = random_case(27, (12, 16), n_fix=10)
    h, w = gt.shape
    const = np.full(gt.shape, 0.7)
    zero = np.zeros(gt.shape)
    ramp = np.arange(h * w, dtype=np.float64).reshape(h, w)
    one = np.zeros(gt.shape, bool)
    one[h - 1, 0] = True  # one fixation, on the border
    border = np.zeros(gt.shape, bool)
    border[0, :] = border[:, -1] = True
    everything = np.ones(gt.shape, bool)  # AUC-Judd: no negatives
    empty = np.zeros(gt.shape, bool)
    # constant, all-zero, smooth, tied, and an 8-bit map of another size (resized first)
    preds = [const, zero, ramp, np.round(ramp / 40), ramp[::3, ::2].astype(np.uint8)]
    # blurred, all-zero, constant non-zero, 8-bit
    gts = [gt, zero, np.full(gt.shape, 3.0), np.round(gt * 255).astype(np.uint8)]
    fixations = [fix, one, border, everything, empty]
    others = [fix, empty, everything, one]
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            f = fixations[(i + j) % len(fixations)]
            o = others[(i * j) % len(others)]
            for name, call in single_map_calls(p, g, f, o, jitter=True, seed=i).items():
                assert_both_same(call, f"{name}, pred {i}, gt {j}")
            batch = partial(_batch, preds=p[None], gt_maps=g[None], fixations=f[None], other=o)
            assert_both_same(partial(batch, n_splits=5, seed=j), f"batch, pred {i}, gt {j}")


# ---------------------------------------------------------------------------------------
# Resizing (MATLAB imresize, bicubic with antialiasing)


def test_imresize_identity_constant_and_mirror_symmetry():
    x = np.random.default_rng(16).random((7, 9))
    np.testing.assert_array_equal(M.imresize(x, (7, 9)), x)
    np.testing.assert_allclose(M.imresize(np.full((5, 6), 3.0), (13, 4)), 3.0, atol=1e-12)
    up = M.imresize(x, (15, 20))
    np.testing.assert_allclose(M.imresize(x[::-1, ::-1], (15, 20)), up[::-1, ::-1], atol=1e-12)


@pytest.mark.parametrize(("src", "dst"), [((20, 30), (45, 70)), ((60, 90), (20, 36))])
def test_imresize_matches_torch_antialiased_bicubic_away_from_borders(src, dst):
    # torch's antialiased bicubic uses the same kernel (a = -0.5), centres and widening;
    # only the border handling differs (renormalised taps, MATLAB mirrors).
    x = np.random.default_rng(17).random(src)
    ours = M.imresize(x, dst)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x)[None, None], size=dst, mode="bicubic", antialias=True
    )[0, 0].numpy()
    m = 4
    np.testing.assert_allclose(ours[m:-m, m:-m], ref[m:-m, m:-m], atol=1e-10)


def test_predictions_of_another_size_are_resized_first(impl):
    pred, gt, fix = random_case(18, (24, 32))
    small = pred[::2, ::2]
    big = M.imresize(small, gt.shape)
    assert impl.cc(small, gt) == pytest.approx(impl.cc(big, gt), abs=1e-14)
    assert impl.nss(small, fix) == pytest.approx(impl.nss(big, fix), abs=1e-14)
    assert impl.auc_judd(small, fix, jitter=False) == impl.auc_judd(big, fix, jitter=False)
    # uint8 maps stay integer-valued through the resize, as MATLAB's imresize keeps class.
    u8 = M.imresize((pred * 255).astype(np.uint8), (40, 50))
    np.testing.assert_array_equal(u8, np.round(u8))
    assert u8.min() >= 0 and u8.max() <= 255


# ---------------------------------------------------------------------------------------
# Edge cases


def test_constant_and_all_zero_maps(impl):
    _, gt, fix = random_case(19)
    const = np.full(gt.shape, 0.7)
    zero = np.zeros(gt.shape)
    other = np.ones(gt.shape, bool)
    for value in (
        impl.cc(const, gt),
        impl.nss(const, fix),
        impl.sim(const, gt),
        impl.auc_judd(const, fix, jitter=False),
        impl.auc_borji(const, fix),
        impl.auc_shuffled(const, fix, other),
        impl.cc(zero, gt),
        impl.cc(gt, const),
        impl.sim(gt, const),
    ):
        assert math.isnan(value)
    # Jitter turns a constant map into noise: chance level.
    big_fix = np.random.default_rng(20).random((50, 50)) < 0.1
    assert impl.auc_judd(np.full((50, 50), 0.7), big_fix) == pytest.approx(0.5, abs=0.1)
    # "A zero map will remain a zero map" (similarity.m, KLdiv.m).
    assert impl.sim(zero, gt) == 0.0
    assert impl.sim(gt, zero) == 0.0
    q = gt.ravel() / gt.sum()
    eps = 2.0**-52
    assert impl.kld(zero, gt) == pytest.approx(np.sum(q * np.log(eps + q / eps)), rel=1e-12)
    assert impl.kld(gt, zero) == 0.0


def test_no_fixations_give_nan_and_border_fixations_count(impl):
    pred, gt, _ = random_case(21)
    none = np.zeros(gt.shape, bool)
    for value in (
        impl.nss(pred, none),
        impl.auc_judd(pred, none),
        impl.auc_borji(pred, none),
        impl.auc_shuffled(pred, none, np.ones(gt.shape)),
        impl.auc_shuffled(pred, np.ones(gt.shape), none),  # empty "other" map
    ):
        assert math.isnan(value)
    h, w = gt.shape
    corners = M.points_to_fixation_map([(0, 0), (w - 1, h - 1), (w - 1, 0)], gt.shape)
    assert corners.sum() == 3 and corners[0, 0] and corners[h - 1, w - 1] and corners[0, w - 1]
    z = (pred - pred.mean()) / pred.std(ddof=1)
    expected = (z[0, 0] + z[h - 1, w - 1] + z[0, w - 1]) / 3
    assert impl.nss(pred, corners) == pytest.approx(expected, abs=1e-13)


def test_points_to_fixation_map():
    # The project's pixel convention (avrsp.pixels, docs/DATA.md): pixel c covers [c, c+1),
    # so (x, y) fixates pixel (⌊x⌋, ⌊y⌋) — 0.6 is in pixel 0, 3.9 in pixel 3.
    fm = M.points_to_fixation_map(np.array([[1.2, 0.0], [0.6, 0.4], [3.9, 2.99]]), (3, 4))
    expected = np.zeros((3, 4), bool)
    expected[0, 1] = expected[0, 0] = expected[2, 3] = True
    np.testing.assert_array_equal(fm, expected)
    # Native points at another resolution: (x, y) in a 30x40 frame → (⌊x/10⌋, ⌊y/10⌋).
    native = M.points_to_fixation_map([(9.99, 0.0), (39.9, 29.9)], (3, 4), frame_size=(30, 40))
    assert native[0, 0] and native[2, 3] and native.sum() == 2
    with pytest.raises(InputError, match="outside the 30x40 frame"):
        M.points_to_fixation_map([(40.0, 1.0)], (3, 4), frame_size=(30, 40))
    assert not M.points_to_fixation_map(np.empty((0, 2)), (3, 4)).any()
    with pytest.raises(InputError, match="outside the 3x4 map"):
        M.points_to_fixation_map([(4, 0)], (3, 4))
    with pytest.raises(InputError, match=r"\[K, 2\]"):
        M.points_to_fixation_map([1, 2, 3], (3, 4))


def test_bad_inputs_raise_input_error(impl):
    pred, gt, fix = random_case(22)
    bad = pred.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="pred: contains NaN"):
        impl.cc(bad, gt)
    with pytest.raises(InputError, match="gt_map: contains NaN"):
        impl.sim(pred, np.where(gt > 0.5, np.nan, gt))
    with pytest.raises(InputError, match="contains inf"):
        impl.nss(np.where(pred > 0.5, np.inf, pred), fix)
    with pytest.raises(InputError, match="preds: contains NaN"):
        impl.all_metrics(bad[None], gt[None], fix[None])
    with pytest.raises(InputError, match="batch shapes differ"):
        impl.all_metrics(pred[None], gt[None], fix[None, :-1])
    with pytest.raises(InputError, match="2-D"):
        impl.auc_judd(pred[None], fix)
    with pytest.raises(InputError, match="non-negative"):
        impl.kld(pred - 1, gt)
    with pytest.raises(InputError, match="other_fixations: shape"):
        impl.auc_shuffled(pred, fix, fix[:-1])
    with pytest.raises(InputError, match="n_splits"):
        impl.auc_borji(pred, fix, n_splits=0)
    # The same checks on the other arguments and in a batch (one message for both versions).
    with pytest.raises(InputError, match="gt_maps: contains inf"):
        impl.all_metrics(pred[None], np.where(gt > 0.5, np.inf, gt)[None], fix[None])
    with pytest.raises(InputError, match="fixations: contains NaN"):
        impl.auc_judd(pred, np.where(fix, np.nan, 0.0))
    with pytest.raises(InputError, match="preds: contains NaN"):  # checked before resizing
        impl.all_metrics(bad[None, 1::2], gt[None], fix[None])
    with pytest.raises(InputError, match="other: shape"):
        impl.all_metrics(pred[None], gt[None], fix[None], fix[:-1])
    with pytest.raises(InputError, match="step"):
        impl.auc_borji(pred, fix, step=0)
