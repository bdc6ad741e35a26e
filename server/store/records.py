"""Plain records passed between ingest, the store and the tools."""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR = 3600


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public_key: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Deploy:
    id: int
    project_id: int | None
    release: str
    commit_sha: str
    environment: str
    deployed_at: float
    # "operator" (CLI, CI), "agent" (MCP) or "unknown" (recorded before sources were kept): only the operator's is
    # triage evidence
    source: str = "operator"


@dataclass(frozen=True, slots=True)
class FrameRef:
    """An in-app frame of an event, as indexed per issue for the reliability record."""

    filename: str
    module: str
    function: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A scrubbed, grouped event ready to store. `payload` is scrubbed JSON text, or None for an event ingest
    counted without keeping it (`ingest/sampling.py`): it was never scrubbed, so every text it carries here was
    shown to scrub to itself, and `title`/`culprit` are not its own (its issue keeps those of kept events)."""

    project_id: int
    event_id: str
    fingerprint: str
    title: str
    exception_type: str | None
    culprit: str | None
    culprit_module: str | None
    culprit_function: str | None
    culprit_filename: str | None
    timestamp: float
    received: float
    release: str | None
    environment: str | None
    level: str | None
    user_hash: str | None
    source: str
    payload: str | None
    frames: tuple[FrameRef, ...] = ()
    packages: str | None = None  # the release's installed packages (JSON), kept per release, not per event
    transaction: str | None = None  # the transaction the error happened in (its name), kept per issue and release
    input_digest: str | None = None  # a keyed hash of the culprit frame's locals (a kept event's production input)
    summary: str | None = None  # a counted event's tenant tag and runtime/os contexts, as payload-shaped JSON

    @property
    def kept(self) -> bool:
        return self.payload is not None


@dataclass(frozen=True, slots=True)
class IssueRow:
    id: int
    project_id: int
    fingerprint: str
    title: str
    exception_type: str | None
    culprit: str | None
    first_seen: float
    last_seen: float
    event_count: int
    user_count: int
    status: str
    regressions: int = 0  # times it was seen again, in a release it had not run before, after being resolved
    resolved_at: float | None = None
    resolved_in: str | None = None  # the release that carries the fix, when said
    regressed_at: float | None = None  # when it was last seen again after being resolved


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    project_id: int
    event_id: str
    issue_id: int
    timestamp: float
    release: str | None
    environment: str | None
    payload: str


@dataclass(frozen=True, slots=True)
class SessionCounts:
    project_id: int
    release: str
    environment: str
    bucket: int  # hours since the epoch
    started: int = 0
    errored: int = 0
    crashed: int = 0
    abnormal: int = 0
    user_hash: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionSample:
    project_id: int
    name: str
    release: str
    environment: str
    bucket: int
    failed: bool
    duration_ms: float


@dataclass(slots=True)
class Health:
    """What one envelope said about health and performance, ready to store with its events; the items left out,
    each with its reason."""

    sessions: list[SessionCounts]
    transactions: list[TransactionSample]
    dropped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.transactions)
