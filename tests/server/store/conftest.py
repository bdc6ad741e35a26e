"""The store's tests run on both engines: SQLite and PostgreSQL (`tests/pg.py`)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)
