"""Release health and performance from an unmodified sentry-sdk: `session`, `sessions` and `transaction` envelope
items turned into counts per hour, never stored raw.

- A `session` item is one update of one session (scripts and CLIs; `init` on its first update, a final status
  when it ends): it counts as started on `init`, and on its final update as errored (it saw errors), crashed or
  abnormal. Counting only those two moments needs no per-session state.
- A `sessions` item is the SDK's own aggregate (servers): per minute, how many sessions ended exited, errored,
  abnormal or crashed; every one of them started.
- A `transaction` item is reduced to its name (scrubbed), release, environment, hour, whether it failed (trace
  status not ok) and its duration, which lands in a log-scale histogram (`BASE`: quantiles within ~5%).

Production data is hostile: every field is read by its type, names are capped, and an item that does not parse is
refused with the reason rather than half-counted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prodloop.server.errors import IngestError
from prodloop.server.ingest.scrub import keyed_hash
from prodloop.server.store.records import HOUR, SessionCounts, TransactionSample

_TERMINAL = {"exited": "", "crashed": "crashed", "abnormal": "abnormal"}
_MAX_PACKAGES = 2000


def parse_session(payload: bytes, project_id: int, user_salt: str) -> list[SessionCounts]:
    item = _object(payload, "session item")
    release, environment = _attrs(item.get("attrs"), "session item")
    when = _time(item.get("timestamp") or item.get("started"), "session item timestamp")
    status = item.get("status")
    if status is not None and not isinstance(status, str):
        raise IngestError("session item status is not a string", 'send "ok", "exited", "crashed" or "abnormal"')
    errors = item.get("errors", 0)
    if not isinstance(errors, int) or isinstance(errors, bool) or errors < 0:
        raise IngestError("session item errors is not a count", "send a non-negative integer")
    user = _user_hash(item.get("did"), user_salt)
    started = 1 if item.get("init") is True else 0
    final = _TERMINAL.get(status or "")
    counts = SessionCounts(
        project_id, release, environment, int(when // HOUR), started=started,
        errored=1 if final is not None and (errors > 0 or final) else 0,
        crashed=1 if final == "crashed" else 0, abnormal=1 if final == "abnormal" else 0,
        user_hash=user if started else None,
    )  # fmt: skip
    return [counts] if started or final is not None else []


def parse_sessions(payload: bytes, project_id: int, user_salt: str) -> list[SessionCounts]:
    item = _object(payload, "sessions item")
    release, environment = _attrs(item.get("attrs"), "sessions item")
    aggregates = item.get("aggregates")
    if not isinstance(aggregates, list):
        raise IngestError("sessions item has no aggregates list", "send what sentry-sdk sends")
    out = []
    for n, group in enumerate(aggregates[:1000]):
        if not isinstance(group, dict):
            raise IngestError(f"sessions aggregate {n + 1} is not an object", "send what sentry-sdk sends")
        when = _time(group.get("started"), f"sessions aggregate {n + 1} started")
        counts = {k: _count(group.get(k), f"sessions aggregate {n + 1} {k}") for k in _AGGREGATE_KEYS}
        crashed, abnormal, errored = counts["crashed"], counts["abnormal"], counts["errored"]
        out.append(
            SessionCounts(
                project_id, release, environment, int(when // HOUR), started=sum(counts.values()),
                errored=errored + crashed + abnormal, crashed=crashed, abnormal=abnormal,
                user_hash=_user_hash(group.get("did"), user_salt),
            )
        )  # fmt: skip
    return out


_AGGREGATE_KEYS = ("exited", "errored", "abnormal", "crashed")


def parse_transaction(payload: bytes, project_id: int) -> TransactionSample:
    item = _object(payload, "transaction item")
    name = item.get("transaction")
    if not isinstance(name, str) or not name:
        raise IngestError("transaction item has no name", 'send a "transaction" name')
    start = _time(item.get("start_timestamp"), "transaction start_timestamp")
    end = _time(item.get("timestamp"), "transaction timestamp")
    contexts = item.get("contexts")
    trace = contexts.get("trace") if isinstance(contexts, dict) else None
    status = trace.get("status") if isinstance(trace, dict) else None
    return TransactionSample(
        project_id=project_id,
        name=name[:200],
        release=_text(item.get("release")),
        environment=_text(item.get("environment")),
        bucket=int(end // HOUR),
        failed=isinstance(status, str) and status not in ("ok", "unknown"),
        duration_ms=min(max(0.0, (end - start) * 1000.0), 7 * 86400 * 1000.0),  # a week at most
    )


_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,49}")


def packages_of(modules: Any, scrub: Callable[[str], str]) -> str | None:
    """An event's installed packages (its `modules`), as compact JSON sorted by name; None when it has none. Only
    well-formed names and versions are kept, and none that the scrubber would change (a token is no package)."""
    if not isinstance(modules, dict) or not modules:
        return None
    kept = {
        name: version
        for name, version in list(modules.items())[:_MAX_PACKAGES]
        if isinstance(name, str) and isinstance(version, str)
        and _PACKAGE.fullmatch(name) and _VERSION.fullmatch(version)
        and scrub(name) == name and scrub(version) == version
    }  # fmt: skip
    return json.dumps(dict(sorted(kept.items())), separators=(",", ":")) if kept else None


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        raise IngestError(f"{what} is not JSON", "send what sentry-sdk sends") from None
    if not isinstance(value, dict):
        raise IngestError(f"{what} is not a JSON object", "send what sentry-sdk sends")
    return value


def _attrs(attrs: Any, what: str) -> tuple[str, str]:
    if not isinstance(attrs, dict) or not isinstance(attrs.get("release"), str) or not attrs["release"]:
        raise IngestError(f"{what} names no release", 'set release in sentry_sdk.init (sessions need "attrs.release")')
    return attrs["release"][:200], _text(attrs.get("environment")) or "production"


_LATEST = 1e11  # seconds since the epoch (year 5138): beyond it a time is an attack or a unit error


def _time(value: Any, what: str) -> float:
    when: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        when = float(value)
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            when = None
    if when is None or not 0 <= when <= _LATEST:
        raise IngestError(f"{what} is not a time", "send an ISO 8601 time or seconds since the epoch")
    return when


def _count(value: Any, what: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
        raise IngestError(f"{what} is not a count", "send a non-negative integer")
    return value


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _user_hash(did: Any, salt: str) -> str | None:
    """A keyed hash of the distinct id; the id itself is never kept."""
    if not isinstance(did, (str, int)) or isinstance(did, bool) or not str(did):
        return None
    return keyed_hash(salt, f"did:{did}")
