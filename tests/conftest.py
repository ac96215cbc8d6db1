"""Shared test fixtures.

``shared_data`` is the team's real test material in ``../shared/data`` (beside the
checkout; ``AVRSP_SHARED`` overrides). Tests that need it skip cleanly where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
