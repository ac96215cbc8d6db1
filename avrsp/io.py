"""Atomic writes: a file appears whole or not at all.

The single files the project writes for later runs to read (tables, configs, manifests,
failure reports, models, markers, synthetic clips) go through :func:`atomic_write`; shard
files and checkpoint folders are renamed into place by their own writers. The content goes
to a temporary name in the same folder and is renamed over the target (``os.replace`` is
atomic within a file system), so an interrupted job leaves the old file or the new one,
and at worst a hidden ``.NAME.*.tmp`` leftover beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """``with atomic_write(p) as tmp:`` write ``tmp`` (a path in ``p``'s folder); on a clean
    exit it is renamed to ``p``, on an exception removed. ``suffix``: the temporary name's
    ending, for writers that pick a format by it (ffmpeg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
