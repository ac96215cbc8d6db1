"""Decoding videos with ffmpeg: probing, frames at the model size, mono audio (DESIGN §5).

Every command is an argv list built by ffmpeg-python and run without a shell, so file
names never pass through a shell. The executable is :func:`ffmpeg_exe`: ``$AVRSP_FFMPEG``
if set, else the system ``ffmpeg``, else the static binary inside the ``imageio-ffmpeg``
wheel. That wheel has no ``ffprobe``, so :func:`probe` uses ``ffmpeg`` alone (works with
Debian's ffmpeg 5.1 and the wheel's 7.x–9.x builds):

- one *stream-copy* pass into ffmpeg's ``framecrc`` muxer: the packets of the first video
  stream are read but not decoded (fast: no decoding), and the muxer prints one line per
  packet with its timestamps in a machine-readable table (``#tb``, ``#dimensions``
  header lines, then ``stream, dts, pts, duration, size, crc``). From it come the exact
  frame count, the frame size, the time of the first and the end of the last frame, and
  whether the frame rate is variable;
- the ``Input #0`` description ffmpeg prints on stderr of the same process gives what
  the packet table does not: the container duration, the nominal frame rate, the
  rotation, and the first audio stream (rate and channel layout).

Time alignment (avrsp/audio.py's convention: frame ``k`` is centred at ``k / fps``,
audio sample ``s`` sits at ``s / sample_rate``) uses one clock whose zero is the start of
the first video frame:

- ``decode_frames(path, size)`` (no ``fps``) returns every decoded frame once, in order.
  For a constant-rate file frame ``k`` is at ``k / info.fps``.
- ``decode_frames(path, size, fps=F)`` returns a constant-rate sequence: output frame
  ``k`` is the native frame on screen at ``k / F`` — precisely, the latest frame whose
  time ``t`` (from the first frame) satisfies ``round(t * F) <= k`` (ffmpeg's ``fps``
  filter with ``round=near``, so a CFR file converted to its own rate keeps every frame
  even with timestamp jitter below half a frame). There are exactly
  :meth:`MediaInfo.cfr_frame_count` frames: every ``k`` with ``k / F`` before the end of
  the last native frame. Gaze samples with a time ``t`` belong to frame
  :func:`frame_at_time` ``= round(t * F)``. Variable-frame-rate files must be decoded
  this way (``info.variable_frame_rate``).
- ``decode_audio`` returns mono samples on the same clock: audio that starts before the
  first video frame is cut, audio that starts later is preceded by silence.
- ``iter_jpeg_frames`` gives the same frames as ``iter_frames``, but as JPEG files that
  ffmpeg encodes itself (no raw frame passes through Python; :func:`jpeg_quant_tables`
  says how the 1–100 quality maps to ffmpeg's encoder). With a :class:`PipedAudio` the
  same process also decodes the audio, exactly as ``decode_audio`` does, onto a second
  pipe.
- :class:`OnePass` is ``probe`` and ``iter_jpeg_frames`` (every frame, the audio) in one
  process: the packet table of the probe's scan comes on a third pipe and is checked
  after the last frame. The dataset job uses it; where a file needs the probe first
  (variable frame rate, read errors, …) it raises :class:`NeedsProbe` and the job decodes
  that file again the two-step way.

Policies:

- A *truncated* file (ffmpeg reports a read error and the video stream ends well before
  the container's declared duration) is an :class:`InputError`, not a decoded prefix:
  the dataset job names failing videos rather than writing silently fewer frames. ffmpeg
  detects truncation only where the container declares what is missing (an MP4 without
  its ``moov`` index cannot be opened at all; a faststart MP4 cut short declares the full
  duration); a stream cut at a packet boundary in a container without duration (e.g. a
  streamed Matroska file) decodes as the shorter video it is.
- Decoding a CFR sequence may come out one or two frames short at the end (ffmpeg 5.1's
  ``fps`` filter drops the last frame's duration); the last frame is then repeated up to
  the documented count. A larger shortfall is an :class:`InputError`.
- Mono downmix: ffmpeg's resampler with ``rematrix_maxval=1``, i.e. a normalised weighted
  average of the channels (stereo: ``(L + R) / 2``; 5.1: the ITU-style front, centre and
  surround weights, normalised; the LFE channel is left out as in ffmpeg's default
  matrix). It never clips.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ffmpeg as ffmpeg_python
import numpy as np

from avrsp.errors import InputError

log = logging.getLogger(__name__)

_NOPTS = -(2**63)
# Frames a CFR decode may come out short at the end before it counts as truncation.
_SHORT_TOLERANCE = 2
_PATTERN = re.compile(r"%0?\d*d")
_T = TypeVar("_T")


def ffmpeg_exe() -> str:
    """The ffmpeg executable: ``$AVRSP_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    chosen = os.environ.get("AVRSP_FFMPEG")
    if chosen:
        if shutil.which(chosen) is None:
            raise InputError(f"AVRSP_FFMPEG={chosen}: not an executable file")
        return chosen
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a dependency of the project
        raise InputError("no ffmpeg: install ffmpeg or the imageio-ffmpeg package") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def frame_at_time(t: float | np.ndarray, fps: float) -> int | np.ndarray:
    """The 0-based frame shown at ``t`` seconds of a CFR sequence: ``round(t * fps)``.

    Frame ``k`` is centred at ``k / fps`` and covers ``[(k - ½) / fps, (k + ½) / fps)``
    (avrsp/audio.py); halves round up.
    """
    value = np.floor(np.asarray(t, dtype=np.float64) * fps + 0.5).astype(np.int64)
    return int(value) if value.ndim == 0 else value


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a video.

    ``width``/``height`` are the displayed frame size (rotation applied); ``fps`` is the
    nominal (average) frame rate; ``duration_s`` the container's duration, else the video
    stream's span; ``frame_count`` the number of video frames. ``start_s`` is the first
    frame's time on ffmpeg's clock (0 = the earliest stream start; a video that starts
    after its audio has ``start_s > 0``); ``video_duration_s`` is the span from the start
    of the first frame to the end of the last.
    """

    path: Path
    width: int
    height: int
    fps: float
    duration_s: float | None
    frame_count: int | None
    has_audio: bool
    audio_channels: int
    audio_rate: int | None
    variable_frame_rate: bool
    start_s: float = 0.0
    video_duration_s: float | None = None

    def cfr_frame_count(self, fps: float) -> int:
        """Frames that ``decode_frames(..., fps=fps)`` returns: every ``k`` with
        ``k / fps < video_duration_s``."""
        _check_fps(fps)
        span = self.video_duration_s
        if span is None:
            span = (self.frame_count or 0) / self.fps
        # Timestamps are rounded to the stream's time base: an end within 5 % of a frame
        # past k / fps does not make frame k.
        return max(1, math.ceil(span * fps - 0.05)) if span > 0 else 0


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """One input to ffmpeg: a file, or an image sequence (``img_%05d.jpg``)."""

    name: str  # as the caller gave it, for messages
    url: str  # absolute path handed to ffmpeg
    input_args: dict[str, Any]
    is_sequence: bool


def _source(
    path: str | Path, frames_dir_pattern: str | None = None, fps: float | None = None
) -> _Source:
    """Resolve ``path`` (a file, or a folder + ``frames_dir_pattern``, or a pattern)."""
    if frames_dir_pattern is not None:
        pattern = Path(path) / frames_dir_pattern
    elif _PATTERN.search(Path(path).name) and not Path(path).exists():
        pattern = Path(path)
    else:
        pattern = None
    if pattern is not None:
        if not pattern.parent.is_dir():
            raise InputError(f"{pattern}: frame folder {pattern.parent} does not exist")
        # An absolute path: a name like "a:b" must not read as a protocol.
        args: dict[str, Any] = {"format": "image2"}
        if fps is not None:
            _check_fps(fps)
            args["framerate"] = f"{fps:.10g}"
        return _Source(str(pattern), str(pattern.absolute()), args, True)
    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: file not found")
    if not file.is_file():
        raise InputError(f"{file}: not a file")
    return _Source(str(file), str(file.absolute()), {}, False)


def _check_fps(fps: float) -> None:
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")


# --------------------------------------------------------------------------- running


def _cmd(loglevel: str) -> list[str]:
    # "level" prefixes every log line with [error]/[info]…, which is what we parse.
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", f"level+{loglevel}"]


def _run(stream: Any, loglevel: str) -> tuple[int, bytes, str]:
    """Run a compiled ffmpeg-python graph to completion: (exit code, stdout, stderr)."""
    try:
        proc = stream.run_async(cmd=_cmd(loglevel), pipe_stdout=True, pipe_stderr=True)
    except OSError as exc:
        raise InputError(f"cannot run ffmpeg ({ffmpeg_exe()}): {exc}") from None
    out, err = proc.communicate()
    return proc.returncode, out, err.decode("utf-8", errors="replace")


_LINE = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-fA-F]+\] )?(?:\[(?P<level>[a-z]+)\] )?(?P<msg>.*)$")


def _log_lines(stderr: str) -> list[tuple[str, str]]:
    """``(level, message)`` per stderr line (level '' where ffmpeg printed none)."""
    lines = []
    for raw in stderr.splitlines():
        m = _LINE.match(raw)
        assert m is not None  # the pattern matches any line
        lines.append((m.group("level") or "", m.group("msg")))
    return lines


def _errors(lines: list[tuple[str, str]]) -> list[str]:
    return [msg.strip() for level, msg in lines if level in ("error", "fatal", "panic")]


def _reason(errors: list[str], fallback: str) -> str:
    """The most telling ffmpeg error line, without its file-name prefix."""
    useful = [
        e for e in errors if e and not e.startswith(("Error opening input file", "Conversion"))
    ]
    text = (useful or errors or [fallback])[-1]
    return re.sub(r"^.*?: (?=[A-Z])", "", text) if ": " in text else text


def _failure(src: _Source, errors: list[str], what: str) -> InputError:
    reason = _reason(errors, f"ffmpeg failed while {what}")
    if "Invalid data found" in reason or "moov atom not found" in " ".join(errors):
        detail = "not a video file ffmpeg can read, or the file is damaged/truncated"
        return InputError(f"{src.name}: {detail} ({reason})")
    if "No such file" in reason:
        return InputError(f"{src.name}: file not found ({reason})")
    return InputError(f"{src.name}: ffmpeg failed while {what} ({reason})")


# --------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class _Described:
    """What the ``Input #0`` description says (:func:`_describe`)."""

    duration_s: float | None
    video: str | None  # the first (non-cover-art) video stream's description
    audio: str | None  # the first audio stream's description
    rotation: float


@dataclass(frozen=True)
class _Scan(_Described):
    """What one stream-copy pass over a source tells: the description, and the packets."""

    dims: tuple[int, int] | None  # (width, height) from the packet table
    times: np.ndarray  # [N] presentation times of the video packets, seconds, sorted
    last_duration: float  # duration of the last frame, seconds (0 where unknown)
    tick: float  # time base of the video packets, seconds
    packets: int
    errors: list[str]


def _scan(src: _Source) -> _Scan:
    graph = ffmpeg_python.input(src.url, **src.input_args)["V:0?"].output(
        "pipe:", c="copy", f="framecrc"
    )
    rc, out, err = _run(graph, "info")
    return _parse_scan(src, rc, out.decode("ascii", errors="replace"), _log_lines(err))


def _describe(section: list[str]) -> _Described:
    streams = _streams(section)
    video = next((s for kind, s in streams if kind == "Video" and "attached pic" not in s), None)
    audio = next((s for kind, s in streams if kind == "Audio"), None)
    rot = re.search(r"rotation of (-?[\d.]+) degrees", "\n".join(section))
    return _Described(_duration(section), video, audio, float(rot.group(1)) if rot else 0.0)


def _parse_scan(src: _Source, rc: int, table: str, lines: list[tuple[str, str]]) -> _Scan:
    """A :class:`_Scan` from a run that copied the first video stream into ``framecrc``:
    its exit code, the ``framecrc`` text and its stderr lines at level info."""
    errors = _errors(lines)
    section = _input_section(lines)
    if section is None:
        raise _failure(src, errors, "opening it")
    desc = _describe(section)
    duration, video, audio, rotation = desc.duration_s, desc.video, desc.audio, desc.rotation
    if video is None:
        return _Scan(duration, None, audio, rotation, None, np.zeros(0), 0.0, 0.0, 0, errors)
    if rc != 0:
        raise _failure(src, errors, "reading the video stream")
    tb, dims, pts, dur = _packet_table(table)
    packets = len(pts)
    valid = pts != _NOPTS
    if packets and valid.all():
        order = np.argsort(pts, kind="stable")
        times = pts[order] * tb
        last_duration = float(dur[order[-1]]) * tb
    else:
        times = np.zeros(0)  # raw streams carry no timestamps: CFR is assumed below
        last_duration = 0.0
    return _Scan(duration, video, audio, rotation, dims, times, last_duration, tb, packets, errors)


def _input_section(lines: list[tuple[str, str]]) -> list[str] | None:
    """The indented lines ffmpeg prints under ``Input #0, …`` (None when it never opened)."""
    section: list[str] | None = None
    for _, msg in lines:
        if section is None:
            if msg.startswith("Input #0"):
                section = []
        elif msg.startswith(" "):
            section.append(msg)
        else:
            break
    return section


def _duration(section: list[str]) -> float | None:
    for line in section:
        m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", line)
        if m:
            h, mi, s = m.groups()
            return int(h) * 3600 + int(mi) * 60 + float(s)
    return None


def _streams(section: list[str]) -> list[tuple[str, str]]:
    found = []
    for line in section:
        m = re.search(r"Stream #0:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)", line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def _packet_table(
    text: str,
) -> tuple[float, tuple[int, int] | None, np.ndarray, np.ndarray]:
    """framecrc output → (time base s, (w, h), pts [N], duration [N]) of stream 0."""
    tb, dims = 1.0, None
    rows: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            tb = int(num) / int(den)
        elif line.startswith("#dimensions 0:"):
            w, h = line.split(":", 1)[1].strip().split("x")
            dims = (int(w), int(h))
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 5 and parts[0] == "0":
                rows.append((int(parts[2]), int(parts[3])))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return tb, dims, arr[:, 0], arr[:, 1]


_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8,
    "hexadecagonal": 16, "cube": 8, "22.2": 24,
}  # fmt: skip


def _audio_format(desc: str) -> tuple[int | None, int]:
    """(sample rate, channels) from an ffmpeg audio stream description."""
    rate_m = re.search(r"(\d+) Hz", desc)
    rate = int(rate_m.group(1)) if rate_m else None
    channels = 0
    lay = re.search(r"\d+ Hz, ([^,]+)", desc)
    if lay:
        name = lay.group(1).strip()
        base = name.split("(")[0].strip()
        if m := re.fullmatch(r"(\d+) channels", base):
            channels = int(m.group(1))
        elif base in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[base]
        elif re.fullmatch(r"\d+(\.\d+)+", base):  # "5.1", "7.1", "5.1.2": sum of the parts
            channels = sum(int(p) for p in base.split("."))
    return rate, channels


def _nominal_fps(desc: str) -> float | None:
    for unit in ("fps", "tbr"):
        m = re.search(rf"([\d.]+)(k?) {unit}\b", desc)
        if m:
            value = float(m.group(1)) * (1000.0 if m.group(2) else 1.0)
            if value > 0:
                return value
    return None


def probe(path: str | Path, *, frames_dir_pattern: str | None = None) -> MediaInfo:
    """Inspect a video (or an image sequence) without decoding it (module docstring).

    Raises :class:`InputError` naming the file for a missing, non-video, damaged or
    truncated file, or one without a video stream.
    """
    return _probe_source(_source(path, frames_dir_pattern))


def _probe_source(src: _Source) -> MediaInfo:
    if src.is_sequence:
        return _probe_sequence(src)
    return _media_info(src, _scan(src))


def _frame_size(video: str) -> tuple[int, int] | None:
    """(width, height) from a video stream's description."""
    m = re.search(r", (\d+)x(\d+)[ ,\[]", video)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _media_info(src: _Source, scan: _Scan) -> MediaInfo:
    """The :class:`MediaInfo` of a file from its scan (InputError where it does not fit)."""
    if scan.video is None:
        kinds = "audio only" if scan.audio else "no streams ffmpeg can decode"
        raise InputError(f"{src.name}: no video stream ({kinds})")
    if scan.packets == 0:
        raise InputError(f"{src.name}: the video stream has no frames")
    dims = scan.dims or _frame_size(scan.video)
    if dims is None:
        raise InputError(f"{src.name}: ffmpeg reports no frame size ({scan.video})")
    width, height = dims
    if round(abs(scan.rotation)) % 180 == 90:  # ffmpeg rotates frames on decode
        width, height = height, width
    nominal = _nominal_fps(scan.video)
    n = scan.packets
    if scan.times.size:
        start = float(scan.times[0])
        steps = np.diff(scan.times)
        median = float(np.median(steps)) if steps.size else 0.0
        end = _video_end(scan, nominal)
        span = float(end - start) if end is not None else None
        vfr = bool(steps.size and np.abs(steps - median).max() > 0.1 * median + 1.5 * scan.tick)
        fps = nominal or (n / span if span > 0 else None)
    else:  # no timestamps (raw elementary stream): constant rate at the nominal fps
        start, vfr = 0.0, False
        fps = nominal
        span = n / fps if fps else None
    if not fps:
        raise InputError(f"{src.name}: ffmpeg reports no frame rate and no timestamps")
    duration = scan.duration_s if scan.duration_s is not None else span
    _check_truncation(src, scan, start + span if span is not None else None, fps)
    if scan.errors:
        log.warning("%s: ffmpeg reported: %s", src.name, "; ".join(scan.errors[-3:]))
    rate, channels = _audio_format(scan.audio) if scan.audio else (None, 0)
    return MediaInfo(
        path=Path(src.name),
        width=width,
        height=height,
        fps=float(fps),
        duration_s=duration,
        frame_count=n,
        has_audio=scan.audio is not None,
        audio_channels=channels,
        audio_rate=rate,
        variable_frame_rate=vfr,
        start_s=start,
        video_duration_s=span,
    )


def _video_end(scan: _Scan, nominal: float | None) -> float | None:
    """End of the last video frame on ffmpeg's clock (None where unknown).

    The last frame lasts as long as the interval before it: containers disagree about
    the last sample's own duration (ffmpeg 5.1 and 9 read different values from the same
    variable-rate MP4), the interval between timestamps does not.
    """
    if not scan.times.size:
        return None
    if scan.times.size >= 2:
        last = float(scan.times[-1] - scan.times[-2])
    elif scan.last_duration > 0:
        last = scan.last_duration
    else:
        last = 1.0 / nominal if nominal else 0.0
    return float(scan.times[-1] + last)


def _check_truncation(src: _Source, scan: _Scan, end: float | None, fps: float) -> None:
    """InputError when ffmpeg reported read errors and the video ends well before the
    container's declared duration (a file cut short)."""
    if not scan.errors or scan.duration_s is None or end is None:
        return
    if scan.duration_s - end > max(2.0 / fps, 0.05 * scan.duration_s):
        raise InputError(
            f"{src.name}: truncated or damaged file: the container says "
            f"{scan.duration_s:.2f} s but the video stream ends at {end:.2f} s "
            f"({_reason(scan.errors, 'read error')})"
        )


# --------------------------------------------------------------------------- frames


class _StderrTail(threading.Thread):
    """Drains a process's stderr (so ffmpeg never blocks on it), keeping the last lines."""

    def __init__(self, pipe: Any, keep: int = 40) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines: deque[str] = deque(maxlen=keep)

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            self.lines.append(raw.decode("utf-8", errors="replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


def iter_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    frames_dir_pattern: str | None = None,
    *,
    info: MediaInfo | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video as ``uint8 [H, W, 3]`` RGB, one at a time.

    ``size`` = (H, W) to scale to (in the decoding process, area interpolation), None for
    the native size. ``fps`` = None: every decoded frame once; ``fps`` given: a
    constant-rate sequence of exactly ``info.cfr_frame_count(fps)`` frames (module
    docstring). ``path`` may be an image-sequence pattern (``/x/img_%05d.jpg``), or a
    folder with ``frames_dir_pattern`` (``img_%05d.jpg``); sequences need ``fps`` (their
    frame rate; ffmpeg finds the first number among 0–4). ``info``: a :func:`probe` result
    to reuse. Memory stays at one frame: the pipe is read frame by frame, and the ffmpeg
    process is stopped when the iterator is closed early.
    """
    src, info, (height, width), _, stream, expected = _frame_graph(
        path, size, fps, frames_dir_pattern, info
    )
    graph = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    frame_bytes = height * width * 3

    def frames(pipe: Any) -> Iterator[np.ndarray]:
        while True:
            buf = bytearray(frame_bytes)
            got = pipe.readinto(buf)
            while got and got < frame_bytes:  # a pipe may deliver a frame in pieces
                more = pipe.readinto(memoryview(buf)[got:])
                if not more:
                    break
                got += more
            if got != frame_bytes:
                return
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)

    # The repeated last frame is a copy: a consumer may write into the frames it gets.
    return _stream_frames(src, graph, expected, frames, lambda frame: frame.copy())


def iter_jpeg_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    frames_dir_pattern: str | None = None,
    *,
    info: MediaInfo | None = None,
    quality: int = 90,
    audio: PipedAudio | None = None,
    threads: int | None = 1,
) -> Iterator[bytes]:
    """The frames of :func:`iter_frames` (same arguments, same count), each a JPEG file.

    ffmpeg scales and encodes them itself (its ``mjpeg`` encoder, baseline JPEG, 4:2:0
    chroma, full-range BT.601 YCbCr as JFIF readers expect, the standard Huffman tables of
    JPEG Annex K) and writes them back to back to a pipe, which is cut into files at the
    JPEG markers (:class:`JpegSplitter`): no raw frame passes through Python. ``quality``
    (1–100) selects the quantization tables :func:`jpeg_quant_tables` gives, the ones
    libjpeg (and Pillow) use at that quality. Decoded, a frame differs from the
    :func:`iter_frames` frame by about 2 grey levels on average at quality 90
    (test_media_ffmpeg.py).

    ``audio``: a :class:`PipedAudio` that the same ffmpeg process fills, on a second pipe,
    with the file's first audio stream exactly as :func:`decode_audio` ``(path,
    audio.sample_rate, info=info)`` returns it (one process and one pass over the file for
    both). A video without an audio track gets a command line without the audio output,
    and ``audio`` ends empty at once. The audio is complete when the iterator has ended
    (:attr:`PipedAudio.complete`); before that it grows while the frames come.

    ``threads``: ffmpeg's threads for decoding, filtering and encoding. 1 (the default)
    suits the dataset job, which runs one video per CPU: threads on top of that cost CPU
    time for nothing (1–15 % here). None: ffmpeg's choice, for one video on an idle machine.
    """
    src, info, _, source, stream, expected = _frame_graph(
        path, size, fps, frames_dir_pattern, info, jfif=True, threads=threads
    )
    graph = _jpeg_output(stream, quality, threads)
    extra: _AudioOutput | None = None
    if audio is not None:
        if info.has_audio and not src.is_sequence:
            extra = _AudioOutput(audio, info.start_s, source)  # its pipe opens with ffmpeg
        else:
            audio._finish()

    def images(pipe: Any) -> Iterator[bytes]:
        splitter = JpegSplitter(src.name)
        while chunk := pipe.read1(1 << 16):
            yield from splitter.feed(chunk)
        # Bytes of an unfinished file left at the end: ffmpeg stopped early, which the
        # frame count tells (with ffmpeg's own error).

    return _stream_frames(src, graph, expected, images, lambda image: image, extra)


def _frame_graph(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None,
    frames_dir_pattern: str | None,
    info: MediaInfo | None,
    *,
    jfif: bool = False,
    threads: int | None = None,
) -> tuple[_Source, MediaInfo, tuple[int, int], Any, Any, int]:
    """The decoding filter chain shared by the frame readers: (source, info, (H, W),
    ffmpeg-python input, stream scaled to (H, W), expected frame count).

    ``jfif``: the scaler also converts to full-range BT.601 YCbCr (what JFIF readers
    decode), in the same pass. ``threads``: decoder threads (None: ffmpeg's choice).
    """
    src = _source(path, frames_dir_pattern, fps)
    if src.is_sequence and fps is None:
        raise InputError(f"{src.name}: an image sequence needs its fps")
    if info is None:
        info = _probe_source(src)
    height, width = size if size is not None else (info.height, info.width)
    if height < 1 or width < 1:
        raise InputError(f"size must be positive (H, W), got {size}")
    threading_args = {"threads": threads} if threads is not None else {}
    source = ffmpeg_python.input(src.url, **src.input_args, **threading_args)
    stream = source["V:0"]
    if fps is not None and not src.is_sequence:
        _check_fps(fps)
        stream = stream.filter("setpts", "PTS-STARTPTS").filter(
            "fps", fps=f"{fps:.10g}", start_time=0, round="near"
        )
        expected = info.cfr_frame_count(fps)
    else:
        expected = info.frame_count or 0
    return src, info, (height, width), source, _scaled(stream, height, width, jfif), expected


def _scaled(stream: Any, height: int, width: int, jfif: bool) -> Any:
    """``stream`` scaled to (height, width) with area interpolation; ``jfif``: converted to
    full-range BT.601 YCbCr in the same swscale pass (:func:`iter_jpeg_frames`)."""
    colour = {"out_color_matrix": "bt601", "out_range": "pc"} if jfif else {}
    return stream.filter("scale", width, height, flags="area", **colour)


def _jpeg_output(stream: Any, quality: int, threads: int | None) -> Any:
    """``stream`` (scaled with ``jfif``) as back-to-back JPEG files to stdout: the encoder
    settings of :func:`iter_jpeg_frames`."""
    luma, chroma = jpeg_quant_tables(quality)
    # JFIF readers decode full-range BT.601 YCbCr: convert to it from whatever matrix and
    # range the video declares (a BT.709 HD video decoded as BT.601 is off in hue). One
    # swscale pass with the scaling (see _scaled).
    graph = stream.filter("format", "yuvj420p").output(
        "pipe:",
        format="image2pipe",
        vcodec="mjpeg",
        fps_mode="passthrough",
        # A pipe gets each packet on its own by default (241 writes for 241 frames, and a
        # wake-up of the reader each); unflushed, ffmpeg writes 32 KiB at a time.
        flush_packets=0,
        # The standard tables (Annex K.3): one pass per frame; "optimal" tables (ffmpeg's
        # default) need a second pass over the coefficients for ≈ 3 % smaller files.
        huffman=_HUFFMAN,
        **({"threads": threads} if threads is not None else {}),
        # The encoder multiplies its matrices by qscale / 8: qscale 8 keeps them as given.
        **{
            "q:v": 8,
            "intra_matrix": ",".join(map(str, luma)),
            "chroma_intra_matrix": ",".join(map(str, chroma)),
        },
    )
    if threads is not None:
        graph = graph.global_args("-filter_complex_threads", str(threads))
    return graph


# The JPEG encoder's Huffman tables: "default" = JPEG Annex K.3's (one pass per frame),
# "optimal" (ffmpeg's default) = fitted per frame (a second pass, ≈ 3 % smaller files).
_HUFFMAN = "default"


class PipedAudio:
    """Mono ``float32`` audio that a frame-decoding ffmpeg process writes to a second pipe
    (:func:`iter_jpeg_frames`), growing while the frames come.

    Samples are on :func:`decode_audio`'s clock (sample ``s`` at ``s / sample_rate`` after
    the start of the first video frame) and clipped to [-1, 1], as :func:`decode_audio`
    gives them. ``available()`` counts the samples so far; :meth:`ready` says whether a
    span up to a sample is known (or the audio ended); :meth:`waveform` is the audio so
    far. :attr:`complete` is True once the stream ended and the process succeeded.
    """

    def __init__(self, sample_rate: int = 22050) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._data = np.zeros(0, dtype=np.float32)
        self._count = 0
        # Samples at the front that lie before the first frame (:class:`OnePass` learns
        # how many only after its process started, so it keeps them and sets this).
        self._lead = 0
        self._ended = False  # the pipe reached its end (or there is nothing to read)
        self.complete = False

    def available(self) -> int:
        return max(self._count - self._lead, 0)

    def ready(self, stop: int) -> bool:
        """True when samples ``[0, stop)`` are all here, or no more will come."""
        return self._ended or self._count - self._lead >= stop

    def waveform(self) -> np.ndarray:
        """``float32 [S]``: every sample so far (a view; later samples do not change it)."""
        with self._lock:
            return self._data[min(self._lead, self._count) : self._count]

    def _append(self, samples: np.ndarray) -> None:
        with self._lock:
            need = self._count + samples.size
            if need > self._data.size:
                grown = np.empty(max(need, 2 * self._data.size, 1 << 16), dtype=np.float32)
                grown[: self._count] = self._data[: self._count]
                self._data = grown  # views handed out keep the old buffer
            np.clip(samples, -1.0, 1.0, out=self._data[self._count : need])
            self._count = need

    def _finish(self) -> None:
        self._ended = True
        self.complete = True


class _AudioOutput(threading.Thread):
    """Reads ffmpeg's f32le audio pipe into a :class:`PipedAudio`, dropping the samples
    before the first video frame (``skip_s``), as :func:`decode_audio` does."""

    def __init__(self, audio: PipedAudio, skip_s: float, source: Any) -> None:
        super().__init__(daemon=True)
        self.audio = audio
        self.skip = round(skip_s * audio.sample_rate)
        self.source = source  # the ffmpeg-python input whose first audio stream is read
        self.read_fd = self.write_fd = -1

    def add_to(self, graph: Any) -> Any:
        """Open the pipe and return ``graph`` with the audio output to its write end."""
        self.read_fd, self.write_fd = os.pipe()
        url = f"pipe:{self.write_fd}"
        return ffmpeg_python.merge_outputs(
            graph, _audio_output(self.source, self.audio.sample_rate, url)
        )

    def run(self) -> None:
        skip, rest = self.skip, b""
        # ffmpeg writes each audio frame on its own (≈ 2 KB): a buffered reader hands them
        # over 64 KiB at a time (0.7 s of audio), which keeps this thread's CPU time small.
        pipe = os.fdopen(self.read_fd, "rb", buffering=1 << 16, closefd=False)
        try:
            while chunk := pipe.read(1 << 16):
                data = rest + chunk
                whole = len(data) - len(data) % 4
                rest = data[whole:]
                samples = np.frombuffer(data, dtype="<f4", count=whole // 4)
                if skip:
                    dropped = min(skip, samples.size)
                    samples, skip = samples[dropped:], skip - dropped
                if samples.size:
                    self.audio._append(samples.astype(np.float32))
        except (OSError, ValueError):  # the read end was closed: the frames were abandoned
            pass
        finally:
            self.audio._ended = True

    def discard(self) -> None:
        """The process did not start: close both ends of the pipe."""
        _close_pipe(self)

    def started(self) -> None:
        """After the process started: the parent's write end is not needed any more."""
        os.close(self.write_fd)
        self.start()

    def close(self) -> None:
        """Wait for the end of the pipe (ffmpeg exited) and close it; idempotent."""
        if self.is_alive():
            self.join(timeout=5)
        if self.read_fd >= 0 and not self.is_alive():
            with contextlib.suppress(OSError):
                os.close(self.read_fd)
            self.read_fd = -1


def _close_pipe(reader: _AudioOutput | _TableReader) -> None:
    """Close whichever ends of a reader's pipe are still open (-1: closed)."""
    for fd in (reader.read_fd, reader.write_fd):
        if fd >= 0:
            os.close(fd)
    reader.read_fd = reader.write_fd = -1


def _popen(args: list[str], fds: tuple[int, ...]) -> subprocess.Popen:
    """Start ffmpeg with stdout and stderr piped: an argv list, no shell; ``fds`` (the
    write ends of extra output pipes) are the only descriptors it inherits."""
    try:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=fds)
    except OSError as exc:
        raise InputError(f"cannot run ffmpeg ({ffmpeg_exe()}): {exc}") from None


def _stream_frames(
    src: _Source,
    graph: Any,
    expected: int,
    read: Callable[[Any], Iterator[_T]],
    repeat: Callable[[_T], _T],
    audio: _AudioOutput | None = None,
) -> Iterator[_T]:
    """Run ``graph`` and yield what ``read(stdout)`` yields, exactly ``expected`` items.

    Stops ffmpeg once ``expected`` items came (or when the consumer closes the iterator);
    a short output is an :class:`InputError` unless it is at most :data:`_SHORT_TOLERANCE`
    items short, then the last item is repeated (``repeat(last)``) up to the count.
    ``audio``: the graph's second output, a pipe that ``audio`` reads; then frames beyond
    the count are read and dropped (the audio must run to its end) and a failing process is
    an error even after the last frame; ``audio.audio`` is complete when this ends.
    """
    try:
        if audio is not None:
            graph = audio.add_to(graph)
        fds = (audio.write_fd,) if audio is not None else ()
        proc = _popen(graph.compile(cmd=_cmd("error")), fds)
    except BaseException:
        if audio is not None:
            audio.discard()
        raise
    assert proc.stdout is not None and proc.stderr is not None
    if audio is not None:
        audio.started()
    tail = _StderrTail(proc.stderr)
    tail.start()
    count = 0
    last: _T | None = None
    items = read(proc.stdout)
    try:
        if expected > 0:
            for last in items:
                count += 1
                yield last
                if count >= expected:
                    break
        finished = count >= expected
        if finished:
            if audio is None:
                proc.stdout.close()  # frames beyond the documented count are not wanted
            else:
                for _ in items:  # drain: ffmpeg writes the audio to its end
                    pass
        rc = proc.wait()
        tail.join(timeout=5)
        if audio is not None:
            audio.close()
            if rc != 0:
                raise _failure(src, _errors(_log_lines(tail.text())), "decoding")
            audio.audio.complete = True
        if not finished:
            errors = _errors(_log_lines(tail.text()))
            if rc != 0:
                raise _failure(src, errors, "decoding frames")
            short = expected - count
            if last is None or short > _SHORT_TOLERANCE:
                reason = _reason(errors, "no error reported")
                raise InputError(
                    f"{src.name}: decoded {count} of {expected} frames; the file is "
                    f"truncated or damaged ({reason})"
                )
            for _ in range(short):  # ffmpeg 5.1 drops the last frame's duration
                count += 1
                yield repeat(last)
    finally:
        items.close()
        if proc.poll() is None:  # closed early by the consumer, or an error above
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if audio is not None:
            audio.close()  # EOF once ffmpeg is gone
        tail.join(timeout=5)  # it sees EOF once ffmpeg is gone
        proc.stderr.close()


# --------------------------------------------------------------------------- one pass


class NeedsProbe(Exception):
    """:class:`OnePass` met what only the probe-first path decodes right: a variable frame
    rate, no nominal frame rate, read errors, or a frame count, size, first-frame time or
    audio track other than it assumed. Not a fault of the file: decode it
    again with :func:`probe` first (:func:`iter_jpeg_frames`), which also reports real
    faults as :class:`InputError`."""


@dataclass(frozen=True)
class StreamHead:
    """What ffmpeg's ``Input #0`` description of a file says, before any frame."""

    fps: float  # the nominal frame rate
    width: int  # displayed size (rotation applied)
    height: int
    has_audio: bool
    audio_channels: int


# The first frame's time is taken as the smallest timestamp among this many video packets
# (decoders reorder frames over at most 16); the end of the pass checks it against all.
_SETTLE_PACKETS = 32


class _TableReader(threading.Thread):
    """Collects what ffmpeg writes to a pipe (the ``framecrc`` packet table)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.read_fd, self.write_fd = os.pipe()
        self._chunks: list[bytes] = []

    def run(self) -> None:
        try:
            while chunk := os.read(self.read_fd, 1 << 16):
                self._chunks.append(chunk)
        except OSError:  # the read end was closed: the pass was abandoned
            pass

    @property
    def pieces(self) -> int:
        """How many reads have come so far (a new one: :meth:`text` may have grown)."""
        return len(self._chunks)

    def text(self) -> str:
        """The complete lines so far."""
        data = b"".join(list(self._chunks))
        return data[: data.rfind(b"\n") + 1].decode("ascii", errors="replace")

    def close(self) -> None:
        _close_pipe(self)


class _StderrLog(threading.Thread):
    """Reads a process's stderr to its end, keeping every line; :attr:`head` is set once
    the ``Input #0`` description has ended (or stderr did)."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.raw: list[str] = []
        self.head = threading.Event()

    def run(self) -> None:
        in_input = False
        for raw in iter(self.pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            self.raw.append(line)
            if not self.head.is_set():
                m = _LINE.match(line)
                msg = m.group("msg") if m else line
                if in_input and not msg.startswith(" "):
                    self.head.set()
                in_input = in_input or msg.startswith("Input #0")
        self.head.set()

    def lines(self) -> list[tuple[str, str]]:
        return _log_lines("\n".join(list(self.raw)))


class OnePass:
    """:func:`probe` and :func:`iter_jpeg_frames` (every frame, its own audio) of a video
    file in one ffmpeg process: one process start and one demuxing pass fewer per video,
    ≈ 30 ms of CPU for a 10 s clip (docs/PERFORMANCE.md).

    The process starts at once. Its ``Input #0`` description (stderr) gives
    :attr:`head`: the nominal frame rate, the displayed size and the audio track, all that
    is needed before the first frame. Next to the JPEG files and the audio it copies the
    video packets into a ``framecrc`` table on a third pipe, the probe's scan. The first
    frame's time (audio before it is dropped, as :func:`decode_audio` does) is the smallest
    timestamp of the first packets. After the last frame the table and the log give
    exactly what :func:`probe` would have said; where that differs from what was assumed
    (variable frame rate, another first-frame time, frame count or size) or ffmpeg
    reported an error, :meth:`frames` raises :class:`NeedsProbe` and the caller decodes the
    file the probe-first way. :class:`NeedsProbe` also comes from the constructor for a
    file ffmpeg does not describe as expected (no video stream or no nominal frame rate).

    ``audio``: a :class:`PipedAudio` to fill, on :func:`decode_audio`'s clock, or None.
    A file without an audio track gets a second start without the audio output (the
    description says so before any frame), and ``audio`` ends empty at once.
    Frames are those of :func:`iter_jpeg_frames` with ``fps=None`` byte for byte.
    :meth:`close` (also at the end of :meth:`frames`) stops ffmpeg and its threads.
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        *,
        quality: int = 90,
        audio: PipedAudio | None = None,
        threads: int | None = 1,
    ) -> None:
        self.src = _source(path)
        if self.src.is_sequence:
            raise InputError(f"{self.src.name}: one pass reads a video file, not a sequence")
        height, width = size
        if height < 1 or width < 1:
            raise InputError(f"size must be positive (H, W), got {size}")
        self.audio = audio
        self.info: MediaInfo | None = None  # probe()'s result, once the frames have ended
        self._start_s: float | None = None
        self._args = (height, width, quality, threads)
        self._start(with_audio=audio is not None)
        if audio is not None and not self.head.has_audio:
            # No audio track, so no audio output: as iter_jpeg_frames, audio ends empty.
            self.close()
            audio._finish()
            self._start(with_audio=False)

    def _start(self, with_audio: bool) -> None:
        height, width, quality, threads = self._args
        self._closed = False
        threading_args = {"threads": threads} if threads is not None else {}
        source = ffmpeg_python.input(self.src.url, **threading_args)
        graph = _jpeg_output(_scaled(source["V:0"], height, width, True), quality, threads)
        self._table = _TableReader()
        self._table_seen = 0  # pieces of the table that _settle has parsed
        # The table unflushed: ffmpeg writes it when its 32 KiB output buffer fills (≈ 500
        # packets; in 4 KiB writes) or at the end, not a line per packet: fewer wake-ups of
        # its reader. The frames wait for the first piece (_settle): for a clip of 241
        # frames, until the end.
        table = source["V:0"].output(
            f"pipe:{self._table.write_fd}", c="copy", f="framecrc", flush_packets=0, blocksize=4096
        )
        graph = ffmpeg_python.merge_outputs(graph, table)
        fds = [self._table.write_fd]
        self._audio = _AudioOutput(self.audio, 0.0, source) if with_audio else None
        try:
            if self._audio is not None:
                graph = self._audio.add_to(graph)
                fds.append(self._audio.write_fd)
            self.proc = _popen(graph.compile(cmd=_cmd("info")), tuple(fds))
        except BaseException:
            self._table.close()
            if self._audio is not None:
                self._audio.discard()
            raise
        os.close(self._table.write_fd)
        self._table.write_fd = -1
        self._table.start()
        if self._audio is not None:
            self._audio.started()
        self._log = _StderrLog(self.proc.stderr)
        self._log.start()
        self._log.head.wait()
        try:
            self.head = self._read_head()
        except BaseException:
            self.close()
            raise

    def _read_head(self) -> StreamHead:
        section = _input_section(self._log.lines())
        if section is None:
            raise NeedsProbe("ffmpeg did not describe the file")
        desc = _describe(section)
        if desc.video is None:
            raise NeedsProbe("no video stream")
        fps, size = _nominal_fps(desc.video), _frame_size(desc.video)
        if not fps or size is None:
            raise NeedsProbe("no nominal frame rate or frame size")
        width, height = size
        if round(abs(desc.rotation)) % 180 == 90:  # ffmpeg rotates frames on decode
            width, height = height, width
        channels = _audio_format(desc.audio)[1] if desc.audio else 0
        return StreamHead(fps, width, height, desc.audio is not None, channels)

    def frames(self) -> Iterator[bytes]:
        """The JPEG files, each decoded frame once and in order; then the checks
        (:class:`NeedsProbe`). Closing the iterator early stops ffmpeg."""
        assert self.proc.stdout is not None
        splitter = JpegSplitter(self.src.name)
        held: list[bytes] | None = []  # until the first frame's time is known
        count = 0
        try:
            while chunk := self.proc.stdout.read1(1 << 16):
                images = splitter.feed(chunk)
                if held is not None:
                    held += images
                    if not self._settle(final=False):
                        continue
                    images, held = held, None
                for image in images:
                    count += 1
                    yield image
            if held is not None:
                self._settle(final=True)
                for image in held:
                    count += 1
                    yield image
            self._finish(count)
        finally:
            self.close()

    def _settle(self, final: bool) -> bool:
        """Take the first frame's time from the packets so far, once there are enough of
        them (or all); the audio then drops what lies before it. False: not yet."""
        if final:
            self.proc.wait()
            self._table.join()
        elif self._table.pieces == self._table_seen:
            return False  # nothing new (a short table comes in one piece at the end)
        self._table_seen = self._table.pieces
        tb, _, pts, _ = _packet_table(self._table.text())
        if not final and pts.size < _SETTLE_PACKETS:
            return False
        # As probe(): the smallest presentation time, 0 where packets carry none.
        self._start_s = float(pts.min() * tb) if pts.size and (pts != _NOPTS).all() else 0.0
        if self._audio is not None:
            self._audio.audio._lead = round(self._start_s * self._audio.audio.sample_rate)
        return True

    def _finish(self, count: int) -> None:
        rc = self.proc.wait()
        self._table.join()
        self._log.join()
        if self._audio is not None:
            self._audio.close()
        lines = self._log.lines()
        if rc != 0 or _errors(lines):
            raise NeedsProbe(f"ffmpeg reported errors (exit code {rc})")
        try:
            info = _media_info(self.src, _parse_scan(self.src, rc, self._table.text(), lines))
        except InputError as exc:
            raise NeedsProbe(str(exc)) from None
        differs = {
            "variable frame rate": info.variable_frame_rate,
            "frame rate": info.fps != self.head.fps,
            "frame size": (info.width, info.height) != (self.head.width, self.head.height),
            "frame count": info.frame_count != count,
            "first frame's time": info.start_s != self._start_s,
            "audio track": info.has_audio != self.head.has_audio,
        }
        if any(differs.values()):
            raise NeedsProbe(", ".join(k for k, v in differs.items() if v))
        self.info = info
        if self._audio is not None:
            self._audio.audio.complete = True

    def close(self) -> None:
        """Stop ffmpeg (when still running) and its threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        if self._audio is not None:
            self._audio.close()  # EOF once ffmpeg is gone
        self._table.join(timeout=5)
        self._table.close()
        self._log.join(timeout=5)
        self.proc.stderr.close()


# --------------------------------------------------------------------------- JPEG

# ITU-T T.81 (JPEG) Annex K, tables K.1 and K.2: the example luminance and chrominance
# quantization tables, row by row (the order ffmpeg's -intra_matrix takes).
_K1_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_K2_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


def jpeg_quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """(luminance, chrominance) quantization tables, 64 values row by row, for ``quality``.

    The IJG convention that libjpeg and Pillow follow: the Annex K tables of the JPEG
    standard scaled by ``5000 / quality`` percent below 50 and ``200 - 2 * quality``
    percent from 50 on, rounded, clipped to 1…255 (baseline). :func:`iter_jpeg_frames`
    hands them to ffmpeg's encoder, so its JPEGs carry the same AC steps as Pillow's at the
    same quality; only the DC step differs: ffmpeg's encoder fixes it at 8 (block means in
    steps of one grey level).
    """
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise InputError(f"jpeg_quality must be an integer in 1…100, got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def scaled(table: tuple[int, ...]) -> list[int]:
        return [min(255, max(1, (v * scale + 50) // 100)) for v in table]

    return scaled(_K1_LUMA), scaled(_K2_CHROMA)


# Where entropy-coded data ends: 0xFF followed by anything but a stuffed 0x00 or RSTn.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def jpeg_length(data: bytes | bytearray, start: int = 0) -> int | None:
    """Length of the JPEG file that begins at ``data[start]`` (SOI … EOI), None when
    ``data`` ends before its EOI marker. ValueError when no JPEG begins there.

    Walks the marker segments by their lengths (so table bytes that happen to read
    ``FF D9`` are skipped) and searches each scan's entropy-coded data for the next
    marker: inside it every 0xFF byte is followed by a stuffed 0x00 or a restart marker.
    """
    n = len(data)
    if n - start < 2:
        return None
    if data[start] != 0xFF or data[start + 1] != 0xD8:
        raise ValueError(f"no JPEG start marker at byte {start}")
    pos = start + 2
    while True:
        if pos + 2 > n:
            return None
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}, found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker == 0xD9:  # EOI
            return pos + 2 - start
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            pos += 2
        else:
            if pos + 4 > n:
                return None
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 2:
                raise ValueError(f"JPEG segment of length {length} at byte {pos}")
            pos += 2 + length
            if marker == 0xDA:  # SOS: entropy-coded data up to the next marker
                found = _SCAN_END.search(data, pos)
                if found is None:
                    return None
                pos = found.start()


class JpegSplitter:
    """Cuts a byte stream of JPEG files written back to back into the files.

    ``feed(chunk)`` returns the files completed by ``chunk`` (:class:`InputError` for a
    stream that is not JPEG files); ``pending`` is the byte count of an unfinished file.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        done: list[bytes] = []
        start = 0
        try:
            with memoryview(self._buf) as view:  # one copy per file, not two
                while (length := jpeg_length(self._buf, start)) is not None:
                    done.append(bytes(view[start : start + length]))
                    start += length
        except ValueError as exc:
            raise InputError(f"{self.name}: ffmpeg wrote a damaged JPEG stream ({exc})") from None
        if start:
            del self._buf[:start]
        return done

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    frames_dir_pattern: str | None = None,
    *,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """All frames of a video as ``uint8 [N, H, W, 3]`` (see :func:`iter_frames`)."""
    src = _source(path, frames_dir_pattern, fps)
    if info is None:
        info = _probe_source(src)
    resample = fps is not None and not src.is_sequence
    n = info.cfr_frame_count(fps) if resample else info.frame_count or 0
    height, width = size if size is not None else (info.height, info.width)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    k = 0
    for k, frame in enumerate(iter_frames(path, size, fps, frames_dir_pattern, info=info), 1):
        out[k - 1] = frame
    return out[:k]


def _probe_sequence(src: _Source) -> MediaInfo:
    scan = _scan(src)
    if scan.video is None or scan.packets == 0:
        raise InputError(f"{src.name}: no images match the pattern")
    fps = float(src.input_args.get("framerate", 25))
    dims = scan.dims or _frame_size(scan.video)
    if dims is None:
        raise InputError(f"{src.name}: ffmpeg reports no image size")
    width, height = dims
    return MediaInfo(
        path=Path(src.name),
        width=width,
        height=height,
        fps=fps,
        duration_s=scan.packets / fps,
        frame_count=scan.packets,
        has_audio=False,
        audio_channels=0,
        audio_rate=None,
        variable_frame_rate=False,
        video_duration_s=scan.packets / fps,
    )


# --------------------------------------------------------------------------- audio


def decode_audio(
    path: str | Path, sample_rate: int = 22050, *, info: MediaInfo | None = None
) -> np.ndarray:
    """The first audio stream as ``float32 [S]`` mono in [-1, 1] at ``sample_rate``.

    Any channel layout is downmixed (module docstring). Sample ``s`` is at
    ``s / sample_rate`` seconds after the start of the first video frame (for an
    audio-only file such as a ``.wav``: after the audio's start). A file without an
    audio stream gives an empty array. ``info``: the :func:`probe` result of this file,
    to reuse (saves a pass over the file; its checks were made by the probe).
    """
    _check_rate(sample_rate)
    src = _source(path)
    if src.is_sequence:
        raise InputError(f"{src.name}: an image sequence has no audio; pass the audio file")
    if info is not None:
        if Path(src.url) != info.path.absolute():
            raise InputError(f"{src.name}: decode_audio got the MediaInfo of {info.path}")
        if not info.has_audio:
            return np.zeros(0, dtype=np.float32)
        start = info.start_s
    else:
        scan = _scan(src)
        if scan.audio is None:
            return np.zeros(0, dtype=np.float32)
        start = float(scan.times[0]) if scan.times.size else 0.0
        if scan.video is not None:
            nominal = _nominal_fps(scan.video)
            _check_truncation(src, scan, _video_end(scan, nominal), nominal or 25.0)
    graph = _audio_output(ffmpeg_python.input(src.url), sample_rate, "pipe:")
    rc, out, err = _run(graph, "error")
    if rc != 0:
        raise _failure(src, _errors(_log_lines(err)), "decoding audio")
    wave = np.frombuffer(out, dtype=np.float32)
    skip = round(start * sample_rate)
    return np.clip(wave[skip:], -1.0, 1.0).astype(np.float32)


def _check_rate(sample_rate: int) -> None:
    if not (isinstance(sample_rate, int) and 1000 <= sample_rate <= 768000):
        raise InputError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")


def _audio_output(source: Any, sample_rate: int, url: str) -> Any:
    """The first audio stream of ``source`` (an ffmpeg-python input) as mono float32 at
    ``sample_rate`` to ``url``: the same chain for :func:`decode_audio` and the audio
    output of :func:`iter_jpeg_frames`. ``first_pts=0`` pads audio that starts after the
    clock's zero with silence (the caller then drops what lies before the first frame)."""
    return (
        source["a:0"]
        .filter("aresample", osr=sample_rate, ochl="mono", rematrix_maxval=1, first_pts=0)
        .output(url, format="f32le", acodec="pcm_f32le", flush_packets=0)
    )
