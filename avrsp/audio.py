"""Cutting the audio that belongs to a window of frames (DESIGN §3, paper §III-A).

Training (preprocessing) and inference both call :func:`audio_window`, so a model sees
exactly the same kind of audio buffer in both.

Timing convention: frame ``k`` (0-based) of a video at ``fps`` frames per second is
centred at ``k / fps`` seconds and covers ``[(k - 0.5) / fps, (k + 0.5) / fps)``. A window
whose last frame is ``i`` with ``T`` frames spans frames ``i - T + 1 … i``, so its audio
is the samples in ``[(i - T + 0.5) / fps, (i + 0.5) / fps)``. Those samples are multiplied
by a Hann window of the span's length (against edge effects) and placed, right-aligned,
in a zero buffer of fixed length: the end of the buffer is the end of the last frame.
A span longer than the buffer is first cut to its most recent ``buffer_samples``; parts
of the span before the start or after the end of the recording are silence.
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


@lru_cache(maxsize=16)
def _hann(span: int) -> np.ndarray:
    """``np.hanning(span)`` as float32, read-only (a video's windows share a few lengths)."""
    out = np.hanning(span).astype(np.float32) if span > 1 else np.ones(1, np.float32)
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
) -> np.ndarray:
    """The Hann-weighted, right-aligned audio buffer of one window, ``float32 [buffer_samples]``.

    ``waveform`` is mono float audio in [-1, 1] at ``sample_rate`` (an empty array means a
    silent video: the result is all zeros).
    """
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise InputError(f"waveform must be mono [samples], got shape {wave.shape}")
    if buffer_samples < 1:
        raise InputError(f"buffer_samples must be >= 1, got {buffer_samples}")
    start, stop = window_span(last_frame, frames, fps, sample_rate)
    start = max(start, stop - buffer_samples)  # a long span keeps its most recent part
    span = stop - start
    out = np.zeros(buffer_samples, dtype=np.float32)
    if span <= 0:
        return out
    segment = np.zeros(span, dtype=np.float32)
    lo, hi = max(start, 0), min(stop, wave.shape[0])
    if hi > lo:
        segment[lo - start : hi - start] = wave[lo:hi]
    segment *= _hann(span)
    out[buffer_samples - span :] = segment
    return out
