"""The ``avrsp`` command. It only parses arguments and calls the workflows.

Each subcommand lives in its own module under ``workflows/commands/`` and exposes
``register(subparsers)``; the module list below is the one place that names them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from avrsp.errors import AVRSPError, storage_error

COMMAND_MODULES = (
    "workflows.commands.preprocess",
    "workflows.commands.info",
    "workflows.commands.datasets",
    "workflows.commands.demo",
    "workflows.commands.synth",
    "workflows.commands.train",
    "workflows.commands.evaluate",
    "workflows.commands.predict",
    "workflows.commands.tune",
    "workflows.commands.submit",
)
#: Commands that run Ray or MLflow: their logs go to a file unless --verbose (workflows/logs.py).
FRAMEWORK_COMMANDS = ("demo", "preprocess", "train", "evaluate", "predict", "tune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avrsp",
        description="AVRSP audio-visual video saliency: data, training, evaluation on Ray.",
    )
    verbose = "show Ray's and MLflow's logs here instead of in a log file"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name in FRAMEWORK_COMMANDS:  # also accepted after the command: avrsp demo --verbose
        sub.choices[name].add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in FRAMEWORK_COMMANDS and not args.verbose:
        from workflows.logs import route_framework_logs

        path = route_framework_logs(args.command)
        note = f"avrsp {args.command}: Ray and MLflow log to {path} (--verbose: here)"
        print(note, file=sys.stderr)
    elif args.command in FRAMEWORK_COMMANDS:
        from workflows.logs import unroute

        unroute()
    try:
        return int(args.func(args) or 0)
    except AVRSPError as exc:
        print(f"avrsp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avrsp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A full disk, a quota, a read-only or failing device: the user's to fix, so one
        # line naming the file, not the traceback of whichever library was writing.
        error = storage_error(
            exc, where=getattr(args, "out", None) or getattr(args, "storage", None)
        )
        if error is None:
            raise
        print(f"avrsp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
