"""Decoding with FFmpeg's libraries (PyAV) on real files: the shared clips and files made
here with the ffmpeg program."""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from avrsp.errors import InputError
from preprocessing.media import (
    decode_audio,
    decode_frames,
    ffmpeg_exe,
    frame_at_time,
    iter_frames,
    iter_jpeg_frames,
    probe,
)
from preprocessing.schema import encode_jpeg, jpeg_quant_tables

SR = 22050


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-nostdin", *args], check=True)


def _tone_level(wave_: np.ndarray, freq: float, sr: int = SR) -> float:
    """Amplitude of the sinusoid at ``freq`` in ``wave_`` (Hann-windowed FFT peak)."""
    spec = np.abs(np.fft.rfft(wave_ * np.hanning(len(wave_))))
    bins = np.fft.rfftfreq(len(wave_), 1 / sr)
    near = (bins > freq - 3) & (bins < freq + 3)
    return float(spec[near].max() * 2 / np.hanning(len(wave_)).sum())


# --------------------------------------------------------------------------- real clips

REAL = {
    # name: (width, height, fps, frames, channels, rate)
    "chaplin.mp4": (640, 360, 25.0, 241, 2, 44100),
    "realshort.mp4": (320, 240, 30.02, 36, 1, 48000),
    "big_buck_bunny_432_433.webm": (1280, 720, 24.0, 24, 2, 44100),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(REAL))
def test_probe_real_clips(shared_data: Path, name: str) -> None:
    width, height, fps, frames, channels, rate = REAL[name]
    info = probe(shared_data / "media" / name)
    assert (info.width, info.height, info.frame_count) == (width, height, frames)
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.has_audio and info.audio_channels == channels and info.audio_rate == rate
    assert not info.variable_frame_rate
    # A CFR file converted to its own rate keeps every frame.
    assert info.cfr_frame_count(fps) == frames


@pytest.mark.shared
def test_decode_real_clip_scaled_in_process(shared_data: Path) -> None:
    path = shared_data / "media" / "realshort.mp4"
    native = decode_frames(path, None)
    small = decode_frames(path, (60, 80))
    assert native.shape == (36, 240, 320, 3) and native.dtype == np.uint8
    assert small.shape == (36, 60, 80, 3)
    # Area scaling by 4 is the mean of 4×4 blocks of the native frame.
    blocks = native.reshape(36, 60, 4, 80, 4, 3).mean(axis=(2, 4))
    assert np.abs(blocks - small).mean() < 2.0


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "frames_tolerance"),
    # realshort's AAC track itself ends 0.014 s before its video (last packet at 1.186 s).
    [("chaplin.mp4", 1), ("big_buck_bunny_432_433.webm", 1), ("realshort.mp4", 2)],
)
def test_audio_length_matches_duration(shared_data: Path, name: str, frames_tolerance: int) -> None:
    info = probe(shared_data / "media" / name)
    audio = decode_audio(shared_data / "media" / name, SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.01
    assert info.duration_s is not None
    assert abs(audio.size / SR - info.duration_s) <= frames_tolerance / info.fps


@pytest.mark.shared
def _is_open(process, path: Path) -> bool:
    return any(Path(f.path) == path.resolve() for f in process.open_files())


def test_iter_frames_streams_and_closes_the_file(shared_data: Path) -> None:
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    path = shared_data / "media" / "chaplin.mp4"
    children = {c.pid for c in me.children()}  # e.g. a Ray session of earlier tests
    frames = iter_frames(path, (36, 64))
    first = [next(frames) for _ in range(3)]
    assert all(f.shape == (36, 64, 3) for f in first)
    assert _is_open(me, path)  # the file is open while frames come
    frames.close()  # the consumer stops early: the file must not stay open
    assert not _is_open(me, path) and {c.pid for c in me.children()} <= children
    # Same frames as the batch decode.
    assert np.array_equal(np.stack(first), decode_frames(path, (36, 64))[:3])


def _decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        return np.asarray(img.convert("RGB"))


@pytest.mark.shared
def test_jpeg_frames_are_the_raw_frames_encoded(shared_data: Path) -> None:
    from PIL import Image

    path = shared_data / "media" / "realshort.mp4"
    info = probe(path)
    raw = decode_frames(path, (120, 160), info=info)
    jpegs = list(iter_jpeg_frames(path, (120, 160), info=info, quality=90))
    assert len(jpegs) == len(raw) == 36
    decoded = np.stack([_decode_jpeg(j) for j in jpegs])
    assert decoded.shape == raw.shape
    # Same frames, in order: every JPEG is nearest to its own raw frame, and the mean error
    # (colour conversion + quantization) is close to Pillow's at the same quality (2.45).
    error = np.abs(decoded.astype(np.int16) - raw).mean(axis=(1, 2, 3))
    pillow = np.stack([_decode_jpeg(encode_jpeg(f, 90)) for f in raw])
    pillow_error = np.abs(pillow.astype(np.int16) - raw).mean()
    assert error.mean() < pillow_error + 0.5 and error.max() < 3.5, (error, pillow_error)
    far = np.abs(decoded[:, None].astype(np.int16) - raw[None]).mean(axis=(2, 3, 4))
    assert np.array_equal(far.argmin(axis=1), np.arange(36))
    # Quality 90 means libjpeg's tables at 90 (AC; ffmpeg fixes the DC step at 8).
    luma, chroma = jpeg_quant_tables(90)
    with Image.open(io.BytesIO(jpegs[7])) as img:
        tables = img.quantization
    assert list(tables[0])[1:] == luma[1:] and list(tables[1])[1:] == chroma[1:]
    assert luma[:8] == [3, 2, 2, 3, 5, 8, 10, 12]  # Annex K row 1 at 20 %
    # A lower quality: coarser tables, smaller files, larger error; CFR count as iter_frames.
    coarse = list(iter_jpeg_frames(path, (120, 160), fps=10, info=info, quality=30))
    assert len(coarse) == info.cfr_frame_count(10) == len(decode_frames(path, (8, 8), fps=10))
    assert sum(map(len, coarse)) < 0.6 * sum(map(len, jpegs[: len(coarse)]))
    with Image.open(io.BytesIO(coarse[0])) as img:
        assert list(img.quantization[0])[1:] == jpeg_quant_tables(30)[0][1:]
    with pytest.raises(InputError, match="jpeg_quality"):
        jpeg_quant_tables(0)


def test_jpeg_frames_of_a_bt709_video_keep_their_colours(tmp_path: Path) -> None:
    """JPEG readers decode BT.601: a BT.709 video's YCbCr must be converted, not copied."""
    path = tmp_path / "hd.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=0.4",
            "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-c:v", "libx264", "-crf", "12", str(path))  # fmt: skip
    raw = decode_frames(path, (90, 160))
    decoded = np.stack([_decode_jpeg(j) for j in iter_jpeg_frames(path, (90, 160))])
    pillow = np.stack([_decode_jpeg(encode_jpeg(f, 90)) for f in raw])
    error = np.abs(decoded.astype(np.int16) - raw).mean()
    # Copied as BT.601 the saturated test colours were ~9 levels off; converted, the error
    # is Pillow's (chroma subsampling of sharp colour edges) plus a little.
    assert error < np.abs(pillow.astype(np.int16) - raw).mean() + 1.0, error
    # The RGB frames are the ffmpeg program's, which reads the matrix the video declares.
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
         "pipe:"], capture_output=True, check=True,
    ).stdout  # fmt: skip
    reference = np.frombuffer(out, np.uint8).reshape(-1, 180, 320, 3)
    assert np.abs(decode_frames(path, None).astype(np.int16) - reference).mean() < 0.5


@pytest.mark.shared
def test_audio_reuses_the_probe(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "media" / "realshort.mp4"
    info = probe(path)
    assert np.array_equal(decode_audio(path, SR, info=info), decode_audio(path, SR))
    other = tmp_path / "other.mp4"
    other.write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="MediaInfo of"):
        decode_audio(other, SR, info=info)


# --------------------------------------------------------------------------- made here


def test_stereo_downmix_is_the_average(tmp_path: Path) -> None:
    t = np.arange(SR) / SR
    left, right = 0.4 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * 660 * t)
    pcm = (np.stack([left, right], axis=1) * 32767).astype("<i2")
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(SR)
        handle.writeframes(pcm.tobytes())
    mono = decode_audio(path, SR)
    assert mono.size == SR
    assert _tone_level(mono, 440) == pytest.approx(0.2, rel=0.03)
    assert _tone_level(mono, 660) == pytest.approx(0.2, rel=0.03)


def test_51_audio_downmixes_every_channel_but_lfe(tmp_path: Path) -> None:
    freqs = {"FL": 300, "FR": 500, "FC": 700, "LFE": 900, "BL": 1100, "BR": 1300}
    sines = "".join(f"sine=f={f}:d=1:sample_rate=48000[{n}];" for n, f in freqs.items())
    path = tmp_path / "surround.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25:duration=1",
        "-filter_complex",
        sines + "".join(f"[{n}]" for n in freqs) + "join=inputs=6:channel_layout=5.1[a]",
        "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "384k", str(path),
    )  # fmt: skip
    info = probe(path)
    assert info.has_audio and info.audio_channels == 6
    mono = decode_audio(path, SR)
    assert abs(mono.size / SR - 1.0) <= 1 / 25
    middle = mono[SR // 10 : -SR // 10]
    levels = {n: _tone_level(middle, f) for n, f in freqs.items()}
    for name in ("FL", "FR", "FC", "BL", "BR"):
        assert levels[name] > 0.005, levels
    assert levels["LFE"] < 0.1 * min(levels[n] for n in ("FL", "FR", "FC")), levels


def _vfr_file(path: Path) -> None:
    """60 grey frames at 30 fps (level 20 + 3n); in the first second only every third is
    kept, so the file is 10 fps for 1 s, then 30 fps for 1 s (40 frames, no audio)."""
    frames = np.repeat((20 + 3 * np.arange(60, dtype=np.uint8))[:, None, None, None], 3, axis=3)
    frames = np.broadcast_to(frames, (60, 48, 64, 3)).copy()
    subprocess.run(
        [
            ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", "64x48", "-framerate", "30", "-i", "pipe:",
            "-vf", "select='gte(n,30)+not(mod(n,3))'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path),
        ],
        input=frames.tobytes(),
        check=True,
    )  # fmt: skip


def _which(frames: np.ndarray, natives: np.ndarray) -> list[int]:
    """For each frame, the 30-fps source index of the native frame it shows."""
    source = [3 * i for i in range(10)] + list(range(30, 60))  # native frame i → source
    diff = np.abs(frames[:, None].astype(int) - natives[None].astype(int)).mean(axis=(2, 3, 4))
    return [source[j] for j in diff.argmin(axis=1)]


def test_vfr_becomes_cfr_with_the_right_frames(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    _vfr_file(path)
    info = probe(path)
    assert info.variable_frame_rate and info.frame_count == 40
    assert info.video_duration_s == pytest.approx(2.0, abs=1e-3)
    assert not info.has_audio
    natives = decode_frames(path, (24, 32))
    assert len(natives) == 40
    assert np.diff(natives.reshape(40, -1).mean(axis=1)).min() > 1  # all distinct
    cfr = decode_frames(path, (24, 32), fps=30)
    assert len(cfr) == info.cfr_frame_count(30) == 60
    # Output frame k shows the native frame on screen at k / 30 s.
    assert _which(cfr, natives) == [3 * (k // 3) if k < 30 else k for k in range(60)]
    # At 25 fps, frame k (at k / 25 s) shows the latest native frame at or before
    # (k + 1/2) / 25 s, i.e. with round(t * 25) <= k.
    cfr25 = decode_frames(path, (24, 32), fps=25)
    assert len(cfr25) == info.cfr_frame_count(25) == 50
    times = np.array([i / 10 for i in range(10)] + [1 + i / 30 for i in range(30)])
    expected = []
    for k in range(50):
        latest = int(np.nonzero(np.floor(times * 25 + 0.5) <= k)[0].max())
        expected.append([3 * i for i in range(10)][latest] if latest < 10 else 20 + latest)
    assert _which(cfr25, natives) == expected
    assert frame_at_time(1.0, 25) == 25 and frame_at_time(0.019, 25) == 0
    assert frame_at_time(0.02, 25) == 1


def test_audio_shares_the_first_frames_clock(tmp_path: Path) -> None:
    """Audio that starts 0.5 s after the video is preceded by silence."""
    path = tmp_path / "late.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25:duration=2",
        "-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=f=440:d=1.5:sample_rate=22050",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-c:a", "pcm_s16le", str(path),
    )  # fmt: skip
    audio = decode_audio(path, SR)
    assert abs(audio.size / SR - 2.0) <= 1 / 25
    assert np.abs(audio[: int(0.48 * SR)]).max() < 1e-3
    assert np.abs(audio[int(0.52 * SR) : int(1.9 * SR)]).min() >= 0  # tone present:
    assert _tone_level(audio[int(0.6 * SR) : int(1.9 * SR)], 440) > 0.05


def test_no_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "mute.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(path))  # fmt: skip
    info = probe(path)
    assert not info.has_audio and info.audio_channels == 0 and info.audio_rate is None
    audio = decode_audio(path)
    assert audio.shape == (0,) and audio.dtype == np.float32


def test_containers_without_duration_still_decode(tmp_path: Path) -> None:
    streamed = tmp_path / "streamed.mkv"  # Matroska written to a pipe: no duration
    with open(streamed, "wb") as handle:
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
             "testsrc=size=64x48:rate=25:duration=2", "-c:v", "libx264", "-pix_fmt",
             "yuv420p", "-f", "matroska", "pipe:"],
            stdout=handle, check=True,
        )  # fmt: skip
    raw = tmp_path / "raw.h264"  # an elementary stream: no container, no timestamps
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", "-f", "h264", str(raw))  # fmt: skip
    for path in (streamed, raw):
        info = probe(path)
        assert info.frame_count == 50 and info.duration_s == pytest.approx(2.0, abs=0.05)
        assert decode_frames(path, (24, 32)).shape == (50, 24, 32, 3)
        assert decode_frames(path, (24, 32), fps=25).shape == (50, 24, 32, 3)


@pytest.fixture(scope="module")
def cut_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4 s clip with audio, cut in half, with its index at the end and at the start."""
    root = tmp_path_factory.mktemp("cut")
    out = {}
    for name, flags in (("moov_last", []), ("faststart", ["-movflags", "+faststart"])):
        whole = root / f"{name}.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x96:rate=25:duration=4", "-f", "lavfi",
                "-i", "sine=f=440:d=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a",
                "aac", *flags, str(whole))  # fmt: skip
        data = whole.read_bytes()
        cut = root / f"{name}_cut.mp4"
        cut.write_bytes(data[: len(data) // 2])
        out[name] = cut
    return out


@pytest.mark.parametrize("name", ["moov_last", "faststart"])
@pytest.mark.parametrize("call", [probe, lambda p: decode_frames(p, (24, 32)), decode_audio])
def test_truncated_file_is_an_input_error(cut_files: dict[str, Path], name: str, call) -> None:
    path = cut_files[name]
    with pytest.raises(InputError, match="truncated") as err:
        call(path)
    assert str(path) in str(err.value)
    assert "Traceback" not in str(err.value)


def test_non_video_and_missing_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("video,frame,observer,x,y\nnot a video at all\n")
    for call in (probe, decode_audio, lambda p: decode_frames(p, None)):
        with pytest.raises(InputError, match="not a video file") as err:
            call(text)
        assert str(text) in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        probe(tmp_path / "missing.mp4")
    wav = tmp_path / "only.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SR)
        handle.writeframes(np.zeros(SR, "<i2").tobytes())
    with pytest.raises(InputError, match="no video stream"):
        probe(wav)
    assert decode_audio(wav).size == SR  # an audio-only file still gives its audio


def test_image_sequence_pattern(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    for k, img in enumerate(images, start=1):  # STAViS numbers from 1
        Image.fromarray(img).save(tmp_path / f"img_{k:05d}.png")
    frames = decode_frames(tmp_path / "img_%05d.png", None, fps=10)
    assert np.array_equal(frames, images)
    same = decode_frames(str(tmp_path / "img_%05d.png"), (12, 16), fps=10)
    assert same.shape == (5, 12, 16, 3)
    with pytest.raises(InputError, match="needs its fps"):
        decode_frames(str(tmp_path / "img_%05d.png"), None)


def test_ffmpeg_exe_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AVRSP_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(InputError, match="AVRSP_FFMPEG"):
        ffmpeg_exe()


@pytest.fixture(scope="module")
def av_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Audio that starts after the video (late) and before it (early), 5.1 audio, no
    audio (mute), and a VFR video with audio (vfr_a)."""
    root = tmp_path_factory.mktemp("av")
    late, early, surround, mute = (root / n for n in ("late.mkv", "early.mkv", "51.mp4", "m.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1.2",
            "-itsoffset", "0.3", "-f", "lavfi", "-i", "sine=f=440:d=0.9:sample_rate=44100",
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "pcm_s16le", str(late))  # fmt: skip
    _ffmpeg("-itsoffset", "0.25", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
            "-f", "lavfi", "-i", "sine=f=300:d=1.25:sample_rate=48000",
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(early))  # fmt: skip
    sines = "".join(f"sine=f={f}:d=1:sample_rate=48000[c{i}];" for i, f in enumerate(range(3, 9)))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-filter_complex",
            sines + "".join(f"[c{i}]" for i in range(6)) + "join=inputs=6:channel_layout=5.1[a]",
            "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(surround))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=0.4", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(mute))  # fmt: skip
    vfr = root / "vfr_a.mp4"
    _vfr_file(root / "vfr.mp4")
    _ffmpeg("-i", str(root / "vfr.mp4"), "-f", "lavfi", "-i", "sine=f=500:d=2",
            "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(vfr))  # fmt: skip
    return {"late": late, "early": early, "surround": surround, "mute": mute, "vfr_a": vfr}


def test_audio_of_generated_files_on_the_first_frames_clock(av_files: dict[str, Path]) -> None:
    """decode_audio, reusing the probe or not, for audio that starts after the video
    (silence first), before it (samples dropped), 5.1, and a VFR file resampled to CFR; a
    video without audio gives its frames and no audio."""
    late, early, surround, mute, vfr = (
        av_files[k] for k in ("late", "early", "surround", "mute", "vfr_a")
    )
    assert probe(early).start_s > 0.2  # the first frame is 0.24 s into the audio
    assert probe(surround).audio_channels == 6
    for path in (late, early, surround):
        audio = decode_audio(path, SR, info=probe(path))
        assert audio.size > 0.9 * SR, path
        np.testing.assert_array_equal(audio, decode_audio(path, SR), err_msg=path.name)
    assert np.abs(audio).max() > 0.05  # the 5.1 tones came through the downmix
    # The early audio's first 0.25 s lie before the first frame: 1 s of it is left.
    assert abs(decode_audio(early, SR).size / SR - 1.0) <= 1 / 25
    # Silence before the late audio's start, the tone after it.
    audio = decode_audio(late, SR)
    assert np.abs(audio[: int(0.28 * SR)]).max() < 1e-3
    assert _tone_level(audio[int(0.4 * SR) : int(1.1 * SR)], 440) > 0.1
    # VFR → CFR frames, and its audio on the same clock.
    assert probe(vfr).variable_frame_rate
    assert len(list(iter_jpeg_frames(vfr, (24, 32), fps=30))) == 60
    audio = decode_audio(vfr, SR, info=probe(vfr))
    assert abs(audio.size / SR - 2.0) <= 1 / 30 and _tone_level(audio, 500) > 0.05
    # No audio track: no audio, and the frames all the same.
    assert decode_audio(mute, SR).shape == (0,)
    assert len(list(iter_jpeg_frames(mute, (24, 32)))) == 10


def test_frames_closed_early_leave_nothing_behind(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    path = tmp_path / "av.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4", "-f", "lavfi",
            "-i", "sine=f=440:d=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            str(path))  # fmt: skip
    info = probe(path)
    me = psutil.Process()
    children = {c.pid for c in me.children()}  # e.g. a Ray session of earlier tests
    for wanted in (3, 0):  # closed after a few frames, and closed before any
        frames = iter_jpeg_frames(path, (24, 32), info=info)
        assert len([next(frames) for _ in range(wanted)]) == wanted
        frames.close()  # the consumer stops early: the file must not stay open
        assert not _is_open(me, path) and {c.pid for c in me.children()} <= children
    with pytest.raises(InputError, match="sample_rate"):
        decode_audio(path, 100)
