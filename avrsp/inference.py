"""Sliding-window inference: one saliency map for every frame of a video (docs/METRICS.md).

The network maps a window of ``T`` frames (and the audio around them) to the saliency map
of the window's **last** frame (paper §III). To give every frame a map, a window of size
``T`` slides with step 1 (paper §IV-B, "Testing Details"):

- **Frame i ≥ T−1** gets the window of frames ``[i−T+1, …, i]`` in time order.
- **Frame i < T−1** has too few past frames. Following the paper's reverse-window
  strategy (taken from ViNet), its window is the *next* ``T`` frames played backwards so
  that frame ``i`` is again the last one: ``[i+T−1, i+T−2, …, i]``. For frame 0 this is
  the first window reversed, ``[T−1, …, 0]``, the paper's own example.
- **Short videos.** When a window index reaches past the last frame ``n−1`` (videos of
  fewer than ``2T−2`` frames, whose late reversed windows run off the end, and every
  window of a video shorter than ``T``), the last frame is repeated in its place, so every
  window has ``T`` frames and every frame gets a map. Equivalently: indices are clamped to
  ``[0, n−1]``. The peers skip such frames or videos.

Example, ``T = 4``:

======  ===========================  ==================================
frame    n = 10                      n = 3 (shorter than T)
======  ===========================  ==================================
0        ``[3, 2, 1, 0]`` (reversed)  ``[2, 2, 1, 0]``
1        ``[4, 3, 2, 1]`` (reversed)  ``[2, 2, 2, 1]``
2        ``[5, 4, 3, 2]`` (reversed)  ``[2, 2, 2, 2]``
3        ``[0, 1, 2, 3]``             —
9        ``[6, 7, 8, 9]``             —
======  ===========================  ==================================

**Audio** of a window is cut by :func:`avrsp.audio.audio_window`, the function the
training data uses, so the model sees the same kind of buffer in both. A forward window
ending at frame ``i`` gets ``audio_window(last_frame=i, frames=T)``. A reversed window
``[i+T−1, …, i]`` covers the same time span as the forward window ending at ``i+T−1``; it
gets that buffer with its samples *played backwards*, like its frames. Only the part of
the buffer that carries the span (its last ``min(span, buffer)`` samples) is reversed, so
the audio stays right-aligned as in training — the end of the buffer is the end of the
window's last frame (a whole-buffer reversal would move the sound to the buffer's start,
a layout training never shows). The Hann weighting is symmetric, so the reversed buffer
is still Hann-weighted. One limit, by construction: when a window's span is longer than
the buffer (``T / fps > audio_window_s``), ``audio_window`` keeps the span's latest part,
so a reversed window keeps the sound near frame ``i+T−1`` rather than near frame ``i``.
Audio of padded (clamped) windows is cut from the unclamped span: whatever the recording
holds there, silence past its end.

**Streaming.** Frames are read lazily from any iterable; maps are yielded in frame order
as soon as their batch has run. At most ``max(2T−2, T+B−1)`` frames are held at once
(``B`` = batch size; see :func:`max_frames_held`): ``T+B−1`` in the steady state, and
``2T−2`` at the start, where frame ``T−2``'s reversed window needs frame ``2T−3`` while
frame ``T−1``'s forward window still needs frame 0. Memory does not grow with the length
of the video.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avrsp.audio import audio_window, buffer_span
from avrsp.config import InputConfig
from avrsp.errors import AVRSPError, ConfigError, InputError

__all__ = [
    "Relevance",
    "max_frames_held",
    "predict_video",
    "relevance_of",
    "resolve_device",
    "window_audio",
    "window_indices",
]


def _base_window(i: int, frames: int) -> range:
    """Unclamped window of frame ``i``: forward ``i−T+1 … i`` or reversed ``i+T−1 … i``."""
    if i >= frames - 1:
        return range(i - frames + 1, i + 1)
    return range(i + frames - 1, i - 1, -1)


def window_indices(i: int, n_frames: int, frames: int) -> list[int]:
    """Frame indices of frame ``i``'s window, in the order the model gets them (last = ``i``).

    ``n_frames`` is the video's length, ``frames`` the window size T. See the module
    docstring for the rule and a worked example: forward ``[i−T+1 … i]`` for ``i ≥ T−1``,
    reversed ``[i+T−1 … i]`` below, indices past the end clamped to ``n_frames − 1``.
    """
    if frames < 1:
        raise InputError(f"frames (window size T) must be >= 1, got {frames}")
    if not 0 <= i < n_frames:
        raise InputError(f"frame index {i} is outside a video of {n_frames} frames")
    last = n_frames - 1
    return [min(j, last) for j in _base_window(i, frames)]


def window_audio(i: int, waveform: np.ndarray, *, fps: float, config: InputConfig) -> np.ndarray:
    """Audio buffer of frame ``i``'s window, ``float32 [config.audio_samples]``.

    Forward windows (``i ≥ T−1``): exactly ``audio_window(last_frame=i, frames=T)``.
    Reversed windows (``i < T−1``): ``audio_window(last_frame=i+T−1, frames=T)`` with the
    samples that carry the span reversed in place (right-aligned, as in training; see the
    module docstring).
    """
    T = config.frames

    def cut(last_frame: int) -> np.ndarray:
        return audio_window(
            waveform,
            last_frame=last_frame,
            frames=T,
            fps=fps,
            sample_rate=config.sample_rate,
            buffer_samples=config.audio_samples,
            alignment=config.audio_alignment,
        )

    if i >= T - 1:
        return cut(i)
    last = i + T - 1
    buf = cut(last)
    start, stop = buffer_span(
        last, T, fps, config.sample_rate, config.audio_samples, config.audio_alignment
    )
    carried = min(max(stop - start, 0), buf.shape[0])
    if carried:
        buf[-carried:] = buf[-carried:][::-1].copy()
    return buf


@dataclass(frozen=True)
class Relevance:
    """What an AV model's fusion and gates did for one window (paper Fig. 6), as numbers.

    ``ret_a`` / ``ret_v``: mean |Ret_A| and |Ret_V| (eq. 2–3) per RAVF block and head,
    ``[N, H]``; ``head_weights``: the mean weight of each head over the visual tokens
    (eq. 6), ``[N, H]``; ``audio_share``: the window's one audio-relevance number, the part
    of v2a (eq. 4) that comes from the audio, averaged over the blocks with each head
    weighted by its mean weight — 0 when the fused features are the visual values alone
    (RAVF only; NaN for other fusions); ``gates``: mean MRG gate (eq. 14) per gated level.
    """

    ret_a: np.ndarray
    ret_v: np.ndarray
    head_weights: np.ndarray
    audio_share: float
    gates: dict[int, float]


def relevance_of(attention: dict[str, object]) -> list[Relevance]:
    """``model(..., return_attention=True)``'s second value → one :class:`Relevance` per
    window of the batch."""
    blocks = attention.get("ravf") or []
    gates = attention.get("gates") or {}
    assert isinstance(blocks, list) and isinstance(gates, dict)

    def per_block(key: str, reduce: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        if not blocks:
            return np.zeros((0, 0), np.float32)
        return torch.stack([reduce(b[key].float()) for b in blocks], 1).cpu().numpy()

    ret_a = per_block("ret_a", lambda t: t.abs().mean(dim=(2, 3)))  # [B, N, H]
    ret_v = per_block("ret_v", lambda t: t.abs().mean(dim=(2, 3)))
    weights = per_block("head_weights", lambda t: t.mean(dim=1))
    share = per_block("audio_share", lambda t: t)
    gate_means = {lv: g.float().mean(dim=1).cpu().numpy() for lv, g in gates.items()}
    n = next(iter(gate_means.values())).shape[0] if gate_means else ret_a.shape[0]
    out = []
    for i in range(n):
        audio_share = float((share[i] * weights[i]).sum(-1).mean()) if blocks else float("nan")
        out.append(
            Relevance(
                ret_a=ret_a[i] if blocks else ret_a,
                ret_v=ret_v[i] if blocks else ret_v,
                head_weights=weights[i] if blocks else weights,
                audio_share=audio_share,
                gates={int(lv): float(g[i]) for lv, g in gate_means.items()},
            )
        )
    return out


def max_frames_held(frames: int, batch_size: int) -> int:
    """Most input frames :func:`predict_video` holds at once: ``max(2T−2, T+B−1)``."""
    return max(2 * frames - 2, frames + batch_size - 1)


def _check_frame(frame: object, index: int, height: int, width: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        got = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"frame {index}: expected a uint8 numpy array [H, W, 3], got {got}")
    if frame.shape != (height, width, 3):
        raise InputError(
            f"frame {index}: expected shape [{height}, {width}, 3] (the model's input size; "
            f"scale frames when decoding), got {list(frame.shape)}"
        )
    return frame


def predict_video(
    model: nn.Module,
    frames: Iterable[np.ndarray],
    *,
    fps: float | None,
    waveform: np.ndarray | None,
    config: InputConfig,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    out_size: tuple[int, int] | None = None,
    relevance: bool = False,
) -> Iterator[tuple[int, np.ndarray]] | Iterator[tuple[int, np.ndarray, Relevance]]:
    """Saliency map of every frame of one video, streamed in frame order.

    Args:
        model: ``model(frames [B, 3, T, H, W] float in [0, 1], audio [B, S] | None)
            → [B, H, W]`` non-negative maps. ``model.uses_audio`` (default True) says whether
            it gets audio. It is moved to ``device`` and put in eval mode.
        frames: the video's frames, uint8 ``[H, W, 3]`` RGB at the model's input size
            (``config.height`` × ``config.width``), read lazily.
        fps: the video's frame rate (needed for the audio; may be None for a visual-only
            model).
        waveform: mono float32 ``[S_total]`` in [-1, 1] at ``config.sample_rate``. An
            audio-visual model needs one: a video without an audio track is an error here;
            pass ``np.zeros(0, np.float32)`` to predict it as silent on purpose.
        config: the input config (T = ``config.frames``, sizes, audio buffer).
        batch_size: windows per forward pass.
        device: where the model runs; on CUDA it runs under bf16 autocast.
        out_size: ``(height, width)`` to resize the maps to (bilinear), e.g. the ground
            truth's native size for evaluation; default the model's output size.
        relevance: also yield each window's :class:`Relevance` (AV models: the model is
            called with ``return_attention=True``; V models get an empty one).

    Yields:
        ``(frame_index, map)`` with ``map`` float32 ``[H, W]`` (or ``out_size``), one per
        frame, in order; ``(frame_index, map, relevance)`` with ``relevance=True``. Frame
        ``i``'s window is :func:`window_indices` and its audio :func:`window_audio`. At
        most :func:`max_frames_held` frames are held at once.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    uses_audio = bool(getattr(model, "uses_audio", True))
    if uses_audio:
        if waveform is None:
            raise InputError(
                "the model uses audio but no waveform was given (video without an audio "
                "track?); pass np.zeros(0, np.float32) to predict it as silent"
            )
        if fps is None or not fps > 0:
            raise InputError(f"fps must be a positive number for an audio model, got {fps}")
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise InputError(f"waveform must be mono [samples], got shape {waveform.shape}")
    if out_size is not None and (len(out_size) != 2 or min(out_size) < 1):
        raise InputError(f"out_size must be (height, width) >= 1, got {out_size}")
    audio = waveform if uses_audio else None
    return _stream(
        model,
        iter(frames),
        fps,
        audio,
        config,
        batch_size,
        torch.device(device),
        out_size,
        relevance,
    )


def _stream(
    model: nn.Module,
    source: Iterator[np.ndarray],
    fps: float | None,
    waveform: np.ndarray | None,
    config: InputConfig,
    batch_size: int,
    device: torch.device,
    out_size: tuple[int, int] | None,
    relevance: bool = False,
) -> Iterator[tuple[int, np.ndarray]] | Iterator[tuple[int, np.ndarray, Relevance]]:
    T, H, W = config.frames, config.height, config.width
    model.to(device)
    model.eval()
    held: deque[np.ndarray] = deque()  # frames first, first+1, …
    first = 0  # index of held[0]
    n_read = 0
    exhausted = False

    def read_until(count: int) -> None:
        """Read until ``count`` frames have been read or the video ends."""
        nonlocal n_read, exhausted
        while n_read < count and not exhausted:
            try:
                frame = next(source)
            except StopIteration:
                exhausted = True
                return
            held.append(_check_frame(frame, n_read, H, W))
            n_read += 1

    start = 0  # first frame of the next batch
    while True:
        read_until(start + 1)
        if start >= n_read:
            if n_read == 0:
                raise InputError("the video has no frames")
            return
        targets = list(range(start, start + batch_size))
        read_until(max(max(_base_window(i, T)) for i in targets) + 1)
        targets = [i for i in targets if i < n_read]
        # Any length past every needed index leaves the windows unclamped.
        n_known = n_read if exhausted else n_read + 1
        windows = [window_indices(i, n_known, T) for i in targets]
        clips = np.stack([np.stack([held[j - first] for j in w]) for w in windows])
        audio = None
        if waveform is not None:
            assert fps is not None
            audio = np.stack([window_audio(i, waveform, fps=fps, config=config) for i in targets])
        maps, rel = _run(model, clips, audio, device, out_size, relevance)
        del clips
        for k, (i, m) in enumerate(zip(targets, maps, strict=True)):
            if relevance:
                yield i, m.copy(), rel[k]
            else:
                yield i, m.copy()  # a kept map should not pin its whole batch
        start = targets[-1] + 1
        # Frames before start−T+1 are in no later window (frame T−1's needs frame 0).
        keep_from = max(0, start - T + 1)
        while first < keep_from and held:
            held.popleft()
            first += 1


def frames_to_input(
    frames: torch.Tensor | np.ndarray, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Stored frames ``uint8 [B, T, H, W, 3]`` → the model's input ``float32 [B, 3, T, H, W]``
    in [0, 1], on ``device`` (the one place that does this; training, evaluation and
    inference all call it)."""
    x = torch.as_tensor(frames).to(device, non_blocking=True)
    return x.permute(0, 4, 1, 2, 3).float().div_(255.0)


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` → ``cuda`` where PyTorch sees a GPU, else ``cpu``; ``cuda``
    without one is a :class:`~avrsp.errors.ConfigError`."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA device on this machine")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    return name


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on a GPU, nothing elsewhere (CPU runs in float32)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run(
    model: nn.Module,
    clips: np.ndarray,
    audio: np.ndarray | None,
    device: torch.device,
    out_size: tuple[int, int] | None,
    relevance: bool = False,
) -> tuple[np.ndarray, list[Relevance]]:
    """One forward pass: ``clips uint8 [B, T, H, W, 3]`` → ``float32 [B, h, w]`` maps (and
    each window's :class:`Relevance` when asked and the model is audio-visual)."""
    rel: list[Relevance] = []
    with torch.inference_mode():
        x = frames_to_input(clips, device)
        a = torch.from_numpy(audio).to(device) if audio is not None else None
        with autocast(device):
            if relevance and a is not None:
                out, attention = model(x, a, return_attention=True)
                rel = relevance_of(attention)
            else:
                out = model(x, a)
        if relevance and not rel:
            empty = np.zeros((0, 0), np.float32)
            rel = [Relevance(empty, empty, empty, float("nan"), {})] * clips.shape[0]
        out = out.float()
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 3 or out.shape[0] != clips.shape[0]:
            raise AVRSPError(
                f"model returned shape {tuple(out.shape)}; expected [{clips.shape[0]}, H, W]"
            )
        if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
            out = F.interpolate(
                out[:, None], size=tuple(out_size), mode="bilinear", align_corners=False
            )[:, 0]
        return out.cpu().numpy(), rel
