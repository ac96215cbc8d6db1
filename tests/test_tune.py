"""Sweeps (tuning/): spaces, their expansion without repeats, the named ablations' dry
runs, and — on Ray Tune with tiny shards (tests/test_train.py's writer) — a 2-trial sweep
nested in MLflow, and a sweep resumed after a failed trial."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import test_train as tt  # the tiny shard writer; a module import, so its tests stay theirs

from avrsp.errors import ConfigError
from tuning.ablations import named_space
from tuning.published import PUBLISHED
from tuning.spaces import SearchSpace, dry_run_lines, expand
from workflows.cli import main
from workflows.loop import TrainConfig

PAPER_ROWS = {"table3": 8, "table4": 10, "table5": 7}


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_dry_run_lists_the_papers_rows(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--ablation", name, "--dry-run", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    trials = [line for line in out.splitlines() if line.startswith(f"  {name}-")]
    assert len(trials) == 2 * PAPER_ROWS[name]  # every row, with each of the two seeds
    assert f"{2 * PAPER_ROWS[name]} trials, {PAPER_ROWS[name]} rows" in out
    assert "dropped 0 points" in out
    assert len(PUBLISHED[name]) == PAPER_ROWS[name]  # a quoted row for every row


def test_ablation_rows_mean_the_papers_rows() -> None:
    base = TrainConfig(preset="tiny")
    t3 = expand(named_space("table3"), base).trials
    models = [t.config.network.model for t in t3]
    assert [(m.use_audio, m.use_ms, m.use_mrg) for m in models][4:] == [
        (True, False, False), (True, True, False), (True, False, True), (True, True, True)
    ]  # fmt: skip
    assert all(m.ms_mrg_pairs == 3 for m in models)  # the paper's network (Table IV row 3)
    assert len({json.dumps(m.identity(), sort_keys=True) for m in models}) == 8
    t4 = [t.config.network.model for t in expand(named_space("table4"), base).trials]
    assert [(m.use_audio, m.ms_mrg_pairs) for m in t4] == [
        (a, p) for a in (False, True) for p in (4, 3, 2, 1, 0)
    ]
    t5 = [t.config.network.model for t in expand(named_space("table5"), base).trials]
    assert not t5[0].use_audio
    assert [m.fusion for m in t5[1:]] == ["add", "mul", "concat", "bilinear", "mbt", "ravf"]


def test_malformed_space_files_name_the_key(tmp_path: Path) -> None:
    cases = {
        "params:\n  depth: {kind: grid, values: [1, 2]}\n": ["params.depth", "ravf_blocks"],
        "params:\n  fusion: {kind: grid, values: [ravf, film]}\n": [
            "params.fusion.values[1]",
            "'film'",
            '"bilinear"',
        ],
        "params:\n  lr: {kind: normal, low: 1, high: 2}\n": ["params.lr.kind", "loguniform"],
        "params:\n  heads: {kind: uniform, low: 1, high: 8}\n": ["params.heads.kind", "choice"],
        "parms: {}\n": ["parms: unknown key", "params"],
        "params:\n  lr: {kind: loguniform, low: 0, high: 0.1}\n": ["params.lr", "> 0"],
    }
    for k, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"space{k}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            SearchSpace.load(path)
        for word in [str(path), *words]:
            assert word in str(err.value), (text, str(err.value))


def test_a_file_extends_a_named_ablation(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "extends: table5\nname: t5-lr\nparams:\n  lr: {kind: grid, values: [1e-4, 3e-4]}\n"
    )
    space = SearchSpace.load(path)
    trials = expand(space, TrainConfig(preset="tiny")).trials
    assert len(trials) == 14 and {t.config.lr for t in trials} == {1e-4, 3e-4}
    assert trials[0].name == "t5-lr-00" and space.ablation == "table5"


def test_duplicates_and_rejected_points_are_dropped() -> None:
    """V-only trials ignore the fusion fields: fusion add and mul build one network."""
    space = SearchSpace.from_dict(
        {
            "name": "dups",
            "params": {
                "use_audio": {"kind": "grid", "values": [False, True]},
                "fusion": {"kind": "grid", "values": ["add", "mul"]},
            },
        }
    )
    exp = expand(space, TrainConfig(preset="tiny"))
    assert [t.values for t in exp.trials] == [
        {"use_audio": False, "fusion": "add"},
        {"use_audio": True, "fusion": "add"},
        {"use_audio": True, "fusion": "mul"},
    ]
    assert exp.dropped == [
        ({"use_audio": False, "fusion": "mul"}, "same network and settings as row 0")
    ]
    rejected = SearchSpace.from_dict({"params": {"heads": {"kind": "grid", "values": [1, 2]}}})
    exp = expand(rejected, TrainConfig(preset="tiny"))
    assert [t.values for t in exp.trials] == [{"heads": 2}]
    (values, reason), = exp.dropped  # fmt: skip
    assert values == {"heads": 1} and "rejected by the config" in reason and "heads" in reason
    assert "dropped 1 points" in "\n".join(dry_run_lines(rejected, exp))


def test_random_draws_are_seeded_and_in_range() -> None:
    space = SearchSpace.from_dict(
        {"num_samples": 5, "params": {"lr": {"kind": "loguniform", "low": 1e-5, "high": 1e-3},
                                       "a1": {"kind": "uniform", "low": -1.0, "high": 0.0},
                                       "heads": {"kind": "choice", "values": [2, 4]}}}
    )  # fmt: skip
    first = [t.values for t in expand(space, TrainConfig(preset="tiny")).trials]
    again = [t.values for t in expand(space, TrainConfig(preset="tiny")).trials]
    assert first == again and len(first) == 5
    assert all(1e-5 <= v["lr"] <= 1e-3 and -1 <= v["a1"] <= 0 for v in first)


def test_planned_trials_hold_validated_configs(tmp_path: Path) -> None:
    """plan() fills in each trial's storage and paths through validation: a Path given for
    a text field (storage_path) becomes text rather than a value pydantic's serializer
    warns about in every dump of the config (issue 25). No Ray."""
    from tuning.sweep import SweepOptions, plan

    weights = "weights/S3D_kinetics400.pt"  # relative: a trial runs in another folder
    base = TrainConfig(preset="tiny", data=tmp_path, network={"model": {"s3d_weights": weights}})
    options = SweepOptions(storage=tmp_path / "tune")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the serializer's warning fails the test
        trials = plan(two_trials("pair"), base, options).trials
        dumped = [t.config.to_dict() for t in trials]
    assert [d["storage_path"] for d in dumped] == [str(tmp_path / "tune" / "pair" / "trials")] * 2
    assert all(isinstance(t.config.storage_path, str) for t in trials)
    assert {d["network"]["model"]["s3d_weights"] for d in dumped} == {str(Path(weights).resolve())}


# =========================================================================== on Ray Tune


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    net = tt.small_network(use_audio=True)
    return tt.write_shards(tmp_path_factory.mktemp("data"), net, {"train": 2, "val": 1})


def tiny_base(shards: Path, uri: str) -> TrainConfig:
    return TrainConfig(
        network=tt.small_network(use_audio=True),
        data=shards,
        epochs=1,
        batch_size=2,
        max_steps_per_epoch=2,
        max_val_batches=1,
        grid_windows=0,
        system_metrics=False,
        register_as="",
        mlflow_model_format="pickle",
        mlflow_uri=uri,
        progress_every=0,
    )


def two_trials(name: str) -> SearchSpace:
    return SearchSpace.from_dict(
        {"name": name, "params": {"fusion": {"kind": "grid", "values": ["add", "mul"]}}}
    )


@pytest.mark.slow
def test_sweep_nests_trials_in_mlflow_and_tabulates(
    ray_session, shards: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from tuning.sweep import SweepOptions, run_sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(storage=tmp_path / "tune", eval_split="val", scheduler="fifo", verbose=0)
    result = run_sweep(two_trials("pair"), tiny_base(shards, uri), options, log=lambda m: None)
    assert [o.status for o in result.outcomes] == ["finished", "finished"]
    assert sorted(result.ran) == ["pair-00", "pair-01"]
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["avrsp.kind"] == "sweep"
    assert json.loads(parent.data.params["space"])["params"]["fusion"]["values"] == ["add", "mul"]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert sorted(c.info.run_name for c in children) == ["pair-00", "pair-01"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["network.model.fusion"] in ("add", "mul")
        assert "val_loss" in child.data.metrics and "eval.toy.cc" in child.data.metrics
    # The table: one measured row per trial, scored on the eval split; best in bold.
    table = result.table
    assert [r.labels[-1] for r in table.rows] == ["measured", "measured"]
    assert table.datasets == ("toy",)
    ccs = [r.get("toy", "cc") for r in table.rows]
    assert all(-1 <= v <= 1 for v in ccs)
    marked = result.files["table.md"].read_text()
    assert f"**{max(ccs):.3f}**" in marked
    arts = {a.path for a in client.list_artifacts(result.parent_run_id, "tables")}
    assert {"tables/results.json", "tables/results.marked.md"} <= arts
    # The trials sorted by val_loss, and the best config loads as a training config.
    losses = [o.metric for o in sorted(result.outcomes, key=lambda o: o.metric)]
    assert result.best_trial == min(result.outcomes, key=lambda o: o.metric).trial.name
    assert losses[0] <= losses[1]
    best = TrainConfig.load(result.files["best_config.yaml"])
    chosen = next(o for o in result.outcomes if o.trial.name == result.best_trial)
    assert best.network == chosen.trial.config.network and best.run_name == "avrsp"


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_its_unfinished_trial(
    ray_session, shards: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from tuning.sweep import SweepOptions, run_sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(storage=tmp_path / "tune", eval_split="val", scheduler="fifo", verbose=0)
    log, marker = tmp_path / "steps.log", tmp_path / "failed"

    def hook(epoch: int, step: int, rank: int) -> None:
        """Logs every step; the first step of the second trial raises, once. Defined here:
        Ray pickles a closure by value (a test module's class would not import there)."""
        starts = log.read_text().count("0 0\n") if log.exists() else 0
        with open(log, "a") as f:
            f.write(f"{epoch} {step}\n")
        if (epoch, step) == (0, 0) and starts == 1 and not marker.exists():
            marker.write_text("failed once\n")
            raise RuntimeError("injected: the sweep stops in its second trial")

    # No worker-group restarts: the failure must reach Tune (Train would retry it).
    space, base = (
        two_trials("resume"),
        tiny_base(shards, uri).model_copy(update={"max_failures": 0}),
    )
    first = run_sweep(space, base, options, step_hook=hook, log=lambda m: None)
    assert [o.status for o in first.outcomes] == ["finished", "error"]
    assert "injected" in first.outcomes[1].error
    assert log.read_text() == "0 0\n0 1\n0 0\n"  # trial 1's two steps, trial 2 failed
    model = first.outcomes[0].trial.config.run_dir / "model.pt"
    stamp = model.stat().st_mtime_ns

    again = run_sweep(space, base, options, step_hook=hook, log=lambda m: None)
    assert [o.status for o in again.outcomes] == ["finished", "finished"]
    assert again.ran == ["resume-01"] and again.parent_run_id == first.parent_run_id
    assert log.read_text() == "0 0\n0 1\n0 0\n0 0\n0 1\n"  # only trial 2 ran again
    assert model.stat().st_mtime_ns == stamp
    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_run(again.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{again.parent_run_id}'",
    )
    assert sorted(c.info.run_name for c in children) == ["resume-00", "resume-01"]
    assert all(c.info.status == "FINISHED" for c in children)
    with pytest.raises(ConfigError, match="other trials"):
        run_sweep(two_trials("resume").model_copy(update={"num_samples": 2}), base,
                  options.__class__(storage=tmp_path / "tune", seeds=(0, 1)))  # fmt: skip
