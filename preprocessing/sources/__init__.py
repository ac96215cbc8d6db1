"""Dataset readers, one module per published layout; each lists :class:`VideoRecord` s.

``open_source("KIND:PATH", **options)`` picks the reader by KIND:

| KIND | layout | module |
|---|---|---|
| ``dhf1k`` | DHF1K frame folders or official release | :mod:`.dhf1k` |
| ``stavis`` | AVAD, Coutrot_db1/2, DIEM, ETMD_av, SumMe in the STAViS layout | :mod:`.stavis` |
| ``csv`` | videos + plain gaze CSV | :mod:`.gaze` |
| ``synthetic`` | what ``avrsp synth`` writes (plain CSV + synthetic.json) | :mod:`.gaze` |
| ``diem`` | raw DIEM-style videos + per-participant event files | :mod:`.gaze` |
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

from avrsp.errors import InputError
from preprocessing.names import file_names
from preprocessing.records import VideoRecord
from preprocessing.sources import dhf1k, gaze, stavis
from preprocessing.sources.common import Listing

READERS = {
    "dhf1k": dhf1k.read,
    "stavis": stavis.read,
    "csv": gaze.read_csv,
    "synthetic": gaze.read_synthetic,
    "diem": gaze.read_diem,
}


def parse_source(spec: str) -> tuple[str, Path]:
    """``"KIND:PATH"`` → (kind, path)."""
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not path or kind not in READERS:
        raise InputError(
            f"--source {spec!r}: expected KIND:PATH with KIND one of {', '.join(READERS)}"
        )
    return kind, Path(path)


def open_source(spec: str, **options: Any) -> Listing:
    """List the videos of ``spec`` = ``KIND:PATH``. Options a reader does not take are ignored
    (e.g. ``screen`` only matters for ``diem``); None values mean the reader's default.

    Raises InputError for a missing folder and for a source without any video.
    """
    kind, path = parse_source(spec)
    reader = READERS[kind]
    accepted = inspect.signature(reader).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    if not path.is_dir():
        raise InputError(f"--source {spec}: {path} is not a folder")
    listing = reader(path, **kwargs)
    if listing.empty:
        raise InputError(f"--source {spec}: no videos found in {path} ({kind} layout expected)")
    listing.records = with_file_stems(listing.records)
    return listing


def with_file_stems(records: list[VideoRecord]) -> list[VideoRecord]:
    """The records with :attr:`VideoRecord.stem` set: file names unique within each dataset,
    case and Unicode forms ignored (:func:`preprocessing.names.file_names`)."""
    by_dataset: dict[str, list[str]] = {}
    for r in records:
        by_dataset.setdefault(r.dataset, []).append(r.video_id)
    stems = {d: file_names(ids) for d, ids in by_dataset.items()}
    return [replace(r, stem=stems[r.dataset][r.video_id]) for r in records]


__all__ = ["READERS", "Listing", "open_source", "parse_source"]
