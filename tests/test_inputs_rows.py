"""Careless input through ``avrsp preprocess`` (team issue 19, points 4–8): bad gaze rows are
dropped and named, not whole videos; still images are not videos; option and file checks
come before Ray starts; messages name what is wrong; a SIGKILLed run leaves no Ray process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_dataset_sources import ffmpeg_exe, gaze_rows, make_video, write_gaze_csv
from waiting import wait_until

from preprocessing import records
from workflows.cli import main

REPO = Path(__file__).resolve().parents[1]
HEADER = "video,frame,observer,x,y"


def clip_folder(root: Path, names: list[str], frames: int = 20) -> Path:
    """``root/videos/<name>.mp4`` (2 s at 10 fps: 20 frames) and ``root/gaze.csv`` with two
    observers on every frame of each."""
    rows = []
    for name in names:
        make_video(root / "videos" / f"{name}.mp4", audio=None)
        rows += gaze_rows(name, frames)
    write_gaze_csv(root / "gaze.csv", rows)
    return root


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def preprocess(source: Path, out: Path, *extra: str) -> int:
    """``avrsp preprocess`` in this process, without Ray (the per-video work is the same);
    the tiny preset: T = 8, stride 4, so a 20-frame clip has windows ending at 7, 11, 15, 19."""
    args = ["--verbose", "preprocess", "--source", f"csv:{source}", "--out", str(out)]
    return main([*args, "--preset", "tiny", "--no-ray", "--num-cpus", "1", *extra])


def done_marker(out: Path, video: str) -> dict:
    return json.loads(next((out / "done").glob(f"*__{video}.json")).read_text())


def failures(out: Path) -> dict[str, str]:
    return {f["video"]: f["reason"] for f in json.loads((out / "failures.json").read_text())}


# ----------------------------------------------------------------------------- point 4


def test_one_bad_cell_drops_its_row_not_the_video(tmp_path: Path, capsys) -> None:
    root = clip_folder(tmp_path / "clips", ["a"])
    gaze = root / "gaze.csv"
    rows = lines_of(gaze)
    bad_line = 1 + rows.index("a,7,0,20.0,12.0")  # 1-based file line of frame 7, observer 0
    rows[bad_line - 1] = "a,7,0,abc,12.0"
    gaze.write_text("\n".join(rows) + "\n")

    assert preprocess(root, tmp_path / "out") == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["windows"] == 4 and manifest["failed"] == 0
    assert manifest["dropped_rows"] == [
        {
            "dataset": "clips",
            "video": "a",
            "rows": 1,
            "files": [
                {
                    "file": str(gaze),
                    "rows": 1,
                    "lines": [bad_line],
                    "reasons": [f"line {bad_line}: not a number in x='abc'"],
                }
            ],
        }
    ]
    # Only that row is gone: frame 7 (the first window's last frame) keeps one point of two.
    assert done_marker(tmp_path / "out", "a")["fixation_points"] == 4 * 2 - 1
    assert f"DROPPED ROWS clips/a: 1 gaze row dropped ({gaze} line {bad_line}: " in out

    # --strict: the same row fails the video, named by file and line.
    assert preprocess(root, tmp_path / "strict", "--strict") == 1
    reason = failures(tmp_path / "strict")["a"]
    assert reason.startswith(f"{gaze}, line {bad_line}: not a number in x='abc'")


def test_row_reasons_and_a_video_left_without_a_window(tmp_path: Path) -> None:
    """Each kind of bad row is dropped with its line and reason; ``frame`` 3.0 is frame 3.
    A video fails only when what is left makes no window, and says what was dropped."""
    root = clip_folder(tmp_path / "clips", ["a", "b"])
    gaze = root / "gaze.csv"
    extra = [
        "a,3.5,0,1,1",  # not a whole frame
        "a,-1,0,1,1",  # negative frame
        "a,2",  # too few fields
        "a,7,1,inf,1",  # not finite
        "a,7.0,2,30,12",  # frame 7.0 is frame 7: kept
    ]
    body = lines_of(gaze)
    first = len(body) + 1
    gaze.write_text("\n".join(body + extra) + "\n")
    per_clip = root / "gaze" / "b.csv"
    per_clip.parent.mkdir()
    per_clip.write_text(HEADER + "\n" + "".join(f"b,{k},0,x{k},5\n" for k in range(20)))

    assert preprocess(root, tmp_path / "out") == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = manifest["dropped_rows"]
    (file,) = entry["files"]
    assert entry["video"] == "a" and file["rows"] == 4
    assert file["lines"] == [first, first + 1, first + 2, first + 3]
    assert file["reasons"] == [
        f"line {first}: not a whole frame index in frame='3.5' (a time in seconds goes in "
        "column t)",
        f"line {first + 1}: negative frame index in frame='-1'",
        f"line {first + 2}: 2 fields, the header has 5",
    ]  # the first three reasons only
    assert done_marker(tmp_path / "out", "a")["fixation_points"] == 4 * 2 + 1  # + frame 7.0
    reason = failures(tmp_path / "out")["b"]
    assert "clips/b: no window has a target map" in reason
    assert reason.endswith(
        f"it has no gaze point at all; 20 gaze rows dropped ({per_clip}: 20 rows, lines "
        "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21; "
        "line 2: not a number in x='x0'; line 3: not a number in x='x1'; "
        "line 4: not a number in x='x2')"
    )


def test_diem_event_lines_are_dropped_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "p1.txt"
    good = "{f} 10 20 0 1 12 22 0 1\n"
    path.write_text(good.format(f=1) + "2 10 20 0 x 12 22 0 1\n" + "3 10\n" + good.format(f=4))
    dropped = records.DroppedRows()
    frames, points, last = records.read_diem_events([str(path)], dropped=dropped)
    np.testing.assert_array_equal(frames, [0, 3])  # 1-based frames 1 and 4
    np.testing.assert_array_equal(points, [[11, 21], [11, 21]])
    assert last == {str(path): 3}
    assert dropped.to_list() == [
        {
            "file": str(path),
            "rows": 2,
            "lines": [2, 3],
            "reasons": ["line 2: not a number in field 5 ('x')", "line 3: 2 fields, a DIEM "
                        "event line has 9"],
        }
    ]  # fmt: skip
    with pytest.raises(Exception, match=r"p1.txt, line 2: not a number in field 5"):
        records.read_diem_events([str(path)])  # without a collector: the first bad line fails


def test_times_before_the_first_frame_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_bytes(b"\xef\xbb\xbfvideo,frame,observer,x,y,t\nc,,1,2,3,-1.0\nc,,1,4,5,0.04\n")
    dropped = records.DroppedRows()
    frames, points = records.read_gaze_csv([str(path)], "c", fps=25.0, dropped=dropped)
    assert frames.tolist() == [1] and points.tolist() == [[4, 5]]
    assert dropped.to_list()[0]["reasons"] == ["line 2: t=-1 s is before the first frame"]


# ----------------------------------------------------------------------------- point 5


def test_still_images_and_single_frames_are_not_videos(tmp_path: Path) -> None:
    root = clip_folder(tmp_path / "clips", ["good"])
    videos = root / "videos"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    (videos / "still.avi").write_bytes((tmp_path / "s.png").read_bytes())
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
         "-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(videos / "one.mp4")],
        check=True,
    )  # fmt: skip
    rows = gaze_rows("good", 20) + gaze_rows("still", 10) + gaze_rows("one", 1)
    write_gaze_csv(root / "gaze.csv", rows)

    assert preprocess(root, tmp_path / "out") == 1
    reasons = failures(tmp_path / "out")
    assert set(reasons) == {"still", "one"}
    assert reasons["still"] == (
        f"{videos / 'still.avi'}: not a video: a still png image (FFmpeg's png_pipe reader "
        "found one frame); a video needs at least 2 frames"
    )
    assert reasons["one"].startswith(f"{videos / 'one.mp4'}: not a video: a single h264 frame")


# ----------------------------------------------------------------------------- point 6, 7


@pytest.fixture
def no_ray(monkeypatch) -> list:
    """Records a start of Ray by the job (and refuses it): checks must all come before."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("Ray was started before the inputs were checked")

    monkeypatch.setattr("preprocessing.pipeline.init_ray", refuse)
    return calls


def run_with_ray(source: str, out: Path, *extra: str) -> int:
    args = ["--verbose", "preprocess", "--source", source, "--out", str(out)]
    return main([*args, *(extra or ("--preset", "tiny"))])


@pytest.mark.parametrize(
    ("header", "extra", "message"),
    [
        ("video,frame,x,y", (), "gaze.csv: gaze CSV lacks column(s) observer (header: video, "
         "frame, x, y); expected video, frame, observer, x, y [, t]"),
        ("video,frame,observer,x", (), "lacks column(s) y"),
        (HEADER, ("--sigma-px", "-5"), "sigma_px must be a positive number of pixels, got -5.0"),
        (HEADER, ("--num-cpus", "-2"), "--num-cpus must be >= 1, got -2"),
        (HEADER, ("--target", "dataset"), "ships no saliency maps of its own"),
        ("", (), "gaze.csv: gaze CSV is empty (no header line); expected the columns video"),
    ],
)  # fmt: skip
def test_checks_before_ray_starts(tmp_path, no_ray, capsys, header, extra, message) -> None:
    make_video(tmp_path / "clips" / "videos" / "a.mp4", audio=None)
    rows = "".join(f"a,{k},0,20,12\n" for k in range(20)) if header else ""
    (tmp_path / "clips" / "gaze.csv").write_text(f"{header}\n{rows}" if header else "")
    assert (
        run_with_ray(f"csv:{tmp_path / 'clips'}", tmp_path / "out", "--preset", "tiny", *extra) == 2
    )
    assert message in capsys.readouterr().err
    assert no_ray == []


def test_messages_for_missing_gaze_files_and_configs(tmp_path: Path, no_ray, capsys) -> None:
    make_video(tmp_path / "clips" / "videos" / "a.mp4", audio=None)
    assert run_with_ray(f"csv:{tmp_path / 'clips'}", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'clips'}: no gaze CSV: expected {tmp_path / 'clips' / 'gaze.csv'}" in err
    # A training config where a model config belongs: said once, with what was expected.
    write_gaze_csv(tmp_path / "clips" / "gaze.csv", gaze_rows("a", 20))
    stage1 = REPO / "configs" / "stage1.yaml"
    assert run_with_ray(f"csv:{tmp_path / 'clips'}", tmp_path / "out", "--config", str(stage1))
    err = capsys.readouterr().err
    assert f"{stage1}: not a model config: expected the sections input, model, loss" in err
    assert "training config" in err and "Extra inputs" not in err
    assert no_ray == []


def test_skipped_videos_and_windows_without_gaze_are_explained(tmp_path: Path, capsys) -> None:
    root = clip_folder(tmp_path / "clips", ["a"])
    # Gaze for a clip without a file (skipped), and for "a" only off the windows' last frames.
    rows = gaze_rows("orphan", 5) + [("a", k, 0, 20, 12) for k in (0, 1, 2, 3, 9)]
    write_gaze_csv(root / "gaze.csv", rows)
    assert preprocess(root, tmp_path / "out") == 1
    out = capsys.readouterr().out
    assert f"SKIPPED clips/orphan: gaze rows but no video file in {root / 'videos'}" in out
    assert failures(tmp_path / "out")["a"] == (
        "clips/a: no window has a target map: none of the last frames of its 4 windows "
        "(7, 11, 15, 19) has a map or a fixation; its gaze is on frames 0–3, 9"
    )


# ----------------------------------------------------------------------------- point 8


def _ray_agents(procs: dict) -> list[int]:
    names = ("dashboard/agent.py", "runtime_env/agent/main.py", "DashboardAgent", "RuntimeEnvAgent")
    return [pid for pid, text in procs.items() if any(n in text for n in names)]


@pytest.mark.slow
def test_sigkill_of_preprocess_leaves_no_ray_process(tmp_path: Path) -> None:
    """SIGKILL of the command right after Ray started its agents (when Ray 2.60's agents
    alone lingered 60–120 s): everything started below it is gone within seconds."""
    import psutil

    root = clip_folder(tmp_path / "clips", ["a", "b"])
    command = [sys.executable, "-m", "workflows.cli", "preprocess", "--source", f"csv:{root}",
               "--out", str(tmp_path / "out"), "--preset", "tiny", "--num-cpus", "1"]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    cli = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    seen: dict[int, psutil.Process] = {}
    text: dict[int, str] = {}
    alive: list[psutil.Process] = []

    def agents_started() -> bool:
        assert cli.poll() is None, "the command ended before Ray started its agents"
        for proc in parent.children(recursive=True):
            try:
                text[proc.pid] = " ".join(proc.cmdline())
                seen.setdefault(proc.pid, proc)
            except psutil.Error:
                pass
        return len(_ray_agents(text)) >= 2

    def all_ended() -> bool:
        alive[:] = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        return not alive

    def ended_after_sigkill() -> str:
        return f"its processes to end after SIGKILL (alive: {[text.get(p.pid) for p in alive]})"

    try:
        parent = psutil.Process(cli.pid)
        wait_until(agents_started, 120, 0.1, "Ray's agents to start")
        time.sleep(0.5)
        for proc in parent.children(recursive=True):
            seen.setdefault(proc.pid, proc)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        alive[:] = seen.values()
        wait_until(all_ended, 10, 0.25, ended_after_sigkill)
    finally:
        if cli.poll() is None:
            cli.kill()
        for proc in seen.values():  # only what this test's command started, by pid
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.Error:
                pass
