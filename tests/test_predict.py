"""``avrsp predict`` on the real clips of ``../shared/data/media`` (docs/PREDICT.md).

The models are random-init ``tiny`` networks on a small window (T=5 frames of 32×64, as
small as S3D takes), exported with :func:`workflows.export.export_model`: what is checked
is the product around the network — one map per decoded frame, the overlay's frames and
audio, the relevance files of an AV model, the notes, the refusals, the folder run through
Ray Data with a broken file in it — not what a trained model predicts.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from avrsp.config import tiny
from avrsp.errors import InputError, WeightsError
from avrsp.model import build_model
from preprocessing.media import ffmpeg_exe
from preprocessing.names import short_hash
from workflows.cli import main
from workflows.export import export_model, load_model
from workflows.predict import PredictOptions, predict, predict_one

pytestmark = pytest.mark.shared

SMALL = {"input.frames": 5, "input.height": 32, "input.width": 64, "input.audio_window_s": 1.5}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two busy cores: one thread is the faster
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"av": model.pt, "v": model.pt}``: seeded random-init small tiny models."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, use_audio in (("av", True), ("v", False)):
        cfg = tiny().with_overrides(**SMALL, **{"model.use_audio": use_audio})
        torch.manual_seed(0)
        out[name] = export_model(root / name, build_model(cfg), cfg)
    return out


@pytest.fixture(scope="session")
def media(shared_data: Path) -> Path:
    """The real clips (session scope, asked for first: without them a test skips before
    building models or starting Ray)."""
    return shared_data / "media"


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes from the file's first video stream."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def streams(path: Path) -> dict[str, object]:
    """The overlay's video frame count, size, pixel format and its audio codecs."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = [s.codec_context.name for s in container.streams.audio]
        size = (video.codec_context.width, video.codec_context.height)
        pix = video.codec_context.pix_fmt
        codec = video.codec_context.name
    return {
        "frames": decoded_frames(path),
        "size": size,
        "pix": pix,
        "codec": codec,
        "audio": audio,
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_av_video_through_the_cli(media: Path, models: dict[str, Path], tmp_path: Path, capsys):
    clip = media / "realshort.mp4"  # 320×240, 30.02 fps, 36 frames, mono AAC
    out = tmp_path / "out"
    code = main(["--verbose", "predict", str(clip), "--model", str(models["av"]),
                 "--out", str(out), "-q"])  # fmt: skip
    assert code == 0
    folder = out / "realshort"
    n = decoded_frames(clip)
    assert n == 36
    pngs = sorted((folder / "maps").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
    for p in pngs[:: n // 6]:
        with Image.open(p) as img:
            grey = np.asarray(img)
            assert img.mode == "L" and grey.shape == (32, 64)  # the model's output size
        assert grey.max() == 255  # each map scaled to its own maximum
    times = read_csv(folder / "times.csv")
    assert [int(r["frame"]) for r in times] == list(range(n))
    assert float(times[-1]["time_s"]) == pytest.approx(35 / 30.02, abs=1e-3)

    overlay = streams(folder / "overlay.mp4")
    assert overlay["frames"] == n and overlay["size"] == (320, 240)
    assert overlay["codec"] == "h264" and overlay["pix"] == "yuv420p"
    assert overlay["audio"] == ["aac"]

    assert (folder / "relevance.png").read_bytes()[:8] == PNG_MAGIC
    with Image.open(folder / "relevance.png") as img:
        assert img.width >= 600
    rows = read_csv(folder / "relevance.csv")
    assert len(rows) == n
    assert [r["time_s"] for r in rows] == [r["time_s"] for r in times]
    shares = np.array([float(r["audio_share"]) for r in rows])
    assert np.isfinite(shares).all() and (shares >= 0).all() and (shares <= 1).all()
    heads = load_model(models["av"]).config.model.heads
    assert {f"ret_a_b0_h{h}" for h in range(heads)} <= set(rows[0])
    assert all(float(r["ret_v_b0_h0"]) >= 0 for r in rows)

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["frames"] == n and summary["has_audio"] and summary["uses_audio"]
    assert summary["fps"] == pytest.approx(30.02, abs=0.01)
    assert summary["map_size"] == [32, 64] and summary["native_size"] == [240, 320]
    assert summary["config"]["preset"] == "custom" and summary["config"]["input"]["frames"] == 5
    assert summary["mean_audio_share"] == pytest.approx(float(shares.mean()), rel=1e-4)
    assert summary["frames_per_s"] > 0 and summary["notes"] == []
    assert not (folder / ".predict-partial").exists()
    assert "36 maps" in capsys.readouterr().out


def test_visual_model_on_webm_writes_no_relevance(media: Path, models, tmp_path: Path):
    clip = media / "big_buck_bunny_432_433.webm"  # 1280×720 VP8 + Vorbis, 24 frames
    summary = predict(clip, tmp_path, model=models["v"], progress=False, say=lambda _: None)
    folder = tmp_path / "big_buck_bunny_432_433"
    assert summary.results[0]["frames"] == decoded_frames(clip) == 24
    assert len(list((folder / "maps").iterdir())) == 24
    assert not (folder / "relevance.png").exists() and not (folder / "relevance.csv").exists()
    overlay = streams(folder / "overlay.mp4")
    assert overlay["frames"] == 24 and overlay["size"] == (1280, 720)
    assert overlay["audio"] == ["aac"]  # Vorbis re-encoded
    data = json.loads((folder / "summary.json").read_text())
    assert data["audio"] == "not used (visual-only model)" and data["mean_audio_share"] is None


def test_npz_at_native_size_holds_maps_and_times(media: Path, models, tmp_path: Path):
    clip = media / "realshort.mp4"
    options = PredictOptions(format="npz", size="native", overlay=False)
    loaded = load_model(models["av"])
    summary = predict_one(loaded, clip, tmp_path, options)
    folder = tmp_path / "realshort"
    assert sorted(p.name for p in folder.iterdir()) == sorted(summary["outputs"])
    assert not (folder / "maps").exists() and not (folder / "overlay.mp4").exists()
    with np.load(folder / "maps.npz") as data:
        maps, times, fps = data["maps"], data["times"], float(data["fps"])
    assert maps.dtype == np.float32 and maps.shape == (36, 240, 320)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() > 0
    assert fps == pytest.approx(30.02, abs=0.01)
    np.testing.assert_allclose(times, np.arange(36) / fps, atol=1e-9)
    csv_times = [float(r["time_s"]) for r in read_csv(folder / "times.csv")]
    np.testing.assert_allclose(csv_times, times, atol=1e-6)


def test_video_without_audio_runs_as_silence(media: Path, models, tmp_path: Path, capsys):
    clip = tmp_path / "silent.mp4"
    ffmpeg("-i", str(media / "chaplin.mp4"), "-t", "1", "-an", "-c:v", "libx264", str(clip))
    result = predict(clip, tmp_path / "out", model=models["av"], progress=False).results[0]
    assert "silent: no audio track: predicted as silent" in capsys.readouterr().err
    folder = tmp_path / "out" / "silent"
    data = json.loads((folder / "summary.json").read_text())
    assert not data["has_audio"] and data["audio"] == "silence"
    assert data["notes"] == ["no audio track: predicted as silent"]
    n = decoded_frames(clip)
    assert result["frames"] == n == len(list((folder / "maps").iterdir())) == 25
    overlay = streams(folder / "overlay.mp4")
    assert overlay["frames"] == n and overlay["audio"] == []
    assert len(read_csv(folder / "relevance.csv")) == n


def test_one_frame_odd_sized_video_runs_and_a_full_folder_is_refused(
    media: Path, models, tmp_path: Path, capsys
):
    clip = tmp_path / "still.mp4"
    ffmpeg("-i", str(media / "chaplin.mp4"), "-frames:v", "1", "-vf", "scale=321:181",
           "-c:v", "libx264", "-pix_fmt", "yuv444p", str(clip))  # fmt: skip
    out = tmp_path / "out"
    args = ["--verbose", "predict", str(clip), "--model", str(models["av"]), "--out", str(out)]
    assert main([*args, "-q"]) == 0
    folder = out / "still"
    data = json.loads((folder / "summary.json").read_text())
    assert data["frames"] == 1 and len(list((folder / "maps").iterdir())) == 1
    assert any("fewer than the model's window of 5" in note for note in data["notes"])
    overlay = streams(folder / "overlay.mp4")
    assert overlay["frames"] == 1 and overlay["size"] == (322, 182)  # padded to even sides
    capsys.readouterr()

    # The folder now holds files: refused (exit 2, the folder named), nothing touched.
    (folder / "my-notes.txt").write_text("mine")
    before = (folder / "summary.json").read_bytes()
    assert main([*args, "-q"]) == 2
    err = capsys.readouterr().err
    assert f"avrsp predict: error: {folder}: output folder already holds files" in err
    assert "my-notes.txt" in err and "--overwrite" in err
    assert (folder / "summary.json").read_bytes() == before
    # --overwrite replaces predict's outputs (the stale PNG maps too), keeps the rest.
    assert main([*args, "-q", "--overwrite", "--format", "npz"]) == 0
    assert (folder / "maps.npz").is_file() and not (folder / "maps").exists()
    assert (folder / "my-notes.txt").read_text() == "mine"


def test_bad_inputs_are_named(media: Path, models, tmp_path: Path, monkeypatch, capsys):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(InputError, match=r"nope\.mp4: no such video file"):
        predict(missing, tmp_path / "out", model=models["av"], progress=False)
    with pytest.raises(WeightsError, match=r"absent\.pt: no such model file"):
        predict(media / "realshort.mp4", tmp_path / "out", model=tmp_path / "absent.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(WeightsError, match=r"notes\.pt: not a loadable AVRSP model"):
        predict(media / "realshort.mp4", tmp_path / "out", model=text)
    unreadable = tmp_path / "broken.mp4"
    unreadable.write_text("not a video")
    with pytest.raises(InputError, match=r"broken\.mp4"):
        predict(unreadable, tmp_path / "out", model=models["av"], progress=False)
    assert not (tmp_path / "out" / "broken").exists()  # nothing left of the failed run
    # Without --model, predict looks for the demo's model and says how to make one.
    monkeypatch.chdir(tmp_path)
    assert main(["--verbose", "predict", str(media / "realshort.mp4")]) == 2
    err = capsys.readouterr().err
    assert "runs/demo/runs/demo-av/model.pt" in err and "avrsp demo" in err


def test_folder_through_ray_data_reports_broken_files(
    media: Path, ray_session, models, tmp_path: Path, capsys
):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("realshort.mp4", "big_buck_bunny_432_433.webm"):
        shutil.copy(media / name, folder / name)
    ffmpeg("-i", str(media / "chaplin.mp4"), "-t", "2", "-c:v", "libx264", "-c:a", "aac",
           str(folder / "chaplin.mp4"))  # fmt: skip
    (folder / "notes.mp4").write_text("a text file, not a video")
    whole = (media / "realshort.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    (folder / "readme.txt").write_text("not a video suffix: ignored")
    out = tmp_path / "out"
    code = main(["--verbose", "predict", str(folder), "--model", str(models["av"]),
                 "--out", str(out), "--workers", "2", "--format", "npz"])  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    assert "3 of 5 videos done" in captured.out
    failures = json.loads((out / "failures.json").read_text())
    assert sorted(f["name"] for f in failures) == ["cut", "notes"]
    for failure in failures:
        assert failure["video"] == str((folder / f"{failure['name']}.mp4").resolve())
        assert f"{failure['name']}.mp4" in failure["reason"]
        assert f"{failure['name']}: FAILED" in captured.err
        assert not (out / failure["name"]).exists()
    expected = {"realshort": 36, "big_buck_bunny_432_433": 24, "chaplin": 50}
    for name, frames in expected.items():
        data = json.loads((out / name / "summary.json").read_text())
        assert data["frames"] == frames and data["model"] == str(models["av"])
        with np.load(out / name / "maps.npz") as npz:
            assert npz["maps"].shape == (frames, 32, 64)
        assert streams(out / name / "overlay.mp4")["frames"] == frames
    # Re-running into the same folder is refused before any work, naming the folders.
    assert main(["--verbose", "predict", str(folder), "--model", str(models["av"]),
                 "--out", str(out), "--workers", "2"]) == 2  # fmt: skip
    assert "output folders already hold files" in capsys.readouterr().err


def test_a_folder_with_a_dot_dot_stem_writes_only_under_out(media: Path, models, tmp_path: Path):
    """``...mp4`` has the stem ``..``: its outputs go to a folder of its own under --out
    (``~<hash>``), never to --out's parent, and --overwrite leaves the parent's files alone."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("...mp4", "good.mp4"):
        shutil.copy(media / "realshort.mp4", folder / name)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "summary.json").write_text("mine")  # predict-named files in --out's parent
    (fresh / "times.csv").write_text("mine")
    out = fresh / "sub"
    args = ["--verbose", "predict", str(folder), "--model", str(models["v"]), "--out", str(out)]
    assert main([*args, "--workers", "0", "--no-overlay", "-q", "--overwrite"]) == 0
    assert sorted(p.name for p in fresh.iterdir()) == ["sub", "summary.json", "times.csv"]
    assert (fresh / "summary.json").read_text() == (fresh / "times.csv").read_text() == "mine"
    made = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert made == ["good", f"~{short_hash('..')}"]
    for name in made:
        assert json.loads((out / name / "summary.json").read_text())["frames"] > 0
