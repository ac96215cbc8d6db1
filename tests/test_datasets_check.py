"""``avrsp datasets check`` (preprocessing/sources/check.py), its hook at the start of
``avrsp preprocess`` / ``evaluate``, and the STAViS fold lists shipped in
preprocessing/sources/fold_lists/ (facts of ViNet-Saliency/vinet_v2, fold_lists/)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from test_dataset_sources import build_dhf1k, build_stavis

from avrsp.errors import InputError
from preprocessing.records import decode_folds, fold_code, in_test_fold
from preprocessing.sources import stavis
from preprocessing.sources.check import check_source, preflight
from workflows.cli import main


def stavis_folder(tmp_path: Path) -> Path:
    """SumMe in the STAViS layout: three 4-frame videos, one per test fold."""
    root = tmp_path / "stavis"
    videos = {"a": 4, "b": 4, "c": 4}
    return build_stavis(root, "SumMe", videos, tests={1: ["a"], 2: ["b"], 3: ["c"]})


def check(capsys: pytest.CaptureFixture[str], spec: str) -> tuple[int, str, str]:
    code = main(["datasets", "check", spec])
    out, err = capsys.readouterr()
    return code, out, err


def test_complete_folder_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = stavis_folder(tmp_path)
    code, out, _ = check(capsys, f"stavis:{root}")
    assert code == 0, out
    assert "all videos found, complete" in out
    row = next(line for line in out.splitlines() if line.startswith("SumMe"))
    # dataset, lists, expected, found, missing, frames, maps, fix, audio
    assert row.split() == ["SumMe", str(root / "fold_lists"), "3", "3", "0", "0", "0", "0", "0"]


def test_missing_video_frame_audio_and_fixations_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = stavis_folder(tmp_path)
    shutil.rmtree(root / "video_frames" / "SumMe" / "c")  # a whole video
    (root / "video_frames" / "SumMe" / "b" / "img_00004.jpg").unlink()  # one frame
    (root / "video_audio" / "SumMe" / "a" / "a.wav").unlink()
    (root / "annotations" / "SumMe" / "a" / "fixMap_00004.mat").unlink()
    code, out, _ = check(capsys, f"stavis:{root}")
    assert code == 1, out
    row = next(line for line in out.splitlines() if line.startswith("SumMe"))
    # expected, found, missing, frames, maps, fix (a: short; b: one past its frames), audio
    assert row.split()[2:] == ["3", "2", "1", "1", "0", "2", "1"]
    assert "SumMe: 1 missing: c" in out
    assert "SumMe: frame counts: b 3 frames, list says 4" in out
    assert "SumMe: audio: a" in out
    assert "SumMe: fixations: a: annotations/SumMe/a/fixMap_00004.mat: fixation file of" in out
    assert "; b: annotations/SumMe/b/fixMap_00004.mat: fixation files go beyond" in out
    # a frame missing in the middle: the gap is named too
    (root / "video_frames" / "SumMe" / "a" / "img_00002.jpg").unlink()
    code, out, _ = check(capsys, f"stavis:{root}")
    assert code == 1 and "a 3 frames, list says 4 (numbered 1…4: gaps)" in out


def test_unusable_source_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in (f"stavis:{tmp_path / 'nope'}", f"csv:{tmp_path}", f"stavis:{tmp_path}"):
        code, out, err = check(capsys, spec)
        assert code == 2 and out == "", (spec, out)
        assert err.count("\n") == 1 and err.startswith("avrsp datasets: error:"), err


def test_shipped_lists_when_the_folder_has_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Coutrot_db2's clip4 (546 frames, test video of fold 1 in the published lists):
    empty files are enough, the check opens none of them."""
    root = tmp_path / "stavis"
    frames = root / "video_frames" / "Coutrot_db2" / "clip4"
    maps = root / "annotations" / "Coutrot_db2" / "clip4" / "maps"
    maps.mkdir(parents=True)
    frames.mkdir(parents=True)
    for k in range(1, 547):
        (frames / f"img_{k:05d}.jpg").touch()
        (maps / f"eyeMap_{k:05d}.jpg").touch()
        (maps.parent / f"fixMap_{k:05d}.mat").touch()
    wav = root / "video_audio" / "Coutrot_db2" / "clip4" / "clip4.wav"
    wav.parent.mkdir(parents=True)
    wav.touch()
    assert stavis.fold_assignment(root, "Coutrot_db2")["clip4"] == ("cv", 1, 546, 24.99975)
    code, out, _ = check(capsys, f"stavis:{root}")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("Coutrot_db2"))
    assert row.split()[:5] == ["Coutrot_db2", "shipped", "15", "1", "14"]
    assert "frame counts" not in out and "audio:" not in out


def test_empty_dataset_refused_before_preprocess_and_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = stavis_folder(tmp_path)
    for vid in "abc":
        shutil.rmtree(root / "video_frames" / "SumMe" / vid)
    with pytest.raises(InputError, match=r"no videos found for SumMe \(0 of 3\)"):
        preflight(f"stavis:{root}")
    commands = (
        ["preprocess", "--source", f"stavis:{root}", "--no-ray"],
        ["evaluate", "--baseline", "centre", "--source", f"stavis:{root}", "--no-mlflow"],
    )
    for argv in commands:
        assert main([*argv, "--out", str(tmp_path / argv[0])]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[-1].endswith(
            f"no videos found for SumMe (0 of 3); avrsp datasets check stavis:{root}"
        )


def test_preflight_prints_the_problems_and_goes_on(tmp_path: Path) -> None:
    root = stavis_folder(tmp_path)
    shutil.rmtree(root / "video_frames" / "SumMe" / "c")
    lines: list[str] = []
    preflight(f"stavis:{root}", log=lines.append)
    assert lines == [f"dataset check of stavis:{root}: 1 problem(s)\n  SumMe: 1 missing: c"]
    preflight(f"csv:{root}", log=lines.append)  # other kinds: not checked here
    assert len(lines) == 1


def test_dhf1k_annotated_videos_missing_as_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = build_dhf1k(tmp_path / "dhf1k", {1: 2, 2: 2, 5: 2, 750: 2})
    (root / "0005" / "images" / "0002.png").unlink()
    code, out, _ = check(capsys, f"dhf1k:{root}")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("DHF1K"))
    assert row.split() == ["DHF1K", "1-700", "700", "3", "697", "1", "0", "0", "-"]
    assert "DHF1K: 697 missing: 0003-0004, 0006-0700" in out
    assert "0005: 1 frames but 2 annotated frames" in out
    assert "1 other video(s) (test set, not required) present" in out


# ----------------------------------------------------------------------------- shipped lists

#: (test lists of folds 1–3, train lists of folds 1–3, distinct videos), counted in
#: ViNet-Saliency/vinet_v2 fold_lists/ (commit 75f60413, "Added fold lists folder").
PUBLISHED = {
    "AVAD": ((15, 15, 15), (30, 30, 30), 45),
    "Coutrot_db1": ((20, 20, 20), (40, 40, 40), 60),
    "Coutrot_db2": ((5, 5, 5), (10, 10, 10), 15),
    "ETMD_av": ((4, 4, 4), (8, 8, 8), 12),
    "SumMe": ((8, 7, 8), (17, 17, 16), 25),
}


def test_shipped_fold_lists_parse_with_the_published_counts() -> None:
    shipped = stavis.SHIPPED_LISTS
    assert sorted(p.name for p in shipped.glob("*.txt")) == sorted(
        name for d in stavis.DATASETS for name in stavis.list_names(d)
    )
    for dataset, (tests, trains, distinct) in PUBLISHED.items():
        lists = {
            (split, k): stavis.parse_fold_list(shipped / f"{dataset}_list_{split}_{k}_fps.txt")
            for split in ("test", "train")
            for k in (1, 2, 3)
        }
        assert tuple(len(lists["test", k]) for k in (1, 2, 3)) == tests, dataset
        assert tuple(len(lists["train", k]) for k in (1, 2, 3)) == trains, dataset
        assert len({n for entries in lists.values() for n in entries}) == distinct, dataset
        for k in (1, 2, 3):  # no video is both a training and a test video of one fold
            assert not set(lists["test", k]) & set(lists["train", k]), (dataset, k)
    diem_test = stavis.parse_fold_list(shipped / "DIEM_list_test_fps.txt")
    diem_train = stavis.parse_fold_list(shipped / "DIEM_list_train_fps.txt")
    assert (len(diem_train), len(diem_test)) == (64, 17)
    assert diem_test["BBC_life_in_cold_blood_1278x710"] == (3399, 29.9997)
    avad_test_1 = stavis.parse_fold_list(shipped / "AVAD_list_test_1_fps.txt")
    assert avad_test_1["V32_Dancers"] == (202, 28.666571)


def test_published_avad_lists_put_three_videos_in_two_test_folds() -> None:
    """A fact of the published lists (V3_Speech3 and V39_Guitar4: folds 1 and 2;
    V26_Piano2: folds 2 and 3): the reader makes each a test video of both folds and a
    training video of the third only, as STAViS' scripts score them once per fold."""
    shipped = stavis.SHIPPED_LISTS
    tests = [stavis.parse_fold_list(shipped / f"AVAD_list_test_{k}_fps.txt") for k in (1, 2, 3)]
    twice = {n: [k + 1 for k in range(3) if n in tests[k]] for n in set().union(*tests)}
    assert {n: f for n, f in twice.items() if len(f) > 1} == {
        "V3_Speech3": [1, 2],
        "V39_Guitar4": [1, 2],
        "V26_Piano2": [2, 3],
    }
    folds = stavis.fold_assignment(Path("/nonexistent"), "AVAD")
    assert {n: decode_folds(f[1]) for n, f in folds.items() if f[1] < 0} == {
        "V3_Speech3": (1, 2),
        "V39_Guitar4": (1, 2),
        "V26_Piano2": (2, 3),
    }
    assert decode_folds(folds["V32_Dancers"][1]) == (1,)
    assert Counter(k for f in folds.values() for k in decode_folds(f[1])) == {1: 15, 2: 15, 3: 15}


def test_fold_codes() -> None:
    assert fold_code([2]) == 2 and fold_code([1, 2]) == -3 and fold_code([3, 2]) == -6
    for folds in ([1], [3], [1, 2], [2, 3], [1, 3], [1, 2, 3], [12], [4, 15]):
        assert decode_folds(fold_code(folds)) == tuple(sorted(folds))
    assert decode_folds(0) == ()
    assert in_test_fold(-3, 2) and not in_test_fold(-3, 3) and in_test_fold(12, 12)
    assert not in_test_fold(12, 1)  # a 12-fold dataset's fold 12 is not folds 1 and 2
    with pytest.raises(ValueError):
        fold_code([0, 1])


def test_check_accepts_the_published_avad_lists(tmp_path: Path) -> None:
    (tmp_path / "video_frames" / "AVAD" / "V1_Speech1").mkdir(parents=True)
    report = check_source(f"stavis:{tmp_path}")
    avad = report.datasets[0]
    assert (avad.lists, avad.expected, avad.found) == ("shipped", 45, 1)
    assert avad.lists_problems == []
