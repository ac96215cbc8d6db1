"""Re-runs that cannot mix data (issue 19, points 1 and 3), through the real CLI: a
preprocess output folder keeps the fingerprint of what made its rows, and training reads
only the shards that ``avrsp preprocess`` committed. (Point 2, a resumed training run with
other data or settings, is in tests/test_train.py.)"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def avrsp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clips")
    made = avrsp("synth", "--out", str(out), "--videos", "4", "--seconds", "3.2", "--workers", "1")
    assert made.returncode == 0, made.stderr
    return out


def preprocess(clips: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return avrsp("preprocess", "--source", f"synthetic:{clips}", "--out", str(out),
                 "--preset", "tiny", "--no-ray", "--num-cpus", "1", *extra)  # fmt: skip


def test_preprocess_with_other_options_is_refused_and_overwrite_starts_again(
    clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    first = preprocess(clips, out, "--stride", "8")
    assert first.returncode == 0, first.stderr
    recorded = json.loads((out / "fingerprint.json").read_text())
    assert recorded["options"]["stride"] == 8
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == recorded

    same = preprocess(clips, out, "--stride", "8")  # resumes: nothing to do
    assert same.returncode == 0 and "4 done before" in same.stdout + same.stderr

    other = preprocess(clips, out, "--stride", "4")
    assert other.returncode == 2
    assert "holds shards made with other options (options: stride 8 → 4)" in other.stderr
    assert "--overwrite" in other.stderr
    assert json.loads((out / "fingerprint.json").read_text()) == recorded  # untouched
    paper = preprocess(clips, out, "--stride", "8", "--jpeg-quality", "80")
    assert paper.returncode == 2 and "jpeg_quality 90 → 80" in paper.stderr

    again = preprocess(clips, out, "--stride", "4", "--overwrite")
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["stride"] == 4 and manifest["fingerprint"]["options"]["stride"] == 4
    # The shards agree with the manifest: every row of the new run, none of the old.
    rows = [r for f in sorted(out.rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    lasts = sorted({r["last_frame"] for r in rows if r["video"] == rows[0]["video"]})
    assert {b - a for a, b in itertools.pairwise(lasts)} == {4}
    assert len(rows) == manifest["windows"]


def test_a_foreign_file_among_the_shards_is_named_before_training(
    clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    assert preprocess(clips, out).returncode == 0
    foreign = out / "shards" / "train" / "notes.parquet"
    shutil.copy(next((out / "shards" / "train").rglob("*.parquet")), foreign)  # not ours
    done = avrsp("train", "--data", str(out), "--val-split", "test", "--epochs", "1",
                 "--storage", str(tmp_path / "runs"), "--mlflow-uri",
                 f"sqlite:///{tmp_path / 'm.db'}", timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert f"{foreign}: not a shard of a finished video" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 3
    assert not (tmp_path / "runs").exists()  # refused before any run started
