"""``avrsp preprocess``: videos + gaze → Parquet segment shards (the Ray Data job)."""

from __future__ import annotations

import argparse
from typing import Any

from avrsp.config import AVRSPConfig, preset
from avrsp.errors import InputError


def _screen(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"expected positive WIDTHxHEIGHT, got {text!r}")
    return w, h


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="decode videos and gaze into Parquet segment shards (Ray Data)",
        description="Write one Parquet row per training window (docs/DATA.md). Re-running "
        "the same command resumes; failed videos are listed in OUT/failures.json.",
    )
    p.add_argument(
        "--source",
        required=True,
        metavar="KIND:PATH",
        help="dhf1k:, stavis:, csv:, synthetic: or diem: followed by the dataset folder",
    )
    p.add_argument("--out", required=True, help="output folder, or an object store: s3://BUCKET/…")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=("tiny", "paper"), default="paper")
    group.add_argument("--config", help="config file (JSON/YAML) instead of a preset")
    p.add_argument("--stride", type=int, help="frames between windows (default T/2)")
    p.add_argument(
        "--target",
        choices=("auto", "fixations", "dataset"),
        default="auto",
        help="target map: the dataset's own maps when shipped (auto), or made from fixations",
    )
    p.add_argument("--sigma-px", type=float, help="Gaussian sigma in native pixels")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a bad gaze row (not a number, negative frame, too few fields) fails its video; "
        "default: the row is dropped and named in the report",
    )
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--max-shard-mb", type=int, default=256, help="largest shard file, MiB")
    p.add_argument("--datasets", help="stavis: comma-separated subset, e.g. AVAD,DIEM")
    p.add_argument("--fps", type=float, help="dhf1k: frame rate of the frame folders")
    p.add_argument("--screen", type=_screen, help="diem: screen size WIDTHxHEIGHT in pixels")
    p.add_argument(
        "--no-fit",
        action="store_true",
        help="diem: the video was shown at native size (not scaled to fit the screen)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete what an earlier run wrote to --out and start again (a re-run with the "
        "same options resumes; with other options it is refused)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument(
        "--no-ray", action="store_true",
        help="run without Ray, in --num-cpus local processes (default: all CPUs)",
    )  # fmt: skip
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> tuple[AVRSPConfig, Any]:
    """The config and the :class:`~preprocessing.segments.SegmentOptions` the arguments
    give, checked (no video or gaze file is read)."""
    from preprocessing.segments import MiB, SegmentOptions

    config = AVRSPConfig.load(args.config) if args.config else preset(args.preset)
    if args.stride is not None and args.stride < 1:
        raise InputError(f"--stride must be >= 1, got {args.stride}")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise InputError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    if args.fps is not None and not 0 < args.fps < float("inf"):
        raise InputError(f"--fps must be a positive number, got {args.fps}")
    return config, SegmentOptions.from_config(
        config,
        stride=args.stride,
        target=args.target,
        sigma_px=args.sigma_px,
        jpeg_quality=args.jpeg_quality,
        max_shard_bytes=args.max_shard_mb * MiB,
    )


def check(args: argparse.Namespace) -> None:
    """The options checked as :func:`run` checks them (``avrsp submit``)."""
    options(args)


def run(args: argparse.Namespace) -> int:
    import os

    from preprocessing.pipeline import preprocess

    # Options here, the source's files when it is listed: all before Ray starts (exit 2).
    config, segment_options = options(args)
    datasets = tuple(d.strip() for d in args.datasets.split(",")) if args.datasets else None
    report = preprocess(
        args.source,
        args.out,
        config=config,
        options=segment_options,
        source_options={
            "datasets": datasets,
            "fps": args.fps,
            "screen": args.screen,
            "fit": not args.no_fit,
            "strict": args.strict,
        },
        address=args.address or os.environ.get("RAY_ADDRESS"),
        num_cpus=args.num_cpus or (os.cpu_count() if args.no_ray else None),
        use_ray=not args.no_ray,
        overwrite=args.overwrite,
    )
    return 1 if report.failed else 0
