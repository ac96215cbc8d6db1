"""Saved saliency maps, one image per frame: ``avrsp evaluate --predictions DIR``.

Peers publish their predictions as folders of images, one per frame, named by frame number
as the datasets' own frames are (``0001.png``, ``img_00001.jpg``, ``eyeMap_00001.jpg``):
``DIR/<video>/…`` or ``DIR/<dataset>/<video>/…``. This module finds a video's folder,
reads the frame number from each file name (the last run of digits in the stem; frames are
numbered from 1, as the datasets number them) and reads a map as the benchmarks' MATLAB
scripts do: ``double(imread(f))``, the first channel of a colour image, 8- or 16-bit as
stored (no rescaling: every metric is invariant to a map's scale, and the MATLAB scripts
do not rescale either).

Nothing is scored silently wrong: :func:`match_frames` says, per video, which frames with
ground truth have no map, which maps name frames the video does not have, and which maps
have another size than the video's first map (a folder mixing two models' outputs, say).
Those frames are not scored; the evaluation reports them per video.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avrsp.errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def video_folder(root: Path, dataset: str, video: str) -> Path | None:
    """``root/<dataset>/<video>`` or ``root/<video>`` (in that order), None if neither. The
    dataset's folder may differ in case (STAViS' results folders say ``avad``, ``diem``)."""
    datasets = [root / dataset]
    if root.is_dir():
        datasets += [p for p in sorted(root.iterdir()) if p.name.lower() == dataset.lower()]
    for folder in [d / video for d in datasets] + [root / video]:
        if folder.is_dir():
            return folder
    return None


def frame_number(path: Path) -> int | None:
    """The frame a file is for: the last run of digits of its stem (None without one)."""
    found = _NUMBER.search(path.stem)
    return int(found.group(1)) if found else None


def list_maps(folder: Path) -> dict[int, Path]:
    """``{frame number: file}`` of the map images in ``folder``. Two files for one frame
    (``0001.png`` and ``0001.jpg``) are refused, naming both."""
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SUFFIXES or path.name.startswith("."):
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in found:
            raise InputError(
                f"{folder}: two maps for frame {number}: {found[number].name}, {path.name}"
            )
        found[number] = path
    return found


def read_stored(path: Path) -> np.ndarray:
    """A saved map as stored, ``[H, W]``: uint8 for 8-bit images, uint16 for 16-bit ones,
    the first channel of a colour image (``imread(f)(:,:,1)``): what the ``vinet`` and
    ``stavis`` protocols turn into a map with ``im2double``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L"):
                data = np.asarray(image).astype(np.uint16)
            elif image.mode == "I":
                data = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
            else:
                data = np.asarray(image.convert("RGB") if image.mode == "P" else image)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    return data[..., 0] if data.ndim == 3 else data


def read_map(path: Path) -> np.ndarray:
    """A saved map as ``double(imread(f))`` reads it: float64 ``[H, W]``, the first
    channel, the stored values (0–255 for 8-bit, 0–65535 for 16-bit images)."""
    return read_stored(path).astype(np.float64)


@dataclass
class Matched:
    """A video's maps against its frames (:func:`match_frames`)."""

    maps: dict[int, Path]  # frame index (0-based) → file, for the frames scored
    missing: list[int] = field(default_factory=list)  # frame numbers (1-based) without a map
    extra: list[int] = field(default_factory=list)  # map numbers beyond the video's frames
    wrong_size: list[int] = field(default_factory=list)  # map numbers of another size

    def problems(self) -> list[str]:
        """One short text per kind of problem, frame numbers as in the file names."""
        out = []
        kinds = (
            ("frames without a map", self.missing),
            ("maps of frames the video does not have", self.extra),
            ("maps of another size than the first", self.wrong_size),
        )
        for what, numbers in kinds:
            if numbers:
                out.append(f"{len(numbers)} {what} ({_ranges(numbers)})")
        return out


def match_frames(folder: Path, num_frames: int) -> Matched:
    """Match ``folder``'s maps to a video of ``num_frames`` frames (numbered 1…N in the
    file names, 0…N−1 here). Sizes are read from the image headers only."""
    from PIL import Image

    listed = list_maps(folder)
    if not listed:
        raise InputError(f"{folder}: no map images ({', '.join(SUFFIXES)}) named by frame number")
    matched = Matched(maps={})
    first_size = None
    for number in sorted(listed):
        path = listed[number]
        if not 1 <= number <= num_frames:
            matched.extra.append(number)
            continue
        with Image.open(path) as image:
            size = image.size
        first_size = first_size or size
        if size != first_size:
            matched.wrong_size.append(number)
            continue
        matched.maps[number - 1] = path
    matched.missing = [n for n in range(1, num_frames + 1) if n not in listed]
    return matched


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``"1–3, 7"`` (at most five ranges, then "…")."""
    spans: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    text = [f"{a}" if a == b else f"{a}–{b}" for a, b in spans[:5]]
    return ", ".join(text) + (", …" if len(spans) > 5 else "")
