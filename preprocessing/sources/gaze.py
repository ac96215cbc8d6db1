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
    """Which clips each gaze CSV file mentions: ``{clip: [file, …]}`` (one cheap pass)."""
    seen: dict[str, list[str]] = {}
    for path in paths:
        try:
            with open(path, newline="") as handle:
                reader = csv.reader(handle)
                header = [h.strip() for h in next(reader, [])]
                if "video" not in header:
                    raise InputError(
                        f"{path}: gaze CSV has no 'video' column (header {header}); expected "
                        "video, frame, observer, x, y [, t]"
                    )
                col = header.index("video")
                clips = {video_key(row[col]) for row in reader if len(row) > col}
        except OSError as exc:
            raise InputError(f"{path}: cannot read gaze file ({exc.strerror})") from None
        for clip in clips:
            seen.setdefault(clip, []).append(str(path))
    return seen


def read_csv(root: str | Path, *, dataset: str | None = None) -> Listing:
    """List the clips of a plain-CSV gaze folder (module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: gaze folder does not exist")
    video_dir = root / "videos" if (root / "videos").is_dir() else root
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    per_clip_dir = root / "gaze"
    shared = sorted(root.glob("*.csv"))
    shared = [p for p in shared if p.name != "splits.csv"]
    seen = _gaze_videos(shared)
    splits = read_splits(root / "splits.csv")
    name = dataset or _dataset_name(root)
    listing = Listing()
    for video in videos:
        clip = video.stem
        own = per_clip_dir / f"{clip}.csv"
        paths = [str(own)] if own.is_file() else seen.get(clip, [])
        if not paths:
            listing.fail(name, clip, f"{video}: no gaze rows for video {clip!r} in {root}")
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
                fixations=FixationSource(kind="gaze_csv", paths=tuple(paths), video_name=clip),
            )
        )
    for clip in sorted(set(seen) - {v.stem for v in videos}):
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


def read_synthetic(root: str | Path, *, dataset: str | None = None) -> Listing:
    """The folder ``avrsp synth`` writes: plain CSV layout plus ``synthetic.json``."""
    root = Path(root)
    if not (root / "synthetic.json").is_file():
        raise InputError(f"{root}: no synthetic.json; is this a folder written by `avrsp synth`?")
    return read_csv(root, dataset=dataset or _dataset_name(root))


def read_diem(
    root: str | Path,
    *,
    screen: tuple[int, int] | None = None,
    fit: bool = True,
    event_code: int = DIEM_FIXATION,
    dataset: str = "DIEM",
) -> Listing:
    """List DIEM-style clips: a video and per-participant event files per folder.

    ``screen`` = (width, height) of the display in pixels, or a ``screen.json``
    (``{"width": …, "height": …, "fit": true}``) in ``root``.
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
                ),
            )
        )
    return listing
