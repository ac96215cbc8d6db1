"""Cutting the audio that belongs to a window of frames (paper §III-A; docs/MODEL.md, point 4).

Training (preprocessing) and inference both call :func:`audio_window`, so a model sees
exactly the same kind of audio buffer in both.

Timing convention: frame ``k`` (0-based) of a video at ``fps`` frames per second is
centred at ``k / fps`` seconds and covers ``[(k - 0.5) / fps, (k + 0.5) / fps)``. A window
whose last frame is ``i`` with ``T`` frames spans frames ``i - T + 1 … i``.

Where the buffer sits and where its Hann taper peaks is ``InputConfig.audio_alignment``:

- ``span`` (default; the paper's "audio segments captured according to the video frames",
  with a Hanning window against the edge effects): the samples in
  ``[(i - T + 0.5) / fps, (i + 0.5) / fps)``, times a Hann window of the span's length,
  right-aligned in a zero buffer of fixed length (the buffer ends with the last frame; a
  span longer than the buffer keeps its most recent ``buffer_samples``). The taper peaks
  at the window's middle frame: the predicted last frame's audio gets weight ≈ 0 (ViNet's
  choice).
- ``centred``: ``buffer_samples`` samples centred on the last frame's centre ``i / fps``,
  times a Hann window of the buffer's length (STAViS's choice): the predicted frame gets
  weight 1, half of the buffer is audio after it.
- ``end``: the ``buffer_samples`` samples that end with the last frame, times the rising
  half of a Hann window twice the buffer's length: weight 1 at the predicted frame, no
  audio after it.

Parts before the start or after the end of the recording are silence.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from avrsp.errors import InputError


def window_span(last_frame: int, frames: int, fps: float, sample_rate: int) -> tuple[int, int]:
    """Sample interval ``[start, stop)`` covered by frames ``last_frame-frames+1 … last_frame``.

    May reach before sample 0 (early windows) or past the recording's end.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise InputError(f"fps must be a positive number, got {fps}")
    if frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    start = math.floor((last_frame - frames + 0.5) / fps * sample_rate + 0.5)
    stop = math.floor((last_frame + 0.5) / fps * sample_rate + 0.5)
    return start, stop


ALIGNMENTS = ("span", "centred", "end")


def buffer_span(
    last_frame: int,
    frames: int,
    fps: float,
    sample_rate: int,
    buffer_samples: int,
    alignment: str = "span",
) -> tuple[int, int]:
    """Sample interval ``[start, stop)`` the buffer carries, right-aligned in it
    (``stop - start <= buffer_samples``); may reach outside the recording."""
    if alignment not in ALIGNMENTS:
        raise InputError(
            f"audio alignment must be one of {', '.join(ALIGNMENTS)}, got {alignment!r}"
        )
    start, stop = window_span(last_frame, frames, fps, sample_rate)
    if alignment == "span":
        return max(start, stop - buffer_samples), stop  # a long span keeps its recent part
    if alignment == "end":
        return stop - buffer_samples, stop
    centre = math.floor(last_frame / fps * sample_rate + 0.5)
    start = centre - buffer_samples // 2
    return start, start + buffer_samples


@lru_cache(maxsize=16)
def _taper(span: int, alignment: str) -> np.ndarray:
    """The Hann weights of a carried span, float32, read-only (windows share a few lengths)."""
    if span <= 1:
        out = np.ones(max(span, 0), np.float32)
    elif alignment == "end":
        out = np.hanning(2 * span)[:span].astype(np.float32)  # rising half: peak at the end
    else:
        out = np.hanning(span).astype(np.float32)
    out.flags.writeable = False
    return out


def audio_window(
    waveform: np.ndarray,
    *,
    last_frame: int,
    frames: int,
    fps: float,
    sample_rate: int,
    buffer_samples: int,
    alignment: str = "span",
) -> np.ndarray:
    """The Hann-weighted, right-aligned audio buffer of one window, ``float32 [buffer_samples]``
    (``alignment``: see the module docstring).

    ``waveform`` is mono float audio in [-1, 1] at ``sample_rate`` (an empty array means a
    silent video: the result is all zeros).
    """
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise InputError(f"waveform must be mono [samples], got shape {wave.shape}")
    if buffer_samples < 1:
        raise InputError(f"buffer_samples must be >= 1, got {buffer_samples}")
    start, stop = buffer_span(last_frame, frames, fps, sample_rate, buffer_samples, alignment)
    span = stop - start
    out = np.zeros(buffer_samples, dtype=np.float32)
    if span <= 0:
        return out
    segment = np.zeros(span, dtype=np.float32)
    lo, hi = max(start, 0), min(stop, wave.shape[0])
    if hi > lo:
        segment[lo - start : hi - start] = wave[lo:hi]
    segment *= _taper(span, alignment)
    out[buffer_samples - span :] = segment
    return out
