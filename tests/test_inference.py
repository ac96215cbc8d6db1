"""Sliding-window inference (avrsp.inference).

The model double reads back which frames it got: every input frame's pixels encode the
frame's index (channel 0 = index mod 256, channel 1 = index div 256), and the double
returns a map whose first row holds the T indices it saw, in input order. So each
predicted map says which window produced it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avrsp.audio import audio_window, window_span
from avrsp.config import InputConfig
from avrsp.errors import InputError
from avrsp.inference import max_frames_held, predict_video, window_audio, window_indices

H, W = 32, 40
FPS = 25.0
SR = 8000


def cfg(T: int) -> InputConfig:
    return InputConfig(frames=T, height=H, width=W, sample_rate=SR, audio_window_s=0.6)


def frame(k: int) -> np.ndarray:
    f = np.empty((H, W, 3), np.uint8)
    f[..., 0] = k % 256
    f[..., 1] = k // 256
    f[..., 2] = 7
    return f


def video(n: int) -> Iterator[np.ndarray]:
    for k in range(n):
        yield frame(k)


class IndexEcho(nn.Module):
    """``[B, 3, T, H, W]`` → ``[B, H, W]`` whose row 0 holds the T frame indices it got."""

    def __init__(self, uses_audio: bool = True) -> None:
        super().__init__()
        self.uses_audio = uses_audio
        self.calls: list[tuple[int, bool, bool]] = []  # (batch, training, inference_mode)
        self.audio_by_window: dict[tuple[int, ...], np.ndarray] = {}

    def forward(self, frames: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        B, C, T, h, w = frames.shape
        assert C == 3 and frames.dtype == torch.float32
        assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
        px = (frames[:, :2, :, 0, 0] * 255).round()  # [B, 2, T]
        idx = px[:, 0] + 256 * px[:, 1]  # [B, T]
        self.calls.append((B, self.training, torch.is_inference_mode_enabled()))
        assert (audio is None) != self.uses_audio
        if audio is not None:
            assert audio.shape[0] == B and audio.dtype == torch.float32
            for b in range(B):
                key = tuple(int(v) for v in idx[b])
                self.audio_by_window[key] = audio[b].numpy().copy()
        out = torch.zeros(B, h, w)
        out[:, 0, :T] = idx
        return out


def windows_seen(maps: list[tuple[int, np.ndarray]], T: int) -> list[list[int]]:
    return [[int(v) for v in m[0, :T]] for _, m in maps]


def run(n: int, T: int, batch: int, uses_audio: bool = False, **kw):
    model = IndexEcho(uses_audio)
    wave = np.sin(np.arange(int(n / FPS * SR) + SR) / 7.0).astype(np.float32)
    out = list(
        predict_video(
            model,
            video(n),
            fps=FPS,
            waveform=wave if uses_audio else None,
            config=cfg(T),
            batch_size=batch,
            **kw,
        )
    )
    return model, wave, out


# --- the window rule ------------------------------------------------------------------


def test_window_indices_docstring_example() -> None:
    # T = 4, the table in the module docstring.
    assert window_indices(0, 10, 4) == [3, 2, 1, 0]
    assert window_indices(1, 10, 4) == [4, 3, 2, 1]
    assert window_indices(2, 10, 4) == [5, 4, 3, 2]
    assert window_indices(3, 10, 4) == [0, 1, 2, 3]
    assert window_indices(9, 10, 4) == [6, 7, 8, 9]
    # shorter than T: the last frame repeats in place of the missing ones
    assert window_indices(0, 3, 4) == [2, 2, 1, 0]
    assert window_indices(1, 3, 4) == [2, 2, 2, 1]
    assert window_indices(2, 3, 4) == [2, 2, 2, 2]
    # n = T: frame T-2's reversed window runs off the end
    assert window_indices(2, 4, 4) == [3, 3, 3, 2]
    assert window_indices(0, 1, 4) == [0, 0, 0, 0]
    with pytest.raises(InputError, match="frame index 3"):
        window_indices(3, 3, 4)


@pytest.mark.parametrize("T", [4, 8])
def test_paper_example_first_frame_is_first_window_reversed(T: int) -> None:
    # paper §IV-B: frame 1's input is frames 32, 31, …, 1 (1-based)
    assert window_indices(0, 100, T) == list(range(T - 1, -1, -1))


@pytest.mark.parametrize("T", [5, 6])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_frame_gets_one_map_from_its_window(T: int, batch: int) -> None:
    for n in (1, T - 1, T, T + 1, 3 * T):
        _, _, out = run(n, T, batch)
        assert [i for i, _ in out] == list(range(n)), n
        for (i, m), seen in zip(out, windows_seen(out, T), strict=True):
            assert m.shape == (H, W) and m.dtype == np.float32
            assert seen == window_indices(i, n, T), (n, i)
            assert len(seen) == T and seen[-1] == i
            assert all(0 <= j < n for j in seen)
            if i >= T - 1:
                assert seen == list(range(i - T + 1, i + 1))
            elif i + T - 1 < n:  # reversed window, entirely inside the video
                assert seen == list(range(i + T - 1, i - 1, -1))
            else:  # padded: the last frame repeats, then the reversed frames down to i
                assert seen == [n - 1] * (i + T - n + 1) + list(range(n - 2, i - 1, -1))


def test_reversed_windows_are_forward_windows_backwards() -> None:
    T, n = 5, 20
    _, _, out = run(n, T, 4)
    seen = windows_seen(out, T)
    for i in range(T - 1):
        assert seen[i] == seen[i + T - 1][::-1]


# --- audio ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4])
def test_audio_windows_match_audio_window(batch: int) -> None:
    T, n = 6, 3 * 6
    config = cfg(T)
    model, wave, _ = run(n, T, batch, uses_audio=True)
    kw = dict(frames=T, fps=FPS, sample_rate=SR, buffer_samples=config.audio_samples)
    for i in range(n):
        got = model.audio_by_window[tuple(window_indices(i, n, T))]
        assert got.shape == (config.audio_samples,)
        np.testing.assert_array_equal(got, window_audio(i, wave, fps=FPS, config=config))
        if i >= T - 1:
            np.testing.assert_array_equal(got, audio_window(wave, last_frame=i, **kw))
        else:
            fwd = audio_window(wave, last_frame=i + T - 1, **kw)
            start, stop = window_span(i + T - 1, T, FPS, SR)
            k = stop - start
            assert 0 < k < config.audio_samples  # span shorter than the buffer here
            np.testing.assert_array_equal(got[-k:], fwd[-k:][::-1])  # played backwards
            np.testing.assert_array_equal(got[:-k], 0.0)  # still right-aligned
            assert not np.array_equal(got, fwd)


def test_reversed_audio_of_a_ramp() -> None:
    # A rising ramp played backwards falls: the reversed window's audio ends on the
    # earliest sample of its span (the start of frame i), like its frames end on frame i.
    T = 5
    config = cfg(T)
    ramp = np.linspace(0.0, 1.0, 20 * SR, dtype=np.float32)
    buf = window_audio(1, ramp, fps=FPS, config=config)
    start, stop = window_span(1 + T - 1, T, FPS, SR)
    content = buf[-(stop - start) :] / np.hanning(stop - start)[::-1].clip(1e-9)
    inner = content[1:-1]
    assert np.all(np.diff(inner) < 0)
    assert inner[-1] == pytest.approx(ramp[start + 1], abs=1e-6)


def test_reversed_audio_when_the_span_fills_the_buffer() -> None:
    # T / fps = 1.0 s > 0.6 s buffer: the whole buffer carries the span and is reversed.
    T, fps = 5, 5.0
    config = cfg(T)
    wave = np.random.default_rng(1).uniform(-1, 1, 5 * SR).astype(np.float32)
    kw = dict(frames=T, fps=fps, sample_rate=SR, buffer_samples=config.audio_samples)
    fwd = audio_window(wave, last_frame=1 + T - 1, **kw)
    got = window_audio(1, wave, fps=fps, config=config)
    assert np.count_nonzero(fwd) >= config.audio_samples - 2  # only the Hann ends are 0
    np.testing.assert_array_equal(got, fwd[::-1])


@pytest.mark.parametrize("alignment", ["centred", "end"])
def test_reversed_audio_with_a_full_buffer_alignment(alignment: str) -> None:
    # centred / end carry a whole buffer: a reversed window plays all of it backwards.
    T = 5
    config = cfg(T).model_copy(update={"audio_alignment": alignment})
    wave = np.random.default_rng(2).uniform(-1, 1, 5 * SR).astype(np.float32)
    kw = dict(frames=T, fps=FPS, sample_rate=SR, buffer_samples=config.audio_samples)
    np.testing.assert_array_equal(
        window_audio(T + 3, wave, fps=FPS, config=config),
        audio_window(wave, last_frame=T + 3, alignment=alignment, **kw),
    )
    fwd = audio_window(wave, last_frame=1 + T - 1, alignment=alignment, **kw)
    np.testing.assert_array_equal(window_audio(1, wave, fps=FPS, config=config), fwd[::-1])
    assert not np.array_equal(fwd, audio_window(wave, last_frame=1 + T - 1, **kw))


def test_audio_model_without_waveform_is_an_error() -> None:
    with pytest.raises(InputError, match="no waveform"):
        list(predict_video(IndexEcho(True), video(5), fps=FPS, waveform=None, config=cfg(5)))


def test_silent_video_gets_zero_audio() -> None:
    model = IndexEcho(True)
    out = list(
        predict_video(model, video(6), fps=FPS, waveform=np.zeros(0, np.float32), config=cfg(5))
    )
    assert len(out) == 6
    assert all(not a.any() for a in model.audio_by_window.values())


# --- streaming, batching, modes ----------------------------------------------------------


def test_memory_is_bounded_by_window_and_batch() -> None:
    """Count the input frames alive at once, for 500 and 5,000 frames."""
    T, batch = 5, 4

    def peak(n: int) -> tuple[int, int]:
        alive = 0
        peak_alive = 0
        read_at_first_map = -1
        produced = 0

        def gone() -> None:
            nonlocal alive
            alive -= 1

        def frames() -> Iterator[np.ndarray]:
            nonlocal alive, peak_alive, produced
            for k in range(n):
                f = frame(k)
                weakref.finalize(f, gone)
                alive += 1
                produced += 1
                peak_alive = max(peak_alive, alive)
                yield f
                del f

        count = 0
        for i, _ in predict_video(
            IndexEcho(False), frames(), fps=FPS, waveform=None, config=cfg(T), batch_size=batch
        ):
            assert i == count
            count += 1
            if read_at_first_map < 0:
                read_at_first_map = produced
        assert count == n
        return peak_alive, read_at_first_map

    bound = max_frames_held(T, batch)
    assert bound == T + batch - 1  # batch >= T-1: the steady state sets the bound
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate the run time
    try:
        small, first_small = peak(500)
        large, first_large = peak(5000)
    finally:
        torch.set_num_threads(threads)
    assert small == large <= bound
    assert first_small == first_large <= bound  # maps come before the video is read


def test_max_frames_held_at_the_start_with_a_small_batch() -> None:
    # Frame T-2 needs frame 2T-3 while frame T-1 still needs frame 0.
    T, batch = 6, 1
    alive = peak = 0

    def gone() -> None:
        nonlocal alive
        alive -= 1

    def frames() -> Iterator[np.ndarray]:
        nonlocal alive, peak
        for k in range(40):
            f = frame(k)
            weakref.finalize(f, gone)
            alive += 1
            peak = max(peak, alive)
            yield f
            del f

    maps = predict_video(
        IndexEcho(False), frames(), fps=FPS, waveform=None, config=cfg(T), batch_size=batch
    )
    n = sum(1 for _ in maps)
    assert n == 40
    assert peak == max_frames_held(T, batch) == 2 * T - 2


class TinyConvNet(nn.Module):
    """A real (random) network: batch composition must not change its maps."""

    uses_audio = True

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.audio = nn.Linear(cfg(5).audio_samples, 4)

    def forward(self, frames: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        assert audio is not None
        x = self.bn(self.conv(frames * 2 - 1)) + self.audio(audio)[:, :, None, None, None]
        return F.softplus(x.mean(dim=(1, 2)))


def test_batching_gives_the_same_maps() -> None:
    T, n = 5, 11
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]
    wave = rng.uniform(-1, 1, int(n / FPS * SR)).astype(np.float32)
    model = TinyConvNet()

    def maps(batch: int) -> list[np.ndarray]:
        out = predict_video(
            model, iter(clip), fps=FPS, waveform=wave, config=cfg(T), batch_size=batch
        )
        return [m for _, m in out]

    one, five = maps(1), maps(5)
    assert len(one) == len(five) == n
    for a, b in zip(one, five, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one[0], one[T])  # the maps do depend on the window
    # the double: exactly equal windows whatever the batch
    assert windows_seen(run(13, T, 1)[2], T) == windows_seen(run(13, T, 8)[2], T)


def test_eval_mode_inference_mode_and_batch_sizes() -> None:
    model = IndexEcho(False)
    model.train()
    out = list(
        predict_video(model, video(10), fps=None, waveform=None, config=cfg(5), batch_size=4)
    )
    assert len(out) == 10
    assert [c[0] for c in model.calls] == [4, 4, 2]
    assert all(not training and inference for _, training, inference in model.calls)


def test_out_size_resizes_bilinearly() -> None:
    T, n = 5, 5
    _, _, raw = run(n, T, 2)
    _, _, resized = run(n, T, 2, out_size=(48, 60))
    for (_, a), (_, b) in zip(raw, resized, strict=True):
        assert b.shape == (48, 60)
        ref = F.interpolate(
            torch.from_numpy(a)[None, None], size=(48, 60), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(b, ref, rtol=1e-6)


def test_bad_input_names_the_frame() -> None:
    frames = [frame(0), frame(1), np.zeros((H, W + 1, 3), np.uint8)]
    with pytest.raises(InputError, match=r"frame 2: expected shape \[32, 40, 3\]"):
        list(predict_video(IndexEcho(False), frames, fps=None, waveform=None, config=cfg(5)))
    with pytest.raises(InputError, match="frame 0: expected a uint8"):
        as_float = [frame(0).astype(np.float32)]
        list(predict_video(IndexEcho(False), as_float, fps=None, waveform=None, config=cfg(5)))
    with pytest.raises(InputError, match="no frames"):
        list(predict_video(IndexEcho(False), [], fps=None, waveform=None, config=cfg(5)))
    with pytest.raises(InputError, match="batch_size"):
        predict_video(IndexEcho(False), [], fps=None, waveform=None, config=cfg(5), batch_size=0)
