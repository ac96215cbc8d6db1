"""The synthetic "which object sounds?" dataset: determinism, decodability, truth."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from avrsp.errors import InputError
from preprocessing.media import decode_audio, decode_frames, probe
from preprocessing.synthetic import (
    CLASSES,
    MIN_SOUND_S,
    SynthSettings,
    _signed_distance,
    gaze_csv,
    make_clip,
    read_manifest,
    sounding_at,
    write_dataset,
)

SETTINGS = SynthSettings(videos=4, seed=7, seconds=3.6, observers=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, SETTINGS)
    return root, read_manifest(root)


def _gaze(root: Path, clip: dict) -> list[tuple[int, float, float]]:
    with open(root / clip["gaze"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["video", "frame", "observer", "x", "y"]
    return [(int(r["frame"]), float(r["x"]), float(r["y"])) for r in rows if r["x"]]


def test_layout_and_conditions(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    clips = manifest["clips"]
    assert [c["condition"] for c in clips] == ["relevant", "irrelevant", "relevant", "silent"]
    assert {c["split"] for c in clips} <= {"train", "test"}
    assert (root / "splits.csv").read_text().splitlines()[0] == "video,split"
    for clip in clips:
        assert (root / clip["video"]).is_file() and (root / clip["gaze"]).is_file()
        assert 2 <= len(clip["objects"]) <= 3
        names = [o["class"] for o in clip["objects"]]
        assert len(set(names)) == len(names)  # distinct classes


def test_same_seed_same_bytes(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    for index, clip in enumerate(manifest["clips"]):
        again = make_clip(SETTINGS, index)
        assert gaze_csv(again) == (root / clip["gaze"]).read_text()
        assert again.sounding == clip["sounding"]
    other = make_clip(SynthSettings(videos=4, seed=8, seconds=3.6, observers=10), 0)
    assert gaze_csv(other) != (root / manifest["clips"][0]["gaze"]).read_text()


def test_worker_processes_write_the_same_dataset(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    root, manifest = dataset
    write_dataset(tmp_path, SETTINGS, workers=2)
    assert (tmp_path / "synthetic.json").read_bytes() == (root / "synthetic.json").read_bytes()
    for clip in manifest["clips"]:
        assert (tmp_path / clip["gaze"]).read_bytes() == (root / clip["gaze"]).read_bytes()
        assert probe(tmp_path / clip["video"]).frame_count == clip["frames"]
    with pytest.raises(InputError, match="workers must be >= 1"):
        write_dataset(tmp_path, SETTINGS, workers=0)


def test_videos_decode_to_the_declared_frames(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    for clip in manifest["clips"]:
        info = probe(root / clip["video"])
        assert (info.width, info.height) == (manifest["width"], manifest["height"])
        assert info.frame_count == clip["frames"] == SETTINGS.frames == 90
        assert info.fps == manifest["fps"] == 25
        assert info.has_audio == clip["has_audio"] == (clip["condition"] != "silent")
    frames = decode_frames(root / manifest["clips"][0]["video"], None)
    assert frames.shape == (90, 96, 160, 3)
    # The first object sits where the manifest says: its class colour at its centre.
    first = manifest["clips"][0]["objects"][0]
    x, y = first["track"][10]
    colour = next(c.color for c in CLASSES if c.name == first["class"])
    assert np.abs(frames[10, int(y), int(x)].astype(int) - colour).max() < 30


def test_silent_clips_have_no_audio(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    silent = [c for c in manifest["clips"] if c["condition"] == "silent"]
    assert silent
    for clip in silent:
        assert decode_audio(root / clip["video"]).size == 0


def _level(wave_: np.ndarray, freq: float, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave_ * np.hanning(len(wave_))))
    bins = np.fft.rfftfreq(len(wave_), 1 / sr)
    return float(spec[(bins > freq * 0.98) & (bins < freq * 1.02)].max())


def test_relevant_audio_carries_the_sounding_class_pitch(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    sr = manifest["sample_rate"]
    pitches = {c["name"]: c["pitch_hz"] for c in manifest["classes"]}
    checked = 0
    for clip in manifest["clips"]:
        if clip["condition"] != "relevant":
            continue
        audio = decode_audio(root / clip["video"], sr)
        assert abs(audio.size / sr - SETTINGS.seconds) < 1 / SETTINGS.fps
        for part in clip["sounding"]:
            piece = audio[round((part["start_s"] + 0.1) * sr) : round((part["end_s"] - 0.1) * sr)]
            levels = {name: _level(piece, f, sr) for name, f in pitches.items()}
            others = [v for name, v in levels.items() if name != part["class"]]
            assert levels[part["class"]] > 20 * max(others), (part, levels)
            checked += 1
    assert checked >= 2


def test_irrelevant_music_avoids_class_pitches(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    sr = manifest["sample_rate"]
    clip = next(c for c in manifest["clips"] if c["condition"] == "irrelevant")
    audio = decode_audio(root / clip["video"], sr)
    assert np.abs(audio).max() > 0.05  # there is sound
    music = _level(audio, 440.0, sr) + _level(audio, 262.0, sr)
    for cls in manifest["classes"]:
        assert _level(audio, cls["pitch_hz"], sr) < 0.25 * music


def test_schedule_one_object_at_a_time_long_enough() -> None:
    for index in range(0, 40, 2):  # the relevant clips of a larger set
        clip = make_clip(SETTINGS, index)
        parts = clip.sounding
        assert parts[0]["start_frame"] == 0 and parts[-1]["end_frame"] == SETTINGS.frames
        for a, b in itertools.pairwise(parts):
            assert a["end_frame"] == b["start_frame"] and a["object"] != b["object"]
        for p in parts:
            assert p["end_frame"] - p["start_frame"] >= math.ceil(MIN_SOUND_S * SETTINGS.fps)


def _on_object(root: Path, clip: dict, radius: float) -> tuple[float, float]:
    """(share of samples within 1.5 radii of the sounding object, mean over frames of
    the largest share of observers on one object)."""
    tracks = np.array([o["track"] for o in clip["objects"]])
    hits, total, crowd = 0, 0, []
    by_frame: dict[int, list[int]] = {}
    for frame, x, y in _gaze(root, clip):
        dist = np.linalg.norm(tracks[:, frame] - [x, y], axis=1)
        target = sounding_at(clip["sounding"], frame)
        total += 1
        hits += target is not None and dist[target] < 1.5 * radius
        if dist.min() < 1.5 * radius:
            by_frame.setdefault(frame, []).append(int(dist.argmin()))
    for seen in by_frame.values():
        crowd.append(np.bincount(seen).max() / len(seen))
    return hits / total, float(np.mean(crowd))


def test_gaze_follows_the_sound_only_when_relevant(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    radius = manifest["object_radius_px"]
    for clip in manifest["clips"]:
        on_sounding, crowd = _on_object(root, clip, radius)
        if clip["condition"] == "relevant":
            assert on_sounding > 0.75
            assert crowd > 0.8  # observers agree on one object
        else:
            assert on_sounding == 0
            assert crowd < 0.75  # spread over the objects


def test_all_shapes_have_the_same_area() -> None:
    r = 10.0
    yy, xx = np.mgrid[-30:30, -30:30] + 0.5
    areas = [np.clip(0.5 - _signed_distance(c.shape, xx, yy, r), 0, 1).sum() for c in CLASSES]
    assert np.allclose(areas, math.pi * r * r, rtol=0.02), areas


def test_cli_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workflows.commands import synth

    parser = argparse.ArgumentParser()
    synth.register(parser.add_subparsers())
    args = parser.parse_args(
        ["synth", "--out", str(tmp_path), "--videos", "1", "--size", "64x48", "--seconds", "3.2",
         "--fps", "10", "--seed", "3"]
    )  # fmt: skip
    assert args.func(args) == 0
    manifest = json.loads((tmp_path / "synthetic.json").read_text())
    assert manifest["width"] == 64 and manifest["height"] == 48 and manifest["seed"] == 3
    assert probe(tmp_path / "videos" / "clip_000.mp4").frame_count == 32
    assert "wrote 1 clips" in capsys.readouterr().out
