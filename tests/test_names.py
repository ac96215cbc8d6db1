"""Names cannot collide or escape (issue 26, item 2): the file names made from video names
(``preprocessing/names.py``), the clean-up of a video's leftovers, training's check that
every shard a done-marker lists is there, and odd names through preprocess and evaluate.
(Predict: tests/test_predict.py; the Ray job: tests/test_pipeline.py.)"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from test_dataset_sources import gaze_rows, make_video, write_gaze_csv
from test_pipeline import small_options

from avrsp.config import preset
from preprocessing.names import file_names, folded
from preprocessing.pipeline import preprocess
from preprocessing.segments import _is_own_shard, _remove_leftovers
from preprocessing.sources import open_source
from workflows.cli import main

#: Names that once collided or escaped: hidden, ``.``/``..``/``...``, case twins, Unicode
#: in two normal forms, punctuation that sanitising maps onto another name.
ODD = [".a", ".", "..", "...", "a", "A", "a b", "a_b", "caf\u00e9", "cafe\u0301", "É", "é"]


def test_file_names_are_unique_visible_and_keep_ordinary_names() -> None:
    names = file_names([*ODD, "clip01", "V32_Bicycle", "a.b.c", "_x", "x."])
    made = list(names.values())
    # unique even where a store ignores case and Unicode forms
    assert len({folded(n) for n in made}) == len(made) == len(names)
    for made_name in made:  # one visible path component each
        assert made_name not in (".", "..") and not made_name.startswith((".", "_"))
        assert "/" not in made_name and not made_name.endswith(".")
    # ordinary names are left as they were, so existing shard folders resume by name
    assert [names[n] for n in ("clip01", "V32_Bicycle", "a.b.c", "a_b")] == [
        "clip01",
        "V32_Bicycle",
        "a.b.c",
        "a_b",
    ]
    assert file_names(["a"]) == {"a": "a"}  # a case twin only when both are there
    assert names[".a"].startswith("a~") and names["a b"].startswith("a_b~")


def test_cleanup_of_a_video_spares_the_files_of_others(tmp_path: Path) -> None:
    """The leftovers of video ``a``: its shards and temporaries, never ``.a-00000.parquet``
    (the shard an old run wrote for video ``.a``), ``a-1``'s or ``A``'s files."""
    others = [".a-00000.parquet", "a-1-00000.parquet", "A-00000.parquet", "a-00000.parquet.tmp"]
    own = ["a-00000.parquet", ".a-00001.parquet.tmp"]
    for name in others + own:
        (tmp_path / name).write_bytes(b"x")
    assert not any(_is_own_shard(n, "a") for n in others)
    _remove_leftovers(tmp_path, "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def _odd_source(root: Path, names: list[str], split: str = "train") -> Path:
    """A csv: source of one small clip (20 frames) per name, with gaze for every frame."""
    rows = []
    for name in names:
        make_video(root / "videos" / f"{name}.mp4")
        rows += gaze_rows(name, 20)
    write_gaze_csv(root / "gaze.csv", rows)
    (root / "splits.csv").write_text("video,split\n" + "".join(f"{n},{split}\n" for n in names))
    return root


def test_odd_names_through_preprocess_and_a_missing_shard_stops_training(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """``a``, ``.a``, ``..``/``...`` (files ``..mp4``, ``...mp4``) and ``A``: every video's
    shards survive the others and every done-marker lists files that exist; then a listed
    shard deleted: ``avrsp train`` names it and the marker, before anything starts."""
    names = ["a", ".a", ".", "..", "A"]
    root = _odd_source(tmp_path / "clips", names)
    out = tmp_path / "out"
    report = preprocess(
        f"csv:{root}",
        out,
        config=preset("tiny"),
        options=small_options(),
        use_ray=False,
        num_cpus=1,
        log=lambda _: None,
    )
    assert (report.ok, report.failed) == (5, 0)
    markers = [json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))]
    assert sorted(m["video"] for m in markers) == sorted(names)
    listed = [out / f for m in markers for f in m["files"]]
    assert listed and all(p.is_file() for p in listed)
    for path in listed:  # inside the dataset's folder, visible, rows of its own video
        assert path.parent == out / "shards" / "train" / "clips"
        assert not path.name.startswith(".")
    # no two shards or markers one file on a case-insensitive store (a and A)
    assert len({folded(p.name) for p in listed}) == len(listed)
    assert len({folded(p.name) for p in (out / "done").iterdir()}) == len(names)
    videos = [r["video"] for p in listed for r in pq.read_table(p, columns=["video"]).to_pylist()]
    assert sorted(set(videos)) == sorted(names) and len(videos) == 5 * 5  # 5 windows each

    monkeypatch.chdir(tmp_path)  # avrsp train's log folder, runs/logs/
    victim = listed[1]
    victim.unlink()
    runs = tmp_path / "store"
    args = ["train", "--data", str(out), "--val-split", "train", "--epochs", "1",
            "--storage", str(runs), "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{victim}: listed by the done-marker" in err and str(out / "done") in err
    assert not runs.exists()  # refused before any run started


def test_odd_names_through_evaluate(tmp_path: Path) -> None:
    """Every video scored once under its own name; ``--audio shuffled``'s donors tell apart
    videos whose names sanitise alike (``a b``, ``a_b``)."""
    from workflows.evaluate import _donors

    names = ["a", "A", ".a", "..", "a b", "a_b"]
    root = _odd_source(tmp_path / "clips", names, split="test")
    out = tmp_path / "eval"
    args = ["evaluate", "--source", f"csv:{root}", "--baseline", "centre", "--workers", "0"]
    assert main([*args, "--out", str(out), "--no-mlflow"]) == 0
    with (out / "videos.csv").open(newline="") as f:
        scored = [row["video"] for row in csv.DictReader(f)]
    assert sorted(scored) == sorted(names)
    records = open_source(f"csv:{root}").records
    assert len({r.key for r in records}) == len(names)
    donors = _donors(records)
    for r in records:
        assert r.key not in {d.key for d in donors[r.key]} and len(donors[r.key]) == 4
