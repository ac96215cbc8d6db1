"""Models as MLflow models (workflows/models.py): logged, registered, resolved, loaded back.

Against a real MLflow store: a SQLite file in a temporary folder, one per module (creating
the schema costs seconds). A small ``tiny`` AV network (T=8 at 32×48) is exported and
logged once in the ``pt2`` format (``torch.export``, the slow part: about 10 s on one core)
and registered; the tests read it back through every kind of ``MODEL`` spec. No Ray.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from avrsp.config import AVRSPConfig, preset
from avrsp.errors import WeightsError
from avrsp.model import build_model
from workflows import tracking
from workflows.export import export_model, load_model
from workflows.models import (
    example_inputs,
    log_mlflow_model,
    model_signature,
    resolve_model,
)

NAME = "toy-av"


def small_network(use_audio: bool = True) -> AVRSPConfig:
    return preset("tiny").with_overrides(
        **{
            "input.frames": 8,
            "input.height": 32,
            "input.width": 48,
            "input.audio_window_s": 0.25,
            "model.use_audio": use_audio,
        }
    )


@pytest.fixture(autouse=True)
def cache_home(monkeypatch, tmp_path: Path) -> Path:
    """The default download cache (``$XDG_CACHE_HOME/avrsp/models``) inside the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    """A training-like run with metrics at steps 0 and 1, its model exported as the best
    checkpoint of epoch 1 and logged + registered as ``toy-av`` version 1."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_id, _ = tracking.start_or_resume_run(
        uri, root / "run", run_name="toy", params={"lr": "0.0001"}, tags={"stage": "1"}
    )
    c = tracking.client(uri)
    for step, loss in ((0, 2.5), (1, 2.0)):
        c.log_metric(run_id, "val_loss", loss, step=step)
    net = small_network()
    torch.manual_seed(0)
    model = build_model(net).eval()
    meta = {"run_name": "toy", "mlflow_run_id": run_id, "tracking_uri": uri,
            "checkpoint": str(root / "run" / "checkpoint_epoch_0001"), "epoch": 1}  # fmt: skip
    path = export_model(root / "run" / "model.pt", model, net, meta=meta)
    info = log_mlflow_model(uri, run_id, path, registered_name=NAME, step=1)
    c.set_terminated(run_id)
    return {"uri": uri, "run_id": run_id, "model": model, "net": net, "info": info,
            "path": path, "cache": root / "cache", "meta": meta}  # fmt: skip


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_registered_model_loads_back_through_every_spec(logged, cache_home: Path) -> None:
    uri, cache, info = logged["uri"], logged["cache"], logged["info"]
    assert (info.registered_name, info.version, info.serialization_format) == (NAME, "1", "pt2")
    assert info.registered_uri == f"models:/{NAME}/1"
    specs = [f"models:/{NAME}/1", f"models:/{NAME}/latest", f"runs:/{logged['run_id']}/model",
             info.model_uri]  # fmt: skip
    paths = {spec: resolve_model(spec, tracking_uri=uri, cache_dir=cache) for spec in specs}
    # Our own weights-only file, carried inside the logged model, downloaded once.
    assert len(set(paths.values())) == 1
    path = paths[specs[0]]
    assert path.name == "model.pt" and path.parent.name == "extra_files"
    assert path.read_bytes() == logged["path"].read_bytes()
    loaded = load_model(f"models:/{NAME}/1", tracking_uri=uri)  # the default cache
    assert loaded.path.is_relative_to(cache_home / "avrsp" / "models")
    assert same_weights(loaded.model, logged["model"]) and loaded.config == logged["net"]
    assert loaded.meta["mlflow_run_id"] == logged["run_id"]
    assert loaded.source == f"models:/{NAME}/1"
    # An alias names a version too.
    tracking.client(uri).set_registered_model_alias(NAME, "best", "1")
    assert resolve_model(f"models:/{NAME}@best", tracking_uri=uri, cache_dir=cache) == path


def test_logged_model_signature_files_and_metrics(logged) -> None:
    import mlflow

    uri, info, net = logged["uri"], logged["info"], logged["net"]
    folder = resolve_model(info.model_uri, tracking_uri=uri, cache_dir=logged["cache"]).parents[1]
    assert (folder / "data" / "model.pt2").is_file()  # torch.export, not a pickle
    assert (folder / "extra_files" / "model.config.json").is_file()
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    inputs = json.loads(mlmodel["signature"]["inputs"])
    outputs = json.loads(mlmodel["signature"]["outputs"])
    S = net.input.audio_samples
    assert [(x["name"], x["tensor-spec"]["shape"]) for x in inputs] == [
        ("frames", [-1, 3, 8, 32, 48]),
        ("audio", [-1, S]),
    ]
    assert [x["tensor-spec"]["shape"] for x in outputs] == [[-1, 32, 48]]
    assert {x["tensor-spec"]["dtype"] for x in inputs + outputs} == {"float32"}
    # The signature is what the network does, and the pt2 program computes what it does.
    args = example_inputs(net)
    with torch.no_grad():
        out = logged["model"](*args)
        program = torch.export.load(folder / "data" / "model.pt2").module()
        torch.testing.assert_close(program(*args), out, rtol=1e-4, atol=1e-5)
    assert out.shape == (2, 32, 48)
    # A V model's signature has no audio input.
    v = model_signature(small_network(use_audio=False))
    assert [spec.name for spec in v.inputs.inputs] == ["frames"]
    # The logged model sits in the run's experiment (not MLflow's Default) with the metrics
    # of its epoch, and the run lists it as an output.
    client = mlflow.MlflowClient(tracking_uri=uri)
    model = client.get_logged_model(info.model_id)
    run = client.get_run(logged["run_id"])
    assert model.experiment_id == run.info.experiment_id != "0"
    assert model.source_run_id == logged["run_id"] and model.name == "model"
    assert {(m.key, m.step, m.value) for m in model.metrics} == {("val_loss", 1, 2.0)}
    assert [o.model_id for o in run.outputs.model_outputs] == [info.model_id]
    history = client.get_metric_history(logged["run_id"], "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 2.5), (1, 2.0)]  # not doubled


def test_logging_again_reuses_the_model_of_the_same_checkpoint(logged) -> None:
    uri = logged["uri"]
    again = log_mlflow_model(uri, logged["run_id"], logged["path"], registered_name=NAME)
    assert again.reused and again.model_id == logged["info"].model_id and again.version == "1"
    other = log_mlflow_model(uri, logged["run_id"], logged["path"], registered_name="toy-other")
    assert other.model_id == logged["info"].model_id
    assert other.registered_uri == "models:/toy-other/1"
    assert log_mlflow_model(uri, logged["run_id"], logged["path"]).registered_uri == ""


def test_unknown_specs_name_themselves(logged, tmp_path: Path) -> None:
    uri, run_id = logged["uri"], logged["run_id"]

    def resolve(spec: str, **kw) -> Path:
        return resolve_model(spec, tracking_uri=kw.get("uri", uri), cache_dir=tmp_path / "c")

    with pytest.raises(WeightsError, match=rf"models:/{NAME}/7: no such model version.*versions 1"):
        resolve(f"models:/{NAME}/7")
    with pytest.raises(WeightsError, match=r"models:/nope/1: .*no registered model 'nope'"):
        resolve("models:/nope/1")
    with pytest.raises(WeightsError, match=rf"models:/{NAME}@gone: no such model version"):
        resolve(f"models:/{NAME}@gone")
    with pytest.raises(WeightsError, match=r"models:/m-0123abcd: no logged model"):
        resolve("models:/m-0123abcd")
    with pytest.raises(WeightsError, match=r"runs:/0123456789abcdef/model: no run"):
        resolve("runs:/0123456789abcdef/model")
    with pytest.raises(WeightsError, match=rf"runs:/{run_id}/weights: run .* has no artifact"):
        resolve(f"runs:/{run_id}/weights")
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(WeightsError, match=r"no MLflow store at .*none\.db"):
        resolve(f"models:/{NAME}/1", uri=missing)
    assert not (tmp_path / "none.db").exists()  # not created on the way
    with pytest.raises(WeightsError, match=r"nothing\.pt: no such model file"):
        resolve(str(tmp_path / "nothing.pt"))
    with pytest.raises(WeightsError, match=r"neither model\.pt nor checkpoint\.pt"):
        resolve(str(tmp_path))
    assert resolve(str(logged["path"].parent)) == logged["path"]


def test_a_foreign_mlflow_model_is_refused_by_name(logged, tmp_path: Path) -> None:
    """A registered MLflow model that is not ours (no model.pt inside) is an error saying so."""
    import mlflow

    uri = logged["uri"]
    c = tracking.client(uri)
    run = c.create_run(c.get_run(logged["run_id"]).info.experiment_id, run_name="foreign")
    before = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri sets it too
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.pytorch.log_model(
            torch.nn.Linear(2, 1),
            name="model",
            run_id=run.info.run_id,
            serialization_format="pickle",
            registered_model_name="foreign",
            pip_requirements=["torch"],
        )
    finally:
        mlflow.set_tracking_uri(before)
    with pytest.raises(WeightsError, match=r"models:/foreign/1: the MLflow model holds no model"):
        resolve_model("models:/foreign/1", tracking_uri=uri, cache_dir=tmp_path)


def test_an_evaluation_run_links_to_the_training_run_and_model(logged) -> None:
    uri = logged["uri"]
    c = tracking.client(uri)
    loaded = load_model(f"runs:/{logged['run_id']}/model", tracking_uri=uri)
    eval_id = tracking.start_linked_run(
        uri, run_name="toy-eval", model_meta=loaded.meta, tags={"kind": "evaluation"}
    )
    run, train_run = c.get_run(eval_id), c.get_run(logged["run_id"])
    tags = run.data.tags
    assert run.info.status == "RUNNING" and run.info.run_name == "toy-eval"
    assert run.info.experiment_id == train_run.info.experiment_id  # beside its training run
    assert tags["avrsp.model_run_id"] == logged["run_id"] and tags["kind"] == "evaluation"
    assert tags["avrsp.model_id"] == logged["info"].model_id
    assert "mlflow.parentRunId" not in tags
    page = f"#/experiments/{train_run.info.experiment_id}/runs/{logged['run_id']}"
    page += "?workflowType=machine_learning"  # the UI's training view
    assert f"[toy]({page})" in tags["mlflow.note.content"]
    assert [m.model_id for m in run.inputs.model_inputs] == [logged["info"].model_id]


def test_a_network_torch_export_cannot_trace_is_logged_as_a_pickle(
    logged, monkeypatch, tmp_path: Path
) -> None:
    """pt2 falls back to pickle with a warning, leaving no FAILED model; the run's newest
    logged model is what ``runs:/RUN_ID/model`` names."""
    import mlflow

    def refuse(*args, **kwargs):
        raise RuntimeError("data-dependent control flow")

    uri, run_id = logged["uri"], logged["run_id"]
    meta = {**logged["meta"], "checkpoint": "checkpoint_epoch_0002", "epoch": 2}
    path = export_model(tmp_path / "model.pt", logged["model"], logged["net"], meta=meta)
    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.warns(RuntimeWarning, match=r"pt2 format.*data-dependent.*as a pickle"):
        info = log_mlflow_model(uri, run_id, path)
    assert info.serialization_format == "pickle" and not info.reused
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models([exp], filter_string=f"source_run_id = '{run_id}'")
    assert {str(m.status) for m in models} == {"READY"}
    assert client.get_logged_model(info.model_id).tags["avrsp.format"] == "pickle"
    got = resolve_model(f"runs:/{run_id}/model", tracking_uri=uri, cache_dir=tmp_path / "c")
    assert got.read_bytes() == path.read_bytes()  # the newest: epoch 2's
