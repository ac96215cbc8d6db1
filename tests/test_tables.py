"""Metric aggregation and result tables (avrsp.tables), on hand-made rows."""

from __future__ import annotations

import math

import pytest

from avrsp.errors import InputError
from avrsp.tables import (
    FrameScores,
    ResultsTable,
    canonical_metric,
    dataset_means,
    metric_label,
    summarize,
    video_means,
)


def rows_avad() -> list[FrameScores]:
    """Three folds of a fold dataset; per-video cc means 0.3, 0.9 | 0.7 | 0.1, 0.3, 0.8."""
    spec = {
        1: {"a": [0.2, 0.4], "b": [0.9]},
        2: {"c": [0.5, 0.7, 0.9]},
        3: {"d": [0.1], "e": [0.3], "f": [0.8]},
    }
    return [
        FrameScores("AVAD", video, k, {"cc": v, "sim": 2 * v}, fold)
        for fold, videos in spec.items()
        for video, values in videos.items()
        for k, v in enumerate(values)
    ]


def rows_diem() -> list[FrameScores]:
    """No folds; video y has a frame where NSS is undefined (no fixations)."""
    return [
        FrameScores("DIEM", "x", 0, {"nss": 1.0}),
        FrameScores("DIEM", "x", 1, {"nss": 3.0}),
        FrameScores("DIEM", "y", 0, {"nss": 4.0}),
        FrameScores("DIEM", "y", 1, {"nss": math.nan}),
    ]


def test_video_means_by_hand() -> None:
    videos = {(v.fold, v.video): v for v in video_means(rows_avad() + rows_diem())}
    assert videos[(1, "a")].scores["cc"] == pytest.approx(0.3)
    assert videos[(1, "a")].frames == {"cc": 2, "sim": 2}
    assert videos[(2, "c")].scores["sim"] == pytest.approx(1.4)
    assert videos[(None, "y")].scores["nss"] == 4.0  # the NaN frame is left out
    assert videos[(None, "y")].frames["nss"] == 1
    assert len(videos) == 8


def test_dataset_means_average_videos_then_folds() -> None:
    result = summarize(rows_avad() + rows_diem())
    avad = result["AVAD"]
    assert avad.per_fold[1]["cc"] == pytest.approx(0.6)
    assert avad.per_fold[2]["cc"] == pytest.approx(0.7)
    assert avad.per_fold[3]["cc"] == pytest.approx(0.4)
    # (0.6 + 0.7 + 0.4) / 3 — not the frame mean 4.8/9 nor the video mean 3.1/6
    assert avad.scores["cc"] == pytest.approx(1.7 / 3)
    assert avad.scores["sim"] == pytest.approx(3.4 / 3)
    assert avad.videos == 6
    diem = result["DIEM"]
    assert diem.scores["nss"] == pytest.approx(3.0)  # (2 + 4) / 2
    assert list(diem.per_fold) == [None] and diem.videos == 2


def test_all_nan_metric_is_left_out_of_the_fold_mean() -> None:
    rows = [
        FrameScores("S", "a", 0, {"nss": math.nan, "cc": 0.5}, 1),
        FrameScores("S", "b", 0, {"nss": 2.0, "cc": 0.1}, 1),
        FrameScores("S", "c", 0, {"nss": 1.0, "cc": 0.3}, 2),
    ]
    s = summarize(rows)["S"]
    assert math.isnan(video_means(rows)[0].scores["nss"])
    assert s.scores["nss"] == pytest.approx((2.0 + 1.0) / 2)
    assert s.scores["cc"] == pytest.approx((0.3 + 0.3) / 2)


def test_aggregation_errors_name_the_problem() -> None:
    twice = [FrameScores("D", "v", 3, {"cc": 1.0}), FrameScores("D", "v", 3, {"cc": 0.0})]
    with pytest.raises(InputError, match="'v': frame 3 is scored twice"):
        video_means(twice)
    mixed = video_means([FrameScores("D", "v", 0, {"cc": 1}), FrameScores("D", "w", 0, {}, 1)])
    with pytest.raises(InputError, match="dataset 'D': some videos have a fold"):
        dataset_means(mixed)


def test_metric_names() -> None:
    assert canonical_metric("AUC-J") == canonical_metric("auc_judd") == "auc_j"
    assert canonical_metric("shuffled_auc") == canonical_metric("sAUC") == "sauc"
    assert metric_label("auc_judd") == "AUC-J" and metric_label("nss") == "NSS"
    assert metric_label("my_metric") == "my_metric"


def paper_table() -> ResultsTable:
    table = ResultsTable(("DIEM", "AVAD"))
    table.add(
        "Ours(AV)",
        {
            "DIEM": {"sim": 0.5586, "cc": 0.6852, "nss": 2.776, "auc_judd": 0.9114},
            "AVAD": {"SIM": 0.549, "CC": 0.7036, "NSS": 3.8449, "AUC-J": 0.93251},
            "ETMD": {"sim": 0.1},  # not a column: ignored
        },
    )
    table.add("V-only", {"DIEM": {"sim": 0.545, "cc": 0.668, "nss": 2.67, "auc_j": 0.907}})
    return table


EXPECTED_MD = """\
| Method | DIEM |  |  |  | AVAD |  |  |  |
| :-- | --: | --: | --: | --: | --: | --: | --: | --: |
|  | SIM ↑ | CC ↑ | NSS ↑ | AUC-J ↑ | SIM ↑ | CC ↑ | NSS ↑ | AUC-J ↑ |
| Ours(AV) | 0.559 | 0.685 | 2.78 | 0.911 | 0.549 | 0.704 | 3.84 | 0.933 |
| V-only | 0.545 | 0.668 | 2.67 | 0.907 | – | – | – | – |
"""

EXPECTED_CSV = """\
Method,DIEM,DIEM,DIEM,DIEM,AVAD,AVAD,AVAD,AVAD
,SIM,CC,NSS,AUC-J,SIM,CC,NSS,AUC-J
Ours(AV),0.559,0.685,2.78,0.911,0.549,0.704,3.84,0.933
V-only,0.545,0.668,2.67,0.907,,,,
"""


def test_markdown_and_csv_exactly() -> None:
    table = paper_table()
    assert table.to_markdown() == EXPECTED_MD
    assert table.to_csv() == EXPECTED_CSV
    table.title = "Table I"
    assert table.to_markdown() == "**Table I**\n\n" + EXPECTED_MD


def test_table_from_dataset_means() -> None:
    table = ResultsTable(("AVAD", "DIEM"), metrics=("cc", "nss"))
    table.add("ours", summarize(rows_avad() + rows_diem()))
    assert table.to_csv().splitlines()[2] == "ours,0.567,,,3.00"


def test_round_trips() -> None:
    table = paper_table()
    back = ResultsTable.from_json(table.to_json())
    assert back.to_dict() == table.to_dict()
    exact = ResultsTable.from_csv(table.to_csv(rounded=False))
    assert exact.to_dict() == table.to_dict()
    assert exact.rows[0].get("DIEM", "sim") == 0.5586
    rounded = ResultsTable.from_csv(table.to_csv())
    assert rounded.rows[0].get("DIEM", "nss") == 2.78
    assert rounded.rows[0].get("AVAD", "auc_j") == 0.933
    assert rounded.rows[1].values == {"DIEM": table.rows[1].values["DIEM"]}
    assert rounded.to_csv() == EXPECTED_CSV


def test_table_iii_label_columns_and_files(tmp_path) -> None:
    table = ResultsTable(("DIEM",), label_columns=("Audio", "MS", "MRG"), title="Table III")
    table.add(("", "✓", ""), {"DIEM": {"sim": 0.533, "cc": 0.654, "nss": 2.66, "auc_j": 0.904}})
    table.add(("✓", "✓", "✓"), {"DIEM": {"sim": 0.559, "cc": 0.685, "nss": 2.78}})
    csv_text = table.to_csv()
    assert csv_text.splitlines()[:3] == [
        "Audio,MS,MRG,DIEM,DIEM,DIEM,DIEM",
        ",,,SIM,CC,NSS,AUC-J",
        ",✓,,0.533,0.654,2.66,0.904",
    ]
    for suffix in (".json", ".csv"):
        path = table.save(tmp_path / f"t3{suffix}")
        back = ResultsTable.load(path)
        assert back.label_columns == ("Audio", "MS", "MRG")
        assert [r.labels for r in back.rows] == [r.labels for r in table.rows]
        assert [r.values for r in back.rows] == [r.values for r in table.rows]
    assert table.save(tmp_path / "t3.md").read_text(encoding="utf-8") == table.to_markdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t3.csv", "t3.json", "t3.md"]


def test_table_errors() -> None:
    with pytest.raises(InputError, match="expected 1 label cells"):
        ResultsTable(("DIEM",)).add(("a", "b"), {})
    with pytest.raises(InputError, match="dataset names repeat"):
        ResultsTable(("DIEM", "DIEM"))
    with pytest.raises(InputError, match="line 3, DIEM cc: not a number"):
        ResultsTable.from_csv("Method,DIEM\n,CC\nours,abc\n")
    with pytest.raises(InputError, match="not a results table"):
        ResultsTable.from_json('{"rows": []}')
    with pytest.raises(InputError, match="unknown table format"):
        ResultsTable(("DIEM",)).save("table.txt")
