"""Time the seven saliency metrics per frame at DHF1K's native 640×360 (docs/PERFORMANCE.md).

Compares :func:`avrsp.metrics.all_metrics` (the fast versions, ``avrsp/metrics/fast.py``)
with a *baseline*: the library's plain transcriptions of the MIT saliency benchmark's
MATLAB functions (``avrsp/metrics/plain.py``: ``CC.m``, ``NSS.m``, ``similarity.m``,
``KLdiv.m``, ``AUC_Judd.m``, ``AUC_Borji.m``, ``AUC_shuffled.m``, one function each, loop
for loop), frame by frame through :func:`avrsp.metrics.plain.all_metrics`. The same frames
go through both, and all seven metrics are checked to agree (same seeds, same random
draws) before any time is reported.

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
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avrsp.metrics import METRIC_NAMES, all_metrics, fast, plain

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

    The plain baseline allocates several 2 MB temporaries per metric. With glibc's defaults
    whether those come back as fresh pages (mmap, or the heap trimmed and grown again:
    a page fault per 4 KiB) depends on what the process freed before: a per-frame numpy
    baseline (the earlier private transcription) measured 21–23 ms or 33–38 ms per frame
    on the same machine depending on it. Fixing the mmap threshold at 32 MiB and the trim
    threshold at 64 MiB gives the baseline its fast case every time (avrsp allocates
    little either way), so the ratio is the conservative one and does not depend on the
    order of the measurements.
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
        base = plain.all_metrics(*sub)
        runs_base.append(time.process_time() - t0)
    t_ours_sub, t_base = min(runs_ours), min(runs_base)
    for m in METRIC_NAMES:
        diff = float(np.max(np.abs(ours_sub[m] - base[m])))
        assert diff < 1e-9, f"{m}: fast and plain differ by {diff}"
    print(f"fast and plain agree on all seven metrics over {nb} frames (< 1e-9)")

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
    print(f"baseline avrsp.metrics.plain.all_metrics: {per_base:8.2f} ms/frame")
    print(
        f"avrsp.metrics.all_metrics (fast):         {per_ours:8.2f} ms/frame  "
        f"({per_base / per_ours:.1f}x)"
    )
    print(
        f"avrsp, all {args.frames} frames: {t_all:.2f} s wall "
        f"({t_all / args.frames * 1e3:.2f} ms/frame); second run {cpu_all:.2f} s CPU"
    )

    # Per metric, on the baseline frames (each metric alone, as its own function would be).
    rows = []
    k = min(nb, 20)
    sub = (preds[:k], gts[:k], fix[:k], other[:k])
    calls = {
        "cc": lambda m, p, g, f, o: m.cc(p, g),
        "nss": lambda m, p, g, f, o: m.nss(p, f),
        "sim": lambda m, p, g, f, o: m.sim(p, g),
        "kld": lambda m, p, g, f, o: m.kld(p, g),
        "auc_judd": lambda m, p, g, f, o: m.auc_judd(p, f),
        "auc_borji": lambda m, p, g, f, o: m.auc_borji(p, f),
        "auc_shuffled": lambda m, p, g, f, o: m.auc_shuffled(p, f, o),
    }
    per_metric = {name: (partial(call, fast), partial(call, plain)) for name, call in calls.items()}
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
    print(f"  {'metric':13s} {'fast ms':>9s} {'plain ms':>12s} {'ratio':>6s}")
    for name, ours_ms, base_ms in rows:
        print(f"  {name:13s} {ours_ms:9.2f} {base_ms:12.2f} {base_ms / ours_ms:6.1f}")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
