"""One video → Parquet segment shards (schema in docs/DATA.md).

A *segment* (one Parquet row) is one training window: the ``T`` frames ``i-T+1 … i``
(JPEG), the audio buffer :func:`avrsp.audio.audio_window` cuts for them, and the target
saliency map and fixation points of the last frame ``i``. Windows end at frames
``T-1, T-1+stride, …``; a video shorter than ``T`` frames gives one window ending at its
last frame, padded at the start by repeating its first frame (as inference does).

Everything here is plain Python (no Ray): :func:`iter_segments` yields rows and
:func:`write_video` writes one video's shards atomically and returns a summary. The row
format (Arrow schema, JPEG and PNG encoding, :func:`decode_segment`) is
:mod:`preprocessing.schema`, which the readers import without the media stack.

Layout of an output folder::

    OUT/shards/<split>/<dataset>/<video>-00000.parquet   the rows (one video per file set)
    OUT/done/<dataset>__<video>.json                      done-marker: the video's summary
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from avrsp.audio import audio_window
from avrsp.errors import AVRSPError, InputError, storage_error
from avrsp.io import write_json
from preprocessing import storage
from preprocessing.fixations import dhf1k_sigma, fixation_map, points_in_frame
from preprocessing.media import MediaInfo, decode_audio, iter_jpeg_frames, probe, require_video
from preprocessing.names import file_name
from preprocessing.records import (
    FixationLoader,
    VideoRecord,
    dropped_rows_text,
    frame_ranges,
    read_gray_image,
)
from preprocessing.schema import SCHEMA, SCHEMA_VERSION, encode_map_png, rows_to_table

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pydantic's models: not imported by the Ray workers (≈ 0.1 s each)
    from avrsp.config import AVRSPConfig

MiB = 1 << 20
TargetMode = Literal["auto", "fixations", "dataset"]


@dataclass(frozen=True)
class SegmentOptions:
    """How windows are cut and stored. Sizes and rates come from the model config.

    ``stride``: frames between the last frames of consecutive windows.
    ``target``: ``auto`` = the dataset's own continuous map where it ships one, else a map
    made from the fixation points; ``fixations`` / ``dataset`` force one of them.
    ``sigma_px``: Gaussian sigma in native pixels; None = DHF1K's (FWHM 30 px at 640 px
    width) scaled to the video's native width.
    """

    frames: int
    height: int
    width: int
    sample_rate: int
    audio_samples: int
    stride: int
    audio_alignment: str = "span"
    target: TargetMode = "auto"
    sigma_px: float | None = None
    jpeg_quality: int = 90
    max_shard_bytes: int = 256 * MiB
    row_group_bytes: int = 32 * MiB

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise InputError(f"stride must be >= 1, got {self.stride}")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be in 1…100, got {self.jpeg_quality}")
        if self.max_shard_bytes < 64 * 1024:
            raise InputError(f"max_shard_bytes must be >= 64 KiB, got {self.max_shard_bytes}")
        if self.target not in ("auto", "fixations", "dataset"):
            raise InputError(f"target must be auto, fixations or dataset, got {self.target!r}")
        if self.sigma_px is not None and not 0 < self.sigma_px < float("inf"):
            raise InputError(f"sigma_px must be a positive number of pixels, got {self.sigma_px}")

    @classmethod
    def from_config(cls, config: AVRSPConfig, **overrides: Any) -> SegmentOptions:
        """T, H, W, sample rate and audio window from ``config.input``; stride default T/2."""
        inp = config.input
        values: dict[str, Any] = {
            "frames": inp.frames,
            "height": inp.height,
            "width": inp.width,
            "sample_rate": inp.sample_rate,
            "audio_samples": inp.audio_samples,
            "audio_alignment": inp.audio_alignment,
            "stride": max(1, inp.frames // 2),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class VideoSummary:
    """What happened to one video; the Ray job's result row and the done-marker's content."""

    dataset: str
    video: str
    split: str
    fold: int
    status: Literal["ok", "failed", "done_before"] = "ok"
    reason: str = ""
    windows: int = 0
    bytes: int = 0
    frames: int = 0
    fps: float = 0.0
    has_audio: bool = False
    fixation_points: int = 0
    fixations_dropped: int = 0
    windows_without_target: int = 0
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Gaze rows left out (preprocessing.records.DroppedRows.to_list): file, rows, lines, reasons.
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- media


@dataclass
class Media:
    """What decoding a record needs to know before the first frame; ``waveform`` is its
    audio, decoded before the frames (empty: none)."""

    fps: float
    native_size: tuple[int, int]
    resample_fps: float | None
    waveform: np.ndarray
    notes: list[str]
    info: MediaInfo  # reused by the decoder


def open_media(record: VideoRecord, sample_rate: int) -> Media:
    """Probe a record's video and decode its audio (mono at ``sample_rate``; empty: none)."""
    notes: list[str] = []
    resample: float | None = None
    channels = 0
    if record.is_frame_folder:
        first = record.frame_file(0)
        if not first.is_file():
            raise InputError(f"{first}: first frame of {record.video_id} is missing")
        if record.fps is None or record.num_frames is None:
            raise InputError(f"{record.frames}: a frame folder needs its fps and frame count")
        try:
            with Image.open(first) as img:
                native = (img.height, img.width)
        except OSError as exc:
            raise InputError(f"{first}: cannot read frame ({exc})") from None
        fps = float(record.fps)
        # The reader counted the files already: no need to scan the folder.
        info = MediaInfo(
            path=Path(record.frames),
            width=native[1],
            height=native[0],
            fps=fps,
            duration_s=record.num_frames / fps,
            frame_count=record.num_frames,
            has_audio=False,
            audio_channels=0,
            audio_rate=None,
            variable_frame_rate=False,
            video_duration_s=record.num_frames / fps,
        )
    else:
        info = probe(record.frames)
        native = (info.height, info.width)
        fps = float(record.fps or info.fps)
        channels = info.audio_channels if info.has_audio else 0
        if info.variable_frame_rate:
            resample = fps
            notes.append(f"variable frame rate: resampled to constant {fps:g} fps")
    waveform = np.zeros(0, dtype=np.float32)
    if record.audio is not None:
        own = record.audio == record.frames
        if own and channels > 2:
            notes.append(f"{channels}-channel audio downmixed to mono")
        waveform = decode_audio(record.audio, sample_rate, info=info if own else None)
    if waveform.size == 0:
        notes.append(_NO_AUDIO)
    return Media(fps, native, resample, waveform, notes, info)


_NO_AUDIO = "no audio: silent buffers, has_audio = false"


def _iter_jpegs(record: VideoRecord, opts: SegmentOptions, media: Media) -> Iterator[bytes]:
    """The frames at the model size as JPEG files of quality ``opts.jpeg_quality``, in
    order (:func:`preprocessing.media.iter_jpeg_frames`)."""
    return iter_jpeg_frames(
        record.frames,
        (opts.height, opts.width),
        fps=media.fps if record.is_frame_folder else media.resample_fps,
        info=media.info,
        quality=opts.jpeg_quality,
    )


# --------------------------------------------------------------------------- rows


@dataclass
class FrameTarget:
    """The ground truth of one frame: ``saliency`` float32 ``[h, w]`` (None: no target —
    no map file and no point in the frame, or an all-zero map), where it came from
    (``dataset`` map or ``fixations``), the points in the frame ``[K, 2]`` and how many
    fell outside it."""

    saliency: np.ndarray | None
    source: str
    points: np.ndarray
    dropped: int


def frame_target(
    record: VideoRecord,
    loader: FixationLoader,
    frame: int,
    native_size: tuple[int, int],
    out_size: tuple[int, int],
    *,
    sigma: float,
    use_maps: bool,
    allow_fixations: bool = True,
    exact_size: bool = False,
) -> FrameTarget:
    """Frame ``frame``'s target map at ``out_size`` and its fixation points (native pixels).

    The dataset's own map (``record.map_file``, resized bilinearly) when ``use_maps`` and
    the file exists; else, when ``allow_fixations``, the blurred fixations
    (:func:`preprocessing.fixations.fixation_map`, σ = ``sigma`` native pixels). Training
    rows (``out_size`` = the model's) and the evaluation protocol (``out_size`` = native,
    ``exact_size``: a dataset map of another size than the video is an
    :class:`InputError` naming the file) both take their targets here.
    """
    points, dropped = points_in_frame(loader(frame), native_size)
    points = np.asarray(points, np.float32)
    map_file = record.map_file(frame) if use_maps else None
    if map_file is not None and map_file.is_file():
        grey = read_gray_image(map_file).astype(np.float32)
        if exact_size and grey.shape[:2] != tuple(native_size):
            raise InputError(
                f"{map_file}: saliency map is {grey.shape[1]}×{grey.shape[0]} but the video "
                f"{record.frames} is {native_size[1]}×{native_size[0]}; map and video do not match"
            )
        if grey.shape[:2] != tuple(out_size):
            grey = np.asarray(
                Image.fromarray(grey, mode="F").resize((out_size[1], out_size[0]), Image.BILINEAR)
            )
        saliency, source = np.maximum(grey, 0.0), "dataset"
    elif allow_fixations and len(points):
        saliency, _ = fixation_map(points, native_size, sigma, out_size=out_size)
        source = "fixations"
    else:
        return FrameTarget(None, "", points, dropped)
    if float(saliency.max()) <= 0:
        return FrameTarget(None, source, points, dropped)
    return FrameTarget(saliency, source, points, dropped)


@dataclass
class _Counters:
    points: int = 0
    dropped: int = 0
    without_target: int = 0
    frames: int = 0
    loader: FixationLoader | None = None  # its dropped gaze rows go to the summary


def iter_segments(
    record: VideoRecord,
    opts: SegmentOptions,
    *,
    counters: _Counters | None = None,
    notes: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of one video, in order (schema :data:`preprocessing.schema.SCHEMA`,
    docs/DATA.md).

    Raises InputError for unreadable media and annotations that do not fit the video
    (checked after the last frame, so a caller must not publish rows before the end).
    """
    counters = counters if counters is not None else _Counters()
    yield from _iter_rows(record, opts, open_media(record, opts.sample_rate), counters, notes)


def _iter_rows(
    record: VideoRecord,
    opts: SegmentOptions,
    media: Media,
    counters: _Counters,
    notes: list[str] | None,
) -> Iterator[dict[str, Any]]:
    if notes is not None:
        notes.extend(media.notes)
    require_video(media.info)  # a still image renamed .avi is not a video
    loader: FixationLoader = record.fixations.open(fps=media.fps, native_size=media.native_size)
    counters.loader = loader
    use_maps = opts.target != "fixations" and record.maps_pattern is not None
    if opts.target == "dataset" and record.maps_pattern is None:
        raise InputError(f"{record.dataset}/{record.video_id}: target=dataset but no maps shipped")
    if not use_maps and not loader.available:
        raise InputError(f"{record.dataset}/{record.video_id}: no fixations and no maps to learn")
    sigma = opts.sigma_px or dhf1k_sigma(media.native_size[1])
    T = opts.frames
    base = {
        "schema_version": SCHEMA_VERSION,
        "dataset": record.dataset,
        "video": record.video_id,
        "split": record.split,
        "fold": record.fold,
        "num_frames": T,
        "fps": media.fps,
        "native_height": media.native_size[0],
        "native_width": media.native_size[1],
        "height": opts.height,
        "width": opts.width,
        "sample_rate": opts.sample_rate,
        "has_audio": media.waveform.size > 0,
    }

    def target(frame: int) -> tuple[bytes, str, np.ndarray, int] | None:
        made = frame_target(
            record,
            loader,
            frame,
            media.native_size,
            (opts.height, opts.width),
            sigma=sigma,
            use_maps=use_maps,
            allow_fixations=opts.target != "dataset",
        )
        counters.points += len(made.points) + made.dropped
        counters.dropped += made.dropped
        if made.saliency is None:
            return None
        return encode_map_png(made.saliency), made.source, made.points, made.dropped

    def row(last: int, frames: list[bytes]) -> dict[str, Any] | None:
        made = target(last)
        if made is None:
            counters.without_target += 1
            return None
        png, source, points, dropped = made
        audio = audio_window(
            media.waveform,
            last_frame=last,
            frames=T,
            fps=media.fps,
            sample_rate=opts.sample_rate,
            buffer_samples=opts.audio_samples,
            alignment=opts.audio_alignment,
        )
        return {
            **base,
            "last_frame": last,
            "frames_jpeg": frames,
            "audio": audio,
            "target_png": png,
            "target_source": source,
            "fixations": points.reshape(-1),
            "fixations_dropped": dropped,
        }

    # Each frame is encoded once; the T / stride windows that hold it share its bytes.
    window: deque[bytes] = deque(maxlen=T)
    first_jpeg: bytes | None = None
    count = 0
    for k, jpeg in enumerate(_iter_jpegs(record, opts, media)):
        first_jpeg = first_jpeg or jpeg
        window.append(jpeg)
        count = k + 1
        if k >= T - 1 and (k - (T - 1)) % opts.stride == 0:
            out = row(k, list(window))
            if out is not None:
                yield out
    counters.frames = count
    if count == 0:
        raise InputError(f"{record.frames}: no frames decoded")
    if count < T:
        assert first_jpeg is not None
        padded = [first_jpeg] * (T - count) + list(window)
        out = row(count - 1, padded)
        if notes is not None:
            notes.append(f"{count} frames < T={T}: one window padded with the first frame")
        if out is not None:
            yield out
    loader.check(count)
    if counters.points and counters.dropped == counters.points:
        h, w = media.native_size
        raise InputError(
            f"{record.dataset}/{record.video_id}: all {counters.points} gaze points of the "
            f"windows' last frames fall outside the {w}×{h} frame (wrong coordinates or "
            "screen size?)"
        )
    ends = range(T - 1, count, opts.stride) if count >= T else [count - 1]
    if counters.without_target == len(ends):
        gaze = loader.gaze_frames()  # None: per-frame annotation files
        where = f"; its gaze is on frames {frame_ranges(gaze)}" if gaze else ""
        where = "; it has no gaze point at all" if gaze == [] else where
        raise InputError(
            f"{record.dataset}/{record.video_id}: no window has a target map: none of the "
            f"last frames of its {len(ends)} windows ({frame_ranges(ends)}) has a map or a "
            f"fixation{where}"
        )


def _row_bytes(row: dict[str, Any]) -> int:
    return (
        sum(len(f) for f in row["frames_jpeg"])
        + row["audio"].nbytes
        + len(row["target_png"])
        + row["fixations"].nbytes
        + 128
    )


# --------------------------------------------------------------------------- writing


# Parquet columns stored with a dictionary: the ids, and the frames, each of which is in
# T / stride rows (the dictionary stores it once: 760 → 485 KiB per paper-preset row of
# chaplin.mp4). Audio, maps and points are all distinct values: a dictionary only costs.
_DICTIONARY_COLUMNS = ["dataset", "video", "split", "target_source", "frames_jpeg.list.element"]
# Snappy for every column but the JPEG frames and PNG maps: compressed formats that it
# shrank by 0.06 % (chaplin.mp4) for half the time of writing a shard. The audio (Hann-
# weighted, zero-padded) shrinks by 14 %.
_COMPRESSION = {
    (f"{fld.name}.list.element" if pa.types.is_list(fld.type) else fld.name): (
        "none" if fld.name in ("frames_jpeg", "target_png") else "snappy"
    )
    for fld in SCHEMA
}


# Min/max statistics only for the scalar columns: for the JPEG, PNG, audio and point
# columns nobody filters on them, and computing them took ≈ 2 ms per video of 14 windows.
_STATISTICS_COLUMNS = [
    fld.name for fld in SCHEMA if not (pa.types.is_list(fld.type) or pa.types.is_binary(fld.type))
]


class ShardWriter:
    """Writes rows to ``<stem>-00000.parquet, -00001 …`` under temporary names.

    Files are written as hidden ``.<name>.tmp`` files (ignored by Parquet readers) in
    row groups of about ``row_group_bytes``, a new file when ``max_shard_bytes`` is reached;
    :meth:`commit` renames them all to their final names, :meth:`abort` deletes them.
    """

    def __init__(self, folder: Path, stem: str, opts: SegmentOptions, metadata: dict[str, str]):
        self.folder, self.stem, self.opts = folder, stem, opts
        self.schema = SCHEMA.with_metadata(
            {**SCHEMA.metadata, **{k.encode(): v.encode() for k, v in metadata.items()}}
        )
        self.temps: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._file_bytes = 0
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self._buffer_bytes += _row_bytes(row)
        self.rows += 1
        if self._buffer_bytes >= self.opts.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            temp = self.folder / f".{self.stem}-{len(self.temps):05d}.parquet.tmp"
            self.temps.append(temp)
            self._writer = pq.ParquetWriter(
                temp,
                self.schema,
                compression=_COMPRESSION,
                use_dictionary=_DICTIONARY_COLUMNS,
                # Room for every distinct frame of a row group: at the default 1 MiB the
                # frames' dictionary fills up and the rest is stored plainly, each frame
                # T / stride times (503 instead of 479 KiB per paper-preset row).
                dictionary_pagesize_limit=self.opts.row_group_bytes,
                write_statistics=_STATISTICS_COLUMNS,
            )
            self._file_bytes = 0
        self._writer.write_table(rows_to_table(self._buffer))
        self._file_bytes += self._buffer_bytes
        self._buffer, self._buffer_bytes = [], 0
        if self._file_bytes >= self.opts.max_shard_bytes:
            self._writer.close()
            self._writer = None

    def commit(self) -> list[Path]:
        """Close and rename every file to its final name; returns the final paths."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        finals = []
        for temp in self.temps:
            final = temp.with_name(temp.name[1:].removesuffix(".tmp"))
            os.replace(temp, final)
            finals.append(final)
        return finals

    @property
    def current(self) -> Path:
        """The shard being written, by its final name (what an error should name)."""
        temp = self.temps[-1] if self.temps else self.folder / f".{self.stem}-00000.parquet.tmp"
        return temp.with_name(temp.name[1:].removesuffix(".tmp"))

    def abort(self) -> None:
        """Delete the temporary files, whatever closing the open one meets (a full disk:
        its error is the one being reported)."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None
        for temp in self.temps:
            temp.unlink(missing_ok=True)


def shard_folder(out: Path, record: VideoRecord) -> Path:
    return out / "shards" / file_name(record.split) / file_name(record.dataset)


def marker_path(out: Path, record: VideoRecord) -> Path:
    return out / "done" / f"{record.key}.json"


def _is_own_shard(name: str, stem: str) -> bool:
    """``name`` is one of the shard files of the video ``stem``: ``stem-NNNNN.parquet`` or
    its temporary ``.stem-NNNNN.parquet.tmp`` exactly, so that video ``a`` never claims
    ``a-1``'s files nor a ``.a-00000.parquet`` of someone else's."""
    shard = rf"{re.escape(stem)}-\d{{5}}\.parquet"
    return re.fullmatch(rf"{shard}|\.{shard}\.tmp", name) is not None


def _remove_leftovers(folder: Path, stem: str) -> None:
    """Shards of a run that died before its done-marker: final names and temporaries."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _is_own_shard(path.name, stem):
            path.unlink(missing_ok=True)


def read_marker(out: str | Path, record: VideoRecord) -> VideoSummary | None:
    """The summary of a video finished before (status ``done_before``), or None: no marker,
    or an unreadable one (the video is then redone). ``out`` may be an object-store URI."""
    location = storage.join(out, "done", f"{record.key}.json")
    try:
        if not storage.is_file(location):
            return None
        return replace(VideoSummary(**storage.read_json(location)), status="done_before")
    except (InputError, TypeError):
        return None


def _write_video_remote(
    record: VideoRecord, opts: SegmentOptions, out: str, config_json: str
) -> VideoSummary:
    """:func:`write_video` into an object store, which has no rename: the shards are written
    to a local folder, the video's shard objects of an interrupted earlier attempt deleted,
    the new ones uploaded, and the done-marker uploaded last. The marker lists the files, so
    a reader that trusts markers never sees a half-uploaded video (:mod:`preprocessing.storage`)."""
    done = read_marker(out, record)
    if done is not None:
        return done
    with tempfile.TemporaryDirectory(prefix="avrsp-shards-") as staging:
        summary = write_video(record, opts, staging, config_json=config_json)
        if summary.status != "ok":
            return summary
        folder = storage.join(out, str(shard_folder(Path(""), record)))
        stem = record.file_stem
        for old in storage.list_files(folder, suffix=".parquet"):
            if _is_own_shard(storage.name(old), stem):
                storage.delete(old)
        for relative in summary.files:
            storage.upload(Path(staging) / relative, storage.join(out, relative))
        storage.write_json(storage.join(out, "done", f"{record.key}.json"), summary.to_dict())
    return summary


def write_video(
    record: VideoRecord, opts: SegmentOptions, out: str | Path, *, config_json: str = "{}"
) -> VideoSummary:
    """Write one video's shards and done-marker; never raises for bad input.

    A video with a done-marker is skipped (status ``done_before``, the marker's counts).
    Bad input gives status ``failed`` with the reason; its partial files are removed.
    """
    if storage.is_uri(out):
        return _write_video_remote(record, opts, str(out), config_json)
    out = Path(out)
    started = time.perf_counter()
    summary = VideoSummary(record.dataset, record.video_id, record.split, record.fold)
    marker = marker_path(out, record)
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
            return replace(VideoSummary(**done), status="done_before")
        except (ValueError, TypeError):
            marker.unlink()  # unreadable marker: redo the video
    folder = shard_folder(out, record)
    stem = record.file_stem
    _remove_leftovers(folder, stem)
    metadata = {
        "avrsp.record": record.to_json(),
        "avrsp.options": json.dumps(asdict(opts)),
        "avrsp.config": config_json,
    }
    writer = ShardWriter(folder, stem, opts, metadata)
    counters = _Counters()
    notes: list[str] = []
    try:
        rows = iter_segments(record, opts, counters=counters, notes=notes)
        with contextlib.closing(rows):  # the decoder closes the file at once should writing fail
            for row in rows:
                summary.has_audio = bool(row["has_audio"])
                summary.fps = float(row["fps"])
                writer.add(row)
        finals = writer.commit()
    except AVRSPError as exc:
        writer.abort()
        summary.status, summary.reason = "failed", str(exc)
    except Exception as exc:  # a library error we did not foresee: report, never lose others
        writer.abort()
        summary.status = "failed"
        full = storage_error(exc, where=writer.current)  # a full disk: the shard, the cause
        summary.reason = str(full) if full else f"{record.frames}: {type(exc).__name__}: {exc}"
    else:
        summary.windows = writer.rows
        summary.files = [str(p.relative_to(out)) for p in finals]
        summary.bytes = sum(p.stat().st_size for p in finals)
        if summary.windows == 0:
            summary.status = "failed"
            summary.reason = (
                f"{record.dataset}/{record.video_id}: no window has a target map "
                f"({counters.frames} frames, {counters.without_target} windows without "
                "fixations)"
            )
            for path in finals:
                path.unlink(missing_ok=True)
            summary.files, summary.bytes = [], 0
    summary.frames = counters.frames
    summary.fixation_points = counters.points
    summary.fixations_dropped = counters.dropped
    summary.windows_without_target = counters.without_target
    summary.notes = notes
    if counters.loader is not None:
        summary.dropped_rows = counters.loader.dropped.to_list()
        if summary.status == "failed" and summary.dropped_rows:
            summary.reason += f"; {dropped_rows_text(summary.dropped_rows)}"
    summary.seconds = round(time.perf_counter() - started, 3)
    if summary.status == "ok":
        write_json(marker, summary.to_dict())
    return summary
