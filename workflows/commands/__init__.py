"""Subcommands of the ``avrsp`` CLI, one module each; the options several of them share."""

from __future__ import annotations

import argparse
import json
from typing import Any


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(key, value)``, the value read as JSON where it is JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # a bare string such as a path or a name
    return key.strip(), value


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable): config values on top of a config or preset."""
    parser.add_argument(
        "--set", type=key_value, action="append", default=[], metavar="KEY=VALUE", help=help
    )
