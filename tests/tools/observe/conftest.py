"""Fixtures of the closing stage's scenario tests: the simulator (tests/post_merge_sim.py) over the sample's real
crash events, captured once per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.post_merge_sim import Sim
from tests.sample_service import SampleService


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> SampleService:
    """The sample's real crash events, captured once for every simulation of the module."""
    service = SampleService(tmp_path_factory.mktemp("events") / "shop")
    for crash in ("unknown_sku", "zero_rate"):
        service.event(crash)
    return service


@pytest.fixture
def sim(events: SampleService, tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Factory: a simulation in its own repository and store (named, so a test may make several)."""
    made: list[Sim] = []

    def build(name: str = "s", **settings: Any) -> Sim:
        made.append(Sim(tmp_path / name / "shop", tmp_path / name / "data", events_from=events, **settings))
        return made[-1]

    yield build
    for s in made:
        s.close()
