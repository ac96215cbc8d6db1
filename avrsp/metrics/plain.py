"""The seven saliency metrics written out as the MATLAB code computes them: the definition.

One function per metric, to be read beside its file of the MIT saliency benchmark's MATLAB
code (``code_forMetrics``; DHF1K's evaluation code is a copy): :func:`cc` (``CC.m``),
:func:`nss` (``NSS.m``), :func:`sim` (``similarity.m``), :func:`kld` (``KLdiv.m``),
:func:`auc_judd` (``AUC_Judd.m``, DHF1K's copy), :func:`auc_borji` (``AUC_Borji.m``) and
:func:`auc_shuffled` (``AUC_shuffled.m``), with MATLAB's variable names; :func:`imresize`
is MATLAB's ``imresize`` (bicubic, antialiased), which every one of them applies to the
prediction first; :func:`all_metrics` scores a batch frame by frame with the same code.
These are slow (a full pass over the map per threshold). ``avrsp.metrics`` exports the fast
versions (``fast.py``), tested equal to these to rounding, with the same random draws.

Where this differs from the MATLAB text, on purpose (``docs/METRICS.md`` gives reasons):

* **Inputs.** Float64 throughout. Fixation maps count where they are nonzero. NaN or inf
  raises :class:`~avrsp.errors.InputError`, so do negative maps in KLD (MATLAB would take
  the log of a negative number). ``im2double`` is not applied: CC, SIM and KLD do not
  change when a map is scaled.
* **Undefined values are NaN**, never a warning, where MATLAB divides 0 by 0: a constant
  prediction (CC, NSS, SIM, the AUCs), a constant non-zero ground truth (CC, SIM), no
  fixations (NSS, the AUCs), every pixel fixated (AUC-Judd), an empty "other" map
  (shuffled AUC); and AUC-Judd on a constant map without jitter.
* **AUC-Borji / shuffled AUC sweep the whole grid** ``0:step:1``; MATLAB stops at
  ``max([Sth; curfix])``, but thresholds above every value only add ROC points at (0, 0),
  i.e. no area.
* **Random streams.** MATLAB's global ``rand`` / ``randi`` / ``randperm`` cannot be
  reproduced; each random metric takes an integer ``seed`` and draws from :func:`stream`:
  frame ``i`` of a batch (0 for the single-map functions) uses
  ``default_rng(SeedSequence(seed, spawn_key=(i, m)))`` with ``m`` 1 for AUC-Judd, 2 for
  AUC-Borji and 3 for shuffled AUC, so a frame's score depends neither on how a video is
  split into batches nor on which other metrics are computed. From that generator:

  - AUC-Judd: one ``random()`` per *candidate* pixel, in pixel (row-major) order, times
    ``1e-7``. MATLAB jitters every pixel; a pixel more than twice the jitter away from
    every fixated value compares the same with every threshold whatever its jitter, so
    only the others draw. Candidates are the pixels whose bin ``floor(s · 2**14)`` of the
    normalised map ``s`` lies in the bins spanned by ``[t − 2e-7, t + 2e-7]`` for a
    fixated value ``t`` (all pixels of a constant map); see :func:`_jitter`.
  - AUC-Borji: ``multinomial(Nfixations, share, size=Nsplits)``, the number of each
    split's random pixels in each threshold interval (drawing pixels with replacement
    puts a multinomial number in each interval; only those numbers enter the ROC).
  - Shuffled AUC: ``multivariate_hypergeometric(counts, Nothers, size=Nsplits)``, the same
    for MATLAB's ``randperm`` (drawing without replacement).

  The scores have MATLAB's distribution; the streams are what ``fast.py`` can draw
  without touching every pixel, and fixing them here makes both implementations equal
  draw for draw.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from avrsp.errors import InputError
from avrsp.metrics.inputs import as_array, batch_inputs, check_splits

#: MATLAB's ``eps`` (double precision machine epsilon, 2**-52), used by ``KLdiv.m``.
EPS = float(np.finfo(np.float64).eps)
#: Amplitude of AUC-Judd's jitter: ``rand(size(map)) / 10000000`` in ``AUC_Judd.m``.
JUDD_JITTER = 1e-7
#: Bins of the normalised map that decide which pixels draw a jitter (AUC-Judd).
JITTER_BINS = 1 << 14
#: Keys of :func:`all_metrics`' result, in the order of the published tables.
METRIC_NAMES = ("cc", "nss", "sim", "kld", "auc_judd", "auc_borji", "auc_shuffled")
#: Sub-stream id of each random metric (see :func:`stream`).
STREAMS = {"auc_judd": 1, "auc_borji": 2, "auc_shuffled": 3}


def stream(seed: int, frame: int, metric: str) -> np.random.Generator:
    """The random generator of ``metric`` (a key of :data:`STREAMS`) for frame ``frame``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(frame, STREAMS[metric])))


def step_thresholds(step: float) -> np.ndarray:
    """Octave's ``0:step:1`` (elements ``k·step``, the last clipped to the limit)."""
    if not (step > 0 and math.isfinite(step)):
        raise InputError(f"step: expected a positive number, got {step}")
    n = math.floor(1.0 / step * (1 + 1e-10))
    return np.minimum(np.arange(n + 1, dtype=np.float64) * step, 1.0)


# ---------------------------------------------------------------------------------------
# MATLAB's imresize (bicubic, antialiased when shrinking)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB's ``'bicubic'``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


@lru_cache(maxsize=32)
def _resize_matrix(in_len: int, out_len: int) -> np.ndarray:
    """Dense ``[out_len, in_len]`` weights of MATLAB's bicubic ``imresize`` along one axis.

    Output pixel ``x`` (1-based) samples the input at ``u = x / s + (1 − 1/s) / 2`` with
    ``s = out_len / in_len``; when shrinking (``s < 1``) the kernel is widened by ``1/s``
    (antialiasing, MATLAB's default). Weights are normalised to sum to 1 and taps beyond the
    border are mirrored (``[1..n, n..1]``), as MATLAB does.
    """
    scale = out_len / in_len
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), cols.ravel()), weights.ravel())
    return mat


def imresize(maps: Any, shape: tuple[int, int]) -> np.ndarray:
    """``imresize(map, [H W])`` of MATLAB (bicubic, antialiased), for ``[..., h, w]`` maps.

    Returns float64 ``[..., H, W]``. Axes are resized one at a time, the more-shrunk axis
    first (MATLAB's order); integer inputs are rounded and clipped to their dtype's range
    after each pass, because MATLAB keeps the input class between passes (so a uint8
    prediction is scored as MATLAB scores it). Same size in, same values out.
    """
    arr = np.asarray(maps)
    h_out, w_out = (int(s) for s in shape)
    h_in, w_in = arr.shape[-2], arr.shape[-1]
    integer = np.issubdtype(arr.dtype, np.integer)
    limits = np.iinfo(arr.dtype) if integer else None
    out = arr.astype(np.float64)
    if (h_in, w_in) == (h_out, w_out):
        return out
    scales = {-2: h_out / h_in, -1: w_out / w_in}
    for axis in sorted(scales, key=lambda a: (scales[a], a != -2)):
        n_in, n_out = (h_in, h_out) if axis == -2 else (w_in, w_out)
        if n_in == n_out:
            continue
        mat = _resize_matrix(n_in, n_out)
        out = np.matmul(mat, out) if axis == -2 else np.matmul(out, mat.T)
        if limits is not None:
            out = np.clip(np.rint(out), limits.min, limits.max)
    return out


# ---------------------------------------------------------------------------------------
# The metrics: a checked public function, then the MATLAB body on float64 maps of one size


def _target(x: Any, name: str) -> np.ndarray:
    return as_array(x, name, (2,)).astype(np.float64)


def _fixation_map(x: Any, name: str) -> np.ndarray:
    return as_array(x, name, (2,), mask=True) != 0  # logical(fixationMap)


def _resized(pred: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``imresize(saliencyMap, size(fixationMap))``, float64."""
    return imresize(as_array(pred, "pred", (2,)), shape)


def _constant(x: np.ndarray) -> bool:
    return bool(x.min() == x.max())


def _std(x: np.ndarray) -> float:
    """MATLAB's ``std``: divides by N − 1."""
    return float(x.std(ddof=1))


def _normalize(x: np.ndarray) -> np.ndarray:
    """``(x − min(x(:))) / (max(x(:)) − min(x(:)))``, as the AUC files normalise."""
    return (x - x.min()) / (x.max() - x.min())


def _trapz(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB's ``trapz(x, y)``."""
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1])).sum() / 2.0)


def cc(pred: Any, gt_map: Any) -> float:
    """Pearson's linear correlation coefficient between ``pred`` and ``gt_map [H, W]``.

    ``CC.m``: resize, z-score both maps (``std`` with N − 1), ``corr2``. In [−1, 1]; NaN if
    either map is constant.
    """
    map2 = _target(gt_map, "gt_map")
    return _cc(_resized(pred, map2.shape), map2)


def _cc(map1: np.ndarray, map2: np.ndarray) -> float:
    if _constant(map1) or _constant(map2):
        return math.nan  # std = 0: MATLAB's 0/0
    map1 = (map1 - map1.mean()) / _std(map1)
    map2 = (map2 - map2.mean()) / _std(map2)
    return _corr2(map2, map1)


def _corr2(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ``corr2``: Pearson's r of two matrices."""
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def nss(pred: Any, fixations: Any) -> float:
    """Normalised scanpath saliency: mean z-scored ``pred`` at the fixated pixels.

    ``NSS.m``: resize to the fixation map's size, z-score (``std`` with N − 1), mean at the
    pixels where ``fixations [H, W]`` is nonzero (each once). NaN without fixations or for
    a constant prediction.
    """
    fixation_map = _fixation_map(fixations, "fixations")
    return _nss(_resized(pred, fixation_map.shape), fixation_map)


def _nss(map_: np.ndarray, fixation_map: np.ndarray) -> float:
    if not fixation_map.any() or _constant(map_):
        return math.nan  # mean of nothing / MATLAB's 0/0
    map_ = (map_ - map_.mean()) / _std(map_)
    return float(map_[fixation_map].mean())


def sim(pred: Any, gt_map: Any) -> float:
    """Similarity (histogram intersection) of ``pred`` and ``gt_map [H, W]``, in [0, 1].

    ``similarity.m``: resize; each map min-max normalised, then divided by its sum (an
    all-zero map stays zero); ``sum(min(map1, map2))``. NaN if a map is constant non-zero.
    """
    map2 = _target(gt_map, "gt_map")
    return _sim(_resized(pred, map2.shape), map2)


def _sim(map1: np.ndarray, map2: np.ndarray) -> float:
    map1 = _sum_to_one(map1, min_max=True)
    map2 = _sum_to_one(map2, min_max=True)
    if np.isnan(map1).any() or np.isnan(map2).any():
        return math.nan
    return float(np.minimum(map1, map2).sum())


def _sum_to_one(map_: np.ndarray, *, min_max: bool) -> np.ndarray:
    """``if any(map(:)), [map = (map − min) / (max − min);] map = map / sum(map(:)); end``."""
    if not map_.any():
        return map_  # "zero map will remain a zero map"
    if min_max:
        if _constant(map_):
            return np.full_like(map_, math.nan)  # MATLAB's 0/0
        map_ = _normalize(map_)
    return map_ / map_.sum()


def kld(pred: Any, gt_map: Any) -> float:
    """KL divergence of ``pred`` from ``gt_map [H, W]`` (lower is better).

    ``KLdiv.m``: resize; both maps divided by their sums (an all-zero map stays zero);
    ``sum(map2 .* log(eps + map2 ./ (map1 + eps)))`` with ``eps = 2**-52``. Maps must be
    non-negative.
    """
    map2 = _target(gt_map, "gt_map")
    return _kld(_resized(pred, map2.shape), map2)


def _kld(map1: np.ndarray, map2: np.ndarray) -> float:
    lowest = min(float(map1.min()), float(map2.min()))
    if lowest < 0:
        raise InputError(
            "kld: maps must be non-negative (they are treated as distributions); "
            f"got minimum {lowest:g}"
        )
    map1 = _sum_to_one(map1, min_max=False)
    map2 = _sum_to_one(map2, min_max=False)
    return float((map2 * np.log(EPS + map2 / (map1 + EPS))).sum())


def auc_judd(pred: Any, fixations: Any, jitter: bool = True, seed: int = 0) -> float:
    """AUC-Judd: ROC area with thresholds at the fixated values, all pixels as negatives.

    ``AUC_Judd.m`` (DHF1K copy): resize, convert to double, add ``U[0, 1) / 1e7`` jitter
    when ``jitter`` (to break ties; in the map's own units; drawn as the module docstring
    says), min-max normalise; for the i-th largest fixated value t, TP rate ``i / Nf`` and
    FP rate ``(#{S >= t} − i) / (Npix − Nf)``; trapezoid area. NaN without fixations, with
    every pixel fixated, or when the map is constant after jittering.
    """
    fixation_map = _fixation_map(fixations, "fixations")
    rng = stream(seed, 0, "auc_judd") if jitter else None
    return _auc_judd(_resized(pred, fixation_map.shape), fixation_map, rng)


def _auc_judd(sal: np.ndarray, fixation_map: np.ndarray, rng: np.random.Generator | None) -> float:
    S = sal.ravel()
    F = fixation_map.ravel()
    Nfixations, Npixels = int(np.count_nonzero(F)), S.size
    if Nfixations == 0 or Nfixations == Npixels:
        return math.nan  # no positives / no negatives: MATLAB's 0/0
    if rng is not None:
        S = S + _jitter(S, F, rng)  # sal = sal + rand(size(sal)) / 10000000
    if _constant(S):
        return math.nan
    S = _normalize(S)
    Sth = S[F]
    allthreshes = np.sort(Sth)[::-1]
    tp = np.zeros(Nfixations + 2)
    fp = np.zeros(Nfixations + 2)
    tp[-1] = 1
    fp[-1] = 1
    for i in range(1, Nfixations + 1):
        thresh = allthreshes[i - 1]
        aboveth = np.count_nonzero(thresh <= S)  # sum(S >= thresh)
        tp[i] = i / Nfixations
        fp[i] = (aboveth - i) / (Npixels - Nfixations)
    return _trapz(fp, tp)


def _jitter(S: np.ndarray, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AUC-Judd's jitter ``rand / 1e7`` for the pixels of ``S`` where it can matter, else 0.

    Candidates (see the module docstring): every pixel of a constant map; otherwise those
    whose bin ``floor(s · B)`` of the normalised map ``s`` lies in the bins that
    ``[t − 2e-7, t + 2e-7]`` spans for some fixated value ``t`` (``B`` = :data:`JITTER_BINS`).
    """
    candidates = np.ones(S.size, dtype=bool)
    if not _constant(S):
        lo, span = S.min(), S.max() - S.min()

        def bin_of(v: np.ndarray) -> np.ndarray:
            return np.clip(np.floor((v - lo) / span * JITTER_BINS), 0, JITTER_BINS).astype(int)

        margin = 2.0 * JUDD_JITTER
        near = np.zeros(JITTER_BINS + 1, dtype=bool)
        for first, last in zip(bin_of(S[F] - margin), bin_of(S[F] + margin), strict=True):
            near[first : last + 1] = True
        candidates = near[bin_of(S)]
    jitter = np.zeros(S.size)
    jitter[candidates] = rng.random(int(np.count_nonzero(candidates))) * JUDD_JITTER
    return jitter


def auc_borji(
    pred: Any, fixations: Any, n_splits: int = 100, step: float = 0.1, seed: int = 0
) -> float:
    """AUC-Borji: ROC area against as many uniformly random pixels as fixations.

    ``AUC_Borji.m``: resize, min-max normalise; thresholds ``0:step:1``; for each of
    ``n_splits`` splits, ``Nf`` pixels drawn with replacement are the negatives; the mean
    trapezoid area over splits. NaN without fixations or for a constant map.
    """
    fixation_map = _fixation_map(fixations, "fixations")
    check_splits(n_splits)
    return _auc_borji(
        _resized(pred, fixation_map.shape),
        fixation_map,
        n_splits,
        step_thresholds(step),
        stream(seed, 0, "auc_borji"),
    )


def _auc_borji(
    sal: np.ndarray,
    fixation_map: np.ndarray,
    Nsplits: int,
    thresholds: np.ndarray,
    rng: np.random.Generator,
) -> float:
    F = fixation_map.ravel()
    if not F.any() or _constant(sal):
        return math.nan
    S = _normalize(sal.ravel())
    Sth = S[F]
    Nfixations = Sth.size
    # MATLAB: r = randi([1 length(S)], [Nfixations, Nsplits]); randfix = S(r);
    # we draw how many of each split's pixels fall in each threshold interval instead.
    share = _interval_counts(S, thresholds) / S.size
    randfix = _negatives(rng.multinomial(Nfixations, share, size=Nsplits), thresholds)
    return split_roc_area(Sth, randfix, thresholds)


def auc_shuffled(
    pred: Any,
    fixations: Any,
    other_fixations: Any,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
) -> float:
    """Shuffled AUC: ROC area against fixated pixels of *other* images as negatives.

    ``AUC_shuffled.m``: like :func:`auc_borji`, but each split draws ``min(Nf, #other)``
    negatives without replacement from the pixels where ``other_fixations [H, W]`` (the
    union of other frames' fixation maps, same size) is nonzero. NaN without fixations,
    with an empty ``other_fixations`` or a constant map.
    """
    fixation_map = _fixation_map(fixations, "fixations")
    other_map = _fixation_map(other_fixations, "other_fixations")
    if other_map.shape != fixation_map.shape:
        raise InputError(
            f"other_fixations: shape {other_map.shape} differs from fixations' shape "
            f"{fixation_map.shape}"
        )
    check_splits(n_splits)
    return _auc_shuffled(
        _resized(pred, fixation_map.shape),
        fixation_map,
        other_map,
        n_splits,
        step_thresholds(step),
        stream(seed, 0, "auc_shuffled"),
    )


def _auc_shuffled(
    sal: np.ndarray,
    fixation_map: np.ndarray,
    other_map: np.ndarray,
    Nsplits: int,
    thresholds: np.ndarray,
    rng: np.random.Generator,
) -> float:
    F = fixation_map.ravel()
    if not F.any() or _constant(sal):
        return math.nan
    S = _normalize(sal.ravel())
    Sth = S[F]
    ind = np.flatnonzero(other_map.ravel())  # find(otherMap)
    Nfixations_oth = min(Sth.size, ind.size)
    if Nfixations_oth == 0:
        return math.nan  # MATLAB's 0/0
    # MATLAB, per split: randind = ind(randperm(length(ind)));
    # randfix(:, i) = S(randind(1:Nfixations_oth)); we draw how many fall in each interval.
    counts = _interval_counts(S[ind], thresholds)
    drawn = rng.multivariate_hypergeometric(counts, Nfixations_oth, size=Nsplits)
    return split_roc_area(Sth, _negatives(drawn, thresholds), thresholds)


def _interval_counts(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many ``values`` lie below ``t_0``, in each ``[t_k, t_k+1)``, and at or above the last."""
    at_least = np.array([np.count_nonzero(values >= t) for t in thresholds])
    return -np.diff(np.concatenate([[values.size], at_least, [0]]))


def _negatives(drawn: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``randfix [Nneg, Nsplits]`` from the drawn counts per interval ``[Nsplits, 1 + K]``.

    A draw in ``[t_k, t_k+1)`` stands as the value ``t_k`` (below ``t_0``: −inf): it
    compares with every threshold as the drawn pixel's value does.
    """
    floors = np.concatenate([[-np.inf], thresholds])
    return np.stack([np.repeat(floors, split) for split in drawn], axis=1)


def split_roc_area(Sth: np.ndarray, randfix: np.ndarray, thresholds: np.ndarray) -> float:
    """The loop ``AUC_Borji.m`` and ``AUC_shuffled.m`` share: the mean ROC area over splits.

    ``Sth [Nf]``: the normalised map at the fixations; ``randfix [Nneg, Nsplits]``: each
    split's negatives; ``thresholds``: ascending, e.g. :func:`step_thresholds` (the whole
    grid, see the module docstring).
    """
    Nneg, Nsplits = randfix.shape
    Nfixations = Sth.size
    allthreshes = thresholds[::-1]
    auc = np.full(Nsplits, math.nan)
    for s in range(Nsplits):
        curfix = randfix[:, s]
        tp = np.zeros(allthreshes.size + 2)
        fp = np.zeros(allthreshes.size + 2)
        tp[-1] = 1
        fp[-1] = 1
        for i, thresh in enumerate(allthreshes, start=1):
            tp[i] = np.count_nonzero(Sth >= thresh) / Nfixations
            fp[i] = np.count_nonzero(curfix >= thresh) / Nneg
        auc[s] = _trapz(fp, tp)
    return float(auc.mean())


# ---------------------------------------------------------------------------------------
# A batch, frame by frame


def all_metrics(
    preds: Any,
    gt_maps: Any,
    fixations: Any,
    other: Any = None,
    *,
    jitter: bool = True,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
    index_offset: int = 0,
) -> dict[str, np.ndarray]:
    """All seven metrics for a batch of frames; each value is float64 ``[N]``.

    The arguments and the result are those of :func:`avrsp.metrics.all_metrics` (without
    ``chunk``): ``preds [N, h, w]``, ``gt_maps`` and ``fixations [N, H, W]``, ``other``
    ``[H, W]`` or ``[N, H, W]`` (``None`` leaves ``"auc_shuffled"`` out); frame ``i`` draws
    from the streams of frame ``index_offset + i``.
    """
    p_all, g_all, f_all, o_all = batch_inputs(preds, gt_maps, fixations, other, finite=True)
    check_splits(n_splits)
    thresholds = step_thresholds(step)
    names = [m for m in METRIC_NAMES if o_all is not None or m != "auc_shuffled"]
    out = {m: np.full(p_all.shape[0], math.nan) for m in names}
    for i in range(p_all.shape[0]):
        frame = index_offset + i
        gt = g_all[i].astype(np.float64)
        fix = f_all[i] != 0
        sal = imresize(p_all[i], gt.shape)
        out["cc"][i] = _cc(sal, gt)
        out["nss"][i] = _nss(sal, fix)
        out["sim"][i] = _sim(sal, gt)
        out["kld"][i] = _kld(sal, gt)
        rng_judd = stream(seed, frame, "auc_judd") if jitter else None
        out["auc_judd"][i] = _auc_judd(sal, fix, rng_judd)
        rng_borji = stream(seed, frame, "auc_borji")
        out["auc_borji"][i] = _auc_borji(sal, fix, n_splits, thresholds, rng_borji)
        if o_all is not None:
            other_map = (o_all if o_all.ndim == 2 else o_all[i]) != 0
            rng_shuffled = stream(seed, frame, "auc_shuffled")
            out["auc_shuffled"][i] = _auc_shuffled(
                sal, fix, other_map, n_splits, thresholds, rng_shuffled
            )
    return out
