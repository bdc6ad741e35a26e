"""A counted event is never scrubbed, so it may be counted only when grouping and every field its row keeps read
the same on the raw event as on its scrubbed self: proved here over real sentry-sdk events, secrets included."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from prodloop.server.clock import SystemClock
from prodloop.server.ingest.pipeline import EventProcessor, _clamped
from prodloop.server.ingest.sampling import Sampler
from prodloop.server.ingest.scrub import Scrubber
from prodloop.server.settings import Settings
from tests.sample_service import CRASHES, SampleService

AWS = "AKIAIOSFODNN7EXAMPLE"
CARD = "4111 1111 1111 1111"


def _variant(event: dict[str, Any], change: Any) -> dict[str, Any]:
    out = copy.deepcopy(event)
    change(out)
    return out


def _crash(event: dict[str, Any]) -> dict[str, Any]:
    exc: dict[str, Any] = event["exception"]["values"][-1]
    return exc


def _culprit_frame(event: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = [f for f in _crash(event)["stacktrace"]["frames"] if f.get("in_app")][-1]
    return frame


def _secret_inputs(event: dict[str, Any]) -> None:
    _crash(event)["value"] = f"declined: card {CARD}, key {AWS}, mail ann@example.com, password=hunter2"
    _culprit_frame(event)["vars"] = {"card": CARD, "token": f"Bearer {AWS}", "note": "ann@example.com hunter2"}
    event["tags"] = {"tenant": "acme", "password": "hunter2"}
    event["user"] = {"email": "ann@example.com", "ip_address": "10.1.2.3"}


def _tenant(payload: dict[str, Any]) -> str | None:
    tags = payload.get("tags")
    pairs = tags.items() if isinstance(tags, dict) else tags or []
    return next((v for k, v in pairs if k == "tenant"), None)


@pytest.fixture(scope="module")
def real_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    service = SampleService(tmp_path_factory.mktemp("sample") / "shop")
    return [service.event(crash) for crash in CRASHES]


def test_a_countable_raw_event_groups_and_reads_as_its_scrubbed_self(real_events: list[dict[str, Any]]) -> None:
    settings = Settings(repo=".")
    scrubbed_by = EventProcessor(settings, SystemClock())  # no policy: every event scrubbed whole
    sampler = Sampler(Scrubber(), tenant_tag="tenant", sensitive_fields=[])
    with_secrets = [_variant(e, _secret_inputs) for e in real_events]
    tenanted = [_variant(e, lambda ev: ev.update(tags={"tenant": "acme-eu"})) for e in real_events]
    countable = 0
    for raw in [*real_events, *with_secrets, *tenanted]:
        facts = sampler.facts(copy.deepcopy(raw), "salt")
        now = 1_900_000_000.0
        record = scrubbed_by.process(copy.deepcopy(raw), project_id=1, user_salt="salt", source="test", now=now)
        assert record.payload is not None
        payload = json.loads(record.payload)
        assert facts.countable, raw["exception"]["values"][-1]["type"]
        countable += 1
        assert facts.fingerprint == record.fingerprint
        assert (facts.release, facts.environment, facts.level, facts.transaction, facts.exception_type) == (
            record.release, record.environment, record.level, record.transaction, record.exception_type,
        )  # fmt: skip
        culprit = facts.culprit
        assert (culprit.module, culprit.function, culprit.filename) == (
            record.culprit_module, record.culprit_function, record.culprit_filename,
        )  # fmt: skip
        assert _clamped(facts.timestamp, now, live=False) == pytest.approx(record.timestamp, abs=1e-3)
        summary = json.loads(facts.summary or "{}")
        assert _tenant(summary) == _tenant(payload)
        assert summary.get("contexts", {}).get("runtime") == {
            k: v for k, v in payload["contexts"]["runtime"].items() if k in ("name", "version")
        }
        for secret in (AWS, CARD, "hunter2", "ann@example.com", "10.1.2.3"):
            assert secret not in json.dumps(facts.summary)
    assert countable == 3 * len(CRASHES)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda e: _crash(e).update(type="Error_ann@example.com"), id="type-with-email"),
        pytest.param(lambda e: _culprit_frame(e).update(function=AWS), id="function-with-key"),
        pytest.param(lambda e: _culprit_frame(e).update(module="home.x", filename="/home/alice/x.py"), id="home"),
        pytest.param(lambda e: [f.pop("in_app", None) for f in _crash(e)["stacktrace"]["frames"]], id="no-in-app"),
        pytest.param(lambda e: e.update(tags={"tenant": "ann@example.com"}), id="tenant-email"),
        pytest.param(lambda e: e.update(release=f"shop@{CARD}"), id="release-card"),
        pytest.param(lambda e: e.update(release="shop/1.0"), id="release-relay-drops"),
        pytest.param(lambda e: e.update(environment="prod\n"), id="environment-trimmed"),
        pytest.param(lambda e: e.update(fingerprint=["{{ default }}", "ann@example.com"]), id="own-fingerprint"),
        pytest.param(lambda e: e.update(transaction="GET /u/ann@example.com"), id="transaction-email"),
        pytest.param(lambda e: e.update(timestamp="soon"), id="timestamp"),
        pytest.param(lambda e: e.update(contexts={"runtime": {"raw_description": "CPython 3.11"}}), id="runtime-raw"),
    ],
)
def test_an_event_that_would_scrub_or_normalize_differently_is_never_countable(
    real_events: list[dict[str, Any]], change: Any
) -> None:
    sampler = Sampler(Scrubber(), tenant_tag="tenant", sensitive_fields=[])
    event = _variant(real_events[0], change)
    assert not sampler.facts(event, "salt").countable


def test_a_sensitive_field_naming_a_read_key_turns_counting_off() -> None:
    scrubber = Scrubber(sensitive_fields=["module"])
    assert not Sampler(scrubber, tenant_tag="tenant", sensitive_fields=["module"]).enabled
    assert not Sampler(Scrubber(), tenant_tag="tenant", sensitive_fields=["env"]).enabled  # relay: key substrings
    assert Sampler(Scrubber(), tenant_tag="tenant", sensitive_fields=["iban"]).enabled
