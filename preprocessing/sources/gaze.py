"""Raw videos with gaze samples: the plain CSV layout (also written by ``avrsp synth``) and
DIEM-style per-participant event files (formats in docs/DATA.md).

Plain CSV (``csv:DIR`` or ``synthetic:DIR``)::

    DIR/videos/<clip>.<mp4|avi|…>         the videos, with their soundtracks
    DIR/gaze.csv  or  DIR/*.csv           rows  video, frame, observer, x, y [, t]
    DIR/gaze/<clip>.csv                   or one file per clip (read alone for that clip)
    DIR/splits.csv                        optional: video, split [, fold]

DIEM-style (``diem:DIR``)::

    DIR/<clip>/video/<clip>.<ext>  (or DIR/<clip>/<clip>.<ext>)
    DIR/<clip>/event_data/*.txt          one file per participant

DIEM gaze is in screen pixels; the screen size (and whether the video was scaled to fit
it) must be given, see :class:`preprocessing.records.ScreenMapping`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from avrsp.errors import InputError
from preprocessing.records import (
    DIEM_FIXATION,
    VIDEO_SUFFIXES,
    FixationSource,
    ScreenMapping,
    VideoRecord,
    find_video_file,
    gaze_csv_columns,
    open_gaze_csv,
    read_gaze_header,
    video_key,
)
from preprocessing.sources.common import Listing

SPLITS = ("train", "val", "test", "cv")


def read_splits(path: Path) -> dict[str, tuple[str, int]]:
    """``{clip: (split, fold)}`` from an optional ``splits.csv`` (video, split[, fold])."""
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, int]] = {}
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            split = (row.get("split") or "").strip()
            if split not in SPLITS:
                raise InputError(
                    f"{path}, line {line}: split must be one of {SPLITS}, got {split!r}"
                )
            try:
                fold = int(row.get("fold") or 0)
            except ValueError:
                raise InputError(f"{path}, line {line}: fold is not an integer") from None
            out[video_key(row["video"])] = (split, fold)
    return out


def _gaze_videos(paths: list[Path]) -> dict[str, list[str]]:
    """Which clips each gaze CSV file mentions: ``{clip: [file, …]}`` (one cheap pass that
    also checks each file's header: an unusable file is an error before any work)."""
    seen: dict[str, list[str]] = {}
    for path in paths:
        with open_gaze_csv(path) as handle:
            reader = csv.reader(handle)
            try:
                col = gaze_csv_columns(path, next(reader, []))["video"]
                clips = {
                    video_key(row[col]) for row in reader if len(row) > col and row[col].strip()
                }
            except UnicodeDecodeError:
                raise InputError(f"{path}: gaze CSV is not a text file") from None
        for clip in clips:
            seen.setdefault(clip, []).append(str(path))
    return seen


def _check_headers(paths: list[Path]) -> None:
    """Every per-clip gaze file has the needed columns; one error names all that do not."""
    problems = []
    for path in paths:
        try:
            read_gaze_header(path)
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 3} more files)" if len(problems) > 3 else ""
        raise InputError("; ".join(problems[:3]) + more)


def read_csv(root: str | Path, *, dataset: str | None = None, strict: bool = False) -> Listing:
    """List the clips of a plain-CSV gaze folder (module docstring).

    Gaze files are checked here, before any video is decoded: a folder without any gaze
    CSV, and a CSV that is empty or lacks a column, are errors. ``strict``: a bad gaze row
    fails its video instead of being dropped (:class:`preprocessing.records.FixationSource`).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: gaze folder does not exist")
    video_dir = root / "videos" if (root / "videos").is_dir() else root
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    per_clip_dir = root / "gaze"
    shared = sorted(root.glob("*.csv"))
    shared = [p for p in shared if p.name != "splits.csv"]
    own_files = sorted(per_clip_dir.glob("*.csv")) if per_clip_dir.is_dir() else []
    if videos and not shared and not own_files:
        raise InputError(
            f"{root}: no gaze CSV: expected {root / 'gaze.csv'} (or other {root}/*.csv) or "
            f"one {per_clip_dir}/<clip>.csv per video, columns video, frame, observer, x, y "
            "[, t] (docs/DATA.md)"
        )
    seen = _gaze_videos(shared)
    _check_headers([p for p in own_files if p.stem in {v.stem for v in videos}])
    splits = read_splits(root / "splits.csv")
    name = dataset or _dataset_name(root)
    listing = Listing()
    for video in videos:
        clip = video.stem
        own = per_clip_dir / f"{clip}.csv"
        paths = [str(own)] if own.is_file() else seen.get(clip, [])
        if not paths:
            searched = ", ".join(p.name for p in shared) or "no shared CSV"
            listing.fail(
                name,
                clip,
                f"{video}: no gaze rows for video {clip!r} in {root} ({searched}; "
                f"no {per_clip_dir.name}/{clip}.csv)",
            )
            continue
        split, fold = splits.get(clip, ("train", 0))
        listing.records.append(
            VideoRecord(
                dataset=name,
                video_id=clip,
                split=split,
                fold=fold,
                frames=str(video),
                audio=str(video),
                fixations=FixationSource(
                    kind="gaze_csv", paths=tuple(paths), video_name=clip, strict=strict
                ),
            )
        )
    own_clips = {p.stem for p in own_files}
    for clip in sorted((set(seen) | own_clips) - {v.stem for v in videos}):
        listing.skip(name, clip, f"gaze rows but no video file in {video_dir}")
    return listing


def _dataset_name(root: Path) -> str:
    meta = root / "synthetic.json"
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
        except ValueError as exc:
            raise InputError(f"{meta}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("dataset"), str):
            return data["dataset"]
        return "synthetic"
    return root.resolve().name


def read_synthetic(
    root: str | Path, *, dataset: str | None = None, strict: bool = False
) -> Listing:
    """The folder ``avrsp synth`` writes: plain CSV layout plus ``synthetic.json``."""
    root = Path(root)
    if not (root / "synthetic.json").is_file():
        raise InputError(f"{root}: no synthetic.json; is this a folder written by `avrsp synth`?")
    return read_csv(root, dataset=dataset or _dataset_name(root), strict=strict)


def read_diem(
    root: str | Path,
    *,
    screen: tuple[int, int] | None = None,
    fit: bool = True,
    event_code: int = DIEM_FIXATION,
    dataset: str = "DIEM",
    strict: bool = False,
) -> Listing:
    """List DIEM-style clips: a video and per-participant event files per folder.

    ``screen`` = (width, height) of the display in pixels, or a ``screen.json``
    (``{"width": …, "height": …, "fit": true}``) in ``root``. ``strict``: a bad event line
    fails its video instead of being dropped.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: DIEM folder does not exist")
    if screen is None:
        meta = root / "screen.json"
        if not meta.is_file():
            raise InputError(
                f"{root}: DIEM gaze is in screen pixels; give the screen size "
                "(--screen WxH) or a screen.json with width, height, fit"
            )
        try:
            data = json.loads(meta.read_text())
            screen, fit = (int(data["width"]), int(data["height"])), bool(data.get("fit", True))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{meta}: needs integer width and height ({exc})") from None
    if min(screen) < 1:
        raise InputError(
            f"{root}: screen size must be positive pixels WIDTHxHEIGHT, got {screen[0]}x{screen[1]}"
        )
    mapping = ScreenMapping(screen_width=screen[0], screen_height=screen[1], fit=fit)
    splits = read_splits(root / "splits.csv")
    listing = Listing()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        clip = folder.name
        video = find_video_file(folder / "video") or find_video_file(folder, clip)
        events = sorted((folder / "event_data").glob("*.txt"))
        if video is None and not events:
            continue  # not a clip folder
        if video is None:
            listing.fail(dataset, clip, f"{folder}: event files but no video file")
            continue
        if not events:
            listing.fail(dataset, clip, f"{folder / 'event_data'}: no event files")
            continue
        split, fold = splits.get(clip, ("train", 0))
        listing.records.append(
            VideoRecord(
                dataset=dataset,
                video_id=clip,
                split=split,
                fold=fold,
                frames=str(video),
                audio=str(video),
                fixations=FixationSource(
                    kind="diem_events",
                    paths=tuple(str(p) for p in events),
                    screen=mapping,
                    event_code=event_code,
                    strict=strict,
                ),
            )
        )
    return listing
