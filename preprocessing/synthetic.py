"""A synthetic audio-visual relevance dataset: "which object sounds?" (docs/SYNTHETIC.md).

Each clip shows 2–3 objects of distinct classes (a colour and a shape each) that move
with identical motion statistics, the same size and no flashing, so no visual cue tells
which one sounds. Every class has its own sound (its own pitch and timbre). Conditions:

- ``relevant``: exactly one object sounds at a time; which one may switch mid-clip
  (every stretch lasts at least :data:`MIN_SOUND_S`). Simulated observers look at the
  sounding object, after a short reaction lag, with fixation noise and a few stray looks;
- ``irrelevant``: background music unrelated to the objects (plucked notes away from the
  class pitches, and noise bursts); observers look from object to object with random
  dwell times, the same statistics for every class;
- ``silent``: no audio track at all; observers as in ``irrelevant``.

A visual-only model can at best predict "one of the objects" on relevant clips; an
audio-visual model can tell which. Everything is deterministic from the seed: clip
``i`` depends only on ``(seed, i)`` and the settings, so the gaze CSVs and the manifest are
byte-identical across runs (the video files depend on the ffmpeg build).

Layout written (:func:`write_dataset`)::

    DIR/videos/<clip>.mp4     H.264 (yuv420p) + AAC mono 22,050 Hz (no audio: silent)
    DIR/gaze/<clip>.csv       video,frame,observer,x,y   (docs/SYNTHETIC.md)
    DIR/splits.csv            video,split
    DIR/synthetic.json        the ground truth: conditions, splits, objects and their
                              tracks, the sounding schedule, settings
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import subprocess
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import ffmpeg as ffmpeg_python
import numpy as np

from avrsp.errors import InputError
from avrsp.io import atomic_write, write_json
from preprocessing.media import ffmpeg_exe

Condition = Literal["relevant", "irrelevant", "silent"]
FORMAT = "avrsp-synthetic"
VERSION = 1
MIN_SOUND_S = 1.6  # a sounding stretch outlasts the longest audio buffer (1.5 s)
# Condition of clip i: i % 4 picks from this (half relevant, a quarter each of the others).
CONDITION_CYCLE: tuple[Condition, ...] = ("relevant", "irrelevant", "relevant", "silent")


@dataclass(frozen=True)
class ObjectClass:
    """One kind of object: what it looks like and what it sounds like."""

    name: str
    shape: Literal["circle", "square", "triangle", "diamond"]
    color: tuple[int, int, int]
    pitch_hz: float
    harmonics: tuple[float, ...]  # amplitude of harmonic 1, 2, 3, …
    tremolo_hz: float


# Pitches are far apart and none is near another's harmonics (±5 %); colours have similar
# brightness, areas are equal: no class stands out.
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("red_circle", "circle", (220, 70, 60), 220.0, (1.0, 0.5, 0.25), 3.0),
    ObjectClass("green_square", "square", (60, 180, 80), 370.0, (1.0, 0.0, 0.33, 0.0, 0.2), 5.0),
    ObjectClass("blue_triangle", "triangle", (80, 120, 240), 622.0, (1.0, 0.6, 0.4), 7.0),
    ObjectClass("yellow_diamond", "diamond", (210, 190, 50), 1047.0, (1.0, 0.25), 4.0),
)
# Notes of the irrelevant condition's music (Hz): more than 5 % away from every class pitch.
MUSIC_NOTES = (147.0, 175.0, 196.0, 262.0, 294.0, 440.0, 523.0, 784.0)


@dataclass(frozen=True)
class SynthSettings:
    """What :func:`write_dataset` makes. Defaults: 24 clips of 5 s at 160×96, 25 fps."""

    videos: int = 24
    seed: int = 0
    width: int = 160
    height: int = 96
    fps: float = 25.0
    seconds: float = 5.0
    observers: int = 12
    sample_rate: int = 22050
    test_fraction: float = 1 / 3

    def __post_init__(self) -> None:
        checks = [
            (self.videos >= 1, f"videos must be >= 1, got {self.videos}"),
            (self.width >= 48 and self.height >= 48, f"size must be at least 48×48, got "
             f"{self.width}×{self.height}"),
            (self.width % 2 == 0 and self.height % 2 == 0,
             f"width and height must be even (yuv420p), got {self.width}×{self.height}"),
            (1 <= self.fps <= 120, f"fps must be in [1, 120], got {self.fps}"),
            (2 * MIN_SOUND_S <= self.seconds <= 600,
             f"seconds must be in [{2 * MIN_SOUND_S}, 600], got {self.seconds}"),
            (self.observers >= 1, f"observers must be >= 1, got {self.observers}"),
            (0 <= self.test_fraction < 1, f"test_fraction must be in [0, 1), got "
             f"{self.test_fraction}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @property
    def frames(self) -> int:
        """Frames per clip."""
        return round(self.seconds * self.fps)

    @property
    def radius(self) -> float:
        """Object size: the radius of a circle of the same area, pixels."""
        return 0.1 * min(self.width, self.height)


@dataclass
class Clip:
    """One generated clip: its ground truth and gaze (pixels at the native size)."""

    name: str
    condition: Condition
    split: str
    classes: list[int]  # class index per object
    tracks: np.ndarray  # float [objects, frames, 2] object centres (x, y)
    sounding: list[dict[str, Any]]  # [{object, class, start_frame, end_frame, …}]
    gaze: np.ndarray  # float [frames, observers, 2]; NaN = tracking lost (blink)
    audio: np.ndarray | None = field(default=None, repr=False)  # float32 [S] or None

    def sounding_at(self, frame: int) -> int | None:
        """The object sounding at ``frame`` (None: none)."""
        return sounding_at(self.sounding, frame)


def sounding_at(schedule: list[dict[str, Any]], frame: int) -> int | None:
    """The object that sounds at ``frame`` per a manifest ``sounding`` list."""
    for part in schedule:
        if part["start_frame"] <= frame < part["end_frame"]:
            return int(part["object"])
    return None


def condition_of(index: int) -> Condition:
    return CONDITION_CYCLE[index % len(CONDITION_CYCLE)]


def split_of(index: int, test_fraction: float) -> str:
    """Clips go to ``test`` in whole condition cycles, spread along the index."""
    cycle = index // len(CONDITION_CYCLE)
    if test_fraction <= 0:
        return "train"
    period = max(1, round(1 / test_fraction))
    return "test" if cycle % period == period - 1 else "train"


# --------------------------------------------------------------------------- scene


def make_clip(settings: SynthSettings, index: int) -> Clip:
    """Clip ``index`` of the dataset: objects, tracks, schedule, gaze and audio."""
    rng = np.random.default_rng([settings.seed, index])
    condition = condition_of(index)
    n_objects = 2 + int(rng.integers(0, 2))
    classes = [int(c) for c in rng.permutation(len(CLASSES))[:n_objects]]
    tracks = _tracks(rng, settings, n_objects)
    sounding: list[dict[str, Any]] = []
    if condition == "relevant":
        sounding = _schedule(rng, settings, n_objects, classes)
    gaze = _gaze(rng, settings, tracks, sounding)
    audio = None
    if condition == "relevant":
        audio = _tones(rng, settings, sounding, classes)
    elif condition == "irrelevant":
        audio = _music(rng, settings)
    return Clip(
        name=f"clip_{index:03d}",
        condition=condition,
        split=split_of(index, settings.test_fraction),
        classes=classes,
        tracks=tracks,
        sounding=sounding,
        gaze=gaze,
        audio=audio,
    )


def _tracks(rng: np.random.Generator, s: SynthSettings, n: int) -> np.ndarray:
    """Smooth wandering at one common speed, bouncing off the frame's edges: ``[n, F, 2]``.

    Every object follows the same law (speed, turning noise), so motion tells nothing.
    """
    r = s.radius
    lo, hi = np.array([r, r]), np.array([s.width - r, s.height - r])
    pos = np.zeros((n, 2))
    for k in range(n):  # start well apart
        for _ in range(200):
            pos[k] = rng.uniform(lo, hi)
            if all(np.linalg.norm(pos[k] - pos[j]) > 3 * r for j in range(k)):
                break
    speed = rng.uniform(0.18, 0.3) * min(s.width, s.height)  # px/s, shared
    heading = rng.uniform(0, 2 * np.pi, n)
    turn = np.zeros(n)
    dt = 1.0 / s.fps
    out = np.zeros((n, s.frames, 2))
    for f in range(s.frames):
        out[:, f] = pos
        turn += -turn * dt / 0.8 + 1.5 * math.sqrt(dt) * rng.standard_normal(n)
        heading += turn * dt
        pos = pos + speed * dt * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        for axis in (0, 1):  # reflect at the walls
            low, high = pos[:, axis] < lo[axis], pos[:, axis] > hi[axis]
            pos[low, axis] = 2 * lo[axis] - pos[low, axis]
            pos[high, axis] = 2 * hi[axis] - pos[high, axis]
            if axis == 0:
                heading[low | high] = np.pi - heading[low | high]
            else:
                heading[low | high] = -heading[low | high]
    return out


def _schedule(
    rng: np.random.Generator, s: SynthSettings, n_objects: int, classes: list[int]
) -> list[dict[str, Any]]:
    """Which object sounds when: 1–3 stretches of at least MIN_SOUND_S, one at a time."""
    frames = s.frames
    min_len = math.ceil(MIN_SOUND_S * s.fps)
    most = max(1, min(3, frames // min_len))
    parts = int(rng.choice(np.arange(1, most + 1), p=_part_weights(most)))
    # Cut points with every stretch >= min_len: spread the slack randomly.
    slack = frames - parts * min_len
    extra = np.sort(rng.integers(0, slack + 1, parts - 1)) if parts > 1 else np.zeros(0, int)
    bounds = [0] + [int(min_len * (k + 1) + extra[k]) for k in range(parts - 1)] + [frames]
    schedule = []
    current = int(rng.integers(0, n_objects))
    for k in range(parts):
        if k:
            others = [o for o in range(n_objects) if o != current]
            current = int(others[rng.integers(0, len(others))])
        start, end = bounds[k], bounds[k + 1]
        schedule.append(
            {
                "object": current,
                "class": CLASSES[classes[current]].name,
                "start_frame": start,
                "end_frame": end,
                "start_s": round(start / s.fps, 6),
                "end_s": round(end / s.fps, 6),
            }
        )
    return schedule


def _part_weights(most: int) -> np.ndarray:
    weights = np.array([0.2, 0.5, 0.3][:most])
    return weights / weights.sum()


# --------------------------------------------------------------------------- observers


def _gaze(
    rng: np.random.Generator,
    s: SynthSettings,
    tracks: np.ndarray,
    sounding: list[dict[str, Any]],
) -> np.ndarray:
    """Gaze samples ``[frames, observers, 2]`` (x, y); NaN during blinks.

    Each observer makes a sequence of *looks* (a target object, or a random point), each
    with its own landing offset (sd 0.35·radius) plus sample jitter (sd 0.4 px); the
    gaze follows a moving target (smooth pursuit).
    """
    n_obj, frames = tracks.shape[0], s.frames
    t = np.arange(frames) / s.fps
    out = np.zeros((frames, s.observers, 2))
    for obs in range(s.observers):
        targets = (
            _looks_relevant(rng, s, n_obj, sounding) if sounding else _looks_free(rng, s, n_obj)
        )
        for start, end, target, offset in targets:
            sel = (t >= start) & (t < end)
            if isinstance(target, int):
                out[sel, obs] = tracks[target, sel] + offset
            else:
                out[sel, obs] = np.asarray(target) + offset
        out[:, obs] += rng.normal(0, 0.4, (frames, 2))
        for start, length in _blinks(rng, s):
            out[(t >= start) & (t < start + length), obs] = np.nan
    return out


Look = tuple[float, float, "int | tuple[float, float]", np.ndarray]


def _landing(rng: np.random.Generator, s: SynthSettings) -> np.ndarray:
    return rng.normal(0, 0.35 * s.radius, 2)


def _random_point(rng: np.random.Generator, s: SynthSettings) -> tuple[float, float]:
    return (float(rng.uniform(0, s.width)), float(rng.uniform(0, s.height)))


def _looks_relevant(
    rng: np.random.Generator, s: SynthSettings, n_obj: int, sounding: list[dict[str, Any]]
) -> list[Look]:
    """Look at the sounding object after a reaction lag of 0.15–0.45 s; stray looks
    (0.25 per second, 0.2–0.4 s, at another object or a random point) now and then."""
    looks: list[Look] = []
    now, current = 0.0, int(rng.integers(0, n_obj))  # before hearing anything
    for part in sounding:
        react = part["start_s"] + rng.uniform(0.15, 0.45)
        looks.append((now, react, current, _landing(rng, s)))
        now, current = react, part["object"]
        end = part["end_s"]
        while now < end:
            gap = rng.exponential(1 / 0.25)
            if now + gap >= end:
                break
            looks.append((now, now + gap, current, _landing(rng, s)))
            now += gap
            length = rng.uniform(0.2, 0.4)
            others = [o for o in range(n_obj) if o != current]
            stray: int | tuple[float, float]
            if rng.random() < 0.7:
                stray = int(others[rng.integers(0, len(others))])
            else:
                stray = _random_point(rng, s)
            looks.append((now, now + length, stray, _landing(rng, s)))
            now += length
    looks.append((now, math.inf, current, _landing(rng, s)))
    return looks


def _looks_free(rng: np.random.Generator, s: SynthSettings, n_obj: int) -> list[Look]:
    """Object to object with dwell times of 0.5–1.5 s, every object equally likely
    (5 % of looks at a random point): the same statistics for every class."""
    looks: list[Look] = []
    now, current = 0.0, int(rng.integers(0, n_obj))
    while now < s.seconds:
        dwell = rng.uniform(0.5, 1.5)
        target: int | tuple[float, float] = current
        if rng.random() < 0.05:
            target = _random_point(rng, s)
        looks.append((now, now + dwell, target, _landing(rng, s)))
        now += dwell
        current = int(rng.integers(0, n_obj))
    return looks


def _blinks(rng: np.random.Generator, s: SynthSettings) -> list[tuple[float, float]]:
    """Blinks at 0.25 per second, 0.1–0.2 s each."""
    out, now = [], rng.exponential(4.0)
    while now < s.seconds:
        out.append((now, rng.uniform(0.1, 0.2)))
        now += rng.exponential(4.0)
    return out


# --------------------------------------------------------------------------- sound


def class_tone(cls: ObjectClass, t: np.ndarray) -> np.ndarray:
    """The class's sound at times ``t``: its harmonics with a slow tremolo, peak ≈ 1."""
    wave_ = sum(
        a * np.sin(2 * np.pi * (h + 1) * cls.pitch_hz * t) for h, a in enumerate(cls.harmonics)
    )
    wave_ = wave_ / sum(cls.harmonics)
    return wave_ * (0.8 + 0.2 * np.sin(2 * np.pi * cls.tremolo_hz * t))


def _ramp(n: int, fade: int) -> np.ndarray:
    """Raised-cosine fade-in/out envelope of length n (no clicks at switches)."""
    env = np.ones(n)
    fade = min(fade, n // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        env[:fade], env[n - fade :] = ramp, ramp[::-1]
    return env


def _tones(
    rng: np.random.Generator, s: SynthSettings, sounding: list[dict[str, Any]], classes: list[int]
) -> np.ndarray:
    """The relevant condition's audio: the sounding object's class tone, one at a time."""
    n = round(s.seconds * s.sample_rate)
    t = np.arange(n) / s.sample_rate
    audio = rng.normal(0, 0.003, n)  # a faint noise floor
    for part in sounding:
        a = round(part["start_frame"] / s.fps * s.sample_rate)
        b = min(n, round(part["end_frame"] / s.fps * s.sample_rate))
        cls = CLASSES[classes[part["object"]]]
        audio[a:b] += 0.35 * class_tone(cls, t[a:b]) * _ramp(b - a, round(0.015 * s.sample_rate))
    return audio.astype(np.float32)


def _music(rng: np.random.Generator, s: SynthSettings) -> np.ndarray:
    """Background music unrelated to the objects: plucked notes and noise bursts."""
    n = round(s.seconds * s.sample_rate)
    audio = rng.normal(0, 0.003, n)
    beat = rng.uniform(0.22, 0.4)
    now = 0.0
    while now < s.seconds:
        a = round(now * s.sample_rate)
        length = min(n - a, round(0.6 * s.sample_rate))
        if length <= 0:
            break
        tt = np.arange(length) / s.sample_rate
        note = float(rng.choice(MUSIC_NOTES))
        pluck = sum(
            w * np.sin(2 * np.pi * k * note * tt) for k, w in ((1, 1.0), (2, 0.4), (3, 0.2))
        )
        audio[a : a + length] += 0.2 * pluck * np.exp(-tt / 0.12)
        if rng.random() < 0.5:  # a hi-hat like noise burst
            burst = min(length, round(0.05 * s.sample_rate))
            audio[a : a + burst] += 0.08 * rng.standard_normal(burst) * np.exp(-tt[:burst] / 0.015)
        now += beat
    return audio.astype(np.float32)


# --------------------------------------------------------------------------- pictures


def render_frames(s: SynthSettings, classes: list[int], tracks: np.ndarray) -> np.ndarray:
    """The clip's frames ``uint8 [F, H, W, 3]``: objects drawn anti-aliased on a plain
    dark background, in a fixed order (object 0 first)."""
    r = s.radius
    background = np.array([40.0, 40.0, 46.0])
    frames = np.empty((tracks.shape[1], s.height, s.width, 3), dtype=np.uint8)
    reach = math.ceil(1.6 * r) + 2
    for f in range(tracks.shape[1]):
        img = np.broadcast_to(background, (s.height, s.width, 3)).copy()
        for k, c in enumerate(classes):
            cx, cy = tracks[k, f]
            x0, x1 = max(0, int(cx) - reach), min(s.width, int(cx) + reach + 1)
            y0, y1 = max(0, int(cy) - reach), min(s.height, int(cy) + reach + 1)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
            alpha = np.clip(0.5 - _signed_distance(CLASSES[c].shape, dx, dy, r), 0.0, 1.0)
            color = np.asarray(CLASSES[c].color, dtype=np.float64)
            patch = img[y0:y1, x0:x1]
            patch += alpha[..., None] * (color - patch)
        frames[f] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (px, negative inside) of a shape with the area of a circle of radius r."""
    if shape == "circle":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - r * math.sqrt(math.pi) / 2
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy) - r * math.sqrt(math.pi / 2)) / math.sqrt(2)
    # Equilateral triangle pointing up (y grows downwards), inradius from its area.
    inradius = r * math.sqrt(math.pi / (3 * math.sqrt(3)))
    sides = [(0.0, 1.0), (math.sqrt(3) / 2, -0.5), (-math.sqrt(3) / 2, -0.5)]
    return np.max([nx * dx + ny * dy for nx, ny in sides], axis=0) - inradius


# --------------------------------------------------------------------------- writing


@lru_cache(maxsize=4)
def _has_encoder(exe: str, name: str) -> bool:
    listing = subprocess.run(
        [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    return any(line.split()[1:2] == [name] for line in listing.splitlines() if line.strip())


def encode_video(
    path: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int
) -> str:
    """Write ``frames`` ``uint8 [F, H, W, 3]`` (+ mono ``audio``) as MP4; returns the codec.

    H.264 (libx264, yuv420p, CRF 18) where the ffmpeg build has it, else MPEG-4 part 2;
    audio as AAC. Frames go through a pipe, audio through a temporary WAV file.
    """
    exe = ffmpeg_exe()
    _, height, width, _ = frames.shape
    video_in = ffmpeg_python.input(
        "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=f"{fps:g}"
    )
    codec = "libx264" if _has_encoder(exe, "libx264") else "mpeg4"
    vopts: dict[str, Any] = {"vcodec": codec, "pix_fmt": "yuv420p", "movflags": "+faststart"}
    if codec == "libx264":
        vopts.update(preset="veryfast", crf=18)
    else:
        vopts.update(**{"q:v": 3})
    wav = path.with_name(f".{path.stem}.tmp.wav")
    try:
        with atomic_write(path, suffix=path.suffix) as tmp:  # ffmpeg picks the format by it
            if audio is None:
                graph = ffmpeg_python.output(video_in, str(tmp.absolute()), **vopts)
            else:
                _write_wav(wav, audio, sample_rate)
                audio_in = ffmpeg_python.input(str(wav.absolute()))
                graph = ffmpeg_python.output(
                    video_in,
                    audio_in,
                    str(tmp.absolute()),
                    acodec="aac",
                    audio_bitrate="96k",
                    **vopts,
                )
            cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
            try:
                graph.run(cmd=cmd, input=frames.tobytes(), capture_stdout=True, capture_stderr=True)
            except ffmpeg_python.Error as exc:
                detail = exc.stderr.decode("utf-8", errors="replace").strip().splitlines()
                raise InputError(
                    f"{path}: ffmpeg could not encode ({detail[-1] if detail else exc})"
                ) from None
    finally:
        wav.unlink(missing_ok=True)
    return codec


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = np.clip(np.rint(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())


def gaze_csv(clip: Clip) -> str:
    """The clip's gaze as CSV text: ``video,frame,observer,x,y``; empty x, y = blink."""
    buf = io.StringIO()
    buf.write("video,frame,observer,x,y\n")
    frames, observers, _ = clip.gaze.shape
    for f in range(frames):
        for o in range(observers):
            x, y = clip.gaze[f, o]
            if np.isnan(x) or np.isnan(y):
                buf.write(f"{clip.name},{f},{o},,\n")
            else:
                buf.write(f"{clip.name},{f},{o},{x:.2f},{y:.2f}\n")
    return buf.getvalue()


def clip_entry(clip: Clip, codec: str | None) -> dict[str, Any]:
    """The clip's record in ``synthetic.json``."""
    return {
        "clip": clip.name,
        "condition": clip.condition,
        "split": clip.split,
        "video": f"videos/{clip.name}.mp4",
        "gaze": f"gaze/{clip.name}.csv",
        "frames": int(clip.tracks.shape[1]),
        "has_audio": clip.audio is not None,
        "audio": {"relevant": "tones", "irrelevant": "music", "silent": None}[clip.condition],
        "video_codec": codec,
        "objects": [
            {
                "id": k,
                "class": CLASSES[c].name,
                "track": np.round(clip.tracks[k], 2).tolist(),
            }
            for k, c in enumerate(clip.classes)
        ],
        "sounding": clip.sounding,
    }


def write_clip(root: Path, settings: SynthSettings, index: int) -> dict[str, Any]:
    """Generate clip ``index`` into ``root`` (video and gaze); returns its manifest entry."""
    clip = make_clip(settings, index)
    frames = render_frames(settings, clip.classes, clip.tracks)
    video = root / "videos" / f"{clip.name}.mp4"
    codec = encode_video(video, frames, settings.fps, clip.audio, settings.sample_rate)
    (root / "gaze" / f"{clip.name}.csv").write_text(gaze_csv(clip))
    return clip_entry(clip, codec)


def write_dataset(
    out: str | Path, settings: SynthSettings | None = None, *, workers: int = 1
) -> dict[str, Any]:
    """Generate the dataset into ``out`` (layout in the module docstring); returns the
    manifest. ``synthetic.json`` is written last, so its presence means a complete set.

    ``workers`` > 1 writes that many clips at a time in worker processes; every clip
    depends only on ``(seed, index)``, so the output is the same as with one.
    """
    s = settings or SynthSettings()
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "gaze").mkdir(parents=True, exist_ok=True)
    (root / "synthetic.json").unlink(missing_ok=True)
    started = time.perf_counter()
    if workers == 1 or s.videos == 1:
        entries = [write_clip(root, s, index) for index in range(s.videos)]
    else:
        # Spawned, not forked: the caller may hold threads (Ray, torch) that fork would copy.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, s.videos), mp_context=context) as pool:
            entries = list(pool.map(write_clip, repeat(root), repeat(s), range(s.videos)))
    splits = "video,split\n" + "".join(f"{e['clip']},{e['split']}\n" for e in entries)
    (root / "splits.csv").write_text(splits)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "dataset": "synthetic",
        "settings": asdict(s),
        "seed": s.seed,
        "fps": s.fps,
        "width": s.width,
        "height": s.height,
        "frames_per_clip": s.frames,
        "sample_rate": s.sample_rate,
        "observers": s.observers,
        "object_radius_px": s.radius,
        "min_sound_s": MIN_SOUND_S,
        "classes": [asdict(c) for c in CLASSES],
        "clips": entries,
    }
    write_json(root / "synthetic.json", manifest, indent=1)
    manifest["_seconds"] = time.perf_counter() - started
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    """``synthetic.json`` of a folder written by :func:`write_dataset`."""
    path = Path(root) / "synthetic.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a manifest written by `avrsp synth`")
    return data
