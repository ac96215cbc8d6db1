"""End to end: ``avrsp synth`` then ``avrsp preprocess`` (Ray Data) → shards read back.

Checks what the preprocessing issue's "done when" names: the expected window counts, the
alignment of audio sample index and frame time, the target maps and the fixation points.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avrsp.audio import audio_window
from avrsp.config import preset
from preprocessing.fixations import fixation_map
from preprocessing.media import decode_audio, decode_frames
from preprocessing.schema import decode_segment
from preprocessing.synthetic import SynthSettings, make_clip
from workflows.cli import main

SECONDS, FPS, STRIDE, VIDEOS = 3.2, 25.0, 4, 4


@pytest.fixture(scope="module")
def shards(ray_session, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    synth, out = root / "synth", root / "shards"
    assert main(["synth", "--out", str(synth), "--videos", str(VIDEOS), "--seconds",
                 str(SECONDS), "--seed", "5"]) == 0  # fmt: skip
    code = main(["preprocess", "--source", f"synthetic:{synth}", "--out", str(out),
                 "--preset", "tiny", "--stride", str(STRIDE)])  # fmt: skip
    assert code == 0
    return synth, out


def _rows(out: Path) -> list[dict]:
    files = sorted((out / "shards").rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_counts(shards: tuple[Path, Path]) -> None:
    _, out = shards
    T = preset("tiny").input.frames
    frames = round(SECONDS * FPS)
    per_video = (frames - 1 - (T - 1)) // STRIDE + 1  # windows ending at T-1, T-1+stride, …
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["videos"] == VIDEOS and manifest["failed"] == 0
    assert manifest["windows"] == VIDEOS * per_video
    rows = _rows(out)
    assert len(rows) == VIDEOS * per_video
    assert json.loads((out / "failures.json").read_text()) == []
    for video in {r["video"] for r in rows}:
        ends = sorted(r["last_frame"] for r in rows if r["video"] == video)
        assert ends == list(range(T - 1, frames, STRIDE))


def test_audio_is_aligned_to_frame_time(shards: tuple[Path, Path]) -> None:
    """Decoded audio lines up with the generated waveform to the sample, and each row's
    buffer is exactly ``audio_window`` of it at the row's last frame."""
    synth, out = shards
    cfg = preset("tiny").input
    meta = json.loads((synth / "synthetic.json").read_text())
    settings = SynthSettings(videos=VIDEOS, seed=5, seconds=SECONDS)
    rows = _rows(out)
    checked = 0
    for index, clip in enumerate(meta["clips"]):
        video = synth / clip["video"]
        wave = decode_audio(video, cfg.sample_rate)
        mine = [r for r in rows if r["video"] == clip["clip"]]
        if not clip["has_audio"]:
            assert wave.size == 0
            assert all(not r["has_audio"] and not any(r["audio"]) for r in mine)
            continue
        original = make_clip(settings, index).audio
        assert original is not None
        # lag of the decoded track against the generated one, by cross-correlation
        n = min(len(original), len(wave)) - 2100
        lags = range(-40, 41)
        ref = original[1000 : 1000 + n]
        scores = [float(np.dot(ref, wave[1000 + k : 1000 + k + n])) for k in lags]
        assert list(lags)[int(np.argmax(scores))] in (-1, 0, 1)
        for row in mine[::5]:
            expected = audio_window(
                wave, last_frame=row["last_frame"], frames=cfg.frames, fps=row["fps"],
                sample_rate=cfg.sample_rate, buffer_samples=cfg.audio_samples,
            )  # fmt: skip
            np.testing.assert_allclose(np.asarray(row["audio"]), expected, atol=1e-6)
            checked += 1
    assert checked > 0


def test_frames_targets_and_fixations(shards: tuple[Path, Path]) -> None:
    synth, out = shards
    cfg = preset("tiny").input
    rows = _rows(out)
    row = decode_segment(rows[len(rows) // 2])
    video = synth / "videos" / f"{row['video']}.mp4"
    frames = decode_frames(video, size=(cfg.height, cfg.width), fps=row["fps"])
    last = row["last_frame"]
    window = frames[last - cfg.frames + 1 : last + 1].astype(np.float32)
    assert np.abs(row["frames"].astype(np.float32) - window).mean() < 4.0  # JPEG q90
    with open(synth / "gaze" / f"{row['video']}.csv") as fh:
        points = np.array(
            [(float(r["x"]), float(r["y"])) for r in csv.DictReader(fh)
             if int(r["frame"]) == last and r["x"]],
            dtype=np.float32,
        )  # fmt: skip
    stored = row["fixations"]
    assert len(stored) == len(points) > 0
    np.testing.assert_allclose(np.sort(stored, axis=0), np.sort(points, axis=0), atol=1e-3)
    native = (row["native_height"], row["native_width"])
    expected, _ = fixation_map(points, native, out_size=(cfg.height, cfg.width))
    expected = expected / expected.max()
    assert np.abs(row["target"] - expected).max() <= 1.5 / 255  # 8-bit PNG
    peak = np.unravel_index(np.argmax(row["target"]), row["target"].shape)
    assert row["target"][peak] == pytest.approx(1.0)
