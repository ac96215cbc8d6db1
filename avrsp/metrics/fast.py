"""The seven metrics, fast: O(H·W) per frame, no full sort, passes shared between metrics.

The same numbers as the plain transcriptions in :mod:`avrsp.metrics.plain` (the
definition), to rounding, with the same random draws (tested); this module is what
``avrsp.metrics`` exports. The single-map functions (:func:`cc` … :func:`auc_shuffled`)
and :func:`all_metrics` run the same per-frame kernels on a :class:`_Frame`, which
computes each shared intermediate once (min and max, the normalised map scaled by
``B = 2**14``, its sums, its fine-bin histogram, one pixel selection for the AUCs).

How the kernels stay exact, briefly (``docs/METRICS.md``, "How the fast paths stay exact"):
CC, NSS and SIM are invariant to the min-max normalisation, so they use sums of the scaled
map; CC, SIM and KLD only sum over the ground truth's nonzero pixels; "how many pixels are
≥ t" is counted by fine bins, comparing only the pixels that share a bin with a threshold;
AUC-Judd's jitter is drawn only for the candidate pixels of the definition; AUC-Borji and
shuffled AUC draw the per-interval counts of their random negatives, as the definition
does, and never touch the samples one by one.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from avrsp.errors import InputError
from avrsp.metrics.inputs import as_array, batch_inputs, check_finite, check_splits
from avrsp.metrics.plain import (
    EPS,
    JITTER_BINS,
    JUDD_JITTER,
    METRIC_NAMES,
    imresize,
    step_thresholds,
    stream,
)

# Fine bins of the exact "how many values >= t" counter (see _count_ge); the same bins
# decide which pixels draw AUC-Judd's jitter (plain._jitter), so they are the definition's.
_FINE_BINS = JITTER_BINS
_N_BINS = _FINE_BINS + 1  # bins 0 … B: a normalised value of exactly 1 gets bin B

# ---------------------------------------------------------------------------------------
# Per-frame kernels on flat [P] arrays (the prediction in its own dtype, read as float64)


class _Workspace:
    """Scratch buffers for one frame size, reused frame after frame.

    Large temporaries cost more to allocate (fresh pages, faulted in one by one) than to
    compute with on small machines; :func:`all_metrics` keeps one workspace per call.
    """

    def __init__(self, size: int) -> None:
        self.scaled = np.empty(size)
        self.gt = np.empty(size)
        self.scaled_gt = np.empty(size)
        self.tmp1 = np.empty(size)
        self.tmp2 = np.empty(size)
        self.bins = np.empty(size, dtype=np.int32)
        self.mask = np.empty(size, dtype=bool)


_LOCAL = threading.local()


def _workspace(size: int) -> _Workspace:
    """This thread's workspace for frames of ``size`` pixels (kept for the next call)."""
    ws = getattr(_LOCAL, "workspace", None)
    if ws is None or ws.scaled.size != size:
        ws = _LOCAL.workspace = _Workspace(size)
    return ws


def _min_max(x: np.ndarray, name: str) -> tuple[float, float]:
    """Exact min and max of ``x`` (any real dtype); NaN or inf raises :class:`InputError`.

    NaN propagates through ``min``/``max`` and inf shows in them, so this doubles as the
    finiteness check of the batch path (no separate full-size ``isfinite`` pass).
    """
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = "NaN" if math.isnan(lo) or math.isnan(hi) else "inf"
        raise InputError(f"{name}: contains {bad} values; metrics need finite maps")
    return lo, hi


def _nonzero(x: np.ndarray) -> np.ndarray:
    """Flat indices (ascending) of the nonzero entries of ``x`` (``find(x)``)."""
    flat = np.ravel(x)
    if flat.dtype != bool:  # numpy finds nonzero entries fastest in a boolean mask
        flat = flat != 0
    return np.flatnonzero(flat)


class _Target:
    """A ground-truth map: its support (nonzero pixels) with float64 values, min, max, sum.

    Only the nonzero pixels enter CC (``Σ (a − mean a) · g``), SIM (``min(a, 0) = 0``
    where ``g`` is at its minimum 0) and KLD (``0 · log(…) = 0``), so a blurred fixation
    map is read once and then handled as its support alone. ``idx`` holds the support's
    flat indices, or ``None`` when more than half the pixels are nonzero: then the
    support is the whole map, in pixel order, and nothing is gathered.
    """

    def __init__(self, g: np.ndarray, ws: _Workspace, name: str = "gt_map") -> None:
        g = np.ravel(g)
        self.size = g.size
        self.ws = ws
        self.integer = np.issubdtype(g.dtype, np.integer)
        self.min, self.max = _min_max(g, name)
        mask = g if g.dtype == bool else np.not_equal(g, 0, out=ws.mask)
        n = int(np.count_nonzero(mask))
        self.idx: np.ndarray | None = None if 2 * n > g.size else np.flatnonzero(mask)
        self.vals = ws.gt[: g.size if self.idx is None else n]
        np.copyto(self.vals, g if self.idx is None else g[self.idx], casting="unsafe")
        # Integer maps: sums of integers below 2**53 are exact in float64.
        self.sum = float(self.vals.sum())
        self._g = g

    def shifted(self) -> tuple[np.ndarray | None, np.ndarray]:
        """Support and values of ``g − min`` (SIM's numerator; zeros may be included)."""
        if self.min == 0.0:
            return self.idx, self.vals
        b = np.subtract(self._g, self.min, out=self.ws.tmp1, dtype=np.float64)
        return None, b

    def sum_sq_dev(self) -> float:
        """``Σ (g − mean g)²`` over all pixels, from the nonzero pixels alone."""
        n, v = self.size, self.vals
        if self.integer:  # exact integer sums: one rounding
            return float(np.dot(v, v)) - self.sum * self.sum / n
        mean = self.sum / n
        d = np.subtract(v, mean, out=self.ws.tmp1[: v.size])
        return float(np.dot(d, d)) + (n - v.size) * mean * mean


class _Frame:
    """One prediction ``p`` (flat ``[P]``, any real dtype), its fixations, shared passes.

    Every metric but KLD sees the prediction through its min-max normalised map
    ``s = (p − min) / (max − min)`` (CC, NSS and SIM are invariant to that affine change;
    the AUCs normalise first in MATLAB). We keep ``u = s · B`` with ``B = 2**14``, the fine
    bin scale: dividing by ``(max − min) / B`` scales MATLAB's quotient by a power of two,
    so ``u / B`` is bit for bit MATLAB's ``s`` (barring subnormal quotients), ``floor(u)``
    is the fine bin, and sums of ``u`` are sums of ``s`` times ``B`` exactly. Each shared
    intermediate is computed once, on first use, into the workspace's buffers.
    """

    def __init__(self, p: np.ndarray, fix: Any, ws: _Workspace, name: str = "pred") -> None:
        self.p = p
        self.ws = ws
        self.size = p.size
        self.min, self.max = _min_max(p, name)
        self.constant = self.min == self.max
        self.fix_idx = _nonzero(fix)  # fixated pixels, each once ("F > 0")
        self.n_fix = self.fix_idx.size
        self._moments: tuple[float, float, float] | None = None
        self._scaled = False
        self._hist: np.ndarray | None = None
        self._sel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._jflag: tuple[float, np.ndarray, np.ndarray] | None = None
        self._at_gt: tuple[np.ndarray, np.ndarray] | None = None  # u on a GT's support

    def at(self, idx: np.ndarray) -> np.ndarray:
        """``p`` at flat indices ``idx``, as float64."""
        return self.p[idx].astype(np.float64)

    def scaled(self) -> np.ndarray:
        """``u = (p − min) / ((max − min) / B)``, i.e. ``s · B`` exactly (not for constant p)."""
        u = self.ws.scaled
        if not self._scaled:
            span = self.max - self.min
            np.subtract(self.p, self.min, out=u, dtype=np.float64)
            unit = span / _FINE_BINS
            if unit * _FINE_BINS == span and unit >= np.finfo(np.float64).tiny:
                np.divide(u, unit, out=u)
            else:  # pragma: no cover - spans near the float64 limits
                np.divide(u, span, out=u)
                np.multiply(u, _FINE_BINS, out=u)
            self._scaled = True
        return u

    def scaled_at(self, idx: np.ndarray | None) -> np.ndarray:
        """``u`` on a ground truth's support (``None``: all of ``u``); kept for CC and SIM."""
        if idx is None:
            return self.scaled()
        if self._at_gt is None or self._at_gt[0] is not idx:
            out = self.ws.scaled_gt[: idx.size]
            self._at_gt = (idx, np.take(self.scaled(), idx, out=out))
        return self._at_gt[1]

    def s_at(self, idx: np.ndarray) -> np.ndarray:
        """The normalised map ``s`` at flat indices ``idx`` (float64, MATLAB's values)."""
        return self.scaled()[idx] / _FINE_BINS

    def moments(self) -> tuple[float, float, float]:
        """``Σ u``, mean of ``u`` and ``Σ (u − mean u)²`` (CC, NSS, SIM; not for constant p).

        ``Σ u² − (Σ u)² / P`` has no harmful cancellation here: ``u`` spans exactly
        ``[0, B]``, so the result is at least ``B² / 2`` while each rounding is at most
        ``P · B² · eps``.
        """
        if self._moments is None:
            u = self.scaled()
            total = float(u.sum())
            ss = float(np.dot(u, u)) - total * total / self.size
            self._moments = (total, total / self.size, ss)
        return self._moments

    def sum_p(self) -> float:
        """``Σ p`` (KLD), from ``Σ u`` when that is at hand (``p = min + u · span / B``)."""
        if self.constant or not self._scaled:
            return float(self.p.sum(dtype=np.float64))
        total, _, _ = self.moments()
        return self.size * self.min + total * (self.max - self.min) / _FINE_BINS

    @staticmethod
    def bin_of(s: np.ndarray | float) -> np.ndarray:
        """Fine bin ``floor(s · B)``, clipped to [0, B], of normalised values (monotone in s)."""
        return np.clip(np.floor(np.asarray(s) * _FINE_BINS), 0, _FINE_BINS).astype(np.intp)

    def bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Fine bin of every pixel (int32 ``[P]``) and the histogram ``[B + 1]`` of the bins."""
        ws = self.ws
        if self._hist is None:
            # int32: a float64 -> int64 cast is several times slower on CPUs without
            # AVX-512; torch counts and gathers with int32 indices directly (numpy would
            # first copy them to intp) and counts faster than numpy's bincount.
            np.copyto(ws.bins, self.scaled(), casting="unsafe")  # truncation = floor (u >= 0)
            torch = _torch()
            if torch is None:
                self._hist = np.bincount(ws.bins, minlength=_N_BINS)
            else:
                self._hist = torch.bincount(torch.from_numpy(ws.bins), minlength=_N_BINS).numpy()
        return ws.bins, self._hist

    def select(self, flag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels whose bin is flagged, and per bin the number of unflagged pixels above it.

        Returns ``(idx, above)``: ``idx`` the flat indices (ascending) of the pixels in
        flagged bins; ``above[k]`` the number of pixels in unflagged bins ``> k``. An
        unflagged pixel is then compared with a threshold through its bin alone. A
        selection made for a superset of ``flag`` (see :func:`all_metrics`, which selects
        once for AUC-Judd and AUC-Borji together) is reused: extra pixels are merely
        compared exactly.
        """
        if self._sel is not None and bool(np.all(self._sel[0][flag])):
            return self._sel[1], self._sel[2]
        b, hist = self.bins()
        torch = _torch()
        if torch is None:
            np.take(flag, b, out=self.ws.mask)
        else:
            t_mask = torch.from_numpy(self.ws.mask)
            torch.index_select(torch.from_numpy(flag), 0, torch.from_numpy(b), out=t_mask)
        idx = np.flatnonzero(self.ws.mask)
        unflagged = np.where(flag, 0, hist)
        above = np.zeros(_N_BINS, dtype=np.int64)
        above[:-1] = np.cumsum(unflagged[::-1])[::-1][1:]
        self._sel = (flag, idx, above)
        return idx, above

    def judd_flag(self, amp: float) -> tuple[np.ndarray, np.ndarray]:
        """Fine bins within twice the jitter of a fixated value, and each fixation's top bin."""
        if self._jflag is None or self._jflag[0] != amp:
            t = self.at(self.fix_idx)
            span = self.max - self.min
            margin = 2.0 * amp
            lo = self.bin_of((t - margin - self.min) / span)
            hi = self.bin_of((t + margin - self.min) / span)
            flag = np.zeros(_N_BINS, dtype=bool)
            for first, last in zip(lo.tolist(), hi.tolist(), strict=True):  # a few dozen
                flag[first : last + 1] = True
            self._jflag = (amp, flag, hi)
        return self._jflag[1], self._jflag[2]


def _cc(fr: _Frame, gt: _Target) -> float:
    """Pearson's CC (``CC.m``: z-score both maps, then ``corr2``).

    With ``u`` the scaled normalised prediction (CC is invariant to the affine change):
    ``Σ (u − mean u)(g − mean g) = Σ (u − mean u) · g``, a sum over the nonzero pixels of
    ``g`` only.
    """
    if fr.constant or gt.min == gt.max:
        return math.nan
    _, mean_u, ss_u = fr.moments()
    d = np.subtract(fr.scaled_at(gt.idx), mean_u, out=fr.ws.tmp2[: gt.vals.size])
    cov = float(np.dot(d, gt.vals))
    return cov / math.sqrt(ss_u * gt.sum_sq_dev())


def _nss(fr: _Frame) -> float:
    """NSS (``NSS.m``): mean of the z-scored map (std with N−1) at fixated pixels."""
    if fr.constant or fr.size < 2 or fr.n_fix == 0:
        return math.nan
    _, mean_u, ss_u = fr.moments()
    return float((fr.scaled()[fr.fix_idx] - mean_u).mean() / math.sqrt(ss_u / (fr.size - 1)))


def _sim(fr: _Frame, gt: _Target) -> float:
    """SIM (``similarity.m``): histogram intersection of the two normalised maps.

    Each map is min-max normalised, then divided by its sum; an all-zero map stays zero,
    a constant non-zero one is all NaN in MATLAB (0/0). Min-max then sum-normalising is
    ``(x − min) / sum(x − min)``, so with ``u`` the scaled min-max normalised prediction,
    ``SIM = sum(min(u, b · Su / Sb)) / Su`` with ``b = g − gmin``, ``Su = sum(u)`` and
    ``Sb = sum(b)``: the same value to rounding, summed where ``b > 0`` only (elsewhere
    ``min(u, 0) = 0``).
    """
    if (fr.constant and fr.max != 0.0) or (gt.min == gt.max and gt.max != 0.0):
        return math.nan
    if fr.constant or gt.min == gt.max:  # a zero map (others returned): min(0, b) = 0
        return 0.0
    su, _, _ = fr.moments()
    idx, b = gt.shifted()
    sb = float(b.sum())
    m = np.multiply(b, su / sb, out=fr.ws.tmp2[: b.size])
    return float(np.minimum(fr.scaled_at(idx), m, out=m).sum() / su)


def _log(x: np.ndarray) -> np.ndarray:
    """Natural log in place (torch's vectorised log is ~2x numpy's on CPUs without AVX-512)."""
    torch = _torch()
    if torch is None:
        return np.log(x, out=x)
    torch.from_numpy(x).log_()
    return x


@lru_cache(maxsize=1)
def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        return None
    return torch


def _kld(fr: _Frame, gt: _Target) -> float:
    """KLD (``KLdiv.m``): ``sum(g · log(eps + g / (p + eps)))``, both maps summing to 1.

    Only pixels with ``g > 0`` contribute (``0 · log(eps + 0) = 0``): the log is taken
    of those only.
    """
    if fr.min < 0 or gt.min < 0:
        raise InputError(
            "kld: maps must be non-negative (they are treated as distributions); "
            f"got minimum {min(fr.min, gt.min):g}"
        )
    if gt.sum == 0.0:  # an all-zero ground truth contributes 0 · log(...) everywhere
        return 0.0
    n = gt.vals.size
    q = np.divide(gt.vals, gt.sum, out=fr.ws.tmp1[:n])
    pn = fr.ws.tmp2[:n]
    np.copyto(pn, fr.p if gt.idx is None else fr.p[gt.idx], casting="unsafe")
    sum_p = fr.sum_p()
    if sum_p != 0.0:
        np.divide(pn, sum_p, out=pn)
    pn += EPS
    np.divide(q, pn, out=pn)
    pn += EPS
    return float(np.dot(q, _log(pn)))


def _count_ge(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``[(values >= t).sum() for t in thresholds]`` by sorting ``values`` (small arrays)."""
    ordered = np.sort(values)
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")


def _trapz(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MATLAB's ``trapz(x, y)`` along the last axis."""
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1])).sum(axis=-1) / 2.0


def _auc_judd(fr: _Frame, jitter: bool, rng: np.random.Generator | None) -> float:
    """AUC-Judd (``AUC_Judd.m``): thresholds at the fixated values, negatives all pixels.

    MATLAB jitters every pixel by ``U[0, 1e-7)``, min-max normalises and, for each fixated
    value t, counts the pixels ≥ t. Only comparisons matter, and the normalisation is
    increasing, so we compare jittered values directly; and a pixel farther than the jitter
    amplitude from every fixated value compares the same whatever its jitter. So only
    pixels in fine bins within that margin of a fixated value get a jitter draw (i.i.d.
    uniform, as in MATLAB: the same distribution of scores; the same draws whichever other
    pixels a shared selection holds); the rest are counted per bin.
    """
    n_fix, n_pix = fr.n_fix, fr.size
    if n_fix == 0 or n_fix == n_pix:
        return math.nan
    amp = JUDD_JITTER if jitter else 0.0
    if fr.constant:
        if not jitter:  # MATLAB's 0/0: no ordering to score
            return math.nan
        assert rng is not None
        s = fr.p + rng.random(n_pix) * amp
        if s.min() == s.max():
            return math.nan
        above = _count_ge(s, np.sort(s[fr.fix_idx])[::-1])
    else:
        flag, hi = fr.judd_flag(amp)
        idx, above_bin = fr.select(flag)
        vals = fr.at(idx)
        if jitter:
            assert rng is not None
            near = flag[fr.ws.bins[idx]]  # the selected pixels AUC-Judd itself flagged
            if near.all():
                vals += rng.random(idx.size) * amp
            else:  # a shared, larger selection: jitter the same pixels as alone
                vals[near] += rng.random(int(np.count_nonzero(near))) * amp
        tj = vals[np.searchsorted(idx, fr.fix_idx)]  # the fixated pixels' jittered values
        order = np.argsort(tj, kind="stable")[::-1]  # descending, as MATLAB sweeps
        above = above_bin[hi[order]] + _count_ge(vals, tj[order])
    i = np.arange(1, n_fix + 1, dtype=np.float64)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(_trapz(fp, tp))


def _auc_from_counts(pos_ge: np.ndarray, n_pos: int, neg_ge: np.ndarray, n_neg: int) -> float:
    """Mean over splits of the trapezoid AUC of ``AUC_Borji.m`` / ``AUC_shuffled.m``.

    ``pos_ge [K]`` and ``neg_ge [splits, K]`` count values ≥ each ascending threshold.
    Thresholds above every value add ROC points at (0, 0), i.e. no area, so the fixed
    threshold grid equals MATLAB's grid cut at ``max([Sth; curfix])``.
    """
    splits = neg_ge.shape[0]
    tp = np.concatenate([[0.0], pos_ge[::-1] / n_pos, [1.0]])
    fp = np.concatenate(
        [np.zeros((splits, 1)), neg_ge[:, ::-1] / n_neg, np.ones((splits, 1))], axis=1
    )
    return float(_trapz(fp, np.broadcast_to(tp, fp.shape)).mean())


def _buckets(ge: np.ndarray, total: int) -> np.ndarray:
    """Counts per interval ``[t_k, t_k+1)`` from counts ≥ ``t_k`` (first: below ``t_0``)."""
    return -np.diff(np.concatenate([[total], ge, [0]]))


def _neg_ge(counts: np.ndarray) -> np.ndarray:
    """Counts ≥ each threshold ``[splits, K]`` from sampled bucket counts ``[splits, 1+K]``."""
    return np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]


def _threshold_flag(fr: _Frame, thresholds: np.ndarray) -> np.ndarray:
    """Fine bins holding a positive threshold of the normalised map."""
    flag = np.zeros(_N_BINS, dtype=bool)
    flag[fr.bin_of(thresholds[thresholds > 0])] = True
    return flag


def _map_ge(fr: _Frame, thresholds: np.ndarray) -> np.ndarray:
    """Number of pixels of the normalised map ≥ each threshold (exact, one histogram pass)."""
    out = np.full(thresholds.size, fr.size, dtype=np.int64)
    pos = thresholds > 0  # every normalised value is >= 0: no need to look
    tb = fr.bin_of(thresholds[pos])
    idx, above = fr.select(_threshold_flag(fr, thresholds))
    out[pos] = above[tb] + _count_ge(fr.s_at(idx), thresholds[pos])
    return out


def _auc_borji(
    fr: _Frame, n_splits: int, thresholds: np.ndarray, rng: np.random.Generator
) -> float:
    """AUC-Borji (``AUC_Borji.m``): negatives drawn uniformly (with replacement) from all pixels.

    Drawing ``Nf`` pixels with replacement puts a Multinomial(``Nf``, share of pixels in
    each threshold interval) number of them in each interval; we draw those counts.
    """
    n_fix = fr.n_fix
    if n_fix == 0 or fr.constant:
        return math.nan
    pos_ge = _count_ge(fr.s_at(fr.fix_idx), thresholds)
    probs = _buckets(_map_ge(fr, thresholds), fr.size) / fr.size
    counts = rng.multinomial(n_fix, probs, size=n_splits)
    return _auc_from_counts(pos_ge, n_fix, _neg_ge(counts), n_fix)


def _auc_shuffled(
    fr: _Frame,
    other_idx: np.ndarray,
    n_splits: int,
    thresholds: np.ndarray,
    rng: np.random.Generator,
) -> float:
    """Shuffled AUC (``AUC_shuffled.m``): negatives drawn without replacement from ``other``.

    ``randperm`` then the first ``min(Nf, #other)`` locations is sampling without
    replacement: multivariate-hypergeometric counts per threshold interval.
    """
    n_fix = fr.n_fix
    if n_fix == 0 or fr.constant:
        return math.nan
    n_neg = min(n_fix, other_idx.size)
    if n_neg == 0:  # MATLAB: 0/0 false positive rates
        return math.nan
    pos_ge = _count_ge(fr.s_at(fr.fix_idx), thresholds)
    colors = _buckets(_count_ge(fr.s_at(other_idx), thresholds), other_idx.size)
    counts = rng.multivariate_hypergeometric(colors, n_neg, size=n_splits)
    return _auc_from_counts(pos_ge, n_fix, _neg_ge(counts), n_neg)


# ---------------------------------------------------------------------------------------
# Public single-map API


def _at_size(p: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``p [..., h, w]`` at ``[..., H, W]``: itself (any dtype) when the sizes agree."""
    return p if p.shape[-2:] == tuple(shape) else imresize(p, shape)


def _pred_frame(pred: Any, shape: tuple[int, int], fix: np.ndarray | None = None) -> _Frame:
    p = as_array(pred, "pred", (2,))
    flat = np.ravel(_at_size(p, shape))
    ws = _workspace(flat.size)
    return _Frame(flat, np.zeros(flat.size, dtype=bool) if fix is None else fix, ws)


def _pred_and_target(pred: Any, gt_map: Any) -> tuple[_Frame, _Target]:
    g = _target(gt_map, "gt_map")
    fr = _pred_frame(pred, g.shape)
    return fr, _Target(g, fr.ws)


def _target(x: Any, name: str, mask: bool = False) -> np.ndarray:
    return as_array(x, name, (2,), mask=mask)


def cc(pred: Any, gt_map: Any) -> float:
    """Pearson's linear correlation coefficient between ``pred`` and ``gt_map [H, W]``.

    ``CC.m``: the prediction is resized to ``gt_map``'s size, both maps z-scored, and
    ``corr2`` taken. In [−1, 1]; NaN if either map is constant.
    """
    return _cc(*_pred_and_target(pred, gt_map))


def nss(pred: Any, fixations: Any) -> float:
    """Normalised scanpath saliency: mean z-scored ``pred`` at the fixated pixels.

    ``NSS.m``: ``pred`` resized to the fixation map's size, z-scored with MATLAB's ``std``
    (N−1 denominator), averaged over pixels where ``fixations [H, W]`` is nonzero (each
    fixated pixel once). NaN without fixations or for a constant prediction.
    """
    f = _target(fixations, "fixations", mask=True)
    return _nss(_pred_frame(pred, f.shape, f))


def sim(pred: Any, gt_map: Any) -> float:
    """Similarity (histogram intersection) of ``pred`` and ``gt_map [H, W]``, in [0, 1].

    ``similarity.m``: each map min-max normalised, then divided by its sum (an all-zero map
    stays zero), then ``sum(min(a, b))``. NaN if a map is constant and non-zero.
    """
    return _sim(*_pred_and_target(pred, gt_map))


def kld(pred: Any, gt_map: Any) -> float:
    """KL divergence of ``pred`` from ``gt_map [H, W]`` (lower is better).

    ``KLdiv.m``: both maps divided by their sums (an all-zero map stays zero), then
    ``sum(g · log(eps + g / (p + eps)))`` with ``eps = 2**-52``. Maps must be non-negative.
    """
    return _kld(*_pred_and_target(pred, gt_map))


def auc_judd(pred: Any, fixations: Any, jitter: bool = True, seed: int = 0) -> float:
    """AUC-Judd: ROC area with thresholds at the fixated values, all pixels as negatives.

    ``AUC_Judd.m`` (DHF1K copy): ``pred`` resized, converted to double, jittered by
    ``U[0, 1) / 1e7`` when ``jitter`` (to break ties; in the map's own units), min-max
    normalised; for the i-th largest fixated value t, TP rate ``i / Nf`` and FP rate
    ``(#{S >= t} − i) / (Npix − Nf)``; trapezoid area. NaN without fixations, or when the
    map is constant after jittering.
    """
    f = _target(fixations, "fixations", mask=True)
    rng = stream(seed, 0, "auc_judd") if jitter else None
    return _auc_judd(_pred_frame(pred, f.shape, f), jitter, rng)


def auc_borji(
    pred: Any, fixations: Any, n_splits: int = 100, step: float = 0.1, seed: int = 0
) -> float:
    """AUC-Borji: ROC area against as many uniformly random pixels as fixations.

    ``AUC_Borji.m``: ``pred`` resized and min-max normalised; thresholds ``0:step:1``; for
    each of ``n_splits`` splits, ``Nf`` pixels drawn with replacement serve as negatives;
    the mean trapezoid area over splits. NaN without fixations or for a constant map.
    """
    f = _target(fixations, "fixations", mask=True)
    check_splits(n_splits)
    return _auc_borji(
        _pred_frame(pred, f.shape, f),
        n_splits,
        step_thresholds(step),
        stream(seed, 0, "auc_borji"),
    )


def auc_shuffled(
    pred: Any,
    fixations: Any,
    other_fixations: Any,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
) -> float:
    """Shuffled AUC: ROC area against fixated pixels of *other* images as negatives.

    ``AUC_shuffled.m``: like :func:`auc_borji`, but each split draws
    ``min(Nf, #other)`` negatives without replacement from the pixels where
    ``other_fixations [H, W]`` (the union of other frames' fixation maps, same size) is
    nonzero. NaN without fixations, with an empty ``other_fixations`` or a constant map.
    """
    f = _target(fixations, "fixations", mask=True)
    o = _target(other_fixations, "other_fixations", mask=True)
    if o.shape != f.shape:
        raise InputError(
            f"other_fixations: shape {o.shape} differs from fixations' shape {f.shape}"
        )
    check_splits(n_splits)
    return _auc_shuffled(
        _pred_frame(pred, f.shape, f),
        _nonzero(o),
        n_splits,
        step_thresholds(step),
        stream(seed, 0, "auc_shuffled"),
    )


def script_metrics(
    pred: Any,
    gt_map: Any,
    fixations: Any,
    other_fixations: Any,
    *,
    jitter: bool = True,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """``{"cc", "sim", "nss", "auc_j", "sauc"}`` of one map, as the benchmarks' per-frame
    loop calls ``CC``, ``similarity``, ``NSS``, ``AUC_Judd`` and ``AUC_shuffled``.

    The values of :func:`cc`, :func:`sim`, :func:`nss`, :func:`auc_judd` and
    :func:`auc_shuffled` with the same arguments (the same random streams), but the map is
    checked, resized, and its minimum, maximum and moments computed once for all five.
    """
    f = _target(fixations, "fixations", mask=True)
    g = _target(gt_map, "gt_map")
    o = _target(other_fixations, "other_fixations", mask=True)
    if not g.shape == f.shape == o.shape:
        raise InputError(
            f"gt_map {g.shape}, fixations {f.shape} and other_fixations {o.shape}: "
            "expected one size"
        )
    check_splits(n_splits)
    fr = _pred_frame(pred, g.shape, f)
    target = _Target(g, fr.ws)
    return {
        "cc": _cc(fr, target),
        "sim": _sim(fr, target),
        "nss": _nss(fr),
        "auc_j": _auc_judd(fr, jitter, stream(seed, 0, "auc_judd") if jitter else None),
        "sauc": _auc_shuffled(
            fr, _nonzero(o), n_splits, step_thresholds(step), stream(seed, 0, "auc_shuffled")
        ),
    }


# ---------------------------------------------------------------------------------------
# Batched API


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
    chunk: int = 16,
) -> dict[str, np.ndarray]:
    """All seven metrics for a batch of frames; each value is float64 ``[N]``.

    Args:
        preds: predicted maps ``[N, h, w]`` (resized to ``[H, W]`` as MATLAB's ``imresize``).
        gt_maps: continuous ground-truth maps ``[N, H, W]`` (CC, SIM, KLD).
        fixations: binary fixation maps ``[N, H, W]``, nonzero = fixated (NSS, AUCs).
        other: for shuffled AUC, the "other" fixation map: ``[H, W]`` shared by all frames
            or ``[N, H, W]`` per frame. ``None`` leaves ``"auc_shuffled"`` out of the result.
        jitter, n_splits, step: as in :func:`auc_judd` / :func:`auc_borji`.
        seed: frame ``i`` uses the streams of frame index ``index_offset + i`` (so scoring a
            video in several calls with the right offsets gives the same numbers as one call).
        chunk: frames resized at a time (bounds memory; does not change results).

    Returns:
        ``{"cc", "nss", "sim", "kld", "auc_judd", "auc_borji"[, "auc_shuffled"]}``; frame
        ``i`` equals the single-map functions' value for ``seed`` when ``index_offset + i``
        is 0 (e.g. ``all_metrics(p[None], ...)["auc_borji"][0] == auc_borji(p, ...)``).
    """
    # preds and gt_maps are checked for NaN / inf frame by frame (their min and max).
    p_all, g_all, f_all, o_all = batch_inputs(preds, gt_maps, fixations, other, finite=False)
    n = p_all.shape[0]
    shape = (g_all.shape[1], g_all.shape[2])
    check_splits(n_splits)
    thresholds = step_thresholds(step)
    names = [m for m in METRIC_NAMES if o_all is not None or m != "auc_shuffled"]
    out = {m: np.full(n, math.nan) for m in names}
    shared_other = _nonzero(o_all) if o_all is not None and o_all.ndim == 2 else None
    ws = _workspace(shape[0] * shape[1])
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        p_chunk = p_all[start:stop]
        if p_chunk.shape[1:] != shape:  # resize; NaN / inf would spread: check first
            check_finite(p_chunk, "preds")
            p_chunk = imresize(p_chunk, shape)
        for j in range(stop - start):
            i = start + j
            idx = index_offset + i
            fr = _Frame(np.ravel(p_chunk[j]), f_all[i], ws, "preds")
            g = _Target(g_all[i], ws, "gt_maps")
            out["cc"][i] = _cc(fr, g)
            out["nss"][i] = _nss(fr)
            out["sim"][i] = _sim(fr, g)
            out["kld"][i] = _kld(fr, g)
            if not fr.constant and fr.n_fix > 0:  # one pixel selection for both AUCs
                amp = JUDD_JITTER if jitter else 0.0
                fr.select(fr.judd_flag(amp)[0] | _threshold_flag(fr, thresholds))
            rng_j = stream(seed, idx, "auc_judd") if jitter else None
            out["auc_judd"][i] = _auc_judd(fr, jitter, rng_j)
            out["auc_borji"][i] = _auc_borji(
                fr, n_splits, thresholds, stream(seed, idx, "auc_borji")
            )
            if o_all is not None:
                o = shared_other if shared_other is not None else _nonzero(o_all[i])
                out["auc_shuffled"][i] = _auc_shuffled(
                    fr, o, n_splits, thresholds, stream(seed, idx, "auc_shuffled")
                )
    return out
