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
