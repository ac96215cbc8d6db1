"""Compare avrsp.metrics with pysaliency's implementations on random maps.

pysaliency is not a project dependency (it builds from source, imports torch and pandas
without declaring them and needs numpy < 2.4), so this script runs in a separate venv::

    python3.11 -m venv /work/venv-pysaliency
    /work/venv-pysaliency/bin/pip install "numpy<2.4" pandas cython setuptools wheel scipy
    /work/venv-pysaliency/bin/pip install --no-build-isolation pysaliency==0.2.22
    # torch: reuse the project venv's copy instead of downloading another one
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /work/venv-pysaliency/lib/python3.11/site-packages/zz_main_venv_torch.pth
    OMP_NUM_THREADS=1 /work/venv-pysaliency/bin/python benchmarks/compare_pysaliency.py --time

Where both libraries define the same quantity, the maximum absolute difference over the
random cases is printed. Where they define it differently, both the raw difference and
the difference after accounting for the documented convention are printed:

* NSS: pysaliency's ``std`` divides by N, MATLAB's (ours) by N−1, so
  ``ours = pysaliency · sqrt((N − 1) / N)``.
* SIM: pysaliency does not min-max normalise (it only shifts maps with negative values),
  MATLAB does; the two agree on maps whose minimum is 0.
* AUC-Judd: pysaliency's ``general_roc(fixated, unfixated, judd=1)`` is MATLAB's
  ``AUC_Judd`` (jitter 0) on maps without ties; with ties they count differently.
* AUC-Borji and shuffled AUC have no pysaliency counterpart with MATLAB's fixed threshold
  step and random negatives (pysaliency's AUCs sweep every value), so they are not compared.

With ``--time`` it also times pysaliency's functions and ours per 640×360 frame.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pysaliency import metrics as pm
from pysaliency.roc import general_roc

from avrsp import metrics as M

# benchmarks/metrics.py (its DHF1K-like frames), loaded under a unique name.
_spec = importlib.util.spec_from_file_location(
    "benchmarks_metrics", Path(__file__).with_name("metrics.py")
)
benchmarks_metrics = importlib.util.module_from_spec(_spec)
sys.modules["benchmarks_metrics"] = benchmarks_metrics
_spec.loader.exec_module(benchmarks_metrics)


def random_case(rng: np.random.Generator, shape: tuple[int, int], ties: bool):
    """Prediction (smooth blob + noise, or 8-bit with ties), GT map, fixation map."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    pred = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (h / 4) ** 2))
    pred = pred + 0.3 * rng.random(shape)
    if ties:
        pred = np.round(pred / pred.max() * 20)  # few distinct values
    gt = np.exp(-((yy - cy + 3) ** 2 + (xx - cx - 2) ** 2) / (2 * (h / 5) ** 2))
    gt = gt + 0.05 * rng.random(shape)
    fix = np.zeros(shape, bool)
    k = int(rng.integers(5, 60))
    fix[rng.integers(0, h, k), rng.integers(0, w, k)] = True
    return pred, gt, fix


def judd_pysaliency(pred: np.ndarray, fix: np.ndarray) -> float:
    pos = pred[fix].astype(float)
    neg = pred[~fix].astype(float)
    return float(general_roc(pos, neg, judd=1)[0])


def compare(n_cases: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {}

    def add(name: str, a: float, b: float) -> None:
        diffs.setdefault(name, []).append(abs(a - b))

    for i in range(n_cases):
        shape = (int(rng.integers(20, 90)), int(rng.integers(20, 120)))
        pred, gt, fix = random_case(rng, shape, ties=False)
        ys, xs = np.nonzero(fix)
        n = pred.size
        add("CC", M.cc(pred, gt), pm.CC(pred, gt))
        nss_p = float(np.mean(pm.NSS(pred, xs, ys)))
        add("NSS raw (std N vs N-1)", M.nss(pred, fix), nss_p)
        add("NSS, pysaliency*sqrt((N-1)/N)", M.nss(pred, fix), nss_p * np.sqrt((n - 1) / n))
        add("SIM raw (no min-max in pysaliency)", M.sim(pred, gt), pm.SIM(pred, gt))
        p0, g0 = pred - pred.min(), gt - gt.min()
        add("SIM, maps with minimum 0", M.sim(p0, g0), pm.SIM(p0, g0))
        add("KLD (MIT_KLDiv)", M.kld(pred, gt), pm.MIT_KLDiv(pred, gt))
        add(
            "AUC-Judd, no ties (jitter 0)",
            M.auc_judd(pred, fix, jitter=False),
            judd_pysaliency(pred, fix),
        )
        tied, _, _ = random_case(rng, shape, ties=True)
        add(
            "AUC-Judd, 8-bit ties (differs)",
            M.auc_judd(tied, fix, jitter=False),
            judd_pysaliency(tied, fix),
        )
        if i == 0:
            print(f"pysaliency {version('pysaliency')}, numpy {np.__version__}")

    print(f"max |avrsp - pysaliency| over {n_cases} random maps (seed {seed}):")
    for name, values in diffs.items():
        print(f"  {name:38s} {max(values):.3e}")


def timing(frames: int) -> None:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    cases = [random_case(rng, (360, 640), ties=False) for _ in range(frames)]
    pairs = {
        "CC": (lambda p, g, f: M.cc(p, g), lambda p, g, f: pm.CC(p, g)),
        "NSS": (lambda p, g, f: M.nss(p, f), lambda p, g, f: pm.NSS(p, *np.nonzero(f)[::-1])),
        "SIM": (lambda p, g, f: M.sim(p, g), lambda p, g, f: pm.SIM(p, g)),
        "KLD": (lambda p, g, f: M.kld(p, g), lambda p, g, f: pm.MIT_KLDiv(p, g)),
        "AUC-Judd": (lambda p, g, f: M.auc_judd(p, f), lambda p, g, f: judd_pysaliency(p, f)),
    }
    print(f"CPU ms per 640x360 frame, mean of {frames} frames, single-map functions:")
    print(f"  {'metric':9s} {'avrsp ms':>9s} {'pysaliency ms':>14s} {'ratio':>6s}")
    for name, (ours, theirs) in pairs.items():
        times = []
        for fn in (ours, theirs):
            fn(*cases[0])
            t0 = time.process_time()
            for c in cases:
                fn(*c)
            times.append((time.process_time() - t0) / frames * 1e3)
        print(f"  {name:9s} {times[0]:9.2f} {times[1]:14.2f} {times[1] / times[0]:6.1f}")


def timing_set(frames: int, repeats: int = 3) -> None:
    """The seven metrics per frame: avrsp's batch vs pysaliency where it has the metric.

    Baseline per frame: pysaliency's CC, NSS, SIM, MIT_KLDiv and ``general_roc`` (AUC-Judd,
    on the map jittered as MATLAB does), plus the library's plain transcriptions of
    AUC-Borji and shuffled AUC (``avrsp.metrics.plain``; pysaliency has no counterpart).
    """
    import torch
    from benchmarks_metrics import make_frames

    torch.set_num_threads(1)
    preds, gts, fix, other = make_frames(frames)
    rng = np.random.default_rng(0)

    def baseline() -> None:
        for i in range(frames):
            p, g, f, o = preds[i].astype(np.float64), gts[i], fix[i], other[i]
            ys, xs = np.nonzero(f)
            pm.CC(p, g)
            np.mean(pm.NSS(p, xs, ys))
            pm.SIM(p, g)
            pm.MIT_KLDiv(p, g)
            judd_pysaliency(p + rng.random(p.shape) / 1e7, f)
            M.plain.auc_borji(p, f)
            M.plain.auc_shuffled(p, f, o)

    def ours() -> None:
        M.all_metrics(preds, gts, fix, other)

    ours()
    best = {}
    for name, fn in (("avrsp.all_metrics", ours), ("pysaliency + transcription", baseline)):
        t = math.inf
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            t = min(t, time.process_time() - t0)
        best[name] = t / frames * 1e3
    print(f"the seven metrics per 640x360 frame, CPU ms, best of {repeats} over {frames} frames:")
    for name, ms in best.items():
        print(f"  {name:28s} {ms:8.2f}")
    ratio = best["pysaliency + transcription"] / best["avrsp.all_metrics"]
    print(f"  ratio {ratio:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time", action="store_true", help="also time both at 640x360")
    ap.add_argument("--frames", type=int, default=20, help="frames for --time")
    args = ap.parse_args()
    compare(args.cases, args.seed)
    if args.time:
        timing(args.frames)
        timing_set(args.frames)


if __name__ == "__main__":
    main()
