"""``avrsp demo``: the README's first command (see workflows/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the end-to-end demo on the embedded defaults")
    parser.add_argument(
        "--video", type=Path, default=None, help="a video with audio (default: a bundled clip)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workflows.demo import run_demo

    run_demo(video=args.video, out=args.out)
    return 0
