"""``avrsp synth``: write the synthetic "which object sounds?" dataset (docs/SYNTHETIC.md)."""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter

from avrsp.errors import InputError


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[x×](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected WxH such as 160x96, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic audio-visual relevance dataset (videos, gaze, truth)",
        description="Write DIR/videos/*.mp4, DIR/gaze/*.csv, DIR/splits.csv and "
        "DIR/synthetic.json: clips where one of 2-3 moving objects sounds (relevant), "
        "music plays (irrelevant) or nothing does (silent). Deterministic from --seed.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--videos", type=int, default=24, metavar="N", help="clips (24)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    parser.add_argument(
        "--size", type=_size, default=(160, 96), metavar="WxH", help="frame size (160x96)"
    )
    parser.add_argument("--fps", type=float, default=25.0, metavar="F", help="frame rate (25)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, metavar="S", help="length of each clip (5)"
    )
    parser.add_argument(
        "--observers", type=int, default=12, metavar="K", help="simulated observers (12)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, metavar="W",
        help="clips written at a time, in worker processes (default: one per CPU)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from preprocessing.synthetic import SynthSettings, write_dataset

    if args.videos < 1:
        raise InputError(f"--videos must be >= 1, got {args.videos}")
    settings = SynthSettings(
        videos=args.videos,
        seed=args.seed,
        width=args.size[0],
        height=args.size[1],
        fps=args.fps,
        seconds=args.seconds,
        observers=args.observers,
    )
    manifest = write_dataset(args.out, settings, workers=args.workers)
    counts = Counter((c["split"], c["condition"]) for c in manifest["clips"])
    parts = ", ".join(f"{n} {split}/{cond}" for (split, cond), n in sorted(counts.items()))
    print(
        f"wrote {len(manifest['clips'])} clips ({parts}) of {settings.width}x{settings.height} "
        f"at {settings.fps:g} fps, {settings.seconds:g} s, to {args.out} "
        f"in {manifest['_seconds']:.1f} s"
    )
    return 0
