"""Atomic writes: a file appears whole or not at all.

The single files the project writes for later runs to read (tables, configs, manifests,
failure reports, models, markers, synthetic clips) go through :func:`atomic_write`; shard
files and checkpoint folders are renamed into place by their own writers. The content goes
to a temporary name in the same folder and is renamed over the target (``os.replace`` is
atomic within a file system), so an interrupted job leaves the old file or the new one,
and at worst a hidden ``.NAME.*.tmp`` leftover beside it. The file gets the mode any
new file gets (0666 less the umask: 0644 as a rule), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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
    tmp = _new_file(path.parent, f".{path.name}.", suffix)
    try:
        with naming(path):
            yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """``with naming(p):`` an ``OSError`` raised in the block that names no file gets
    ``p`` as its file name. A write or close that hits a full disk raises ``ENOSPC``
    without one (``Path.write_text``, PIL, ``zipfile``), and the user must be told which
    file it was (:func:`avrsp.errors.storage_error`)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


@contextlib.contextmanager
def made_folders_removed_on_error(folder: str | Path) -> Iterator[Path]:
    """``with made_folders_removed_on_error(out):`` — if the block raises, the folders of
    ``out``'s path that did not exist when it began (``out`` and its missing parents) are
    removed again while they are empty: a refused or failed run leaves no empty folder it
    made, and never touches what was there before or anything written."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        yield folder
    except BaseException:
        for made in missing:
            try:
                made.rmdir()
            except FileNotFoundError:
                continue  # never made: the run stopped before
            except OSError:
                break  # holds something: it and its parents stay
        raise


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """An empty file of a new name in ``folder``, created exclusively like ``mkstemp``'s but
    with the usual mode (0666 less the umask), which ``os.replace`` carries to the target."""
    while True:
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


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
