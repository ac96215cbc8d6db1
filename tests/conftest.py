"""Shared test fixtures and the ``isolated`` marker.

``shared_data`` is the team's real test material in ``../shared/data`` (beside the
checkout; ``AVRSP_SHARED`` overrides). Tests that need it skip cleanly where it is absent.

``@pytest.mark.isolated`` runs a test in a fresh ``python -m pytest`` process of its own,
so a native kernel that kills the process (a segmentation fault, an abort) or hangs fails
that test, by name, instead of ending the whole run. It costs a few seconds per test
(a new interpreter imports torch), so it is for tests that drive native kernels with
unusual shapes: the backward sweeps of ``test_model.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The MLflow tracking stack (PostgreSQL, moto's S3, mlflow server) for every test file.
from services import postgres_server, s3_store, service_workspace, tracking_stack  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVRSP_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"shared test material not found at {data}")
    return data


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole run (starting Ray costs seconds): 4 logical CPUs so
    that Train workers do not starve Ray Data, a small object store, no dashboard."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=4,
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def crash_once(tmp_path: Path):
    """Fault injection for training tests: ``hook, marker, calls = crash_once(epoch, step,
    rank)`` gives a ``step_hook`` for :func:`workflows.train.train` (it runs on every Ray
    Train worker before every step) whose worker of ``rank`` exits hard (``os._exit(1)``)
    before ``step`` of ``epoch``, once: the file ``marker`` records it and stops it from
    crashing again. Every call, on every worker and attempt, appends ``"epoch step rank"``
    to the file ``calls``. Only for ``num_workers >= 1``: in-process it kills pytest."""

    def make(epoch: int, step: int, rank: int):
        marker, calls = tmp_path / "crashed", tmp_path / "steps.log"

        def hook(e: int, s: int, r: int) -> None:
            with open(calls, "a") as log:
                log.write(f"{e} {s} {r}\n")
            if (e, s, r) == (epoch, step, rank) and not marker.exists():
                marker.write_text(f"crashed at epoch {e} step {s} rank {r} pid {os.getpid()}\n")
                os._exit(1)

        return hook, marker, calls

    return make


_CHILD = "AVRSP_ISOLATED_CHILD"
ISOLATED_TIMEOUT_S = 600


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``isolated`` tests in a child pytest process; report how the child ended."""
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(_CHILD):
        return None
    command = [
        sys.executable,
        "-m",
        "pytest",
        pyfuncitem.nodeid,
        "-q",
        "-rs",
        "--no-header",
        "-p",
        "no:cacheprovider",
    ]
    try:
        child = subprocess.run(
            command,
            cwd=pyfuncitem.config.rootpath,
            env={**os.environ, _CHILD: "1"},
            capture_output=True,
            text=True,
            timeout=ISOLATED_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""  # bytes, even with text=True
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(
            f"{pyfuncitem.nodeid} hung: no result after {ISOLATED_TIMEOUT_S} s in its own "
            f"process (killed)\n{out[-3000:]}",
            pytrace=False,
        )
    output = (child.stdout + child.stderr)[-4000:]
    if child.returncode == 0 and " passed" in child.stdout:
        return True
    if child.returncode == 0 and " skipped" in child.stdout:
        reasons = [line for line in child.stdout.splitlines() if line.startswith("SKIPPED")]
        pytest.skip(f"in its own process: {reasons[0] if reasons else child.stdout.strip()}")
    pytest.fail(
        f"{pyfuncitem.nodeid} failed in its own process ({_describe(child.returncode)}):\n{output}",
        pytrace=False,
    )
    return None
