"""``avrsp datasets check KIND:PATH``: videos expected, found and missing, frame counts,
maps, fixations and audio of a dataset — folder listings only, no Ray (docs/DATA.md)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="check a dataset folder against its published video lists",
        description=__doc__,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser(
        "check",
        help="videos expected/found/missing, frame counts, maps, fixations, audio "
        "(exit 0: complete, 1: something missing, 2: unusable KIND:PATH)",
    )
    c.add_argument("source", metavar="KIND:PATH", help="stavis:/data/stavis or dhf1k:/data/DHF1K")
    c.add_argument(
        "--datasets",
        help="stavis: comma-separated subset (default: every dataset with a video_frames/ folder)",
    )
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from preprocessing.sources.check import check_source

    datasets = tuple(d.strip() for d in args.datasets.split(",")) if args.datasets else None
    report = check_source(args.source, datasets=datasets)
    print(report.text())
    return 0 if report.ok else 1
