"""DHF1K (Wang et al., CVPR 2018): 1000 videos at 30 fps, visual only (docs/DATA.md).

Split by video number: 1–600 train, 601–700 val, 701–1000 test (annotations hidden;
such videos are listed as skipped unless their annotation folders exist).

Two layouts are read:

- frame folders (as the peers' preparation scripts leave them), either flat
  ``ROOT/<vid>/`` or under ``ROOT/{train,val,test}/<vid>/``, each with
  ``images/%04d.png``, ``maps/%04d.png`` and ``fixation/%04d.png``;
- the official release: ``ROOT/video/<n>.AVI`` with ``ROOT/annotation/<%04d>/maps`` and
  ``…/fixation``.

The annotation folder ``fixation`` holds *binary* PNG maps (fixated pixels non-zero); some
copies nest them one level deeper as ``fixation/maps/%04d.png``; both are accepted.
"""

from __future__ import annotations

from pathlib import Path

from avrsp.errors import InputError
from preprocessing.records import VIDEO_SUFFIXES, FixationSource, VideoRecord
from preprocessing.sources.common import Listing, check_contiguous, numbered

DATASET = "DHF1K"
FPS = 30.0  # DHF1K's videos are all 30 fps
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def split_of(number: int) -> str:
    """DHF1K's published split by 1-based video number."""
    if 1 <= number <= 600:
        return "train"
    if 601 <= number <= 700:
        return "val"
    return "test"


def read(root: str | Path, *, fps: float = FPS) -> Listing:
    """List the DHF1K videos under ``root`` (either layout)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: DHF1K folder does not exist")
    listing = Listing()
    if (root / "video").is_dir():
        _read_official(root, listing)
    else:
        folders = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
        for split_dir in ("train", "val", "test", "training", "validation"):
            if (root / split_dir).is_dir():
                folders += [p for p in (root / split_dir).iterdir() if p.is_dir()]
        for folder in sorted(folders, key=lambda p: p.name):
            _read_frame_folder(folder, listing, fps)
    listing.records.sort(key=lambda r: r.video_id)
    return listing


def _annotation(folder: Path) -> tuple[FixationSource, str | None, int | None]:
    """Fixation source, maps pattern and annotated frame count of an annotation folder."""
    fix = numbered(folder / "fixation", "", IMAGE_SUFFIXES) or numbered(
        folder / "fixation" / "maps", "", IMAGE_SUFFIXES
    )
    maps = numbered(folder / "maps", "", IMAGE_SUFFIXES)
    source = (
        FixationSource(kind="binary_image", pattern=fix.pattern, first_index=fix.first)
        if fix
        else FixationSource()
    )
    count = fix.count if fix else (maps.count if maps else None)
    return source, (maps.pattern if maps else None), count


def _read_frame_folder(folder: Path, listing: Listing, fps: float) -> None:
    if not folder.name.isdigit():
        listing.skip(DATASET, folder.name, "folder name is not a DHF1K video number")
        return
    number = int(folder.name)
    video_id = f"{number:04d}"
    frames = numbered(folder / "images", "", IMAGE_SUFFIXES)
    if frames is None:
        listing.fail(DATASET, video_id, f"{folder / 'images'}: no numbered frame images")
        return
    try:
        check_contiguous(frames, "frames")
    except InputError as exc:
        listing.fail(DATASET, video_id, str(exc))
        return
    fixations, maps, annotated = _annotation(folder)
    if fixations.kind == "none" and maps is None:
        listing.skip(DATASET, video_id, "no annotation (maps/ or fixation/) — a test video")
        return
    if annotated is not None and annotated != frames.count:
        listing.fail(
            DATASET,
            video_id,
            f"{folder}: {frames.count} frames but {annotated} annotated frames",
        )
        return
    listing.records.append(
        VideoRecord(
            dataset=DATASET,
            video_id=video_id,
            split=split_of(number),
            frames=frames.pattern,
            first_index=frames.first,
            fps=fps,
            num_frames=frames.count,
            fixations=fixations,
            maps_pattern=maps,
        )
    )


def _read_official(root: Path, listing: Listing) -> None:
    for video in sorted((root / "video").iterdir()):
        if video.suffix.lower() not in VIDEO_SUFFIXES or not video.stem.isdigit():
            continue
        number = int(video.stem)
        video_id = f"{number:04d}"
        fixations, maps, _ = _annotation(root / "annotation" / video_id)
        if fixations.kind == "none" and maps is None:
            listing.skip(DATASET, video_id, "no annotation folder — a test video")
            continue
        listing.records.append(
            VideoRecord(
                dataset=DATASET,
                video_id=video_id,
                split=split_of(number),
                frames=str(video),
                fixations=fixations,
                maps_pattern=maps,
            )
        )
