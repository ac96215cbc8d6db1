"""``avrsp predict``: saliency maps, an overlay video and relevance plots for a video or a
folder of videos (docs/PREDICT.md). Parses arguments and calls :func:`workflows.predict.predict`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from avrsp.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    from workflows.predict import DEFAULT_MODEL, DEVICES, FORMATS, SIZES

    p = subparsers.add_parser(
        "predict",
        help="saliency maps + overlay video (+ relevance plot) for any video or folder",
        description="Predict where people look in every frame of VIDEO, or of every video "
        "in FOLDER (through a Ray Data pool of model replicas). Writes OUT/<video name>/: "
        "maps/ (or maps.npz), times.csv, overlay.mp4, summary.json, and for audio-visual "
        "models relevance.png and relevance.csv. Exit code 0: all done; 1: some videos of a "
        "folder failed (OUT/failures.json); 2: a bad argument or a single video that failed.",
    )
    p.add_argument("source", metavar="VIDEO|FOLDER", help="a video file, or a folder of them")
    p.add_argument(
        "--model",
        help="exported model: model.pt, a folder holding one, or an MLflow URI (runs:/RUN_ID/"
        f"model, models:/NAME/VERSION); default {DEFAULT_MODEL}, the AV model of `avrsp demo`",
    )
    p.add_argument(
        "--mlflow-uri", help="tracking URI for --model URIs (default MLFLOW_TRACKING_URI or SQLite)"
    )
    p.add_argument(
        "--out", default="runs/predict", help="output folder or s3://… prefix (runs/predict)"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="png: maps/NNNNNN.png, 8-bit, each scaled to its own maximum; npz: maps.npz "
        "with float32 maps, times and fps",
    )
    p.add_argument(
        "--size", choices=SIZES, default="model", help="maps at the model's size or the video's"
    )
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda if available")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument(
        "--overwrite", action="store_true", help="replace predict's outputs in OUT/<name>/"
    )
    p.add_argument(
        "--workers",
        type=int,
        help="FOLDER: model replicas (default: one per GPU or CPU; 0: no Ray)",
    )
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="FOLDER: CPUs per replica")
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        help="FOLDER: GPUs per replica (default 1 where Ray has GPUs)",
    )
    p.add_argument("--address", help="FOLDER: Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def predict_options(args: argparse.Namespace) -> Any:
    """The :class:`~workflows.predict.PredictOptions` of the arguments (checked)."""
    from workflows.predict import PredictOptions

    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}")
    return PredictOptions(
        format=args.format,
        size=args.size,
        overlay=not args.no_overlay,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
    )


def check(args: argparse.Namespace) -> None:
    """The options checked as :func:`run` checks them, nothing read (``avrsp submit``)."""
    predict_options(args)


def run(args: argparse.Namespace) -> int:
    from workflows.predict import predict

    options = predict_options(args)
    from preprocessing.storage import staged_output

    with staged_output(args.out, overwrite=args.overwrite, last=("summary.json",)) as out:
        report = predict(
            args.source,
            out,
            model=args.model,
            options=options,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            gpus_per_worker=args.gpus_per_worker,
            address=args.address,
            tracking_uri=args.mlflow_uri,
            progress=not args.quiet,
        )
    if not Path(args.source).is_dir():
        result = report.results[0]
        print(
            f"{result['name']}: {result['frames']} maps in {result['seconds']:.1f} s "
            f"({result['frames_per_s']:.1f} frames/s) → {result['folder']}/ "
            f"({', '.join(result['outputs'])})"
        )
        return 0
    done, failed = len(report.results), len(report.failures)
    line = f"{done} of {done + failed} videos done → {args.out}/"
    if failed:
        line += f"; {failed} failed, listed in {args.out}/failures.json"
    print(line)
    return report.exit_code
