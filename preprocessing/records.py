"""The one video record every dataset reader yields (docs/DATA.md).

A :class:`VideoRecord` says where a video's frames, audio and gaze live and how it is
split; it holds no pixels. Fixation points are loaded lazily, one frame at a time for
datasets that ship one file per frame (DHF1K ``fixation/*.png``, STAViS ``fixMap_*.mat``),
or once per video for gaze tables (plain CSV, DIEM event files), through
:meth:`FixationSource.open`.

Records round-trip through plain JSON (:meth:`VideoRecord.to_json`), which is how the Ray
job ships them to its tasks.

Conventions: frame indices are 0-based; a per-frame file numbered ``n`` holds frame
``n - first_index``. Sizes are ``(height, width)``. Points are ``(x, y)`` in pixels of the
video's native frame, origin at the top-left corner of the frame, ``x`` to the right.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from avrsp.errors import InputError
from preprocessing.names import file_name

FixationKind = Literal["none", "binary_image", "mat", "gaze_csv", "diem_events"]
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".m4v", ".mpg", ".mpeg")

# DIEM event flags (thediemproject.wordpress.com, "videos and data"):
# -1 error/dropped frame, 0 blink, 1 fixation, 2 saccade.
DIEM_FIXATION = 1


@dataclass(frozen=True)
class ScreenMapping:
    """How gaze in screen pixels maps to video pixels.

    The video was shown centred on a ``screen_width`` × ``screen_height`` screen, either
    scaled to fit (aspect ratio kept, ``fit=True``) or at its native size (``fit=False``).
    A screen point ``(xs, ys)`` is the video point
    ``((xs - ox) / s, (ys - oy) / s)`` with ``s`` the scale and ``(ox, oy)`` the top-left
    corner of the shown video on the screen.
    """

    screen_width: int
    screen_height: int
    fit: bool = True

    def to_video(self, points: np.ndarray, native_size: tuple[int, int]) -> np.ndarray:
        """Screen ``[K, 2]`` (x, y) → video pixels of a ``native_size`` = (H, W) video."""
        h, w = native_size
        s = min(self.screen_width / w, self.screen_height / h) if self.fit else 1.0
        ox = (self.screen_width - s * w) / 2.0
        oy = (self.screen_height - s * h) / 2.0
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, 0] = (out[:, 0] - ox) / s
        out[:, 1] = (out[:, 1] - oy) / s
        return out.astype(np.float32)


@dataclass(frozen=True)
class FixationSource:
    """Where the fixation points of one video come from.

    kinds:
      - ``none``: no annotation (e.g. DHF1K test videos);
      - ``binary_image``: one image per frame, ``pattern`` % file number, fixated pixels
        non-zero (DHF1K ``fixation/%04d.png``);
      - ``mat``: one MATLAB file per frame with a binary matrix ``mat_variable``
        (STAViS ``fixMap_%05d.mat``, variable ``eyeMap``);
      - ``gaze_csv``: rows ``video, frame, observer, x, y[, t]`` of the files in ``paths``
        whose ``video`` equals ``video_name`` (see docs/DATA.md);
      - ``diem_events``: one DIEM event file per participant in ``paths``.

    ``strict``: a gaze row with a problem of its own (a cell that is not a number, a
    negative frame, too few fields) fails the video; by default such rows are dropped and
    counted (:class:`DroppedRows`), and the video fails only when the rest makes no window.
    """

    kind: FixationKind = "none"
    pattern: str | None = None
    first_index: int = 1
    mat_variable: str = "eyeMap"
    paths: tuple[str, ...] = ()
    video_name: str | None = None
    screen: ScreenMapping | None = None
    event_code: int = DIEM_FIXATION
    strict: bool = False

    def open(self, *, fps: float, native_size: tuple[int, int]) -> FixationLoader:
        """A per-frame loader for a video decoded at ``fps`` with native (H, W) frames."""
        return FixationLoader(self, fps=fps, native_size=native_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FixationSource:
        data = dict(data)
        data["paths"] = tuple(data.get("paths", ()))
        if data.get("screen") is not None:
            data["screen"] = ScreenMapping(**data["screen"])
        return cls(**data)


#: Folds a multi-fold code can hold (the ``fold`` column is int16).
MAX_FOLDS = 15


def fold_code(folds: Iterable[int]) -> int:
    """The ``fold`` value of a video that is a test video of ``folds``: the fold itself when
    there is one, else minus the bit mask of the folds (``{1, 2}`` → ``-3``, ``{2, 3}`` →
    ``-6``). Single folds keep their number, so shards written before stay valid."""
    chosen = sorted(set(folds))
    if not chosen or chosen[0] < 1 or chosen[-1] > MAX_FOLDS:
        raise ValueError(f"folds must be 1…{MAX_FOLDS}, got {chosen}")
    if len(chosen) == 1:
        return chosen[0]
    return -sum(1 << (k - 1) for k in chosen)


def decode_folds(code: int) -> tuple[int, ...]:
    """The folds of a ``fold`` value (:func:`fold_code`): ``()`` for 0, ``(k,)`` for k > 0."""
    code = int(code)
    if code >= 0:
        return (code,) if code else ()
    return tuple(k for k in range(1, MAX_FOLDS + 1) if (-code >> (k - 1)) & 1)


def in_test_fold(code: int, fold: int) -> bool:
    """Whether a row with ``fold`` value ``code`` is a test row of ``fold``."""
    return fold in decode_folds(code)


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset: where its parts are and which split it belongs to.

    ``frames`` is a video file, or a frame-folder pattern such as ``/d/v/img_%05d.jpg``
    (then ``first_index`` is the number of frame 0's file and ``fps`` is required).
    ``audio`` is the file that holds the soundtrack (the video file itself, a separate
    ``.wav``), or None for a silent/visual-only dataset. ``fps``, ``native_size`` and
    ``num_frames`` are None where only decoding can tell (video files).
    ``split`` is ``train``/``val``/``test`` for fixed splits, ``cv`` for a video of a
    k-fold dataset: it is a test video of fold ``fold`` (1…k) and a training video of the
    other folds. ``fold`` is 0 for fixed splits. A video in the test lists of several folds
    (three of AVAD's in the published lists) has the code of :func:`fold_code` (negative);
    :attr:`test_folds` reads either.
    ``maps_pattern`` names the dataset's own continuous saliency maps, one per frame.
    ``stem`` names the video's files (:attr:`file_stem`); empty until a source sets it.
    """

    dataset: str
    video_id: str
    split: str
    frames: str
    fold: int = 0
    first_index: int = 1
    audio: str | None = None
    fps: float | None = None
    native_size: tuple[int, int] | None = None
    num_frames: int | None = None
    fixations: FixationSource = field(default_factory=FixationSource)
    maps_pattern: str | None = None
    stem: str = ""

    @property
    def test_folds(self) -> tuple[int, ...]:
        """The folds whose test videos this video is (empty for fixed splits)."""
        return decode_folds(self.fold) if self.split == "cv" else ()

    @property
    def is_frame_folder(self) -> bool:
        return "%" in Path(self.frames).name

    @property
    def file_stem(self) -> str:
        """The name of this video's files (shards, done-marker): ``stem``, which
        :func:`preprocessing.sources.open_source` sets unique within the dataset, or where a
        record was made elsewhere the video's own :func:`preprocessing.names.file_name`."""
        return self.stem or file_name(self.video_id)

    @property
    def key(self) -> str:
        """The done-marker's name: ``<dataset>__<file_stem>`` (:mod:`preprocessing.names`)."""
        return f"{file_name(self.dataset)}__{self.file_stem}"

    def frame_file(self, frame: int) -> Path:
        """The file of 0-based ``frame`` in a frame folder."""
        return Path(self.frames % (frame + self.first_index))

    def map_file(self, frame: int) -> Path | None:
        if self.maps_pattern is None:
            return None
        return Path(self.maps_pattern % (frame + self.first_index))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fixations"] = self.fixations.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoRecord:
        data = dict(data)
        data["fixations"] = FixationSource.from_dict(data.get("fixations") or {})
        if data.get("native_size") is not None:
            data["native_size"] = tuple(data["native_size"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> VideoRecord:
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------- loading


class FixationLoader:
    """Fixation points per frame of one video: ``loader(frame) -> float32 [K, 2]`` (x, y).

    Per-frame files are read on demand; gaze tables are read once, on the first call.
    ``fps`` is the rate the video is decoded at (gaze times map to frames with it) and
    ``native_size`` = (H, W) the decoded video's native frame size.
    """

    def __init__(self, source: FixationSource, *, fps: float, native_size: tuple[int, int]):
        self.source = source
        self.fps = fps
        self.native_size = native_size
        self._table: dict[int, np.ndarray] | None = None
        self._last_frames: dict[str, int] = {}  # per gaze file: its last 0-based frame
        self.dropped = DroppedRows()  # gaze rows left out (never filled when strict)

    @property
    def available(self) -> bool:
        return self.source.kind != "none"

    def __call__(self, frame: int) -> np.ndarray:
        kind = self.source.kind
        if kind == "none":
            return _no_points()
        if kind in ("binary_image", "mat"):
            return self._from_frame_file(frame)
        return self._loaded().get(frame, _no_points())

    def check(self, num_frames: int) -> None:
        """Raise InputError when the annotation does not fit a video of ``num_frames`` frames.

        Per-frame files must exist up to the last frame and not beyond it; gaze may not
        run past the end (nor, for dense DIEM files, stop short of it) by more than
        :func:`frame_tolerance` frames.
        """
        kind, tol = self.source.kind, frame_tolerance(num_frames)
        if kind in ("binary_image", "mat"):
            assert self.source.pattern is not None
            first = self.source.first_index
            last = Path(self.source.pattern % (num_frames - 1 + first))
            beyond = Path(self.source.pattern % (num_frames + first))
            if not last.is_file():
                raise InputError(
                    f"{last}: fixation file of the last frame ({num_frames - 1}) is missing; "
                    f"the annotation does not cover the video's {num_frames} frames"
                )
            if beyond.is_file():
                raise InputError(
                    f"{beyond}: fixation files go beyond the video's {num_frames} frames; "
                    "annotation and video do not match"
                )
        elif kind in ("gaze_csv", "diem_events"):
            self._loaded()
            for path, last in self._last_frames.items():
                short = kind == "diem_events" and last < num_frames - 1 - tol
                if last > num_frames - 1 + tol or short:
                    raise InputError(
                        f"{path}: gaze runs to frame {last} (0-based) but the video has "
                        f"{num_frames} frames; the gaze belongs to a video of another length"
                    )

    def gaze_frames(self) -> list[int] | None:
        """The frames that have at least one gaze point (gaze tables), None for per-frame
        annotation files (they are not all read)."""
        if self.source.kind not in ("gaze_csv", "diem_events"):
            return None
        return sorted(k for k, v in self._loaded().items() if len(v))

    def _loaded(self) -> dict[int, np.ndarray]:
        if self._table is None:
            self._table = self._load_table()
        return self._table

    # -- per-frame files
    def _from_frame_file(self, frame: int) -> np.ndarray:
        assert self.source.pattern is not None
        path = Path(self.source.pattern % (frame + self.source.first_index))
        if not path.is_file():
            return _no_points()
        if self.source.kind == "binary_image":
            grid = read_gray_image(path)
        else:
            grid = read_mat_matrix(path, self.source.mat_variable)
        # Binary maps are stored as 0/255 or 0/1; half the maximum separates both.
        peak = float(grid.max()) if grid.size else 0.0
        if peak <= 0:
            return _no_points()
        ys, xs = np.nonzero(grid > peak / 2)
        # Pixel (row r, column c) is centred at (c + 0.5, r + 0.5) in continuous coordinates.
        points = np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float32)
        return _rescale(points, grid.shape[:2], self.native_size)

    # -- tables
    def _load_table(self) -> dict[int, np.ndarray]:
        dropped = None if self.source.strict else self.dropped
        if self.source.kind == "gaze_csv":
            frames, points = read_gaze_csv(
                self.source.paths, self.source.video_name, fps=self.fps, dropped=dropped
            )
            if frames.size:
                self._last_frames[", ".join(self.source.paths)] = int(frames.max())
        else:
            frames, points, last = read_diem_events(
                self.source.paths, event_code=self.source.event_code, dropped=dropped
            )
            self._last_frames.update(last)
            if self.source.screen is not None:
                points = self.source.screen.to_video(points, self.native_size)
        return group_by_frame(frames, points)


def frame_tolerance(num_frames: int) -> int:
    """Frames a gaze recording may run past the video's end (rounding at the cut): 2 or 1 %."""
    return max(2, math.ceil(0.01 * num_frames))


def group_by_frame(frames: np.ndarray, points: np.ndarray) -> dict[int, np.ndarray]:
    """``{frame: float32 [K, 2]}`` from parallel arrays ``frames [N]``, ``points [N, 2]``."""
    if frames.size == 0:
        return {}
    order = np.argsort(frames, kind="stable")
    frames, points = frames[order], points[order].astype(np.float32)
    keys, starts = np.unique(frames, return_index=True)
    bounds = [*starts[1:], frames.size]
    return {int(k): points[s:e] for k, s, e in zip(keys, starts, bounds, strict=True)}


def _no_points() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.float32)


def _rescale(points: np.ndarray, grid_size: tuple[int, int], native: tuple[int, int]) -> np.ndarray:
    """Points on a ``grid_size`` annotation → the video's ``native`` (H, W) pixels."""
    if tuple(grid_size) == tuple(native):
        return points
    sy, sx = native[0] / grid_size[0], native[1] / grid_size[1]
    return (points * np.array([sx, sy], dtype=np.float32)).astype(np.float32)


def read_gray_image(path: Path) -> np.ndarray:
    """An image file as ``uint8 [H, W]`` (converted to grey)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from None


def read_mat_matrix(path: Path, variable: str) -> np.ndarray:
    """The 2-D matrix ``variable`` of a MATLAB file, as float32."""
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), variable_names=[variable])
    except Exception as exc:  # scipy raises ValueError, OSError, MatReadError, …
        raise InputError(f"{path}: cannot read MATLAB file ({exc})") from None
    if variable not in data:
        raise InputError(f"{path}: no variable {variable!r} in the MATLAB file")
    matrix = np.asarray(data[variable], dtype=np.float32)
    if matrix.ndim != 2:
        raise InputError(f"{path}: {variable!r} must be a 2-D matrix, got shape {matrix.shape}")
    return matrix


CSV_COLUMNS = ("video", "frame", "observer", "x", "y")
_CSV_EXPECTED = "video, frame, observer, x, y [, t]"
# What a video's report keeps of its dropped rows, per file: the first line numbers and
# the first reasons (a broken column can drop every row of a large table).
KEPT_LINES = 20
KEPT_REASONS = 3


@dataclass
class DroppedRows:
    """Gaze rows of one video left out for a problem of their own (docs/DATA.md, "Plain
    gaze CSV"): per file, how many, their first :data:`KEPT_LINES` line numbers and the
    first :data:`KEPT_REASONS` reasons. :meth:`to_list` is what a video's summary holds."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, path: str | Path, line: int, reason: str) -> None:
        entry = self.files.setdefault(
            str(path), {"file": str(path), "rows": 0, "lines": [], "reasons": []}
        )
        entry["rows"] += 1
        if len(entry["lines"]) < KEPT_LINES:
            entry["lines"].append(line)
        if len(entry["reasons"]) < KEPT_REASONS:
            entry["reasons"].append(f"line {line}: {reason}")

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {**e, "lines": list(e["lines"]), "reasons": list(e["reasons"])}
            for e in self.files.values()
        ]


def dropped_rows_text(entries: list[dict[str, Any]]) -> str:
    """One line for a video's dropped rows (:meth:`DroppedRows.to_list`), e.g.
    ``1 gaze row dropped (d/gaze.csv line 6: not a number in x='abc')``; "" when none."""
    total = sum(e["rows"] for e in entries)
    if not total:
        return ""
    parts = []
    for e in entries:
        lines = ", ".join(str(n) for n in e["lines"]) + (
            ", …" if e["rows"] > len(e["lines"]) else ""
        )
        if e["rows"] == 1:
            parts.append(f"{e['file']} {e['reasons'][0]}")
        else:
            parts.append(f"{e['file']}: {e['rows']} rows, lines {lines}; {'; '.join(e['reasons'])}")
    return f"{total} gaze row{'s' if total > 1 else ''} dropped ({' | '.join(parts)})"


def frame_ranges(frames: Iterable[int], limit: int = 8) -> str:
    """Sorted frame numbers as ranges: ``[0, 1, 2, 3, 9]`` → ``0–3, 9``; at most ``limit``
    pieces, then ``…``."""
    pieces: list[str] = []
    frames = sorted(set(frames))
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        pieces.append(str(frames[i]) if i == j else f"{frames[i]}–{frames[j]}")
        i = j + 1
    return ", ".join(pieces[:limit]) + (", …" if len(pieces) > limit else "")


def gaze_csv_columns(path: str | Path, header: list[str]) -> dict[str, int]:
    """Where the columns of a gaze CSV are: ``{name: index}`` of video, frame (absent when
    only ``t`` is given), observer, x, y and t (when given). InputError naming the file for
    an empty file or missing columns."""
    header = [h.strip() for h in header]
    if not header or header == [""]:
        raise InputError(
            f"{path}: gaze CSV is empty (no header line); expected the columns {_CSV_EXPECTED}"
        )
    has_t = "t" in header
    missing = [c for c in CSV_COLUMNS if c not in header and not (c == "frame" and has_t)]
    if missing:
        raise InputError(
            f"{path}: gaze CSV lacks column(s) {', '.join(missing)} (header: "
            f"{', '.join(header)}); expected {_CSV_EXPECTED}"
        )
    wanted = (*CSV_COLUMNS, "t")
    return {name: header.index(name) for name in wanted if name in header}


def open_gaze_csv(path: str | Path) -> TextIO:
    """A gaze CSV opened for :mod:`csv` (a byte-order mark, as Excel writes, is dropped)."""
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read gaze file ({exc.strerror})") from None


def read_gaze_header(path: str | Path) -> dict[str, int]:
    """The checked columns of a gaze CSV (:func:`gaze_csv_columns`), reading one line."""
    with open_gaze_csv(path) as handle:
        try:
            return gaze_csv_columns(path, next(csv.reader(handle), []))
        except UnicodeDecodeError:
            raise InputError(f"{path}: gaze CSV is not a text file") from None


def _frame_index(text: str) -> int | str:
    """A frame cell as an int, or the reason it is not one (``"3.0"`` is frame 3)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return f"not a number in frame={text!r}"
    if not value.is_integer():
        return f"not a whole frame index in frame={text!r} (a time in seconds goes in column t)"
    return int(value)


def _coordinate(name: str, text: str) -> float | str:
    """A coordinate cell as a float, or the reason it is not one."""
    try:
        value = float(text)
    except ValueError:
        return f"not a number in {name}={text!r}"
    return value if math.isfinite(value) else f"not a finite number in {name}={text!r}"


def _row_problem(
    x_text: str, y_text: str, t_text: str, row: list[str], i_frame: int | None
) -> str | tuple[int, float, float, float]:
    """Why a gaze row is bad, or its (frame, t, x, y) when only the fast path missed it."""
    x, y = _coordinate("x", x_text), _coordinate("y", y_text)
    frame: int | str = -1
    t: float | str = math.nan
    if t_text:
        t = _coordinate("t", t_text)
    elif i_frame is None or not row[i_frame].strip():
        frame = "no frame index and no time t"
    else:
        frame = _frame_index(row[i_frame].strip())
        if isinstance(frame, int) and frame < 0:
            frame = f"negative frame index in frame={row[i_frame].strip()!r}"
    for value in (x, y, t, frame):
        if isinstance(value, str):
            return value
    return frame, t, x, y  # type: ignore[return-value]


def read_gaze_csv(
    paths: Iterable[str],
    video_name: str | None,
    *,
    fps: float,
    dropped: DroppedRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaze rows of one video from plain CSV files (docs/DATA.md, "Plain gaze CSV").

    Returns ``(frames int64 [N], points float32 [N, 2])``. When a row has a time ``t``
    (seconds) it wins over ``frame``: the frame is ``floor(t * fps + 0.5)`` (frame k is
    centred at k / fps, avrsp.audio; :func:`preprocessing.media.frame_at_time`). Rows with
    an empty x or y (lost tracking) are skipped, as are blank lines.

    A row with a problem of its own (too few fields; x, y or t not a finite number; a
    frame that is not a whole number or is negative) raises :class:`InputError` naming the
    file and line, or, given ``dropped``, is left out and recorded there. A file without a
    header or without the needed columns always raises.

    Plain :func:`csv.reader` rows by column index, numbers converted per row and frame
    times in one vectorised step: a few ms for a video's table of thousands of rows.
    """
    from preprocessing.media import frame_at_time

    def bad(path: str, line: int, reason: str) -> None:
        if dropped is None:
            raise InputError(f"{path}, line {line}: {reason}")
        dropped.add(path, line, reason)

    paths = list(paths)
    frames: list[int] = []  # the frame column; -1 where the row's time decides
    times: list[float] = []  # the time column; nan where the frame column decides
    xs: list[float] = []
    ys: list[float] = []
    timed_at: dict[int, tuple[str, int]] = {}  # kept rows with a time: (file, line)
    for path in paths:
        with open_gaze_csv(path) as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, [])
            except UnicodeDecodeError:
                raise InputError(f"{path}: gaze CSV is not a text file") from None
            cols = gaze_csv_columns(path, header)
            iv, ix, iy = cols["video"], cols["x"], cols["y"]
            i_frame, i_t = cols.get("frame"), cols.get("t")
            needed = max(cols.values()) + 1
            seen_name, seen_match = None, False  # a table repeats one name row after row
            for line, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if video_name is not None and len(row) > iv:
                    name = row[iv]
                    if name != seen_name:
                        seen_name, seen_match = name, video_key(name) == video_name
                    if not seen_match:
                        continue
                if len(row) < needed:
                    bad(path, line, f"{len(row)} fields, the header has {len(header)}")
                    continue
                x_text, y_text = row[ix].strip(), row[iy].strip()
                if not x_text or not y_text:
                    continue
                t_text = row[i_t].strip() if i_t is not None else ""
                try:  # the common case, at the speed of plain conversions
                    x, y = float(x_text), float(y_text)
                    if t_text:
                        t, frame = float(t_text), -1
                    else:
                        t, frame = math.nan, int(row[i_frame])  # type: ignore[index]
                    good = frame >= -1 and math.isfinite(x + y) and not math.isinf(t)
                    good = good and (frame >= 0 or not math.isnan(t))
                except (ValueError, TypeError):
                    good = False
                if not good:
                    problem = _row_problem(x_text, y_text, t_text, row, i_frame)
                    if isinstance(problem, str):
                        bad(path, line, problem)
                        continue
                    frame, t, x, y = problem  # a frame such as "3.0"
                if t_text:
                    timed_at[len(xs)] = (path, line)
                xs.append(x)
                ys.append(y)
                times.append(t)
                frames.append(frame)
    frame_arr = np.asarray(frames, dtype=np.int64)
    time_arr = np.asarray(times, dtype=np.float64)
    timed = ~np.isnan(time_arr)
    if timed.any():
        frame_arr[timed] = frame_at_time(time_arr[timed], fps)
    points = np.stack([np.asarray(xs, np.float32), np.asarray(ys, np.float32)], axis=1)
    before = frame_arr < 0  # only times can give these: a negative frame is a bad row above
    if before.any():
        for k in np.flatnonzero(before):
            path, line = timed_at[int(k)]
            bad(path, line, f"t={time_arr[k]:g} s is before the first frame")
        frame_arr, points = frame_arr[~before], points[~before]
    return frame_arr, points.reshape(-1, 2)


@functools.lru_cache(maxsize=4096)
def video_key(name: str) -> str:
    """A gaze table's ``video`` value as a clip name: ``clip.mp4`` and ``clip`` both → ``clip``.

    Cached: a gaze table repeats one name on every row.
    """
    name = name.strip()
    path = Path(name)
    return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else name


_DIEM_FIELDS = 9  # frame, left x/y/dil/event, right x/y/dil/event


def read_diem_events(
    paths: Iterable[str], *, event_code: int = DIEM_FIXATION, dropped: DroppedRows | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Fixation samples of DIEM-style per-participant event files, in screen pixels.

    Each line: ``frame left_x left_y left_dil left_event right_x right_y right_dil
    right_event`` (frames 1-based at the video's rate; events -1 error, 0 blink,
    1 fixation, 2 saccade). One point per participant and frame: the mean of the eyes whose
    event is ``event_code``. A line with too few fields, a field that is not a number or a
    frame that is not a positive whole number raises :class:`InputError` naming the file
    and line, or, given ``dropped``, is left out and recorded there.
    Returns ``(frames int64 [N] 0-based, points float32 [N, 2], {file: last 0-based frame})``.
    """
    frames_out: list[np.ndarray] = []
    points_out: list[np.ndarray] = []
    last_frames: dict[str, int] = {}
    for path in paths:
        table = _diem_table(str(path), dropped)
        if table.size == 0:
            continue
        last_frames[str(path)] = int(table[:, 0].max()) - 1
        left = table[:, 4] == event_code
        right = table[:, 8] == event_code
        both = left & right
        any_eye = left | right
        lx, ly, rx, ry = table[:, 1], table[:, 2], table[:, 5], table[:, 6]
        x = np.where(both, (lx + rx) / 2, np.where(left, lx, rx))
        y = np.where(both, (ly + ry) / 2, np.where(left, ly, ry))
        frames_out.append(table[any_eye, 0].astype(np.int64) - 1)
        points_out.append(np.stack([x[any_eye], y[any_eye]], axis=1))
    if not frames_out:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32), last_frames
    frames = np.concatenate(frames_out)
    return frames, np.concatenate(points_out).astype(np.float32), last_frames


def _diem_table(path: str, dropped: DroppedRows | None) -> np.ndarray:
    """The event file as ``float64 [N, 9]``: NumPy's reader for a clean file, line by line
    (naming the bad lines) otherwise."""
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError as exc:
        raise InputError(f"{path}: cannot read DIEM event file ({exc.strerror or exc})") from None
    except ValueError:
        return _diem_lines(path, dropped)
    if table.size == 0:
        return np.zeros((0, _DIEM_FIELDS))
    if table.shape[1] < _DIEM_FIELDS:
        raise InputError(
            f"{path}: DIEM event file needs 9 columns (frame, left x/y/dil/event, "
            f"right x/y/dil/event), found {table.shape[1]}"
        )
    frame = table[:, 0]
    if not (np.isfinite(frame) & (frame >= 1) & (frame == np.floor(frame))).all():
        return _diem_lines(path, dropped)
    return table[:, :_DIEM_FIELDS]


def _diem_lines(path: str, dropped: DroppedRows | None) -> np.ndarray:
    rows: list[list[float]] = []
    try:
        handle = open(path, errors="replace")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"{path}: cannot read DIEM event file ({exc.strerror})") from None
    with handle:
        for line, text in enumerate(handle, start=1):
            fields = text.split("#", 1)[0].split()  # comments as NumPy's reader skips them
            if not fields:
                continue
            reason = None
            values: list[float] = []
            if len(fields) < _DIEM_FIELDS:
                reason = f"{len(fields)} fields, a DIEM event line has {_DIEM_FIELDS}"
            else:
                for k, text_value in enumerate(fields[:_DIEM_FIELDS]):
                    try:
                        values.append(float(text_value))
                    except ValueError:
                        reason = f"not a number in field {k + 1} ({text_value!r})"
                        break
            if reason is None and not (values[0] >= 1 and float(values[0]).is_integer()):
                reason = f"frame {fields[0]!r} is not a frame number (DIEM counts from 1)"
            if reason is not None:
                if dropped is None:
                    raise InputError(f"{path}, line {line}: {reason}")
                dropped.add(path, line, reason)
                continue
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, _DIEM_FIELDS)


def find_video_file(folder: Path, stem: str | None = None) -> Path | None:
    """The video file in ``folder`` (named ``stem.*`` when given), or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in VIDEO_SUFFIXES and (stem is None or path.stem == stem):
            return path
    return None
