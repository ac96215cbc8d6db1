"""Jobs on a real two-node Ray cluster, with a PostgreSQL-backed MLflow server and an
S3-compatible object store on loopback (cluster/README.md).

One head node (4 CPUs) and one worker node (2 CPUs) from ``ray start``; the MLflow server,
PostgreSQL and the moto object store of :mod:`tests.services`. Everything the jobs read and
write goes through the object store (shards, checkpoints, the model) or the MLflow server
(the run and its artifacts); the test reads it all back from there. The nodes carry the
store's credentials in their environment, as a cloud node carries its role; ``avrsp
submit`` sends only the endpoints.

The worker node is killed mid-training, by its raylet's process id: Ray Train restarts the
worker group on the node that is left (``placement_strategy="SPREAD"`` is a preference,
not a rule, and the head has room for both workers) from the last checkpoint in the store,
and the job finishes (docs/TRAINING.md, "Faults and resuming": "A lost node").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_cluster import LocalCluster, wait_for
from services import Workspace

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
AVRSP = [sys.executable, "-m", "workflows.cli"]
EPOCHS, STEPS = 3, 4


@pytest.fixture(scope="module")
def cluster(tracking_stack):
    workspace = Workspace(prefix="avrsp-cluster-")
    cluster = LocalCluster.create(workspace, extra_env=tracking_stack.env)
    try:
        cluster.start_head(cpus=4)
        cluster.add_worker("worker", cpus=2)
        yield cluster
    finally:
        cluster.stop()
        workspace.close()


def client_env(cluster: LocalCluster, stack, **extra: str) -> dict[str, str]:
    """The submitting user's shell: the cluster's token, where MLflow and the store are,
    and no store credentials (the job gets those from its nodes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    return {
        **env,
        "RAY_AUTH_TOKEN": cluster.env["RAY_AUTH_TOKEN"],
        "RAY_ADDRESS": cluster.dashboard_url,
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "AWS_ENDPOINT_URL": stack.s3_endpoint,
        "AWS_DEFAULT_REGION": stack.env.get("AWS_DEFAULT_REGION", "us-east-1"),
        "HOME": str(cluster.workspace.root),  # no ~/.ray/auth_token of this machine's user
        **extra,
    }


def avrsp(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AVRSP, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def s3(stack):
    """The test's own view of the bucket (pyarrow, the store's credentials)."""
    from pyarrow import fs

    env = stack.env
    return fs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=stack.s3_endpoint,
        region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def objects(stack, prefix: str) -> list[str]:
    from pyarrow import fs

    selector = fs.FileSelector(f"{stack.bucket}/{prefix}", recursive=True, allow_not_found=True)
    infos = s3(stack).get_file_info(selector)
    return sorted(i.path.split("/", 1)[1] for i in infos if i.type == fs.FileType.File)


def test_a_client_without_the_token_is_refused_clearly(cluster, tracking_stack) -> None:
    env = client_env(cluster, tracking_stack)
    env.pop("RAY_AUTH_TOKEN")
    done = avrsp("jobs", "list", env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "token" in done.stderr and "ray get-auth-token" in done.stderr
    ok = avrsp("jobs", "list", env=client_env(cluster, tracking_stack), timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_preprocess_then_spread_training_survives_a_lost_node(
    cluster, tracking_stack, tmp_path: Path
) -> None:
    stack = tracking_stack
    env = client_env(cluster, stack)
    synth = tmp_path / "synth"  # the videos: on a filesystem both nodes share (this disk)
    made = avrsp("synth", "--out", str(synth), "--videos", "12", "--seconds", "4", env=env)
    assert made.returncode == 0, made.stderr

    data, runs = f"s3://{stack.bucket}/cluster/data", f"s3://{stack.bucket}/cluster/runs"
    pre = avrsp("submit", "preprocess", "--source", f"synthetic:{synth}", "--out", data,
                "--preset", "tiny", "--stride", "8", env=env)  # fmt: skip
    assert pre.returncode == 0, pre.stdout[-3000:] + pre.stderr[-3000:]
    assert "SUCCEEDED" in pre.stderr and "12 ok" in pre.stdout
    stored = objects(stack, "cluster/data")
    shards = [p for p in stored if p.endswith(".parquet")]
    markers = [p for p in stored if p.startswith("cluster/data/done/")]
    assert len(markers) == 12 and len(shards) >= 12, stored
    assert "cluster/data/manifest.json" in stored and "cluster/data/failures.json" in stored
    assert not [p for p in stored if "/." in p], "no temporary object is left"

    run_name = "spread"
    submitted = avrsp(
        "submit", "--no-wait", "train", "--data", data, "--storage", runs,
        "--run-name", run_name, "--num-workers", "2", "--placement-strategy", "SPREAD",
        "--epochs", str(EPOCHS), "--max-steps-per-epoch", str(STEPS), "--batch-size", "2",
        "--val-split", "test", "--set", "max_failures=3", "--set", "grid_windows=2",
        env=env, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stderr.split("job ", 1)[1].split()[0]

    # Both workers run, on different nodes.
    def workers() -> list[dict]:
        status = cluster.api(f"/api/jobs/{job_id}")["status"]
        if status in ("FAILED", "STOPPED"):
            logs = avrsp("jobs", "logs", job_id, env=env, timeout=60).stdout
            pytest.fail(f"training job {status}:\n{logs[-4000:]}")
        alive = [a for a in cluster.actors("RayTrainWorker") if a["state"] == "ALIVE"]
        return alive if len(alive) == 2 else []

    placed = wait_for(workers, 240, "two alive Ray Train workers")
    assert len({a["node_id"] for a in placed}) == 2, placed

    # Kill the worker node once a checkpoint is in the store.
    prefix = f"cluster/runs/{run_name}/checkpoint_epoch_0000/checkpoint.pt"
    wait_for(lambda: prefix in objects(stack, "cluster/runs"), 300, "the first checkpoint")
    raylet = cluster.nodes[1].raylet_pid()
    os.kill(raylet, signal.SIGKILL)
    killed_at = time.monotonic()

    follow = avrsp("jobs", "logs", job_id, "--follow", env=env, timeout=900)
    logs = follow.stdout
    assert follow.returncode == 0, logs[-5000:] + follow.stderr[-2000:]
    assert "SUCCEEDED" in follow.stderr
    print(f"job finished {time.monotonic() - killed_at:.0f} s after the node was killed")

    # What the job left in the store: every epoch's checkpoint was reported (the best and
    # the latest are kept), the model, the driver's files.
    stored = objects(stack, f"cluster/runs/{run_name}")
    kept = sorted({p.split("/")[3] for p in stored if "/checkpoint_epoch_" in p})
    assert kept[-1] == f"checkpoint_epoch_{EPOCHS - 1:04d}", kept
    for name in ("model.pt", "mlflow_run.json", "train_config.json"):
        assert f"cluster/runs/{run_name}/{name}" in stored, stored

    # The MLflow run, read back over HTTP from the server.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_uri)
    runs_found = client.search_runs(
        [client.get_experiment_by_name("avrsp").experiment_id],
        filter_string=f"attributes.run_name = '{run_name}'",
    )
    assert len(runs_found) == 1
    run = runs_found[0]
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert sorted(set(steps)) == list(range(EPOCHS)), steps
    assert run.data.tags["run_dir"] == f"{runs}/{run_name}"
    assert run.data.tags["model_path"] == f"{runs}/{run_name}/model.pt"
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert artifacts, "artifacts reached the server"
    # The store holds them: the server's artifact root is in the same bucket.
    assert objects(stack, "mlflow"), "MLflow's artifacts are in the object store"


def test_a_failing_job_returns_its_exit_status_and_a_stopped_one_3(
    cluster, tracking_stack, tmp_path: Path
) -> None:
    env = client_env(cluster, tracking_stack)
    missing = f"s3://{tracking_stack.bucket}/nothing-here"
    failed = avrsp("submit", "train", "--data", missing, "--num-workers", "1",
                   "--storage", f"s3://{tracking_stack.bucket}/failing-runs", env=env)  # fmt: skip
    assert failed.returncode == 2, failed.stderr[-2000:]  # avrsp train's own exit status
    assert f"--data {missing}: no such folder" in failed.stdout + failed.stderr
    assert "FAILED" in failed.stderr

    synth = tmp_path / "synth"
    assert avrsp("synth", "--out", str(synth), "--videos", "24", env=env).returncode == 0
    started = avrsp("submit", "--no-wait", "--job-id", "avrsp-to-stop", "preprocess",
                    "--source", f"synthetic:{synth}", "--preset", "paper",
                    "--out", f"s3://{tracking_stack.bucket}/stopped", env=env)  # fmt: skip
    assert started.returncode == 0, started.stderr
    listed = avrsp("jobs", "list", env=env, timeout=60)
    assert "avrsp-to-stop" in listed.stdout
    stop = avrsp("jobs", "stop", "avrsp-to-stop", env=env, timeout=60)
    assert stop.returncode == 0 and "stop requested" in stop.stdout, stop.stderr
    follow = avrsp("jobs", "logs", "avrsp-to-stop", "--follow", env=env, timeout=300)
    assert follow.returncode == 3 and "STOPPED" in follow.stderr, follow.stderr[-2000:]
