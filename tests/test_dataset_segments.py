"""Segments and shards (docs/DATA.md): windows, alignment, targets, schema, resumable writes."""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_dataset_sources import (
    NATIVE,
    build_dhf1k,
    build_stavis,
    fixation_of,
)

from avrsp.audio import audio_window
from avrsp.config import preset
from avrsp.errors import InputError
from preprocessing.schema import (
    SCHEMA_VERSION,
    decode_segment,
    encode_map_png,
    jpeg_quant_tables,
    png_gray8,
)
from preprocessing.segments import SegmentOptions, iter_segments, write_video
from preprocessing.sources import dhf1k, stavis

RATE = 8000


def options(**kw) -> SegmentOptions:
    base = dict(
        frames=4, height=32, width=48, sample_rate=RATE, audio_samples=2000, stride=2, sigma_px=2.0
    )
    base.update(kw)
    return SegmentOptions(**base)


@pytest.fixture
def avad(tmp_path: Path):
    root = build_stavis(tmp_path / "stavis", "AVAD", {"v1": 7}, tests={1: ["v1"]}, fps=10.0)
    return root, stavis.read(root).records[0]


def read_rows(out: Path, files: list[str]) -> list[dict]:
    rows = []
    for f in files:
        rows += pq.read_table(out / f).to_pylist()
    return rows


def test_windows_alignment_and_fixation_targets(avad, tmp_path: Path) -> None:
    _, record = avad
    out = tmp_path / "out"
    summary = write_video(record, options(target="fixations"), out)
    assert summary.status == "ok", summary.reason
    # 7 frames, T=4, stride 2 → windows end at frames 3 and 5.
    assert summary.windows == 2 and summary.frames == 7 and summary.has_audio
    assert summary.files == ["shards/cv/AVAD/v1-00000.parquet"]
    table = pq.read_table(out / summary.files[0])
    assert table.schema.metadata[b"avrsp.schema_version"] == str(SCHEMA_VERSION).encode()
    # Snappy for every column but the already compressed JPEG frames and PNG maps.
    group = pq.ParquetFile(out / summary.files[0]).metadata.row_group(0)
    codecs = {group.column(i).path_in_schema: group.column(i).compression for i in range(20)}
    assert codecs.pop("frames_jpeg.list.element") == codecs.pop("target_png") == "UNCOMPRESSED"
    assert set(codecs.values()) == {"SNAPPY"} and len(codecs) == 18
    rows = table.to_pylist()
    assert [r["last_frame"] for r in rows] == [3, 5]
    assert {(r["dataset"], r["video"], r["split"], r["fold"]) for r in rows} == {
        ("AVAD", "v1", "cv", 1)
    }
    seg = decode_segment(rows[1])
    assert seg["frames"].shape == (4, 32, 48, 3) and seg["target"].shape == (32, 48)
    # Frames 2 and 3 are in both windows: encoded once, the same bytes in both rows.
    assert rows[0]["frames_jpeg"][2:] == rows[1]["frames_jpeg"][:2]
    # The JPEGs carry libjpeg's tables for the quality asked (here 90).
    with Image.open(io.BytesIO(rows[0]["frames_jpeg"][0])) as img:
        assert list(img.quantization[0])[1:] == jpeg_quant_tables(90)[0][1:]
    # Frames 2…5 in order: their red channel encodes 10·k (JPEG twice: a few levels off).
    np.testing.assert_allclose(seg["frames"][:, 16, 24, 0], [20, 30, 40, 50], atol=4)
    # Fixation points of frame 5 kept at native resolution; target peaks at its model position.
    x, y = fixation_of(5)
    np.testing.assert_allclose(seg["fixations"], [[x + 0.5, y + 0.5]])
    peak = np.unravel_index(np.argmax(seg["target"]), seg["target"].shape)
    assert abs(peak[0] - (y + 0.5) * 32 / NATIVE[0]) <= 1.0
    assert abs(peak[1] - (x + 0.5) * 48 / NATIVE[1]) <= 1.0
    assert seg["target"].max() == 1.0 and seg["target_source"] == "fixations"
    # Audio: exactly avrsp.audio.audio_window of the wav's samples (the 440 Hz sine).
    t = np.arange(int(7 / 10 * RATE)) / RATE
    wave = np.rint(0.5 * np.sin(2 * np.pi * 440 * t) * 32767) / 32768
    expected = audio_window(
        wave, last_frame=5, frames=4, fps=10.0, sample_rate=RATE, buffer_samples=2000
    )
    np.testing.assert_allclose(seg["audio"], expected, atol=2e-3)
    assert np.abs(seg["audio"]).max() > 0.3 and rows[1]["has_audio"]
    assert rows[1]["native_height"] == NATIVE[0] and rows[1]["fps"] == 10.0


def test_dataset_maps_target_and_options_from_config(avad, tmp_path: Path) -> None:
    _, record = avad
    rows = list(iter_segments(record, options()))  # target=auto: the shipped eyeMaps
    seg = decode_segment(rows[0])
    assert seg["target_source"] == "dataset"
    assert seg["target"][:, :20].mean() > 0.9 and seg["target"][:, 28:].max() < 0.05
    tiny = preset("tiny").input
    opts = SegmentOptions.from_config(preset("tiny"))
    assert (opts.frames, opts.height, opts.width) == (tiny.frames, tiny.height, tiny.width)
    assert opts.stride == tiny.frames // 2 and opts.sample_rate == tiny.sample_rate
    assert opts.audio_samples == round(tiny.audio_window_s * tiny.sample_rate)
    with pytest.raises(InputError, match="stride"):
        SegmentOptions.from_config(preset("tiny"), stride=0)


def test_short_video_is_padded_and_visual_only_has_no_audio(tmp_path: Path) -> None:
    root = build_dhf1k(tmp_path / "dhf1k", {5: 2})
    record = dhf1k.read(root).records[0]
    rows = list(iter_segments(record, options(target="fixations", jpeg_quality=60)))
    assert len(rows) == 1 and rows[0]["last_frame"] == 1 and not rows[0]["has_audio"]
    with Image.open(io.BytesIO(rows[0]["frames_jpeg"][0])) as img:  # the quality asked
        assert list(img.quantization[0])[1:] == jpeg_quant_tables(60)[0][1:]
    seg = decode_segment(rows[0])
    # Two frames, T=4: the first frame repeated twice in front.
    np.testing.assert_allclose(seg["frames"][:, 16, 24, 0], [0, 0, 0, 10], atol=4)
    assert not seg["audio"].any()


def test_shards_split_by_size_resume_and_leftovers(avad, tmp_path: Path) -> None:
    _, record = avad
    out = tmp_path / "out"
    folder = out / "shards" / "cv" / "AVAD"
    folder.mkdir(parents=True)
    (folder / ".v1-00003.parquet.tmp").write_bytes(b"half")  # a crashed run's leftovers
    (folder / "v1-00009.parquet").write_bytes(b"old")
    (folder / "v10-00000.parquet").write_bytes(b"another video")
    # ~32 KB of audio per row, files close at 64 KiB: 4 windows → 2 files.
    opts = options(stride=1, audio_samples=8000, max_shard_bytes=64 * 1024, row_group_bytes=1)
    first = write_video(record, opts, out)
    assert first.status == "ok" and first.windows == 4
    assert first.files == ["shards/cv/AVAD/v1-00000.parquet", "shards/cv/AVAD/v1-00001.parquet"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["v1-00000.parquet", "v1-00001.parquet", "v10-00000.parquet"]
    assert [r["last_frame"] for r in read_rows(out, first.files)] == [3, 4, 5, 6]
    marker = json.loads((out / "done" / "AVAD__v1.json").read_text())
    assert marker["windows"] == 4 and marker["bytes"] == first.bytes
    stamp = (folder / "v1-00000.parquet").stat().st_mtime_ns
    again = write_video(record, opts, out)
    assert again.status == "done_before" and again.windows == 4
    assert (folder / "v1-00000.parquet").stat().st_mtime_ns == stamp


def test_annotation_problems_fail_without_leaving_files(avad, tmp_path: Path) -> None:
    root, record = avad
    out = tmp_path / "out"
    extra = root / "annotations" / "AVAD" / "v1" / "fixMap_00008.mat"
    shutil.copy(root / "annotations" / "AVAD" / "v1" / "fixMap_00007.mat", extra)
    summary = write_video(record, options(target="fixations"), out)
    assert summary.status == "failed" and "go beyond the video's 7 frames" in summary.reason
    assert not list(out.rglob("*.parquet*")) and not (out / "done").exists()
    # Points all outside the frame (gaze in the wrong coordinates).
    away = replace(record.fixations, kind="gaze_csv", pattern=None, video_name="v1")
    csv = tmp_path / "gaze.csv"
    csv.write_text("video,frame,observer,x,y\n" + "".join(f"v1,{k},1,-40,5\n" for k in range(7)))
    bad = replace(record, fixations=replace(away, paths=(str(csv),)), maps_pattern=None)
    summary = write_video(bad, options(), out)
    assert (
        summary.status == "failed"
        and "all 2 gaze points of the windows' last frames fall outside" in summary.reason
    )
    assert not list(out.rglob("*.parquet*"))


def test_png_writer_round_trips_through_pillow() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((1, 1), (3, 5), (40, 1))]
    # A smooth map with a jump down the rows (the "Up" filter wraps modulo 256).
    yy, xx = np.mgrid[0:224, 0:384]
    smooth = np.exp(-((xx - 200.0) ** 2 + (yy - 90.0) ** 2) / 800.0)
    smooth[100:] = 1.0 - smooth[100:]
    images.append(np.rint(smooth * 255).astype(np.uint8))
    for image in images:
        with Image.open(io.BytesIO(png_gray8(image))) as png:
            assert png.format == "PNG" and png.mode == "L" and png.size == image.shape[::-1]
            assert np.array_equal(np.asarray(png), image)
    with Image.open(io.BytesIO(encode_map_png(smooth * 7.0))) as png:
        assert np.array_equal(np.asarray(png), images[-1])
    with pytest.raises(ValueError, match="non-empty"):
        png_gray8(np.zeros((0, 4), np.uint8))


def test_a_video_in_two_folds_test_lists_is_a_test_row_of_each(tmp_path: Path) -> None:
    """AVAD's published lists put three videos in two folds' test lists: their shard rows
    are test rows of both folds and training rows of the third only."""
    from workflows.data import SplitSpec, fixed_windows

    root = build_stavis(
        tmp_path / "stavis", "AVAD", {"v1": 7, "v2": 11}, tests={1: ["v1", "v2"], 2: ["v1"]}
    )
    out = tmp_path / "out"
    records = {r.video_id: r for r in stavis.read(root).records}
    assert records["v1"].test_folds == (1, 2) and records["v2"].test_folds == (1,)
    files = []
    for rec in records.values():
        files += [str(out / f) for f in write_video(rec, options(), out).files]
    size = {"v1": 2, "v2": 4}  # windows: 7 and 11 frames, T=4, stride 2

    def windows(fold: int, test: bool) -> int:
        rows = fixed_windows(files, 100, preset("tiny"), SplitSpec("cv", fold, test))
        return len(rows["frames"]) if rows else 0

    assert (windows(1, True), windows(1, False)) == (size["v1"] + size["v2"], 0)
    assert (windows(2, True), windows(2, False)) == (size["v1"], size["v2"])
    assert (windows(3, True), windows(3, False)) == (0, size["v1"] + size["v2"])
