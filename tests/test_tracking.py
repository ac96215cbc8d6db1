"""MLflow tracking helpers (workflows/tracking.py), read back with ``MlflowClient``.

No Ray here: the store is a SQLite file in a temporary folder (one per module, since
creating the schema costs a few seconds).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from workflows import tracking


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_flatten_gives_dotted_keys() -> None:
    flat = tracking.flatten(
        {"lr": 1e-4, "network": {"model": {"width": 32, "rates": (1, 2)}, "x": None}}
    )
    assert flat == {
        "lr": "0.0001",
        "network.model.width": "32",
        "network.model.rates": "[1, 2]",
        "network.x": "null",
    }


def test_default_store_is_sqlite_in_the_project(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_saliency_grid_layout() -> None:
    frames = np.full((2, 4, 6, 3), 7, np.uint8)
    target = np.zeros((2, 4, 6))
    target[:, 1, 2] = 0.5
    pred = np.ones((2, 4, 6))
    grid = tracking.saliency_grid(frames, target, pred)
    assert grid.shape == (8, 18, 3) and grid.dtype == np.uint8
    assert (grid[:4, :6] == 7).all()  # the frame
    assert grid[1, 6 + 2, 0] == 255 and grid[:4, 6:12].sum() == 255 * 3  # target peak only
    assert (grid[:, 12:] == 255).all()  # a constant prediction is all at its maximum
    png = tracking.png_bytes(grid)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), grid)


def test_run_is_created_once_and_resumed(uri: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    params = {"lr": "0.0001", "network.model.width": "32"}
    tags = {"stage": "1", "dataset": "toy"}
    run_id, resumed = tracking.start_or_resume_run(
        uri, tmp_path / "run", run_name="r1", params=params, tags=tags, experiment="t"
    )
    assert not resumed
    again, resumed = tracking.start_or_resume_run(
        uri, tmp_path / "run", run_name="r1", params=params, tags=tags, experiment="t"
    )
    assert resumed and again == run_id
    other, resumed = tracking.start_or_resume_run(
        uri, tmp_path / "other", run_name="r2", params=params, tags=tags, experiment="t"
    )
    assert not resumed and other != run_id

    logger = tracking.EpochLogger(uri, run_id, system_metrics=False)
    logger.log_metrics({"val_loss": 2.5, "val_cc": float("nan"), "epoch": 0}, step=0)
    logger.log_metrics({"val_loss": 2.0, "epoch": 1}, step=1)
    logger.log_grid(np.zeros((4, 6, 3), np.uint8), epoch=1)
    logger.close()
    png = tmp_path / "model.txt"
    png.write_text("weights")
    tracking.finish_run(uri, run_id, status="FINISHED", files=[("model", png)], tags={"x": "y"})

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.params == params
    assert run.data.tags["stage"] == "1" and run.data.tags["x"] == "y"
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 2.5),
        (1, 2.0),
    ]
    assert "val_cc" not in run.data.metrics  # NaN is not logged
    assert logger.logged_steps("val_loss") == {0, 1}
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.txt"}
    # The grid is an image at its epoch's step (the run page's image viewer), PNG + preview.
    images = sorted(a.path for a in client.list_artifacts(run_id, "images"))
    assert [p.split("+")[:3] for p in images] == [["images/val_grid", "step", "1"]] * 2
    assert [p.rsplit(".", 1)[1] for p in images] == ["webp", "png"]
    assert run.data.tags["mlflow.loggedImages"] == "True"
    assert not client.list_artifacts(run_id, "val_grid")  # no plain files any more
    # Artifacts of a SQLite store live beside the database, not in the working folder.
    db_dir = Path(uri.removeprefix("sqlite:///")).parent
    assert run.info.artifact_uri.startswith((db_dir / "mlartifacts").as_uri())


def test_git_commit_is_a_hash_or_unknown(tmp_path: Path) -> None:
    commit = tracking.git_commit()
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40
    assert tracking.git_commit(tmp_path) == "unknown"  # not a checkout


def _experiment_in_new_process(uri: str, barrier: Any, queue: Any) -> None:
    from workflows.tracking import experiment_id

    barrier.wait()
    try:
        queue.put(("ok", experiment_id(uri, "race")))
    except Exception as exc:  # reported to the test, which fails with it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_jobs_started_together_share_a_new_sqlite_store(tmp_path: Path) -> None:
    """Three processes open the same new database and experiment at once (measured before
    the lock: two ``avrsp train`` at once, one died in MLflow's schema migration)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=_experiment_in_new_process, args=(uri, barrier, queue)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r[0] for r in results] == ["ok"] * 3, results
    assert len({r[1] for r in results}) == 1  # one experiment, not three


def test_project_experiments_open_in_the_training_view(uri: str) -> None:
    """The MLflow 3 UI shows an experiment as model training only with this tag."""
    c = tracking.client(uri)
    exp = c.get_experiment(tracking.experiment_id(uri, "kind-new"))
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    old = c.create_experiment("kind-old")  # made before the tag existed
    assert tracking.experiment_id(uri, "kind-old") == old
    assert c.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    other = c.create_experiment("kind-genai", tags={"mlflow.experimentKind": "genai_development"})
    tracking.experiment_id(uri, "kind-genai")
    assert c.get_experiment(other).tags["mlflow.experimentKind"] == "genai_development"


def test_results_table_round_trips_through_the_run(uri: str, tmp_path: Path) -> None:
    import json

    from avrsp.errors import InputError
    from avrsp.tables import ResultsTable

    table = ResultsTable(("DIEM", "AVAD"), title="toy")
    table.add("AVRSP (AV)", {"DIEM": {"cc": 0.6123456789, "nss": 2.5, "sim": 0.45,
                                      "auc_judd": 0.9}, "AVAD": {"cc": 0.7}})  # fmt: skip
    table.add("V only", {"DIEM": {"cc": 0.5, "nss": float("nan")}})
    c = tracking.client(uri)
    run_id = c.create_run(tracking.experiment_id(uri, "tables"), run_name="eval").info.run_id
    tracking.log_table(uri, run_id, table, "results")
    files = {a.path for a in c.list_artifacts(run_id, "tables")}
    assert files == {"tables/results.json", "tables/results.md", "tables/results.csv"}
    got = Path(c.download_artifacts(run_id, "tables", str(tmp_path)))
    # The table artifact (pandas "split" JSON): label column, then "DATASET METRIC".
    data = json.loads((got / "results.json").read_text())
    assert data["columns"][:3] == ["Method", "DIEM SIM", "DIEM CC"]
    assert len(data["columns"]) == 1 + 2 * 4
    rows = [dict(zip(data["columns"], r, strict=True)) for r in data["data"]]
    assert rows[0]["Method"] == "AVRSP (AV)" and rows[0]["DIEM CC"] == 0.6123456789
    assert rows[0]["AVAD CC"] == 0.7 and rows[0]["AVAD SIM"] is None
    assert rows[1]["DIEM NSS"] is None  # NaN: missing, not a number
    assert (got / "results.md").read_text() == table.to_markdown()
    back = ResultsTable.from_csv((got / "results.csv").read_text())
    assert back.to_dict() == {**table.to_dict(), "title": ""}  # CSV has no title
    # MLflow would append the rows to an existing table file: refused instead.
    with pytest.raises(InputError, match=r"already has table 'results'"):
        tracking.log_table(c, run_id, table, "results")
    with pytest.raises(InputError, match=r"table name 'a/b'"):
        tracking.log_table(c, run_id, table, "a/b")


def test_linked_run_of_a_model_from_another_store(uri: str) -> None:
    meta = {"mlflow_run_id": "feedbeef", "run_name": "elsewhere", "tracking_uri": "http://x"}
    run_id = tracking.start_linked_run(
        uri, run_name="eval", model_meta=meta, tags={"a": "b"}, params={"seed": 0, "fold": None}
    )
    run = tracking.client(uri).get_run(run_id)
    tags = run.data.tags
    assert run.data.params == {"seed": "0", "fold": "null"}
    assert tags["avrsp.model_run_id"] == "feedbeef" and tags["a"] == "b"
    assert "`feedbeef` (elsewhere) of http://x" in tags["mlflow.note.content"]
    assert "mlflow.parentRunId" not in tags and "avrsp.model_id" not in tags
    exp = tracking.client(uri).get_experiment(run.info.experiment_id)
    assert exp.name == "avrsp" and exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # No training run at all (a baseline): no link tags, a note saying so.
    alone = tracking.client(uri).get_run(
        tracking.start_linked_run(uri, run_name="baseline", model_meta={})
    )
    assert "avrsp.model_run_id" not in alone.data.tags
    assert "without an MLflow training run" in alone.data.tags["mlflow.note.content"]


def test_a_run_file_that_cannot_be_read_is_named_not_replaced(tmp_path: Path) -> None:
    """Issue 26/28: ``mlflow_run.json`` is the resume key; a torn one used to be passed
    over silently, starting a second MLflow run for the same training run."""
    from avrsp.errors import InputError
    from workflows.tracking import RUN_FILE, start_or_resume_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    first, resumed = start_or_resume_run(uri, run_dir, run_name="r", params={}, tags={})
    assert not resumed and json.loads((run_dir / RUN_FILE).read_text())["run_id"] == first
    again, resumed = start_or_resume_run(uri, run_dir, run_name="r", params={}, tags={})
    assert resumed and again == first
    (run_dir / RUN_FILE).write_text('{"run_id": "ab')  # torn
    with pytest.raises(InputError, match=rf"{RUN_FILE}: unreadable .*delete it"):
        start_or_resume_run(uri, run_dir, run_name="r", params={}, tags={})
    # A run deleted from the store, or a file of another store: a new run, as before.
    (run_dir / RUN_FILE).write_text(json.dumps({"run_id": first, "tracking_uri": "sqlite:///x"}))
    other, resumed = start_or_resume_run(uri, run_dir, run_name="r", params={}, tags={})
    assert not resumed and other != first
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).delete_run(other)
    third, resumed = start_or_resume_run(uri, run_dir, run_name="r", params={}, tags={})
    assert not resumed and third not in (first, other)
