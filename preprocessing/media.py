"""Reading videos: what a file holds, its frames at the model size, its audio in mono.

PyAV opens the container with FFmpeg's libraries (bundled in its wheel) and gives the
streams, time bases and every packet's timestamps as data, without decoding: :func:`probe`
takes the frame count, the frame rate and whether it varies, the first frame's time and
whether the file was cut short from them, and reads no text FFmpeg prints. Frames are
decoded and scaled in this process, JPEGs written by Pillow, audio resampled by
libavfilter's ``aresample``.

One clock, whose zero is the start of the first video frame (avrsp/audio.py: frame ``k``
is centred at ``k / fps``, sample ``s`` at ``s / sample_rate``):

- ``iter_frames(path, size)`` gives every decoded frame once, in order.
- ``iter_frames(path, size, fps=F)`` gives :meth:`MediaInfo.cfr_frame_count` frames at
  the constant rate ``F``: frame ``k`` is the latest native frame whose time ``t`` has
  ``round(t * F) <= k`` (a CFR file at its own rate keeps every frame despite jitter below
  half a frame; gaze at ``t`` belongs to :func:`frame_at_time`). Variable-frame-rate files
  are decoded this way.
- :func:`decode_audio` cuts audio before the first frame and pads later audio with silence.

Policies:

- A *truncated* file is an :class:`InputError` (the job names it rather than writing fewer
  frames): one that cannot be opened (an MP4 cut before its index), or one whose streams
  all end well before the duration its container declares. A stream cut in a container
  without a duration (streamed Matroska) decodes as the shorter video it is.
- Decoding may give up to two frames fewer than the probe counted packets (the last frame
  is repeated up to the count); more is an :class:`InputError`.
- Mono downmix: ``aresample`` with ``rematrix_maxval=1``, a normalised weighted average of
  the channels (stereo ``(L + R) / 2``; 5.1 without the LFE, as FFmpeg's default matrix).
- A display rotation (phone videos) is applied; ``MediaInfo`` gives the displayed size.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image

from avrsp.errors import InputError
from preprocessing.schema import encode_jpeg

log = logging.getLogger(__name__)

# Frames a decode may come out short at the end before it counts as truncation.
_SHORT_TOLERANCE = 2
# Decoder and scaler threads: the dataset job runs one video per CPU, where more threads
# only cost CPU time (1–15 % with the ffmpeg program).
_THREADS = 1


def ffmpeg_exe() -> str:
    """The ffmpeg program, for writing files (synthetic clips, tests, the benchmark's
    baseline): ``$AVRSP_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    chosen = os.environ.get("AVRSP_FFMPEG")
    if chosen and shutil.which(chosen) is None:
        raise InputError(f"AVRSP_FFMPEG={chosen}: not an executable file")
    if chosen or (chosen := shutil.which("ffmpeg")):
        return chosen
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a dependency of the project
        raise InputError("no ffmpeg: install ffmpeg or the imageio-ffmpeg package") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def frame_at_time(t: float | np.ndarray, fps: float) -> int | np.ndarray:
    """The 0-based frame shown at ``t`` seconds of a CFR sequence: ``round(t * fps)``, halves
    up (frame ``k`` is centred at ``k / fps``, avrsp/audio.py)."""
    value = np.floor(np.asarray(t, dtype=np.float64) * fps + 0.5).astype(np.int64)
    return int(value) if value.ndim == 0 else value


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a video.

    ``width``/``height`` are the displayed frame size (rotation applied); ``fps`` is the
    nominal (average) frame rate; ``duration_s`` the container's duration, else the video
    stream's span; ``frame_count`` the number of video frames (packets). ``start_s`` is the
    first frame's time after the container's start (a video that starts after its audio has
    ``start_s > 0``); ``video_duration_s`` is the span from the start of the first frame to
    the end of the last. ``codec`` and ``container`` are FFmpeg's names of the video codec
    and of the demuxer that read the file ("" for an image sequence listed by a reader).
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
    codec: str = ""
    container: str = ""

    def cfr_frame_count(self, fps: float) -> int:
        """Frames that ``iter_frames(..., fps=fps)`` gives: every ``k`` with
        ``k / fps < video_duration_s``."""
        _check_fps(fps)
        span = self.video_duration_s
        if span is None:
            span = (self.frame_count or 0) / self.fps
        # Timestamps are rounded to the stream's time base: an end within 5 % of a frame
        # past k / fps does not make frame k.
        return max(1, math.ceil(span * fps - 0.05)) if span > 0 else 0


# --------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class _Source:
    """A file, or an image sequence (``img_%05d.jpg``) at ``fps`` frames per second."""

    name: str  # as the caller gave it, for messages
    url: str  # absolute: a name like "a:b" must not read as a protocol
    is_sequence: bool
    fps: float | None = None


def _source(path: str | Path, fps: float | None = None) -> _Source:
    """Resolve ``path``: a file, or an image-sequence pattern (``%`` in a name that is not
    a file)."""
    file = Path(path)
    if "%" in file.name and not file.exists():
        if not file.parent.is_dir():
            raise InputError(f"{file}: frame folder {file.parent} does not exist")
        if fps is not None:
            _check_fps(fps)
        return _Source(str(file), str(file.absolute()), True, fps)
    if not file.exists():
        raise InputError(f"{file}: file not found")
    if not file.is_file():
        raise InputError(f"{file}: not a file")
    return _Source(str(file), str(file.absolute()), False)


def _check_fps(fps: float) -> None:
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")


def _open(src: _Source) -> av.container.InputContainer:
    """The container, FFmpeg's errors translated (InputError naming the file)."""
    try:
        if src.is_sequence:  # FFmpeg's image2 finds the first number among 0–4 itself
            options = {"framerate": f"{src.fps:.10g}"} if src.fps else {}
            return av.open(src.url, format="image2", options=options)
        return av.open(src.url)
    except av.error.FFmpegError as exc:
        if src.is_sequence:
            raise InputError(f"{src.name}: no images match the pattern ({exc.strerror})") from None
        if isinstance(exc, av.error.InvalidDataError):
            if os.path.getsize(src.url) == 0:  # FFmpeg's reason for it: invalid data
                raise InputError(f"{src.name}: empty (0 bytes), not a video") from None
            detail = "not a video file FFmpeg can read, or the file is damaged/truncated"
            raise InputError(f"{src.name}: {detail} ({exc.strerror})") from None
        raise InputError(f"{src.name}: cannot open it ({exc.strerror})") from None


def _video_stream(container: av.container.InputContainer, src: _Source) -> av.VideoStream:
    """The first video stream that is not cover art."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            stream.codec_context.thread_count = _THREADS
            return stream
    kinds = "audio only" if container.streams.audio else "no streams FFmpeg can decode"
    raise InputError(f"{src.name}: no video stream ({kinds})")


def _packets(
    container: av.container.InputContainer, streams: list[av.stream.Stream], problems: list[str]
) -> Iterator[av.Packet]:
    """The packets of ``streams`` in file order, up to a read error (noted in ``problems``);
    none marked as discarded (before an edit list's start: they give no frame)."""
    demuxed = container.demux(streams)
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            problems.append(exc.strerror or str(exc))
            return
        if packet.size and not packet.is_discard:
            yield packet


def _decode(codec: av.CodecContext, packet: av.Packet | None, problems: list[str]) -> list:
    """The frames a packet completes (None: the last ones). A packet the decoder rejects is
    skipped, as the ffmpeg program does; the frame count tells if too many were."""
    try:
        return codec.decode(packet)
    except av.error.InvalidDataError as exc:
        problems.append(exc.strerror)
        return []


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright (its display matrix)."""
    return round(frame.rotation / 90) % 4


# --------------------------------------------------------------------------- probe


def probe(path: str | Path) -> MediaInfo:
    """Inspect a video (or an image sequence) from its packets (module docstring);
    :class:`InputError` naming the file for a missing, non-video or truncated file."""
    return _probe(_source(path))


def _probe(src: _Source) -> MediaInfo:
    with _open(src) as container:
        video = _video_stream(container, src)
        audio = next(iter(container.streams.audio), None)
        zero = (container.start_time or 0) * 1e-6  # where the earliest stream starts
        tick = float(video.time_base)
        pts: list[int | None] = []
        last_duration, turns, problems = 0, None, []
        stream_end = -math.inf  # where the last packet of any stream ends
        for packet in _packets(container, list(container.streams), problems):
            if packet.pts is not None and packet.time_base is not None:
                end = (packet.pts + (packet.duration or 0)) * float(packet.time_base) - zero
                stream_end = max(stream_end, end)
            if packet.stream is video:
                pts.append(packet.pts)
                last_duration = packet.duration or 0
                if turns is None and not src.is_sequence:  # the first frame tells the rotation
                    frames = _decode(video.codec_context, packet, problems)
                    turns = _quarter_turns(frames[0]) if frames else None
        width, height = video.codec_context.width, video.codec_context.height
        nominal, declared = video.average_rate or video.guessed_rate, container.duration
        codec, demuxer = video.codec_context.name, container.format.name
        channels, rate = (audio.channels, audio.rate) if audio is not None else (0, None)
    if not pts:
        raise InputError(f"{src.name}: the video stream has no frames")
    n = len(pts)
    if turns is not None and turns % 2:
        width, height = height, width
    fps = float(src.fps or 25) if src.is_sequence else float(nominal or 0) or None
    if None not in pts:
        times = np.sort(np.asarray(pts, dtype=np.float64)) * tick - zero
        steps = np.diff(times)
        median = float(np.median(steps)) if steps.size else 0.0
        vfr = bool(steps.size and np.abs(steps - median).max() > 0.1 * median + 1.5 * tick)
        # The last frame lasts as long as the interval before it: containers disagree about
        # the last sample's own duration, the intervals between timestamps do not.
        last = float(steps[-1]) if steps.size else last_duration * tick or 1.0 / (fps or 1.0)
        start, span = float(times[0]), float(times[-1] + last - times[0])
        fps = fps or (n / span if span > 0 else None)
    else:  # no timestamps (raw elementary stream): constant rate at the nominal fps
        start, vfr, span = 0.0, False, n / fps if fps else 0.0
    if not fps:
        raise InputError(f"{src.name}: no frame rate and no timestamps")
    duration = span
    if declared is not None and not src.is_sequence:
        duration = declared * 1e-6
        ended = max(stream_end, start + span)
        if duration - ended > max(2.0 / fps, 0.05 * duration):
            why = f" ({problems[-1]})" if problems else ""
            raise InputError(
                f"{src.name}: truncated or damaged file: the container says {duration:.2f} s "
                f"but its streams end at {ended:.2f} s{why}"
            )
    if problems:
        log.warning("%s: %s (near the end)", src.name, problems[-1])
    return MediaInfo(
        path=Path(src.name),
        width=width,
        height=height,
        fps=fps,
        duration_s=duration,
        frame_count=n,
        has_audio=audio is not None,
        audio_channels=channels,
        audio_rate=rate,
        variable_frame_rate=vfr,
        start_s=start,
        video_duration_s=span,
        codec=codec,
        container=demuxer,
    )


def require_video(info: MediaInfo) -> None:
    """InputError unless ``info`` describes a moving picture of 2 frames or more: a still
    image (a PNG or JPEG renamed ``.avi``, which FFmpeg reads as a one-frame stream) or any
    other single-frame stream is not a video to cut training windows from. The message
    names the codec and the demuxer FFmpeg found."""
    if (info.frame_count or 0) >= 2:
        return
    if not info.codec:
        kind = f"{info.frame_count or 0} frame"
    elif info.container.endswith("_pipe") or info.container in ("image2", "webp"):
        kind = f"a still {info.codec} image (FFmpeg's {info.container} reader found one frame)"
    else:
        kind = f"a single {info.codec} frame in a {info.container} file"
    raise InputError(f"{info.path}: not a video: {kind}; a video needs at least 2 frames")


# --------------------------------------------------------------------------- frames


def iter_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    *,
    info: MediaInfo | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video as ``uint8 [H, W, 3]`` RGB, one at a time.

    ``size`` = (H, W) to scale to (area interpolation), None for the native size. ``fps``
    None: every decoded frame once; given: exactly ``info.cfr_frame_count(fps)`` frames at
    that constant rate (module docstring). ``path`` may be an image-sequence pattern
    (``/x/img_%05d.jpg``, numbered from 0…4), which needs ``fps`` (its rate). ``info``: a
    :func:`probe` result to reuse. The file is closed when the iterator ends or is closed.
    """
    frames = _frames(_source(path, fps), size, fps, info)
    return (np.ascontiguousarray(np.rot90(f.to_ndarray(), turns)) for f, turns in frames)


def iter_jpeg_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    *,
    info: MediaInfo | None = None,
    quality: int = 90,
) -> Iterator[bytes]:
    """The frames of :func:`iter_frames` (same arguments, same count), each a JPEG file
    (:func:`preprocessing.schema.encode_jpeg` at ``quality``, 1–100)."""
    frames = _frames(_source(path, fps), size, fps, info)
    return (encode_jpeg(_image(frame, turns), quality) for frame, turns in frames)


def decode_frames(
    path: str | Path,
    size: tuple[int, int] | None,
    fps: float | None = None,
    *,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """All frames of a video as ``uint8 [N, H, W, 3]`` (see :func:`iter_frames`)."""
    return np.stack(list(iter_frames(path, size, fps, info=info)))


def _image(frame: av.VideoFrame, turns: int) -> Image.Image:
    """The frame for Pillow, its planes taken as they are (no interleaved array between)."""
    g, b, r = (
        Image.frombuffer("L", (frame.width, frame.height), p, "raw", "L", p.line_size, 1)
        for p in frame.planes
    )
    image = Image.merge("RGB", (r, g, b))
    return image.rotate(90 * turns, expand=True) if turns else image


_Frame = tuple[av.VideoFrame, int]  # planar RGB at the output size, quarter turns to apply


def _frames(
    src: _Source, size: tuple[int, int] | None, fps: float | None, info: MediaInfo | None
) -> Iterator[_Frame]:
    """What :func:`iter_frames` gives, as (planar RGB PyAV frame, quarter turns to apply)."""
    if src.is_sequence and fps is None:
        raise InputError(f"{src.name}: an image sequence needs its fps")
    info = info or _probe(src)
    height, width = size if size is not None else (info.height, info.width)
    if height < 1 or width < 1:
        raise InputError(f"size must be positive (H, W), got {size}")
    resample = None if src.is_sequence else fps
    count = info.cfr_frame_count(resample) if resample else info.frame_count or 0
    return _exactly(src.name, _scaled(src, height, width), count, info, resample)


def _scaled(src: _Source, height: int, width: int) -> Iterator[tuple[float | None, _Frame]]:
    """(time in seconds or None, frame at (height, width)) of each decoded frame, in order."""
    scaler = VideoReformatter()
    problems: list[str] = []
    with _open(src) as container:
        video = _video_stream(container, src)
        tick = float(video.time_base)
        for packet in itertools.chain(_packets(container, [video], problems), [None]):
            for frame in _decode(video.codec_context, packet, problems):
                turns = _quarter_turns(frame)
                w, h = (height, width) if turns % 2 else (width, height)
                # Planar RGB: libswscale's packed RGB writer took twice the time and was
                # further from the area mean (up to 1 grey level on average).
                scaled = scaler.reformat(
                    frame, w, h, "gbrp", interpolation=Interpolation.AREA, threads=_THREADS
                )
                yield (frame.pts * tick if frame.pts is not None else None), (scaled, turns)
    if problems:
        log.warning("%s: %s", src.name, problems[-1])


def _exactly(
    name: str,
    native: Iterator[tuple[float | None, _Frame]],
    count: int,
    info: MediaInfo,
    fps: float | None,
) -> Iterator[_Frame]:
    """Exactly ``count`` of the ``native`` (time, frame) frames: each once (``fps`` None) or
    the constant-rate selection at ``fps``; the last one repeated up to the count where the
    decoder gave at most :data:`_SHORT_TOLERANCE` frames fewer than the probe counted."""
    out, decoded = 0, 0
    first: float | None = None
    last: _Frame | None = None
    for decoded, (t, frame) in enumerate(native, 1):
        if fps is None:
            if out < count:
                out += 1
                yield frame
        else:
            t = (decoded - 1) / info.fps if t is None else t  # no timestamps: nominal rate
            first = t if first is None else first
            slot = math.floor((t - first) * fps + 0.5)
            while last is not None and out < min(slot, count):
                out += 1  # the outputs before this frame's time show the previous frame
                yield last
        last = frame
    expected = info.frame_count or 0
    if last is None or expected - decoded > _SHORT_TOLERANCE:
        raise InputError(
            f"{name}: decoded {decoded} of {expected} frames; the file is truncated or damaged"
        )
    for _ in range(count - out):
        yield last


# --------------------------------------------------------------------------- audio


def decode_audio(
    path: str | Path, sample_rate: int = 22050, *, info: MediaInfo | None = None
) -> np.ndarray:
    """The first audio stream as ``float32 [S]`` mono in [-1, 1] at ``sample_rate``, any
    layout downmixed; sample ``s`` at ``s / sample_rate`` s after the start of the first
    video frame (an audio-only file: of the audio). No audio stream: an empty array.
    ``info``: the :func:`probe` result of this file, to reuse."""
    if not (isinstance(sample_rate, int) and 1000 <= sample_rate <= 768000):
        raise InputError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    src = _source(path)
    if info is not None and Path(src.url) != info.path.absolute():
        raise InputError(f"{src.name}: decode_audio got the MediaInfo of {info.path}")
    pieces: list[np.ndarray] = []
    problems: list[str] = []
    with _open(src) as container:
        if not container.streams.audio:
            return np.zeros(0, dtype=np.float32)
        if info is None and container.streams.video:
            info = _probe(src)  # the first frame's time, and the truncation check
        audio = container.streams.audio[0]
        # The clock's zero (the first video frame) in the audio's time base.
        zero = (container.start_time or 0) * 1e-6 + (info.start_s if info else 0.0)
        shift, tick = round(zero / float(audio.time_base)), float(audio.time_base)
        graph = av.filter.Graph()
        # first_pts=0: silence before audio that starts after the zero, and the samples
        # before the zero dropped.
        resample = f"osr={sample_rate}:ochl=mono:rematrix_maxval=1:first_pts=0"
        graph.link_nodes(
            graph.add_abuffer(template=audio),
            graph.add("aresample", resample),
            graph.add("aformat", "sample_fmts=flt"),
            graph.add("abuffersink"),
        ).configure()
        end = None  # where the packets say the audio ends (the encoder's padding after it)
        for packet in itertools.chain(_packets(container, [audio], problems), [None]):
            if packet is not None and packet.pts is not None and packet.duration:
                end = max(end or 0, packet.pts + packet.duration - shift)
            for frame in _decode(audio.codec_context, packet, problems):
                if frame.pts is not None:
                    frame.pts -= shift
                graph.push(frame)
                pieces += _pull(graph)
        graph.push(None)
        pieces += _pull(graph)
    if problems:
        log.warning("%s: audio: %s", src.name, problems[-1])
    wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if end is not None:
        wave = wave[: max(0, round(end * tick * sample_rate))]
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def _pull(graph: av.filter.Graph) -> list[np.ndarray]:
    """The samples the filter graph has ready."""
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
