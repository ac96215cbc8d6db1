"""``avrsp evaluate``: the published protocol on every frame of a source's test videos
(docs/EVALUATION.md). Parses arguments and calls :func:`workflows.evaluate.evaluate`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workflows.protocol import AUDIO_MODES, PROTOCOLS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model (and the centre-bias baseline) by the published protocol",
        description="Every frame of every test video of SOURCE through the sliding window "
        "(step 1, reversed first windows), maps scored at the ground truth's native "
        "resolution as the benchmarks' MATLAB scripts score them (--protocol: vinet by "
        "default, stavis, or native) with SIM, CC, NSS, AUC-J and sAUC (native: KLD and "
        "AUC-B instead of sAUC), means per video then per dataset (over folds where a "
        "dataset has them). --predictions DIR scores saved maps instead of a model. Writes "
        "table.md/.csv, videos.csv, per-frame CSVs under frames/, failures.json and an "
        "MLflow run.",
    )
    p.add_argument(
        "--model",
        nargs="+",
        help="model.pt (file or run folder), runs:/ID/PATH or models:/NAME/V; or one per "
        "fold, K=MODEL (1=runs/f1 2=runs/f2 3=runs/f3): each k-fold test video scored by its "
        "fold's model, a fixed test split (DIEM) by every fold's model and averaged",
    )
    p.add_argument("--source", required=True, help="KIND:PATH, e.g. stavis:/data/stavis")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="vinet",
        help="how maps are scored: vinet (default; as ViNet's MATLAB scripts, those behind "
        "the published audio-visual tables), stavis (as STAViS' scripts: a blur first), "
        "native (float maps, no 8-bit storage; adds KLD and AUC-B)",
    )
    p.add_argument(
        "--predictions",
        nargs="+",
        help="score saved maps instead of a model: DIR/<video>/ or DIR/<dataset>/<video>/, "
        "one PNG or JPEG per frame named by frame number (…_00001.png), 8- or 16-bit; or "
        "one folder per fold, K=DIR, as --model",
    )
    p.add_argument(
        "--split",
        help="split to score: test (the default; a k-fold dataset's cv videos, every fold), "
        "val, train, or all (every video: the default of a source without splits.csv)",
    )
    p.add_argument("--fold", type=int, help="k-fold datasets: only the test videos of fold K")
    p.add_argument(
        "--audio",
        nargs="+",
        default=["real"],
        choices=AUDIO_MODES,
        help="what an AV model hears; several values give one table row each (default real)",
    )
    p.add_argument(
        "--baseline",
        choices=("centre",),
        help="score the centre-bias baseline alone (no --model needed)",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the centre-bias row (scored beside the model or maps by default)",
    )
    p.add_argument(
        "--published", action="store_true", help="add the paper's quoted rows (Tables I–II)"
    )
    p.add_argument("--out", default="runs/evaluate", help="output folder or s3://… prefix")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out")
    p.add_argument("--workers", type=int, help="model replicas (0: in this process, no Ray)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of the random metrics (AUC-B)")
    p.add_argument("--limit", type=int, help="score only the first N videos")
    p.add_argument("--mlflow-uri", help="tracking URI (default MLFLOW_TRACKING_URI or SQLite)")
    p.add_argument("--no-mlflow", action="store_true", help="write files only")
    p.set_defaults(func=run)


def check(args: argparse.Namespace) -> None:
    """The options checked as :func:`run` checks them, nothing read (``avrsp submit``)."""
    options(args, args.out, args.device, args.gpus_per_worker, split=args.split or "test")


def run(args: argparse.Namespace) -> int:
    from avrsp.inference import resolve_device
    from workflows.evaluate import default_split

    device = resolve_device(args.device)
    gpus = args.gpus_per_worker
    if device == "cuda" and not gpus and args.workers != 0:
        gpus = 1.0
    split = args.split or default_split(args.source)
    options(args, args.out, device, gpus, split=split)  # a refused option writes nothing
    from preprocessing.storage import staged_output

    with staged_output(args.out, overwrite=args.overwrite, last=("table.md", "table.csv")) as out:
        return _run(args, options(args, out, device, gpus, split=split))


def options(
    args: argparse.Namespace, out: Any, device: str, gpus: float | None, *, split: str
) -> Any:
    """The :class:`~workflows.evaluate.EvalOptions` of the arguments (checked)."""
    from workflows.evaluate import EvalOptions, parse_fold_values

    return EvalOptions(
        source=args.source,
        model=parse_fold_values(args.model, "--model"),
        split=split,
        fold=args.fold,
        audio=tuple(args.audio),
        baseline_only=args.baseline == "centre",
        baseline=not args.no_baseline,
        published=args.published,
        out=out,
        overwrite=args.overwrite,
        workers=args.workers,
        gpus_per_worker=gpus,
        cpus_per_worker=args.cpus_per_worker,
        address=args.address,
        batch_size=args.batch_size,
        device=device,
        seed=args.seed,
        limit=args.limit,
        mlflow_uri=args.mlflow_uri,
        tracking=not args.no_mlflow,
        predictions=parse_fold_values(args.predictions, "--predictions"),
        protocol=args.protocol,
    )


def _run(args: argparse.Namespace, opts: Any) -> int:
    from workflows.evaluate import evaluate

    report = evaluate(opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.table.to_markdown())
    if report.run_id:
        print(f"\nMLflow run {report.run_id}", file=sys.stderr)
    if report.failed:
        print(f"{len(report.failed)} videos failed: {args.out}/failures.json", file=sys.stderr)
        return 1
    return 0
