"""Keep or count: which events ingest scrubs and stores whole, decided before anything is scrubbed.

At volume most events repeat an issue already well known, and the full scrub (relay's normalizer and PII strip,
then prodloop's pass) is most of what ingest spends per event. An event keeps its scrubbed payload when it is one of
its issue's first `ingest_kept_per_release` events of its release, or brings an input its issue has not kept yet
(the locals of its culprit frame, digested with the project's key as user identities are), up to
`ingest_kept_inputs` distinct inputs per issue. Every other event is *counted*: it is never scrubbed, and its row
holds only what triage reads (time, release, environment, level, user hash, exception type, culprit frame, input
digest; its tenant tag and runtime/os contexts as `summary`), no payload. `ingest_keep_every_payload` keeps all.

Events are attacker-controlled and a counted one is never scrubbed, so it may be counted only when every text its
row would hold, and every text grouping reads, is shown to scrub to itself (`Sampler.facts`): short, printable, no
secret or personal data prodloop's pass would change, nothing relay's rules or normalizer would touch (digit runs,
home-directory paths, release and environment names relay refuses), no fingerprint of the sender's own, in-app
flags set by the SDK. Then the raw event groups exactly as its scrubbed self would; otherwise it is kept.

The decision reads committed rows only (`store/kept.py`), through a bounded cache of what they said: an issue counts
its events of a release once the store holds K kept ones, and an input once the store holds a kept event with it.
Processes sharing a store may each keep a few more than K before they see the others' commits, never fewer.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from prodloop.server.ingest import grouping
from prodloop.server.ingest.scrub import Scrubber
from prodloop.server.settings import Settings
from prodloop.server.store import kept
from prodloop.server.store.db import Store

# Relay's value rules (card numbers, US social security numbers: digit runs; home-directory paths): text near them
# is left to the full scrub (IP addresses and e-mails are prodloop's pass's, which `scrub_string` runs).
_RELAY_HAZARD = re.compile(r"\d(?:[ -]?\d){8,}|/home/|/users/|\\users\\")
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+:~-]{0,199}")  # what relay keeps as a release, and more narrowly
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_LEVELS = frozenset({"debug", "info", "warning", "error", "fatal"})
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")  # `<object at 0x7f...>`: the same input on every run
_MAX_TEXT = 200
# The keys a counted event's facts are read under.
_READ_KEYS = ("exception", "values", "type", "stacktrace", "frames", "module", "function", "filename", "in_app",
              "release", "environment", "level", "transaction", "timestamp", "tags", "contexts", "runtime", "os",
              "name", "version")  # fmt: skip
_MAX_FRAMES = 100
_MAX_CHAIN = 10


@dataclass(frozen=True, slots=True)
class Facts:
    """What the decision and a counted event's row need, read from the raw event. `countable`: every text here
    (and every text grouping read) scrubs to itself; when False the event is kept whatever the store holds."""

    countable: bool
    fingerprint: str = ""
    exception_type: str | None = None
    culprit: grouping.Culprit = field(default_factory=lambda: grouping.Culprit(None, None, None))
    release: str | None = None
    environment: str | None = None
    level: str | None = None
    transaction: str | None = None
    timestamp: float | None = None
    input_digest: str | None = None
    summary: str | None = None


_UNCOUNTABLE = Facts(countable=False)


class Sampler:
    """Reads an event's `Facts` before scrubbing; remembers (bounded) which strings scrub to themselves."""

    def __init__(self, scrubber: Scrubber, *, tenant_tag: str, sensitive_fields: list[str]) -> None:
        self._scrubber = scrubber
        self._tenant_tag = tenant_tag
        self._stable_texts: dict[str, bool] = {}
        # A sensitive field naming a key these facts are read under (relay matches key substrings, prodloop words)
        # would have scrubbing change them: then nothing is counted.
        read = (*_READ_KEYS, tenant_tag.lower())
        self.enabled = not any(
            scrubber.is_sensitive_key(key) or any(f and f.lower() in key for f in sensitive_fields) for key in read
        )

    def facts(self, raw: dict[str, Any], salt: str) -> Facts:
        digest = input_digest(raw, salt)
        if not self.enabled or not self._groups_stably(raw):
            return Facts(countable=False, input_digest=digest)
        release, environment = _text(raw.get("release")), _text(raw.get("environment"))
        transaction, level = _text(raw.get("transaction")), raw.get("level", "error")
        culprit = grouping.culprit(raw)
        summary = self._summary(raw)
        timestamp = _timestamp(raw.get("timestamp"))
        if (
            summary is None
            or (timestamp is None and raw.get("timestamp") is not None)
            or level not in _LEVELS
            or not (release is None or (_RELEASE.fullmatch(release) and release != "latest" and self._stable(release)))
            or not (
                environment is None
                or (_ENVIRONMENT.fullmatch(environment) and environment.lower() != "none" and self._stable(environment))
            )
            or not (transaction is None or self._stable(transaction))
            or not all(v is None or self._stable(v) for v in (culprit.module, culprit.function, culprit.filename))
        ):
            return Facts(countable=False, input_digest=digest)
        chain = grouping.exceptions(raw)
        return Facts(
            countable=True,
            fingerprint=grouping.fingerprint(raw),
            exception_type=str(chain[-1]["type"]),
            culprit=culprit,
            release=release,
            environment=environment,
            level=level,
            transaction=transaction,
            timestamp=timestamp,
            input_digest=digest,
            summary=summary or None,
        )

    def _groups_stably(self, raw: dict[str, Any]) -> bool:
        """Whether grouping reads only text that scrubs to itself: an exception chain (a message is free text), each
        exception typed, its frames' in-app flags set by the SDK (without them grouping reads paths), no
        fingerprint of the sender's own."""
        if "fingerprint" in raw or "stacktrace" in raw:  # relay moves a top-level stacktrace into the exception
            return False
        chain = grouping.exceptions(raw)
        if not chain or len(chain) > _MAX_CHAIN:
            return False
        for exc in chain:
            if not self._stable(exc.get("type")):
                return False
            frames = grouping.frames_of(exc)
            if len(frames) > _MAX_FRAMES:
                return False
            if frames and not any(isinstance(f.get("in_app"), bool) for f in frames):
                return False
            if not all(_frame_as_relay_leaves_it(f) for f in frames):
                return False
        components = grouping.default_components(raw)
        return all(self._stable(c) for c in components)

    def _summary(self, raw: dict[str, Any]) -> str | None:
        """The tenant tag and runtime/os contexts triage reads, as payload-shaped JSON ("" when there are none);
        None when one of them might not scrub to itself."""
        out: dict[str, Any] = {}
        tags = raw.get("tags")
        tenant: Any = None
        if isinstance(tags, dict):
            tenant = tags.get(self._tenant_tag)
        elif isinstance(tags, list):
            tenant = next((p[1] for p in tags if isinstance(p, list) and len(p) == 2 and p[0] == self._tenant_tag),
                          None)  # fmt: skip
        elif tags is not None:
            return None
        if tenant is not None:
            if not self._stable(tenant):
                return None
            out["tags"] = [[self._tenant_tag, tenant]]
        contexts = raw.get("contexts")
        if contexts is not None and not isinstance(contexts, dict):
            return None
        for key in ("runtime", "os"):
            ctx = (contexts or {}).get(key)
            if ctx is None:
                continue
            if not isinstance(ctx, dict) or ("name" not in ctx and ctx.get("raw_description")):
                return None  # relay would parse it: left to the full scrub
            if key == "os" and not set(ctx) <= {"type", "name", "version"}:
                return None  # relay may derive an OS version from its build or kernel version
            if key == "runtime" and str(ctx.get("name", "")).startswith(".NET"):
                return None  # relay derives .NET Framework's version from its build
            picked = {k: ctx[k] for k in ("name", "version") if ctx.get(k) is not None}
            if not all(self._stable(v) for v in picked.values()):
                return None
            if picked:
                out.setdefault("contexts", {})[key] = picked
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False) if out else ""

    def _stable(self, text: Any) -> bool:
        """A string that every scrubbing rule leaves as it is."""
        if not isinstance(text, str) or not text or len(text) > _MAX_TEXT:
            return False
        known = self._stable_texts.get(text)
        if known is None:
            known = (
                text.isprintable()
                and text == text.strip()
                and not _RELAY_HAZARD.search(text.lower())
                and self._scrubber.scrub_string(text) == text
                and "[Filtered]" not in text
            )
            if len(self._stable_texts) >= 32_768:
                self._stable_texts.clear()
            self._stable_texts[text] = known
        return known


def _frame_as_relay_leaves_it(frame: dict[str, Any]) -> bool:
    """A frame relay's normalizer does not rewrite where grouping and the culprit read it: its module, function and
    filename strings or absent (relay drops other types), a filename whenever a path is given (relay derives one
    from `abs_path`), no `?` function (relay empties it)."""
    if any(key in frame and not isinstance(frame[key], str) for key in ("module", "function", "filename", "abs_path")):
        return False
    if "abs_path" in frame and "filename" not in frame:
        return False
    return frame.get("function") != "?"


def input_digest(raw: dict[str, Any], salt: str) -> str | None:
    """A keyed hash of the culprit frame's locals (the production input a parametrized regression test needs), or
    None when the frame has none. Object addresses are left out: the same input on every run."""
    chain = grouping.exceptions(raw)
    if not chain:
        return None
    frames = grouping.frames_of(chain[-1])
    candidates = grouping.app_frames(frames) or frames
    local_vars = candidates[-1].get("vars") if candidates else None
    if not isinstance(local_vars, dict) or not local_vars:
        return None
    text = json.dumps(local_vars, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(salt.encode(), _ADDRESS.sub("0x", text).encode(), sha256).hexdigest()[:32]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> float | None:
    """The event's time as relay reads it (seconds, or an ISO 8601 text, UTC when it names no zone); None when
    there is none or it does not read."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


@dataclass(slots=True)
class _Issue:
    issue_id: int
    full_releases: set[str | None] = field(default_factory=set)  # the store holds K kept events of these
    inputs: set[str] = field(default_factory=set)  # kept input digests the store holds
    inputs_full: bool = False  # the store holds `max_inputs` distinct ones: a new input is only counted


class KeepPolicy:
    """Whether an event keeps its payload, from what the store has committed, cached per issue (bounded)."""

    def __init__(self, store: Store, *, per_release: int, max_inputs: int, max_issues: int = 4096) -> None:
        self._store = store
        self._per_release = per_release
        self._max_inputs = max_inputs
        self._max_issues = max_issues
        self._issues: OrderedDict[tuple[int, str], _Issue] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, project_id: int, facts: Facts) -> bool:
        issue = self._issue(project_id, facts.fingerprint)
        if issue is None:  # a new issue: its first events are kept
            return True
        if facts.release not in issue.full_releases:
            kept_now = kept.kept_in_release(self._store, issue.issue_id, facts.release, at_most=self._per_release)
            if kept_now < self._per_release:
                return True
            with self._lock:
                if len(issue.full_releases) >= 256:
                    issue.full_releases.clear()
                issue.full_releases.add(facts.release)
        digest = facts.input_digest
        if digest is None or issue.inputs_full or digest in issue.inputs:
            return False
        # Not known here: what the store holds now (other events, other processes may have added inputs since).
        inputs = kept.input_digests(self._store, issue.issue_id, at_most=self._max_inputs)
        with self._lock:
            issue.inputs = inputs
            issue.inputs_full = len(inputs) >= self._max_inputs
        # A new input is kept (the store learns it when this event commits), unless the issue has all it keeps.
        return digest not in inputs and not issue.inputs_full

    def _issue(self, project_id: int, fingerprint: str) -> _Issue | None:
        key = (project_id, fingerprint)
        with self._lock:
            found = self._issues.get(key)
            if found is not None:
                self._issues.move_to_end(key)
                return found
        issue_id = kept.issue_id(self._store, project_id, fingerprint)
        if issue_id is None:
            return None
        inputs = kept.input_digests(self._store, issue_id, at_most=self._max_inputs) if self._max_inputs else set()
        issue = _Issue(issue_id, inputs=inputs, inputs_full=len(inputs) >= self._max_inputs)
        with self._lock:
            self._issues[key] = issue
            while len(self._issues) > self._max_issues:
                self._issues.popitem(last=False)
        return issue


def keep_policy(settings: Settings, store: Store | None) -> KeepPolicy | None:
    """The policy ingest decides with; None keeps every payload (`ingest_keep_every_payload`, or no store)."""
    if settings.ingest_keep_every_payload or store is None:
        return None
    return KeepPolicy(store, per_release=settings.ingest_kept_per_release, max_inputs=settings.ingest_kept_inputs)
