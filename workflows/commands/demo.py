"""``avrsp demo``: the README's first command (see workflows/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from workflows import demo

    parser = sub.add_parser(
        "demo",
        help="synthetic data → Ray Data shards → train V and AV (tiny) → per-condition table",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--clips", type=int, default=demo.DEMO_CLIPS, help="synthetic clips")
    parser.add_argument("--epochs", type=int, default=demo.DEMO_EPOCHS, help="epochs per model")
    parser.add_argument(
        "--steps", type=int, default=demo.DEMO_STEPS_PER_EPOCH, help="steps per epoch"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workflows.demo import run_demo

    run_demo(args.out, clips=args.clips, epochs=args.epochs, steps=args.steps)
    return 0
