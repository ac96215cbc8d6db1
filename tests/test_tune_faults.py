"""Faults a sweep meets (issue 26): `avrsp tune` killed with SIGKILL and run again, a
trial outcome that is empty or torn, Ray Tune failing under the sweep, and options that
cannot work, refused before any trial starts. The shards are tests/test_tune.py's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_train as tt
import yaml
from test_tune import tiny_base

from avrsp.errors import AVRSPError
from tuning.spaces import SearchSpace
from workflows.cli import main

REPO = Path(__file__).resolve().parents[1]
SPACE = "name: mini\nparams:\n  fusion: {kind: grid, values: [ravf, add]}\n"


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    net = tt.small_network(use_audio=True)
    return tt.write_shards(tmp_path_factory.mktemp("data"), net, {"train": 2, "val": 1})


def tune_args(shards: Path, root: Path) -> list[str]:
    """`avrsp tune` on the tiny shards: two trials (fusion ravf, add), one epoch of one
    step, one trial at a time, FIFO, scored on the val split."""
    (root / "space.yaml").write_text(SPACE)
    config = tiny_base(shards, "").to_dict()
    config.pop("mlflow_uri")
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    return ["tune", "--space", str(root / "space.yaml"), "--config", str(root / "train.yaml"),
            "--data", str(shards), "--epochs", "1", "--max-steps-per-epoch", "1",
            "--scheduler", "fifo", "--max-concurrent", "1", "--cpus-per-trial", "0.5",
            "--eval-split", "val", "--storage", str(root / "tune"),
            "--mlflow-uri", f"sqlite:///{root / 'mlflow.db'}"]  # fmt: skip


# =========================================================================== no Ray


def test_unusable_trial_outcomes_are_not_results(tmp_path: Path) -> None:
    """An empty or torn file, no epoch, no finite metric, a model that is gone or replaced:
    none of them is a result (the trial runs again, it is not ranked)."""
    from tuning.sweep import RESULT_FILE, read_result, write_result

    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    epoch = {"epoch": 0, "val_loss": 3.25, "val_cc": 0.5}
    write_result(tmp_path, "finished", [epoch, {**epoch, "epoch": 1, "val_loss": 3.5}], model=model)
    found = read_result(tmp_path, "val_loss", "min")
    assert found is not None and (found.status, found.metric, found.epochs) == ("finished", 3.25, 2)
    good = (tmp_path / RESULT_FILE).read_text()
    cases = {
        "empty": "",
        "torn": good[: len(good) // 2],
        "no epoch": good.replace('"epochs": 2', '"epochs": 0'),
        "null metric": json.dumps({**json.loads(good), "history": [{**epoch, "val_loss": None}]}),
        "other status": good.replace('"finished"', '"running"'),
    }
    for what, text in cases.items():
        (tmp_path / RESULT_FILE).write_text(text)
        assert read_result(tmp_path, "val_loss", "min") is None, what
    (tmp_path / RESULT_FILE).write_text(good)
    model.write_bytes(b"other weights")  # a model exported since: not this result's
    assert read_result(tmp_path, "val_loss", "min") is None
    model.unlink()
    assert read_result(tmp_path, "val_loss", "min") is None


def test_tune_checks_every_option_before_a_trial_starts(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refused in one line naming the option, exit 2, before Ray, MLflow or a trial
    (avrsp train checks --val-split up front too)."""
    args = tune_args(shards, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")

    def with_option(flag: str, value: str) -> list[str]:
        out = list(args)
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
        return out

    cases = [
        (with_option("--eval-split", "nosuch"), ["--eval-split nosuch", "'nosuch'", "val"]),
        (with_option("--eval-source", "bogus:/x"), ["--eval-source bogus:/x", "KIND:PATH"]),
        (with_option("--eval-source", f"synthetic:{tmp_path}/none"), ["--eval-source synth"]),
        (with_option("--eval-source", f"windows:{tmp_path}/none"), ["--eval-source windows:"]),
        (with_option("--val-split", "nosuch"), ["split 'nosuch'"]),
        (with_option("--storage", str(blocker / "tune")), ["--storage", "a-file"]),
        (with_option("--space", str(tmp_path / "none.yaml")), ["none.yaml"]),
        (with_option("--max-concurrent", "0"), ["--max-concurrent"]),
        (with_option("--eval-limit", "0"), ["--eval-limit"]),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("avrsp tune: error: "), err
        for word in words:
            assert word in err, (word, err)
        assert not (tmp_path / "tune" / "mini" / "trials").exists()  # no trial started
        assert not (tmp_path / "mlflow.db").exists()  # no sweep run opened


def test_ray_tune_failing_under_a_sweep_ends_its_run(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune itself failing (as a restored experiment state did: "Trial returned a result
    which did not include the specified metric(s) val_loss") is one line with the way out,
    and the sweep's MLflow run is not left RUNNING."""
    from mlflow.tracking import MlflowClient

    import tuning.sweep as sweep

    def broken(*args, **kwargs):
        raise ValueError("Trial returned a result which did not include the specified metric")

    monkeypatch.setattr(sweep, "_fit", broken)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = SearchSpace.from_dict(
        {"name": "broken", "params": {"fusion": {"kind": "grid", "values": ["ravf", "add"]}}}
    )
    options = sweep.SweepOptions(storage=tmp_path / "tune", eval_split="val", scheduler="fifo")
    with pytest.raises(AVRSPError) as err:
        sweep.run_sweep(space, tiny_base(shards, uri), options, log=lambda m: None)
    text = str(err.value)
    assert "\n" not in text and "did not include" in text and "run the same command" in text
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("avrsp").experiment_id]
    )
    assert run.info.run_name == "broken" and run.info.status == "FAILED"


# =========================================================================== SIGKILL


def kill_when(argv: list[str], path: Path, log: Path, timeout_s: float = 400.0) -> None:
    """Run `avrsp tune` in a process group of its own (its output in ``log``); SIGKILL the
    group the moment ``path`` exists (Ray's services are reaped by the project's guard)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workflows.cli", *argv], cwd=REPO, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        try:
            while not path.exists():
                assert proc.poll() is None, f"avrsp tune ended (rc {proc.returncode}) before {path}"
                assert time.monotonic() < deadline, f"{path} did not appear"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def check_ranking(root: Path, out: str) -> list[str]:
    """The re-run's ranking, best trial and best config against what each trial's one
    MLflow child run logged; returns the trials in ranked order."""
    from mlflow.tracking import MlflowClient

    folder = root / "tune" / "mini"
    rows = json.loads((folder / "trials_results.json").read_text())
    assert [(r["status"], r["epochs"]) for r in rows] == [("finished", 1)] * 2, rows
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("avrsp").experiment_id],
        filter_string="tags.`avrsp.kind` = 'sweep'",
    )
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(c.info.run_name for c in children) == ["mini-00", "mini-01"]  # one each
    assert all(c.info.status == "FINISHED" for c in children)
    logged = {c.info.run_name: c.data.metrics["val_loss"] for c in children}
    assert [r["trial"] for r in rows] == sorted(logged, key=logged.get)
    for r in rows:
        assert r["val_loss"] == pytest.approx(logged[r["trial"]], rel=1e-6)
    best = rows[0]["trial"]
    assert f"best: {best};" in out
    fusion = yaml.safe_load((folder / "best_config.yaml").read_text())["network"]["model"]
    assert fusion["fusion"] == {"mini-00": "ravf", "mini-01": "add"}[best]
    return [r["trial"] for r in rows]


# In its own process: after other tests of the same pytest run, the in-process re-run once
# stopped with "PicklingError: Can't pickle <built-in function print>: it's not the same
# object as builtins.print" (Ray Train's workers replace builtins.print; not yet traced),
# and it passes alone; isolated, its verdict does not depend on the tests before it.
@pytest.mark.slow
@pytest.mark.isolated
def test_a_sweep_killed_twice_resumes_and_ranks_by_its_logged_numbers(
    ray_session, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL once the first trial's model.pt appears (before its outcome is written);
    the same command again, SIGKILLed once the second trial has started (its MLflow run
    made, its training under way); the same command a third time finishes the sweep, ranks
    its two trials by the numbers their MLflow runs logged, one child run per trial."""
    args = tune_args(shards, tmp_path)
    trials = tmp_path / "tune" / "mini" / "trials"
    kill_when(args, trials / "mini-00" / "model.pt", tmp_path / "killed-1.log")
    kill_when(args, trials / "mini-01" / "mlflow_run.json", tmp_path / "killed-2.log")
    # The third run as a user runs it (its own process, its own Ray): both trials again,
    # and the terminal shows the sweep's own lines only (issue 26: quiet means quiet).
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["AVRSP_LOG_DIR"] = str(tmp_path / "logs")
    done = subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    check_ranking(tmp_path, done.stdout)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    own = re.compile(
        r"avrsp tune: Ray and MLflow log to |\[\d/\d\] trial mini-0\d finished: |sweep mini: |"
        r"\*\*sweep mini|\||trials: |best: mini-0\d; |MLflow parent run "
    )
    assert [line for line in lines if not own.match(line)] == [], done.stdout + done.stderr
    assert len(lines) == len(set(lines)), lines  # each once
    trial_lines = [line for line in lines if re.match(r"\[\d/\d\] trial", line)]
    assert trial_lines and trial_lines[-1].startswith(f"[{len(trial_lines)}/"), lines
    assert "(RayTrainWorker pid=" in next((tmp_path / "logs").glob("tune-*.log")).read_text()
