"""Events crafted to be counted (never scrubbed) while grouping apart from their scrubbed selves: relay's normalizer
rewrites structure before grouping reads it (a top-level stacktrace moved into the exception, a filename derived
from `abs_path`, non-string frame fields dropped, a `?` function emptied, an environment `None` dropped, a .NET
runtime's version derived from its build). Each is sent through the real ingest past the keep threshold, and must
land in the issue, with the culprit, that the full scrub gives it."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import LiveServer, auth_header, envelope_bytes, make_event, post


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    return event["exception"]["values"][-1]["stacktrace"]["frames"]  # type: ignore[no-any-return]


def _send(server: LiveServer, event: dict[str, Any]) -> tuple[object, ...]:
    event = {**copy.deepcopy(event), "event_id": uuid.uuid4().hex}
    reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
    assert reply.status == 200, reply.body
    conn = server.ctx.store.reader()
    for _ in range(200):
        row = conn.execute(
            "SELECT i.fingerprint, e.payload IS NOT NULL, e.culprit_module, e.culprit_function, e.culprit_filename,"
            " e.environment FROM events e JOIN issues i ON i.id = e.issue_id WHERE e.event_id = ?",
            (event["event_id"],),
        ).fetchone()
        if row:
            return tuple(row)
        time.sleep(0.05)
    raise AssertionError("not stored")


def _set(path: Callable[[dict[str, Any]], dict[str, Any]], **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda event: path(event).update(values)


CRAFTED: dict[str, tuple[Callable[[dict[str, Any]], None], Callable[[dict[str, Any]], None]]] = {
    # (what the base events of the issue look like, what the crafted one adds)
    "top-level stacktrace": (lambda e: None, _set(lambda e: e, stacktrace={"frames": [
        {"module": "admin.billing", "function": "charge", "filename": "admin/billing.py", "in_app": True}]})),
    "abs_path without filename": (
        lambda e: [f.pop(k, None) for f in _frames(e) for k in ("module", "filename", "abs_path")],
        _set(lambda e: _frames(e)[-1], abs_path="/srv/other/handler.py"),
    ),
    "non-string module": (_set(lambda e: _frames(e)[-1], module="123"), _set(lambda e: _frames(e)[-1], module=123)),
    "function ?": (lambda e: None, _set(lambda e: _frames(e)[-1], function="?")),
    "environment None": (lambda e: None, _set(lambda e: e, environment="None")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_event_lands_where_the_full_scrub_puts_it(live_server: Callable[..., Any], case: str) -> None:
    sampled = live_server()
    full = live_server(name="full", ingest_keep_every_payload=True)
    shape, craft = CRAFTED[case]
    base = make_event(release=f"svc@{case.replace(' ', '-')}")
    shape(base)
    crafted = copy.deepcopy(base)
    craft(crafted)
    for server in (sampled, full):
        for _ in range(6):  # past the first 5 kept of the release: the crafted one could be counted
            _send(server, base)
    counted_or_kept, scrubbed = _send(sampled, crafted), _send(full, crafted)
    # The same issue and the same stored culprit and environment as its scrubbed self (kept, here: uncountable).
    assert (counted_or_kept[0], *counted_or_kept[2:]) == (scrubbed[0], *scrubbed[2:])
    assert counted_or_kept[1], f"{case}: counted without the scrub"
