"""The ``avrsp`` command. It only parses arguments and calls the workflows.

Each subcommand lives in its own module under ``workflows/commands/`` and exposes
``register(subparsers)``; the module list below is the one place that names them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from avrsp.errors import AVRSPError

COMMAND_MODULES = (
    "workflows.commands.preprocess",
    "workflows.commands.info",
    "workflows.commands.demo",
    "workflows.commands.synth",
    "workflows.commands.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avrsp",
        description="AVRSP audio-visual video saliency: data, training, evaluation on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AVRSPError as exc:
        print(f"avrsp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avrsp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
