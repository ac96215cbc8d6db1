"""Dataset readers on tiny fixture trees built in the published layouts (docs/DATA.md).

The builders here (``build_dhf1k``, ``build_stavis``, ``make_video``, …) are also used by
tests/test_dataset_segments.py and tests/test_pipeline.py.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from avrsp.errors import InputError
from preprocessing.names import short_hash
from preprocessing.records import FixationSource, ScreenMapping, VideoRecord, read_gaze_csv
from preprocessing.sources import dhf1k, open_source, parse_source, stavis

# ----------------------------------------------------------------------------- builders

NATIVE = (18, 32)  # (H, W) of the fixture frames


def frame_image(k: int, size: tuple[int, int] = NATIVE) -> np.ndarray:
    """A frame whose colour encodes its index (R = 10·k), so order is checkable."""
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0] = (10 * k) % 256
    img[..., 1] = 80
    return img


def binary_map(points: list[tuple[int, int]], size: tuple[int, int] = NATIVE) -> np.ndarray:
    grid = np.zeros(size, np.uint8)
    for x, y in points:
        grid[y, x] = 255
    return grid


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def fixation_of(k: int) -> tuple[int, int]:
    """The single fixated pixel (x, y) of fixture frame k."""
    return (3 + k) % NATIVE[1], (2 + k) % NATIVE[0]


def build_dhf1k(root: Path, videos: dict[int, int], annotated: bool = True) -> Path:
    """``root/<vid>/{images,maps,fixation}/%04d.png`` for {video number: frame count}."""
    for number, count in videos.items():
        folder = root / f"{number:04d}"
        (folder / "images").mkdir(parents=True)
        for k in range(count):
            Image.fromarray(frame_image(k)).save(folder / "images" / f"{k + 1:04d}.png")
            if annotated and number <= 700:
                for sub in ("maps", "fixation"):
                    (folder / sub).mkdir(exist_ok=True)
                fix = binary_map([fixation_of(k)])
                Image.fromarray(fix).save(folder / "fixation" / f"{k + 1:04d}.png")
                Image.fromarray(fix).save(folder / "maps" / f"{k + 1:04d}.png")
    return root


def build_stavis(
    root: Path,
    dataset: str,
    videos: dict[str, int],
    *,
    tests: dict[int, list[str]] | None = None,
    fps: float = 10.0,
    sample_rate: int = 8000,
    lists_in_root: bool = False,
) -> Path:
    """The STAViS layout for one dataset: frames, wav, eyeMaps, fixMaps and fold lists.

    ``tests`` = {fold: [video, …]}; DIEM gets one fixed split (``tests[0]`` = its test videos).
    """
    for vid, count in videos.items():
        frames = root / "video_frames" / dataset / vid
        ann = root / "annotations" / dataset / vid
        (ann / "maps").mkdir(parents=True)
        frames.mkdir(parents=True)
        for k in range(count):
            Image.fromarray(frame_image(k)).save(frames / f"img_{k + 1:05d}.jpg", quality=95)
            eye = np.zeros(NATIVE, np.float32)
            eye[fixation_of(k)[1], fixation_of(k)[0]] = 1
            scipy.io.savemat(ann / f"fixMap_{k + 1:05d}.mat", {"eyeMap": eye})
            smooth = np.zeros(NATIVE, np.uint8)
            smooth[:, : NATIVE[1] // 2] = 200  # left half salient
            Image.fromarray(smooth).save(ann / "maps" / f"eyeMap_{k + 1:05d}.jpg", quality=95)
        t = np.arange(int(count / fps * sample_rate)) / sample_rate
        write_wav(
            root / "video_audio" / dataset / vid / f"{vid}.wav",
            0.5 * np.sin(2 * np.pi * 440 * t),
            sample_rate,
        )
    lists = root if lists_in_root else root / "fold_lists"
    lists.mkdir(parents=True, exist_ok=True)
    tests = tests or {}

    def write(name: str, names: list[str]) -> None:
        lines = [f"{v} {videos[v]} {fps:g}" for v in names]
        (lists / name).write_text("\n".join(lines) + "\n")

    if dataset == "DIEM":
        test = tests.get(0, [])
        write("DIEM_list_test_fps.txt", test)
        write("DIEM_list_train_fps.txt", [v for v in videos if v not in test])
    else:
        for fold in (1, 2, 3):
            test = tests.get(fold, [])
            write(f"{dataset}_list_test_{fold}_fps.txt", test)
            write(f"{dataset}_list_train_{fold}_fps.txt", [v for v in videos if v not in test])
    return root


def ffmpeg_exe() -> str:
    try:
        from preprocessing.media import ffmpeg_exe as exe

        return exe()
    except ImportError:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()


def make_video(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (48, 64),
    audio: str | None = "mono",
    vfr: bool = False,
) -> Path:
    """A test clip made by ffmpeg: ``audio`` None, ``"mono"``, ``"stereo"`` or ``"5.1"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio is not None:
        layout = {"mono": "mono", "stereo": "stereo", "5.1": "5.1"}[audio]
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={seconds}"]
        args += ["-af", f"aformat=channel_layouts={layout}", "-c:a", "aac"]
    if vfr:
        args += ["-vf", r"select=mod(n\,3)", "-fps_mode", "vfr"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", "-movflags", "+faststart"]
    args.append(str(path))
    subprocess.run(args, check=True, capture_output=True)
    return path


def write_gaze_csv(path: Path, rows: list[tuple], with_t: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "video,frame,observer,x,y" + (",t" if with_t else "")
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def gaze_rows(video: str, frames: int, x: float = 20.0, y: float = 12.0) -> list[tuple]:
    return [(video, k, obs, x + obs, y) for k in range(frames) for obs in range(2)]


# ----------------------------------------------------------------------------- DHF1K


def test_dhf1k_splits_by_number_and_skips_unannotated_test(tmp_path: Path) -> None:
    root = build_dhf1k(tmp_path / "dhf1k", {1: 3, 600: 2, 601: 2, 701: 2})
    listing = dhf1k.read(root)
    by_id = {r.video_id: r for r in listing.records}
    assert {k: r.split for k, r in by_id.items()} == {
        "0001": "train",
        "0600": "train",
        "0601": "val",
    }
    assert [s["video"] for s in listing.skipped] == ["0701"]
    rec = by_id["0001"]
    assert rec.num_frames == 3 and rec.fps == 30.0 and rec.first_index == 1
    assert rec.frame_file(0).name == "0001.png" and rec.map_file(2).name == "0003.png"
    assert rec.fixations.kind == "binary_image" and rec.audio is None
    # Binary map → points at pixel centres, frame by frame (0-based frame k ↔ file k+1).
    loader = rec.fixations.open(fps=30.0, native_size=NATIVE)
    for k in range(3):
        x, y = fixation_of(k)
        np.testing.assert_array_equal(loader(k), [[x + 0.5, y + 0.5]])
    loader.check(3)
    with pytest.raises(InputError, match="beyond"):
        loader.check(2)
    with pytest.raises(InputError, match="missing"):
        loader.check(4)


def test_dhf1k_nested_fixation_maps_and_count_mismatch(tmp_path: Path) -> None:
    root = build_dhf1k(tmp_path / "d", {2: 2, 3: 3})
    nested = root / "0002" / "fixation" / "maps"
    nested.mkdir()
    for f in sorted((root / "0002" / "fixation").glob("*.png")):
        f.rename(nested / f.name)
    (root / "0003" / "fixation" / "0003.png").unlink()
    (root / "0003" / "maps" / "0003.png").unlink()
    listing = dhf1k.read(root)
    assert [r.video_id for r in listing.records] == ["0002"]
    assert listing.records[0].fixations.pattern.endswith("fixation/maps/%04d.png")
    assert listing.failed[0]["video"] == "0003" and "3 frames but 2" in listing.failed[0]["reason"]


def test_binary_annotation_rescaled_to_native_size(tmp_path: Path) -> None:
    grid = binary_map([(4, 2)], size=(9, 16))  # annotation at half the video's size
    Image.fromarray(grid).save(tmp_path / "0001.png")
    source = FixationSource(kind="binary_image", pattern=str(tmp_path / "%04d.png"))
    points = source.open(fps=30, native_size=(18, 32))(0)
    np.testing.assert_allclose(points, [[9.0, 5.0]])


# ----------------------------------------------------------------------------- STAViS


def test_stavis_folds_fixed_split_and_lists_in_root(tmp_path: Path) -> None:
    root = tmp_path / "stavis"
    build_stavis(root, "AVAD", {"v1": 3, "v2": 3, "v3": 3}, tests={1: ["v1"], 2: ["v2"]})
    build_stavis(root, "DIEM", {"d1": 2, "d2": 2}, tests={0: ["d2"]}, lists_in_root=True)
    (root / "video_frames" / "AVAD" / "extra").mkdir()  # a folder in no list
    listing = stavis.read(root)
    got = {(r.dataset, r.video_id): (r.split, r.fold) for r in listing.records}
    assert got == {
        ("AVAD", "v1"): ("cv", 1),
        ("AVAD", "v2"): ("cv", 2),
        ("AVAD", "v3"): ("train", 0),
        ("DIEM", "d1"): ("train", 0),
        ("DIEM", "d2"): ("test", 0),
    }
    assert listing.skipped == [
        {"dataset": "AVAD", "video": "extra", "reason": "not in any fold list (fps unknown)"}
    ]
    rec = next(r for r in listing.records if r.video_id == "v1")
    assert (
        rec.fps == 10.0 and rec.num_frames == 3 and rec.audio.endswith("video_audio/AVAD/v1/v1.wav")
    )
    assert rec.frame_file(0).name == "img_00001.jpg"
    assert rec.map_file(1).name == "eyeMap_00002.jpg"
    loader = rec.fixations.open(fps=10.0, native_size=NATIVE)
    x, y = fixation_of(2)
    np.testing.assert_array_equal(loader(2), [[x + 0.5, y + 0.5]])
    assert loader(7).shape == (0, 2)  # a frame without a file has no points


def test_stavis_fold_list_problems(tmp_path: Path) -> None:
    root = build_stavis(tmp_path / "s", "SumMe", {"a": 3, "b": 3}, tests={1: ["a"]})
    (root / "fold_lists" / "SumMe_list_test_2_fps.txt").write_text("a 3 10\n")
    (a,) = [r for r in stavis.read(root).records if r.video_id == "a"]
    assert a.test_folds == (1, 2)  # in two folds' test lists, as three of AVAD's
    (root / "fold_lists" / "SumMe_list_test_2_fps.txt").write_text("a 4 10\n")
    with pytest.raises(InputError, match="'a' has 4 frames at 10 fps, the test list of fold 1"):
        stavis.read(root)
    (root / "fold_lists" / "SumMe_list_test_2_fps.txt").write_text("b 30 10\nghost 3 10\n")
    listing = stavis.read(root)
    reasons = {f["video"]: f["reason"] for f in listing.failed}
    assert "3 frames on disk but the fold list says 30" in reasons["b"]
    assert "listed but missing" in reasons["ghost"]
    (root / "fold_lists" / "SumMe_list_test_2_fps.txt").write_text("b three 10\n")
    with pytest.raises(InputError, match=r"line 1: nframes/fps not numbers"):
        stavis.read(root)


# ----------------------------------------------------------------------------- gaze


def test_csv_source_splits_and_time_column(tmp_path: Path) -> None:
    root = tmp_path / "csv"
    (root / "videos").mkdir(parents=True)
    for name in ("a", "b", "nogaze"):
        (root / "videos" / f"{name}.mp4").write_bytes(b"")
    write_gaze_csv(
        root / "gaze.csv",
        [("a.mp4", 0, 1, 5, 6, ""), ("a", 99, 1, 7, 8, 0.25), ("orphan", 0, 1, 1, 1, "")],
        with_t=True,
    )
    write_gaze_csv(root / "gaze" / "b.csv", [("b", 3, 1, 1.5, 2.5)])
    (root / "splits.csv").write_text("video,split,fold\na,val,0\n")
    listing = open_source(f"csv:{root}")
    recs = {r.video_id: r for r in listing.records}
    assert recs["a"].split == "val" and recs["b"].split == "train"
    assert recs["a"].audio == recs["a"].frames  # soundtrack from the video itself
    assert [f["video"] for f in listing.failed] == ["nogaze"]
    assert [s["video"] for s in listing.skipped] == ["orphan"]
    # t = 0.25 s at 25 fps → frame round(6.25) = 6 (t wins over the frame column's 99).
    loader = recs["a"].fixations.open(fps=25.0, native_size=NATIVE)
    np.testing.assert_array_equal(loader(0), [[5, 6]])
    np.testing.assert_array_equal(loader(6), [[7, 8]])
    assert loader(99).shape == (0, 2)
    loader_b = recs["b"].fixations.open(fps=25.0, native_size=NATIVE)
    np.testing.assert_array_equal(loader_b(3), [[1.5, 2.5]])
    loader_b.check(4)
    with pytest.raises(InputError, match="another length"):
        loader_b.check(1)  # frame 3 is past a 1-frame video's end (+2 frames tolerance)


def test_gaze_csv_reader_rows_times_and_bad_lines(tmp_path: Path) -> None:
    """Columns in any order, blank lines, lost tracking, other clips' rows, times that win
    over frames (rounded at frame centres); a short row and a non-number name their line."""
    path = tmp_path / "g.csv"
    path.write_text(
        "t, y,observer,video,x,frame\n"
        "0.02,2,1,c.mp4,1,7\n"  # t = 0.02 s at 25 fps → frame round(0.5) = 1
        "\n"
        ",4,1,c,3,5\n"  # no time: the frame column
        "0.1,,1,c,9,0\n"  # lost tracking
        ",6,1,other,5,0\n"
        "0.019,8,2,c,7,0\n"  # → frame 0
    )
    frames, points = read_gaze_csv([str(path)], "c", fps=25.0)
    np.testing.assert_array_equal(frames, [1, 5, 0])
    np.testing.assert_array_equal(points, [[1, 2], [3, 4], [7, 8]])
    assert points.dtype == np.float32 and frames.dtype == np.int64
    assert read_gaze_csv([str(path)], None, fps=25.0)[0].tolist() == [1, 5, 0, 0]
    path.write_text("video,frame,observer,x,y\nc,0,1,2,3\nc,1,1,2\n")
    with pytest.raises(InputError, match=r"g.csv, line 3: 4 fields"):
        read_gaze_csv([str(path)], "c", fps=25.0)
    path.write_text("video,frame,observer,x,y\nc,0,1,2,3\nc,one,1,2,3\n")
    with pytest.raises(InputError, match=r"g.csv, line 3: not a number in .*frame='one'"):
        read_gaze_csv([str(path)], "c", fps=25.0)
    path.write_text("video,frame,observer,x,y\nc,-1,1,2,3\n")
    with pytest.raises(InputError, match="negative frame"):
        read_gaze_csv([str(path)], "c", fps=25.0)
    assert read_gaze_csv([str(path)], "d", fps=25.0)[1].shape == (0, 2)


def test_csv_missing_columns_is_clear(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")
    (tmp_path / "gaze.csv").write_text("video,frame,x,y\na,0,1,1\n")
    with pytest.raises(InputError, match=r"gaze.csv: gaze CSV lacks column.*observer"):
        open_source(f"csv:{tmp_path}")  # at listing, before any video is decoded


def test_diem_events_screen_mapping_and_length(tmp_path: Path) -> None:
    clip = tmp_path / "diem" / "clip1"
    (clip / "video").mkdir(parents=True)
    (clip / "video" / "clip1.mp4").write_bytes(b"")
    (clip / "event_data").mkdir()
    # frame lx ly ld le rx ry rd re; screen 200×100, video 32×18 fitted: s = 100/18.
    lines = [
        "1 100 50 1 1 110 50 1 1",  # both eyes fixate → mean (105, 50)
        "2 100 50 1 1 0 0 0 2",  # left only
        "3 100 50 1 0 100 50 1 -1",  # blink / error → dropped
        "4 10 10 1 2 10 10 1 2",  # saccade → dropped
    ]
    (clip / "event_data" / "p01.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="screen size"):
        open_source(f"diem:{tmp_path / 'diem'}")
    listing = open_source(f"diem:{tmp_path / 'diem'}", screen=(200, 100))
    rec = listing.records[0]
    loader = rec.fixations.open(fps=30.0, native_size=NATIVE)
    s = 100 / 18
    ox = (200 - s * 32) / 2
    np.testing.assert_allclose(loader(0), [[(105 - ox) / s, 50 / s]], rtol=1e-5)
    np.testing.assert_allclose(loader(1), [[(100 - ox) / s, 50 / s]], rtol=1e-5)
    assert loader(2).shape == (0, 2) and loader(3).shape == (0, 2)
    loader.check(4)
    with pytest.raises(InputError, match="another length"):
        loader.check(40)  # a dense event file that stops far short of the video


def test_screen_mapping_native_size_centred() -> None:
    m = ScreenMapping(screen_width=100, screen_height=60, fit=False)
    np.testing.assert_allclose(m.to_video(np.array([[34.0, 21.0]]), (18, 32)), [[0.0, 0.0]])


# ----------------------------------------------------------------------------- general


def test_record_json_round_trip() -> None:
    rec = VideoRecord(
        dataset="D",
        video_id="v/1",
        split="cv",
        fold=2,
        frames="/x/img_%05d.jpg",
        fps=25.0,
        native_size=(18, 32),
        fixations=FixationSource(
            kind="diem_events", paths=("a", "b"), screen=ScreenMapping(10, 20, False)
        ),
    )
    assert VideoRecord.from_json(rec.to_json()) == rec
    # "v/1" is no file name: its readable part and the hash of the exact name
    assert rec.is_frame_folder and rec.key == f"D__v_1~{short_hash('v/1')}"


def test_source_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="KIND:PATH"):
        parse_source("nope:/x")
    with pytest.raises(InputError, match="not a folder"):
        open_source(f"csv:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos found"):
        open_source(f"csv:{tmp_path / 'empty'}")
    with pytest.raises(InputError, match="no video_frames"):
        open_source(f"stavis:{tmp_path / 'empty'}")
