"""From a sender's raw event to an `EventRecord`: validate, scrub, group, index.

The raw event lives only in memory here; what leaves is scrubbed JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from prodloop.server.clock import Clock
from prodloop.server.errors import IngestError, PayloadTooLarge
from prodloop.server.ingest import grouping, health
from prodloop.server.ingest.envelope import normalize_event_id, parse_event
from prodloop.server.ingest.health import packages_of
from prodloop.server.ingest.sampling import Facts, KeepPolicy, Sampler, input_digest
from prodloop.server.ingest.scrub import Scrubber, keyed_hash
from prodloop.server.settings import Settings
from prodloop.server.store.records import HOUR, EventRecord, FrameRef, Health


class EventProcessor:
    """`policy`: which live events keep their payload (`sampling.py`); without one every event is kept."""

    def __init__(self, settings: Settings, clock: Clock, *, policy: KeepPolicy | None = None) -> None:
        self._clock = clock
        self._max_event_bytes = settings.max_event_bytes
        # Every event of a release carries the same package list: checked once, not per event (2 ms for 250).
        self._packages: dict[int, str | None] = {}
        self._scrubber = Scrubber(
            sensitive_fields=settings.sensitive_fields,
            scrub_emails=settings.scrub_emails,
            scrub_ip_addresses=settings.scrub_ip_addresses,
        )
        self._policy = policy
        self._sampler = Sampler(
            self._scrubber, tenant_tag=settings.triage.tenant_tag, sensitive_fields=settings.sensitive_fields
        )

    def health(self, items: list[tuple[str, bytes]], *, project_id: int, user_salt: str) -> Health:
        """The session, sessions and transaction items of an envelope as counts. One that does not parse is left
        out with its reason (`Health.dropped`): the envelope's events and other items still count."""
        out = Health([], [])
        for n, (kind, payload) in enumerate(items):
            try:
                if kind == "session":
                    out.sessions += health.parse_session(payload, project_id, user_salt)
                elif kind == "sessions":
                    out.sessions += health.parse_sessions(payload, project_id, user_salt)
                elif kind == "transaction":
                    out.transactions.append(health.parse_transaction(payload, project_id))
            except IngestError as exc:
                out.dropped.append(f"{kind} item {n + 1}: {exc}"[:300])
        # Every text a sender chose (release, environment, transaction name) is scrubbed like a message before it
        # is stored or shown.
        # A time ahead of the clock is the sender's clock or a lie: it counts in the current hour (a future hour
        # would never age out).
        text = self._scrubber.scrub_string
        hour = int(self._clock.now() // HOUR)
        out.sessions = [
            replace(s, release=text(s.release), environment=text(s.environment), bucket=min(s.bucket, hour))
            for s in out.sessions
        ]
        out.transactions = [
            replace(t, name=text(t.name), release=text(t.release), environment=text(t.environment),
                    bucket=min(t.bucket, hour))
            for t in out.transactions
        ]  # fmt: skip
        return out

    def _packages_of(self, modules: Any) -> str | None:
        try:
            key = hash(tuple(modules.items())) if isinstance(modules, dict) else None
        except TypeError:  # an unhashable version: checked every time
            key = None
        if key is not None and key in self._packages:
            return self._packages[key]
        found = packages_of(modules, self._scrubber.scrub_string)
        if key is not None:
            if len(self._packages) >= 256:
                self._packages.clear()
            self._packages[key] = found
        return found

    def process(
        self,
        raw: dict[str, Any],
        *,
        project_id: int,
        user_salt: str,
        source: str,
        fallback_event_id: Any = None,
        what: str = "the event",
        now: float | None = None,
        raw_size: int = 0,
        decided: bool = False,
    ) -> EventRecord:
        """`now`: the time the event was received (default the clock's now). A live event (`source="ingest"`) the
        policy does not keep is counted without being scrubbed; one whose raw size (`raw_size`, bytes) is over the
        limit is always scrubbed, so that the limit is judged on what would be stored. `decided`: kept without
        asking the policy (it said so in `count`)."""
        judged = self._judge(raw, project_id, user_salt, source, fallback_event_id, what, now, raw_size, decided)
        return judged if isinstance(judged, EventRecord) else self._whole(judged, project_id, source, what)

    def count(
        self, raw: dict[str, Any], *, project_id: int, user_salt: str, fallback_event_id: Any, what: str, now: float,
        raw_size: int,
    ) -> EventRecord | Kept:  # fmt: skip
        """A live event's record if the policy counts it (nothing scrubbed); else what was read of it, to be
        scrubbed whole here (`scrub_kept`) or, from its raw bytes, in a scrubbing process (`process(...,
        decided=True)`)."""
        return self._judge(raw, project_id, user_salt, "ingest", fallback_event_id, what, now, raw_size, False)

    def scrub_kept(self, kept: Kept, *, project_id: int, what: str) -> EventRecord:
        """A kept live event (`count`'s answer) scrubbed and made a record."""
        return self._whole(kept, project_id, "ingest", what)

    def _judge(
        self, raw: dict[str, Any], project_id: int, user_salt: str, source: str, fallback_event_id: Any, what: str,
        now: float | None, raw_size: int, decided: bool,
    ) -> EventRecord | Kept:  # fmt: skip
        event_id = normalize_event_id(raw.get("event_id", fallback_event_id), what)
        raw = {**raw, "event_id": event_id}
        # The SDK's list of installed packages is a quarter of a typical event: kept once per release (what changed
        # between two releases), never in the event.
        packages = self._packages_of(raw.pop("modules", None))
        user_hash = _user_hash(raw.get("user"), user_salt)
        now = self._clock.now() if now is None else now
        digest = None
        if source == "ingest":
            if self._policy is not None and not decided and raw_size <= self._max_event_bytes:
                facts = self._sampler.facts(raw, user_salt)
                digest = facts.input_digest
                if facts.countable and not self._policy.keep(project_id, facts):
                    return _counted(facts, project_id=project_id, event_id=event_id, now=now, user_hash=user_hash,
                                    packages=packages)  # fmt: skip
            else:  # what the policy reads of kept events: the inputs they bring
                digest = input_digest(raw, user_salt)
        return Kept(raw, event_id, packages, user_hash, now, digest)

    def _whole(self, kept: Kept, project_id: int, source: str, what: str) -> EventRecord:
        scrubbed = self._scrubber.scrub(kept.raw)
        event = scrubbed.event
        if scrubbed.filtered:
            event["_prodloop"] = {"scrubbed": [{"path": p, "rule": r} for p, r in scrubbed.filtered[:200]]}
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(payload) > self._max_event_bytes:
            raise PayloadTooLarge(what, len(payload), self._max_event_bytes)
        title, exception_type = grouping.title(event)
        culprit = grouping.culprit(event)
        timestamp = event.get("timestamp")
        return EventRecord(
            project_id=project_id,
            event_id=kept.event_id,
            fingerprint=grouping.fingerprint(event),
            title=title,
            exception_type=exception_type,
            culprit=culprit.label(),
            culprit_module=culprit.module,
            culprit_function=culprit.function,
            culprit_filename=culprit.filename,
            timestamp=_clamped(timestamp, kept.now, live=source == "ingest"),
            received=kept.now,
            release=_short(event.get("release")),
            environment=_short(event.get("environment")),
            level=_short(event.get("level")),
            transaction=_short(event.get("transaction")),
            user_hash=kept.user_hash,
            source=source,
            payload=payload,
            frames=_app_frames(event),
            packages=kept.packages,
            input_digest=kept.digest,
        )

    def process_items(
        self,
        payloads: list[bytes],
        *,
        envelope: bool,
        project_id: int,
        user_salt: str,
        fallback_event_id: Any,
        now: float,
        numbers: list[int] | None = None,
        decided: bool = False,
    ) -> list[EventRecord]:
        """The event items of one request, each parsed once (JSON to dict), scrubbed and serialized once. `numbers`:
        each item's number in its request (default 1, 2, ...), for refusals; `decided`: as `process`'s."""
        return [
            self.process(
                parse_event(payload, _item(envelope, n)), project_id=project_id, user_salt=user_salt, source="ingest",
                fallback_event_id=fallback_event_id, what=f"event {n}", now=now, raw_size=len(payload),
                decided=decided,
            )
            for n, payload in zip(numbers or range(1, len(payloads) + 1), payloads, strict=True)
        ]  # fmt: skip

    def count_items(
        self, payloads: list[bytes], *, envelope: bool, project_id: int, user_salt: str, fallback_event_id: Any,
        now: float,
    ) -> list[EventRecord | Kept]:  # fmt: skip
        """`count` for each event item of a request: the counted ones' records, what was read of each kept one."""
        return [
            self.count(
                parse_event(payload, _item(envelope, n)), project_id=project_id, user_salt=user_salt,
                fallback_event_id=fallback_event_id, what=f"event {n}", now=now, raw_size=len(payload),
            )
            for n, payload in enumerate(payloads, 1)
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Kept:
    """A live event to be scrubbed and stored whole, and what was read of it before scrubbing."""

    raw: dict[str, Any]
    event_id: str
    packages: str | None
    user_hash: str | None
    now: float
    digest: str | None


def _item(envelope: bool, n: int) -> str:
    return f"event item {n}" if envelope else "the event"


def _counted(
    facts: Facts, *, project_id: int, event_id: str, now: float, user_hash: str | None, packages: str | None
) -> EventRecord:
    """A counted event's row: no payload; only texts `Sampler.facts` showed to scrub to themselves. Its title is
    its exception type (never its value); the issue keeps its kept events' title and culprit."""
    culprit = facts.culprit
    return EventRecord(
        project_id=project_id,
        event_id=event_id,
        fingerprint=facts.fingerprint,
        title=facts.exception_type or "Error",
        exception_type=facts.exception_type,
        culprit=culprit.label(),
        culprit_module=culprit.module,
        culprit_function=culprit.function,
        culprit_filename=culprit.filename,
        timestamp=_clamped(facts.timestamp, now, live=True),
        received=now,
        release=facts.release,
        environment=facts.environment,
        level=facts.level,
        transaction=facts.transaction,
        user_hash=user_hash,
        source="ingest",
        payload=None,
        packages=packages,
        input_digest=facts.input_digest,
        summary=facts.summary,
    )


def _app_frames(event: dict[str, Any]) -> tuple[FrameRef, ...]:
    refs: dict[FrameRef, None] = {}
    for exc in grouping.exceptions(event):
        for frame in grouping.app_frames(grouping.frames_of(exc)):
            filename = _short(frame.get("filename"), 500)
            if filename:
                ref = FrameRef(
                    filename, _short(frame.get("module"), 300) or "", _short(frame.get("function"), 300) or ""
                )
                refs[ref] = None
    return tuple(list(refs)[:100])


def _user_hash(user: Any, salt: str) -> str | None:
    """A keyed hash of the user's identity, taken before scrubbing; the identity itself is never kept."""
    if not isinstance(user, dict):
        return None
    for key in ("id", "username", "email", "ip_address"):
        value = user.get(key)
        if isinstance(value, (str, int)) and str(value) and str(value) != "{{auto}}":
            return keyed_hash(salt, f"{key}:{value}")
    return None


_FUTURE_SLACK = 60.0  # seconds a sender's clock may run ahead


_LIVE_PAST = 30 * 86400.0  # what a live sender may claim of the past (Relay's own limit)


def _clamped(timestamp: Any, now: float, *, live: bool) -> float:
    """The event's time, never ahead of the clock (beyond a minute's slack): a future time would pin the issue's
    last_seen, stay its "newest" event and never age out. An event sent live claiming more than 30 days ago (a
    clock at zero, a lie about first_seen) counts now; an imported one keeps its past. No time, or no number: now."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        return now
    if live and timestamp < now - _LIVE_PAST:
        return now
    return min(float(timestamp), now + _FUTURE_SLACK)


def _short(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None
