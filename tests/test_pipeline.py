"""The preprocessing job end to end: bad input reported, the rest finished, resumable;
one run on a local Ray (docs/DATA.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_dataset_sources import gaze_rows, make_video, write_gaze_csv

from avrsp.config import preset
from avrsp.errors import InputError
from preprocessing.pipeline import preprocess
from preprocessing.segments import SegmentOptions
from workflows.commands import preprocess as command

MiB = 1 << 20


def small_options() -> SegmentOptions:
    return SegmentOptions(
        frames=4, height=32, width=48, sample_rate=8000, audio_samples=2000, stride=4
    )


def build_clips(root: Path, names: list[str]) -> Path:
    """``root/videos/<name>.mp4`` (2 s, 10 fps, 20 frames) with gaze for 20 frames each."""
    rows = []
    for name in names:
        make_video(root / "videos" / f"{name}.mp4")
        rows += gaze_rows(name, 20)
    write_gaze_csv(root / "gaze.csv", rows)
    return root


def test_bad_inputs_are_reported_and_the_rest_is_written(tmp_path: Path) -> None:
    root = build_clips(tmp_path / "clips", ["good"])
    videos = root / "videos"
    make_video(videos / "silent.mp4", audio=None)
    make_video(videos / "surround.mp4", audio="5.1")
    make_video(videos / "vfr.mp4", vfr=True)
    make_video(videos / "longgaze.mp4")
    make_video(videos / "outside.mp4")
    data = make_video(tmp_path / "whole.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    (videos / "notvideo.mp4").write_text("this is not a video\n")
    rows = gaze_rows("good", 20) + gaze_rows("silent", 20) + gaze_rows("surround", 20)
    rows += gaze_rows("truncated", 20) + gaze_rows("notvideo", 20)
    rows += gaze_rows("longgaze", 60) + gaze_rows("outside", 20, x=-30.0)
    write_gaze_csv(root / "gaze.csv", rows)
    # The VFR clip's gaze has times (seconds): they map to frames of its CFR decoding.
    timed = [("vfr", 0, 1, 20.0, 12.0, k / 10) for k in range(20)]
    write_gaze_csv(root / "gaze" / "vfr.csv", timed, with_t=True)
    out = tmp_path / "out"
    report = preprocess(
        f"csv:{root}",
        out,
        config=preset("tiny"),
        options=small_options(),
        use_ray=False,
        num_cpus=2,  # two spawned processes; the re-run below works in this process
        log=lambda _: None,
    )
    failures = {f["video"]: f["reason"] for f in json.loads((out / "failures.json").read_text())}
    assert set(failures) == {"truncated", "notvideo", "longgaze", "outside"}
    assert "truncated.mp4" in failures["truncated"] and "notvideo.mp4" in failures["notvideo"]
    assert "another length" in failures["longgaze"]
    assert "fall outside" in failures["outside"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["videos"] == 4 and manifest["failed"] == 4 and manifest["schema_version"] == 1
    # 20 frames, T=4, stride 4 → windows end at 3, 7, 11, 15, 19.
    assert manifest["splits"]["train"] == {"videos": 4, "windows": 18, "bytes": report.bytes}
    done = {p.stem: json.loads(p.read_text()) for p in (out / "done").glob("*.json")}
    assert not done["clips__silent"]["has_audio"] and done["clips__surround"]["has_audio"]
    assert any("downmixed" in n for n in done["clips__surround"]["notes"])
    assert any("variable frame rate" in n for n in done["clips__vfr"]["notes"])
    assert all(d["windows"] == 5 for k, d in done.items() if k != "clips__vfr")
    # VFR: 13 frames over 2 s → resampled to its average 6.84 fps: 14 frames, windows at 3, 7, 11.
    assert done["clips__vfr"]["frames"] == 14 and done["clips__vfr"]["windows"] == 3
    import pyarrow.parquet as pq

    silent = pq.read_table(out / done["clips__silent"]["files"][0]).to_pylist()
    assert not any(r["has_audio"] for r in silent)
    assert all(not any(r["audio"]) for r in silent)
    # A second run touches nothing finished and retries the failures.
    again = preprocess(
        f"csv:{root}",
        out,
        config=preset("tiny"),
        options=small_options(),
        use_ray=False,
        log=lambda _: None,
    )
    assert again.done_before == 4 and again.failed == 4 and again.windows == 18


def test_clear_errors_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"--out .*file.txt/out: output folder cannot be"):
        preprocess(f"csv:{tmp_path / 'nothing'}", blocker / "out", config=preset("tiny"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos found"):
        preprocess(f"csv:{tmp_path / 'empty'}", tmp_path / "out", config=preset("tiny"))


def test_command_parses_and_passes_options(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def fake(source, out, **kw):
        seen.update(source=source, out=out, **kw)

        class R:
            failed = 1

        return R()

    monkeypatch.setattr("preprocessing.pipeline.preprocess", fake)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "preprocess",
            "--source",
            "diem:/d",
            "--out",
            str(tmp_path),
            "--preset",
            "tiny",
            "--stride",
            "3",
            "--screen",
            "1280x960",
            "--max-shard-mb",
            "8",
        ]
    )
    assert args.func(args) == 1  # a failed video gives exit status 1
    assert seen["options"].stride == 3 and seen["options"].frames == 8
    assert seen["options"].max_shard_bytes == 8 * MiB
    assert seen["source_options"]["screen"] == (1280, 960)


def test_ray_job_end_to_end(ray_session, tmp_path: Path) -> None:
    """Through Ray, with names that once collided (``.a``'s shard was taken for a leftover
    of ``a``; ``A`` and ``a`` are one file on a case-insensitive store) or escaped the
    dataset's folder (``...mp4``: video ``..``): every video's shards are there, visible
    to Ray Data's reader, and every done-marker lists files that exist."""
    videos = ["a", ".a", "A", "..", "b"]
    root = build_clips(tmp_path / "clips", videos)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00" * 1000)
    rows = [r for v in videos for r in gaze_rows(v, 20)]
    write_gaze_csv(root / "gaze.csv", rows + gaze_rows("broken", 20))
    out = tmp_path / "out"
    report = preprocess(
        f"csv:{root}", out, config=preset("tiny"), options=small_options(), log=lambda _: None
    )
    assert (report.ok, report.failed, report.windows) == (5, 1, 25)
    assert report.failures[0]["video"] == "broken"
    # The job turned Ray Data's per-operator reservation off for its own dataset only.
    assert ray_session.data.DataContext.get_current().op_resource_reservation_enabled
    ds = ray_session.data.read_parquet(str(out / "shards"))
    assert ds.count() == 25
    assert sorted({r["video"] for r in ds.select_columns(["video"]).take_all()}) == sorted(videos)
    listed = [f for p in (out / "done").glob("*.json") for f in json.loads(p.read_text())["files"]]
    assert len(listed) == 5 and all((out / f).is_file() for f in listed)
    assert len({f.casefold() for f in listed}) == 5
    assert not any(Path(f).name.startswith(".") for f in listed)  # hidden: readers skip them


def test_write_video_writes_the_rows_of_iter_segments(tmp_path: Path) -> None:
    """write_video's shards hold exactly the rows iter_segments gives, for a video with
    audio, a silent one, 5.1 audio and a variable frame rate."""
    import pyarrow.parquet as pq

    from preprocessing.segments import iter_segments, write_video
    from preprocessing.sources import open_source

    root = build_clips(tmp_path / "clips", ["good"])
    make_video(root / "videos" / "silent.mp4", audio=None)
    make_video(root / "videos" / "surround.mp4", audio="5.1")
    make_video(root / "videos" / "vfr.mp4", vfr=True)
    rows = gaze_rows("good", 20) + gaze_rows("silent", 20) + gaze_rows("surround", 20)
    write_gaze_csv(root / "gaze.csv", rows + gaze_rows("vfr", 14))
    opts = small_options()
    for record in open_source(f"csv:{root}").records:
        summary = write_video(record, opts, tmp_path / "out")
        assert summary.status == "ok", summary.reason
        files = [tmp_path / "out" / f for f in summary.files]
        written = pq.read_table(files).to_pylist()
        expected = list(iter_segments(record, opts))
        assert len(written) == len(expected) == summary.windows > 0
        for got, want in zip(written, expected, strict=True):
            assert got["frames_jpeg"] == want["frames_jpeg"]
            assert got["target_png"] == want["target_png"]
            assert np.array_equal(np.asarray(got["audio"], np.float32), want["audio"])
            assert got["has_audio"] == want["has_audio"]
