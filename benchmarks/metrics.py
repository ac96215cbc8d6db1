"""Time the seven saliency metrics per frame at DHF1K's native 640×360 (docs/PERFORMANCE.md).

Compares :func:`avrsp.metrics.all_metrics` with a *baseline*: a straight, per-frame numpy
transcription of the MIT saliency benchmark's MATLAB functions (``CC.m``, ``NSS.m``,
``similarity.m``, ``KLdiv.m``, ``AUC_Judd.m``, ``AUC_Borji.m``, ``AUC_shuffled.m``), loop
for loop, kept here and not in the library. The same frames go through both, and the
deterministic metrics are checked to agree before any time is reported.

Frames are synthetic but shaped like DHF1K's: smooth predictions (float32, as a network
writes them), 8-bit blurred ground-truth maps (as DHF1K stores them), 10–60 fixated pixels
per frame, and the union of 10 other frames' fixations as the shuffled-AUC "other" map.

Run single-threaded, as the "one core" figures are claimed::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/metrics.py --frames 1000 --baseline-frames 50
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avrsp.metrics import METRIC_NAMES, all_metrics

# ---------------------------------------------------------------------------------------
# Baseline: the MATLAB code transcribed one statement at a time (maps already same size).


def _matlab_std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1))


def cc_matlab(sal: np.ndarray, fix_map: np.ndarray) -> float:
    map1 = sal.astype(np.float64)
    map2 = fix_map.astype(np.float64)
    map1 = (map1 - map1.mean()) / _matlab_std(map1)
    map2 = (map2 - map2.mean()) / _matlab_std(map2)
    a = map2 - map2.mean()  # corr2
    b = map1 - map1.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def nss_matlab(sal: np.ndarray, fixations: np.ndarray) -> float:
    m = sal.astype(np.float64)
    m = (m - m.mean()) / _matlab_std(m)
    return float(m[fixations.astype(bool)].mean())


def sim_matlab(sal: np.ndarray, fix_map: np.ndarray) -> float:
    def norm(m: np.ndarray) -> np.ndarray:
        if m.any():
            m = (m - m.min()) / (m.max() - m.min())
            m = m / m.sum()
        return m

    map1 = norm(sal.astype(np.float64))
    map2 = norm(fix_map.astype(np.float64))
    return float(np.minimum(map1, map2).sum())


def kld_matlab(sal: np.ndarray, fix_map: np.ndarray) -> float:
    eps = np.finfo(np.float64).eps
    map1 = sal.astype(np.float64)
    map2 = fix_map.astype(np.float64)
    if map1.any():
        map1 = map1 / map1.sum()
    if map2.any():
        map2 = map2 / map2.sum()
    return float((map2 * np.log(eps + map2 / (map1 + eps))).sum())


def _trapz(x: np.ndarray, y: np.ndarray) -> float:
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1])).sum() / 2)


def auc_judd_matlab(sal: np.ndarray, fixations: np.ndarray, rng: np.random.Generator) -> float:
    s = sal.astype(np.float64)
    s = s + rng.random(s.shape) / 10000000
    s = (s - s.min()) / (s.max() - s.min())
    S = s.ravel()
    F = fixations.ravel()
    Sth = S[F > 0]
    n_fix, n_pix = Sth.size, S.size
    allthreshes = np.sort(Sth)[::-1]
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[-1] = 1
    fp[-1] = 1
    for i in range(1, n_fix + 1):
        aboveth = np.count_nonzero(allthreshes[i - 1] <= S)
        tp[i] = i / n_fix
        fp[i] = (aboveth - i) / (n_pix - n_fix)
    return _trapz(fp, tp)


def _split_aucs(Sth: np.ndarray, randfix: np.ndarray, n_neg: int, step: float) -> float:
    n_fix = Sth.size
    auc = np.full(randfix.shape[1], np.nan)
    for s in range(randfix.shape[1]):
        curfix = randfix[:, s]
        top = max(Sth.max(), curfix.max())
        allthreshes = (np.arange(math.floor(top / step * (1 + 1e-10)) + 1) * step)[::-1]
        tp = np.zeros(allthreshes.size + 2)
        fp = np.zeros(allthreshes.size + 2)
        tp[-1] = 1
        fp[-1] = 1
        for i, thresh in enumerate(allthreshes, start=1):
            tp[i] = np.count_nonzero(Sth >= thresh) / n_fix
            fp[i] = np.count_nonzero(curfix >= thresh) / n_neg
        auc[s] = _trapz(fp, tp)
    return float(auc.mean())


def auc_borji_matlab(
    sal: np.ndarray, fixations: np.ndarray, rng: np.random.Generator, n_splits: int = 100
) -> float:
    s = sal.astype(np.float64)
    s = (s - s.min()) / (s.max() - s.min())
    S = s.ravel()
    Sth = S[fixations.ravel() > 0]
    r = rng.integers(0, S.size, size=(Sth.size, n_splits))
    return _split_aucs(Sth, S[r], Sth.size, 0.1)


def auc_shuffled_matlab(
    sal: np.ndarray,
    fixations: np.ndarray,
    other: np.ndarray,
    rng: np.random.Generator,
    n_splits: int = 100,
) -> float:
    s = sal.astype(np.float64)
    s = (s - s.min()) / (s.max() - s.min())
    S = s.ravel()
    Sth = S[fixations.ravel() > 0]
    ind = np.flatnonzero(other.ravel() > 0)
    n_oth = min(Sth.size, ind.size)
    randfix = np.full((n_oth, n_splits), np.nan)
    for i in range(n_splits):
        randind = ind[rng.permutation(ind.size)]
        randfix[:, i] = S[randind[:n_oth]]
    return _split_aucs(Sth, randfix, n_oth, 0.1)


def baseline_all(preds, gts, fix, other, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {m: np.empty(len(preds)) for m in METRIC_NAMES}
    for i in range(len(preds)):
        p = preds[i]
        out["cc"][i] = cc_matlab(p, gts[i])
        out["nss"][i] = nss_matlab(p, fix[i])
        out["sim"][i] = sim_matlab(p, gts[i])
        out["kld"][i] = kld_matlab(p, gts[i])
        out["auc_judd"][i] = auc_judd_matlab(p, fix[i], rng)
        out["auc_borji"][i] = auc_borji_matlab(p, fix[i], rng)
        out["auc_shuffled"][i] = auc_shuffled_matlab(p, fix[i], other[i], rng)
    return out


# ---------------------------------------------------------------------------------------
# Frames


def make_frames(n: int, height: int = 360, width: int = 640, seed: int = 0):
    """Synthetic DHF1K-like frames: float32 predictions, uint8 GT maps, fixations, other maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    ys, xs = yy[:, 0], xx[0]

    def blob(cx: float, cy: float, sigma: float) -> np.ndarray:
        gx = np.exp(-((xs - cx) ** 2) / (2 * sigma**2))
        gy = np.exp(-((ys - cy) ** 2) / (2 * sigma**2))
        return np.outer(gy, gx)

    centre = 0.3 * blob(width / 2, height / 2, height / 3)
    preds = np.empty((n, height, width), np.float32)
    gts = np.empty((n, height, width), np.uint8)
    fix = np.zeros((n, height, width), bool)
    for i in range(n):
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        preds[i] = blob(cx, cy, height / 9) + centre
        gx, gy = cx + rng.normal(0, width / 20), cy + rng.normal(0, height / 20)
        gts[i] = np.round(255 * blob(gx, gy, height / 12))
        k = int(rng.integers(10, 61))
        fy = np.clip(rng.normal(gy, height / 12, k), 0, height - 1).astype(int)
        fx = np.clip(rng.normal(gx, height / 12, k), 0, width - 1).astype(int)
        fix[i, fy, fx] = True
    # "Other" map for shuffled AUC: union of 10 other frames' fixations (Borji's M = 10).
    other = np.empty_like(fix)
    for i in range(n):
        picks = rng.choice(np.delete(np.arange(n), i), size=min(10, n - 1), replace=False)
        other[i] = fix[picks].any(axis=0)
    return preds, gts, fix, other


def steady_allocator() -> str:
    """Keep freed memory in the process (glibc), so that neither side pays page faults.

    The baseline allocates several 2 MB temporaries per metric. With glibc's defaults
    whether those come back as fresh pages (mmap, or the heap trimmed and grown again:
    a page fault per 4 KiB) depends on what the process freed before: the same baseline
    measured 21–23 ms or 33–38 ms per frame on the same machine depending on it. Fixing
    the mmap threshold at 32 MiB and the trim threshold at 64 MiB gives the baseline its
    fast case every time (avrsp allocates little either way), so the ratio is the
    conservative one and does not depend on the order of the measurements.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):
        ok = False
    return "glibc mallopt: mmap threshold 32 MiB, trim threshold 64 MiB" if ok else "default"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames timed with avrsp")
    ap.add_argument("--baseline-frames", type=int, default=50, help="frames for the baseline")
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = ap.parse_args(argv)

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"machine: {platform.machine()} {platform.processor() or ''}, cpus {os.cpu_count()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, threads env {threads}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"allocator: {steady_allocator()}")

    preds, gts, fix, other = make_frames(args.frames, args.height, args.width)
    nb = min(args.baseline_frames, args.frames)
    all_metrics(preds[:2], gts[:2], fix[:2], other[:2])  # warm-up (imports, caches)

    # Interleaved repeats, best of each, in CPU time of this process: the machine is
    # shared, so the minimum CPU time is the least disturbed measurement of the same work.
    sub = (preds[:nb], gts[:nb], fix[:nb], other[:nb])
    runs_ours, runs_base = [], []
    for _ in range(args.repeats):
        t0 = time.process_time()
        ours_sub = all_metrics(*sub)
        runs_ours.append(time.process_time() - t0)
        t0 = time.process_time()
        base = baseline_all(*sub)
        runs_base.append(time.process_time() - t0)
    t_ours_sub, t_base = min(runs_ours), min(runs_base)
    for m in ("cc", "nss", "sim", "kld"):
        diff = float(np.max(np.abs(ours_sub[m] - base[m])))
        assert diff < 1e-9, f"{m}: avrsp and baseline differ by {diff}"
    for m in ("auc_judd", "auc_borji", "auc_shuffled"):
        diff = float(np.max(np.abs(ours_sub[m] - base[m])))
        print(f"  {m}: max |avrsp - baseline| over {nb} frames = {diff:.4f} (random draws)")

    t0 = time.perf_counter()
    all_metrics(preds, gts, fix, other)
    t_all = time.perf_counter() - t0
    cpu0 = time.process_time()
    all_metrics(preds, gts, fix, other)
    cpu_all = time.process_time() - cpu0

    per_ours, per_base = t_ours_sub / nb * 1e3, t_base / nb * 1e3
    print(f"frames {args.height}x{args.width}; CPU time, best of {args.repeats} on {nb} frames:")
    each = ", ".join(f"{b / o:.1f}" for b, o in zip(runs_base, runs_ours, strict=True))
    print(f"(ratio in each interleaved repeat: {each})")
    print(f"baseline (MATLAB transcription): {per_base:8.2f} ms/frame")
    print(
        f"avrsp.metrics.all_metrics:       {per_ours:8.2f} ms/frame  ({per_base / per_ours:.1f}x)"
    )
    print(
        f"avrsp, all {args.frames} frames: {t_all:.2f} s wall "
        f"({t_all / args.frames * 1e3:.2f} ms/frame); second run {cpu_all:.2f} s CPU"
    )

    # Per metric, on the baseline frames (each metric alone, as its own function would be).
    from avrsp import metrics as M

    rows = []
    k = min(nb, 20)
    sub = (preds[:k], gts[:k], fix[:k], other[:k])
    per_metric = {
        "cc": (lambda p, g, f, o: M.cc(p, g), lambda p, g, f, o: cc_matlab(p, g)),
        "nss": (lambda p, g, f, o: M.nss(p, f), lambda p, g, f, o: nss_matlab(p, f)),
        "sim": (lambda p, g, f, o: M.sim(p, g), lambda p, g, f, o: sim_matlab(p, g)),
        "kld": (lambda p, g, f, o: M.kld(p, g), lambda p, g, f, o: kld_matlab(p, g)),
        "auc_judd": (
            lambda p, g, f, o: M.auc_judd(p, f),
            lambda p, g, f, o: auc_judd_matlab(p, f, np.random.default_rng(0)),
        ),
        "auc_borji": (
            lambda p, g, f, o: M.auc_borji(p, f),
            lambda p, g, f, o: auc_borji_matlab(p, f, np.random.default_rng(0)),
        ),
        "auc_shuffled": (
            lambda p, g, f, o: M.auc_shuffled(p, f, o),
            lambda p, g, f, o: auc_shuffled_matlab(p, f, o, np.random.default_rng(0)),
        ),
    }
    for name, (ours_fn, base_fn) in per_metric.items():
        times = [math.inf, math.inf]
        for _ in range(args.repeats):
            for which, fn in enumerate((ours_fn, base_fn)):
                t0 = time.process_time()
                for j in range(k):
                    fn(*(x[j] for x in sub))
                times[which] = min(times[which], (time.process_time() - t0) / k * 1e3)
        rows.append((name, times[0], times[1]))
    print(f"per metric, single-map functions, CPU ms per frame over {k}, best of {args.repeats}:")
    print(f"  {'metric':13s} {'avrsp ms':>9s} {'baseline ms':>12s} {'ratio':>6s}")
    for name, ours_ms, base_ms in rows:
        print(f"  {name:13s} {ours_ms:9.2f} {base_ms:12.2f} {base_ms / ours_ms:6.1f}")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
