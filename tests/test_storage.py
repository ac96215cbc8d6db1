"""Storage locations (preprocessing/storage.py) on a local folder and on a real S3-compatible
store (moto's server on loopback, tests/services.py), and the jobs that write to them:
preprocess into the store, the done-markers as its commit, training's listing of shards,
staged outputs; and what ``avrsp submit`` would send (no cluster needed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from avrsp.config import preset
from avrsp.errors import ConfigError, InputError
from preprocessing import storage
from preprocessing.segments import _is_own_shard


@pytest.fixture
def s3(s3_store, monkeypatch):
    """The store's variables in this process (pyarrow reads AWS_ENDPOINT_URL) and a prefix
    of its own under the bucket."""
    for key, value in s3_store.env.items():
        monkeypatch.setenv(key, value)
    return s3_store


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "loc")
    s3 = request.getfixturevalue("s3")
    return f"s3://{s3.bucket}/storage-{request.node.name.split('[')[0]}-{id(tmp_path)}"


def test_helpers_behave_alike_on_a_folder_and_a_store(where: str, tmp_path: Path) -> None:
    storage.check_writable(where)
    storage.write_json(storage.join(where, "a", "one.json"), {"x": 1})
    storage.write_text(storage.join(where, "a", "b", "two.parquet"), "2")
    storage.write_text(storage.join(where, "a", ".hidden.parquet"), "tmp")
    local = tmp_path / "up.bin"
    local.write_bytes(b"\x00\x01")
    storage.upload(local, storage.join(where, "up.bin"))

    assert storage.read_json(storage.join(where, "a", "one.json")) == {"x": 1}
    assert storage.read_bytes(storage.join(where, "up.bin")) == b"\x00\x01"
    listed = storage.list_files(where)
    assert listed == sorted(listed)
    assert [storage.name(p) for p in listed] == ["two.parquet", "one.json", "up.bin"]  # a/b/ < a/o
    assert storage.list_files(where, suffix=".parquet") == [storage.join(where, "a/b/two.parquet")]
    assert storage.list_dirs(where) == ["a"] and storage.is_dir(storage.join(where, "a"))
    assert not storage.is_dir(storage.join(where, "nothing"))
    assert storage.is_file(storage.join(where, "up.bin"))
    with pytest.raises(InputError, match=r"missing\.json: cannot read"):
        storage.read_bytes(storage.join(where, "missing.json"))
    with storage.local_file(storage.join(where, "up.bin")) as path:
        assert path.read_bytes() == b"\x00\x01"
    storage.delete_tree(storage.join(where, "a"))
    assert [storage.name(p) for p in storage.list_files(where)] == ["up.bin"]


def test_uris_keep_their_scheme_and_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    assert storage.join("s3://b/x/", "y", "z.json") == "s3://b/x/y/z.json"
    assert storage.is_uri("s3://b") and storage.is_uri("gs://b/x")
    assert not storage.is_uri("runs/x") and not storage.is_uri("file:///tmp/x")
    monkeypatch.chdir(tmp_path)
    assert storage.as_location("runs") == str(tmp_path / "runs")
    assert storage.as_location("file:///tmp/x") == "/tmp/x"
    with pytest.raises(InputError, match=r"nosuch://b/x: cannot open"):
        storage.resolve("nosuch://b/x")


def test_a_video_claims_only_its_own_shard_files() -> None:
    assert _is_own_shard("a-00000.parquet", "a") and _is_own_shard(".a-00003.parquet.tmp", "a")
    assert not _is_own_shard("a-1-00000.parquet", "a")  # video "a-1"
    assert not _is_own_shard("a-00000.parquet.json", "a")


def test_staged_output_uploads_only_a_finished_job(s3, tmp_path: Path) -> None:
    out = f"s3://{s3.bucket}/staged"
    with pytest.raises(RuntimeError), storage.staged_output(out) as folder:
        (folder / "table.md").write_text("partial")
        raise RuntimeError("the job failed")
    assert storage.list_files(out) == []  # nothing of a failed job
    with storage.staged_output(out, last=("table.md",)) as folder:
        (folder / "sub").mkdir()
        (folder / "sub" / "frames.csv").write_text("f")
        (folder / "table.md").write_text("done")
    assert [storage.name(p) for p in storage.list_files(out)] == ["frames.csv", "table.md"]
    with (
        pytest.raises(InputError, match="holds objects; pass --overwrite"),
        storage.staged_output(out),
    ):
        pass
    local = tmp_path / "plain"
    with storage.staged_output(local) as folder:
        assert folder == local  # a path: the job writes in place


@pytest.mark.slow
def test_preprocess_into_a_store_commits_each_video_by_its_marker(s3, tmp_path: Path) -> None:
    from preprocessing.pipeline import preprocess
    from preprocessing.synthetic import SynthSettings, write_dataset
    from workflows.data import check_shards, split_files

    source = tmp_path / "synth"
    write_dataset(source, SynthSettings(videos=4, seconds=3.2), workers=1)
    out = f"s3://{s3.bucket}/pre"
    config = preset("tiny")
    first = preprocess(f"synthetic:{source}", out, config=config, use_ray=False, log=lambda m: None)
    assert (first.ok, first.failed) == (4, 0)
    keys = s3.keys("pre/")
    assert "pre/manifest.json" in keys and "pre/failures.json" in keys
    markers = [k for k in keys if k.startswith("pre/done/")]
    assert len(markers) == 4
    files = split_files(out, "train")
    listed = {
        f for m in markers for f in json.loads(storage.read_text(f"s3://{s3.bucket}/{m}"))["files"]
    }
    assert {f.removeprefix(f"{out}/") for f in files} == listed
    check_shards(files, config)  # read through the store's filesystem

    # An upload that died after some shards and before its marker: the video's marker
    # is gone and an extra shard of it lies there. Training refuses the stray file by name;
    # the same preprocess command redoes that video and removes it.
    victim = json.loads(storage.read_text(f"s3://{s3.bucket}/{markers[0]}"))
    stray = storage.join(out, victim["files"][0].replace("-00000.parquet", "-00007.parquet"))
    storage.write_bytes(stray, b"half an upload")
    storage.delete(f"s3://{s3.bucket}/{markers[0]}")
    with pytest.raises(
        InputError, match=r"-00000\.parquet, .*-00007\.parquet: not a shard of a finished video"
    ):
        split_files(out, victim["split"])
    again = preprocess(f"synthetic:{source}", out, config=config, use_ray=False, log=lambda m: None)
    assert (again.ok, again.done_before) == (4, 3)
    assert not storage.is_file(stray)
    assert len(split_files(out, "train")) == len(files)


def test_submission_carries_the_project_and_the_environment(monkeypatch, tmp_path: Path) -> None:
    from workflows.submit import EXCLUDES, build_submission, local_path_warnings, parse_env

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("MY_TOKEN", "t0")
    args = ["--data", "s3://b/shards", "--set", "experiment=it's mine", "--num-workers", "2"]
    sub = build_submission("train", args, address="http://head:8265", env=parse_env(["MY_TOKEN"]))
    assert shlex.split(sub.entrypoint) == ["python", "-m", "workflows.cli", "train", *args]
    env = sub.runtime_env["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["MY_TOKEN"] == "t0"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "AWS_SECRET_ACCESS_KEY" not in env  # secrets only when named with --env
    assert Path(sub.runtime_env["working_dir"], "workflows", "cli.py").is_file()
    assert {"runs", "data", "*.parquet", "*.pt"} <= set(sub.runtime_env["excludes"])
    assert sub.runtime_env["excludes"] == EXCLUDES
    assert sub.job_id.startswith("avrsp-train-")
    # Checked here, before anything is sent.
    with pytest.raises(ConfigError, match="dashboard's HTTP address"):
        build_submission("train", args, address="head:6379")
    with pytest.raises(ConfigError, match="only preprocess, train"):
        build_submission("demo", [], address="http://head:8265")
    with pytest.raises(ConfigError, match="invalid arguments"):
        build_submission("train", ["--epochs", "many"], address="http://head:8265")
    with pytest.raises(ConfigError, match="--env NOPE: not set"):
        parse_env(["NOPE"])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="no cluster given"):
        build_submission("train", args)
    warned = local_path_warnings(["--data", "shards", "--out=s3://b/x", "--source", "csv:/mnt/v"])
    assert len(warned) == 1 and warned[0].startswith("--data shards: a relative path")
