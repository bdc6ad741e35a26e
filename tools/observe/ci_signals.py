"""The project's own test failures as signals: JUnit XML from CI, grouped like production issues and kept per commit.

`parse_junit` reads pytest's JUnit dialect and the common others (a `testsuites` or bare `testsuite` root;
`failure` / `error` / `skipped` children; `rerunFailure` / `rerunError` / `flakyFailure` / `flakyError` (Maven
surefire and others); pytest-rerunfailures' repeated `testcase` of one id, the last being the outcome): each test
case's outcome, duration and reruns, and for a failure
its exception type, message and the traceback's frames (pytest's `path.py:12: Error` lines and Python's
`File "path.py", line 12` lines). The XML is refused when it declares a DOCTYPE or entities (nothing is expanded)
or is over `MAX_BYTES`; failure text is scrubbed (secrets, e-mails, cards) and capped before it is stored.

`ingest_junit` stores one run (commit, branch, CI run URL, job) in one transaction, groups failures by test id +
exception type + crash location (the innermost frame in the repository, else the innermost), and reports what is
new and which tests are flaky: a test that failed and passed on the same commit (in two runs, or by a rerun in
one) is flaky on that commit; its flake rate is flaky commits over the commits it ran on.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import EventFileError, InvalidArgument
from prodloop.server.ingest.scrub import Scrubber
from prodloop.server.settings import Settings
from prodloop.server.store import Store, ci
from prodloop.tools.engine._shape import cap
from prodloop.tools.observe.ci_issue import CIIssue

MAX_BYTES = 50 * 1024 * 1024
_PYTEST_FRAME = re.compile(r"^(?P<file>[^\s:][^:\n]*?\.py):(?P<line>\d+): (?P<type>[A-Za-z_][\w.]*)", re.M)
_PYTHON_FRAME = re.compile(r'^\s*File "(?P<file>[^"\n]+)", line (?P<line>\d+)', re.M)
_EXC_LINE = re.compile(r"^E\s+(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure))\b", re.M)
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass
class TestCase:
    test_id: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    reruns: int = 0  # failed attempts before this outcome (a pass after reruns is flaky)
    exception_type: str = ""
    message: str = ""
    frames: list[tuple[str, int]] = field(default_factory=list)


class FailureGroup(BaseModel):
    id: int
    test_id: str
    exception_type: str
    location: str = Field(description="the crash frame in the repository (file:line), else the innermost")
    new: bool
    count: int


class FlakyTest(BaseModel):
    test_id: str
    flaky_commits: int
    commits: int
    flake_rate: float


class CIIngestReport(BaseModel):
    run_id: int
    commit: str
    tests: int
    passed: int
    failed: int
    skipped: int
    duplicate: bool = Field(description="the same results were already stored for this commit and job")
    failures: list[FailureGroup]
    flaky: list[FlakyTest] = Field(description="tests that failed and passed on the same commit, with their rate")
    issues: list[CIIssue] = Field(
        default_factory=list, description="on the default branch: each failure's kind; a regression's prodloop issue"
    )
    issues_error: str | None = Field(default=None, description="why classifying the stored failures failed, if so")


def parse_junit(data: bytes, *, where: str = "results") -> list[TestCase]:
    if len(data) > MAX_BYTES:
        raise EventFileError(where, f"over {MAX_BYTES} bytes", "split the results or send one job's file")
    # Entities are declared only in a DOCTYPE, which comes before the root element (a test's output that prints
    # HTML with a DOCTYPE sits inside the root, escaped or in CDATA: not a declaration).
    root_at = data.find(b"<testsuite")
    prolog = data[: root_at if root_at >= 0 else 4096].upper()
    if b"<!DOCTYPE" in prolog or b"<!ENTITY" in prolog:
        raise EventFileError(where, "declares a DOCTYPE or entities, which JUnit XML never needs",
                             "send the file as the test runner wrote it")  # fmt: skip
    try:
        root = ET.fromstring(data)  # noqa: S314 - no DOCTYPE (checked above): no entity is declared or expanded
    except ET.ParseError as exc:
        raise EventFileError(where, f"is not well-formed XML ({exc})", "send the runner's JUnit XML file") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise EventFileError(where, f"has a <{cap(root.tag, 40)}> root, not <testsuites> or <testsuite>",
                             "send JUnit XML (pytest --junitxml=FILE)")  # fmt: skip
    suites = [root, *(s for s in root.iter("testsuite") if s is not root)]
    cases: list[TestCase] = []
    for suite in suites:  # a matrix's suites each hold the same test ids: folded within a suite only
        cases += _fold_reruns([_case(node) for node in suite.findall("testcase")])
    return cases


def _fold_reruns(cases: list[TestCase]) -> list[TestCase]:
    """Within one suite, adjacent entries of one test id: pytest-rerunfailures writes each failed attempt as one more
    `testcase` (without a failure child) before the final one, whose outcome counts; pytest writes a test whose call
    failed and whose teardown errored as two entries, folded into the call's failure (no rerun)."""
    out: list[TestCase] = []
    for case in cases:
        earlier = out[-1] if out and out[-1].test_id == case.test_id else None
        if earlier is None:
            out.append(case)
        elif case.outcome == "error" and case.message.startswith("failed on teardown"):
            if earlier.outcome == "passed":
                out[-1] = case  # the teardown's error is the outcome
        else:
            case.reruns += earlier.reruns + 1
            out[-1] = case
    return out


def _case(node: ET.Element) -> TestCase:
    classname, name = node.get("classname", ""), node.get("name", "")
    test_id = cap(f"{classname}::{name}" if classname else name, 500) or "unnamed"
    try:
        seconds = max(0.0, float(node.get("time", "0") or 0))
    except ValueError:
        seconds = 0.0
    reruns = sum(1 for child in node if child.tag in ("rerunFailure", "rerunError", "flakyFailure", "flakyError"))
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        child = node.find(tag)
        if child is not None:
            if outcome == "skipped":
                return TestCase(test_id, "skipped", seconds, reruns)
            text = "\n".join(part for part in (child.get("message", ""), child.text or "") if part)
            kind = child.get("type", "") or _exception_type(text)
            return TestCase(test_id, outcome, seconds, reruns, exception_type=_short_type(kind),
                            message=child.get("message", ""), frames=_frames(child.text or ""))  # fmt: skip
    return TestCase(test_id, "passed", seconds, reruns)


def _exception_type(text: str) -> str:
    found = _EXC_LINE.findall(text) or [m.group("type") for m in _PYTEST_FRAME.finditer(text)]
    return found[-1] if found else "Failure"


def _short_type(kind: str) -> str:
    return cap(kind.rsplit(".", 1)[-1], 100) or "Failure"


def _frames(text: str) -> list[tuple[str, int]]:
    """The traceback's frames, outermost first, from pytest's `file.py:N: Error` lines or Python's `File` lines."""
    frames = [(m.group("file"), int(m.group("line"))) for m in _PYTEST_FRAME.finditer(text)]
    if not frames:
        frames = [(m.group("file"), int(m.group("line"))) for m in _PYTHON_FRAME.finditer(text)]
    return [(cap(f, 300) or "", n) for f, n in frames][-50:]


def ingest_junit(
    store: Store, settings: Settings, clock: Clock, data: bytes, *, commit: str, branch: str | None = None,
    run_url: str | None = None, job: str | None = None, repo_files: set[str] | None = None, where: str = "results",
) -> CIIngestReport:  # fmt: skip
    """Parse, scrub and store one CI run's results; nothing is stored when the file is refused."""
    commit = commit.strip().lower()
    if not _SHA.match(commit):
        raise InvalidArgument("commit", f"{cap(commit, 60)!r} is not a commit sha", "pass the sha the CI run tested")
    cases = parse_junit(data, where=where)
    scrubber = Scrubber(sensitive_fields=settings.sensitive_fields, scrub_emails=settings.scrub_emails,
                        scrub_ip_addresses=settings.scrub_ip_addresses)  # fmt: skip
    rows = []
    for case in cases:
        failure = None
        if case.outcome in ("failed", "error"):
            location = _location(case.frames, repo_files)
            key = f"{case.test_id}\0{case.exception_type}\0{location}"
            failure = ci.FailureIn(
                fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32], test_id=case.test_id,
                exception_type=case.exception_type, location=location,
                frames=[f"{f}:{n}" for f, n in case.frames],
                message=cap(scrubber.scrub_string(case.message), settings.max_string_chars) or "",
            )  # fmt: skip
        rows.append(ci.ResultIn(case.test_id, case.outcome, case.reruns, round(case.seconds, 3), failure))
    digest = hashlib.sha256(b"\0".join([commit.encode(), (job or "").encode(), data])).hexdigest()
    stored = ci.save_run(store, commit=commit, branch=branch, run_url=run_url, job=job, digest=digest, results=rows,
                         at=clock.now())  # fmt: skip
    flaky = ci.flaky_tests(store, test_ids=[r.test_id for r in rows if r.outcome != "skipped"])
    return CIIngestReport(
        run_id=stored.run_id, commit=commit, tests=len(rows),
        passed=sum(r.outcome == "passed" for r in rows), failed=sum(r.outcome in ("failed", "error") for r in rows),
        skipped=sum(r.outcome == "skipped" for r in rows), duplicate=stored.duplicate,
        failures=[FailureGroup(id=g.id, test_id=g.test_id, exception_type=g.exception_type, location=g.location,
                               new=g.new, count=g.count) for g in stored.groups],
        flaky=[FlakyTest(test_id=t, flaky_commits=f, commits=n, flake_rate=round(f / n, 4)) for t, f, n in flaky],
    )  # fmt: skip


def _location(frames: list[tuple[str, int]], repo_files: set[str] | None) -> str:
    """The innermost frame in the repository (a path that ends with one of its files), else the innermost."""
    if not frames:
        return ""
    for name, line in reversed(frames):
        clean = name.replace("\\", "/").lstrip("/")
        if repo_files is None:
            return f"{clean}:{line}"
        parts = clean.split("/")  # the path, or any of its tails (an absolute CI path), as a repository file
        match = next((tail for tail in ("/".join(parts[i:]) for i in range(len(parts))) if tail in repo_files), None)
        if match is not None:
            return f"{match}:{line}"
    return f"{frames[-1][0]}:{frames[-1][1]}"


def read_results(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise EventFileError(str(path), f"cannot be read ({exc.strerror})", "check the path") from None
    return data
