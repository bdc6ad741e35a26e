"""Receipts: what the gates found for one candidate test and fix, bound to their hashes, and what mutation
testing found afterwards. Typed here, persisted here; the rules that act on them live with the tools."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, Field, ValidationError

from prodloop.server.errors import NotFoundError
from prodloop.server.store.db import Store

GateName = Literal[
    "hermetic",
    "reproduces",
    "passes_with_fix",
    "not_flaky",
    "covers_path",
    "public_interface",
    "real_assertion",
    "fast",
]
GATE_ORDER: tuple[GateName, ...] = get_args(GateName)  # as receipts list them

Scope = Literal["fix", "culprit", "path"]


class Gate(BaseModel):
    name: GateName
    passed: bool | None = Field(description="null when the gate could not run (e.g. no fix given yet)")
    evidence: str


class SurvivingMutant(BaseModel):
    path: str
    line: int | None
    diff: str = Field(description="the mutant as a unified diff against the fixed code")
    observed: bool = Field(
        default=True,
        description="the tests' calls saw it behave differently (scored); false: unexercised by the tests' inputs",
    )


class MutationResult(BaseModel):
    receipt_id: str = Field(description="the receipt (or heal) whose test was mutation-tested")
    scope: Literal["fix", "culprit", "path", "change"] = Field(description="change: what a commit changed (heals)")
    functions: list[str] = Field(description="path::qualname of each mutated function")
    not_executed: list[str] = Field(description="target lines no test executed (not mutated)")
    tests: list[str]
    mutants: int
    killed: int
    survived: int = Field(description="scored: behaved differently, yet every test passed")
    unexercised: int = Field(
        default=0,
        description="survivors no call of the tests could tell apart (not scored)",
    )
    timeout: int
    no_tests: int
    suspicious: int
    score: float | None = Field(
        description="(killed + timeout) / (killed + timeout + survived); null when none was scored"
    )
    min_score: float
    passed: bool
    survivors: list[SurvivingMutant] = Field(description="one per source line at most, scored first")
    seconds: float
    note: str


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    issue_id: int
    event_id: str
    commit_sha: str
    test_path: str
    test_name: str
    test_code: str
    test_sha256: str
    fix_diff: str
    fix_sha256: str
    passed: bool
    gates: tuple[Gate, ...]
    cpu_seconds: float
    created_at: float
    mutation: MutationResult | None = None
    support_files: dict[str, str] | None = None

    def failed_gates(self) -> list[GateName]:
        return [g.name for g in self.gates if g.passed is not True]


_COLUMNS = (
    "id, issue_id, event_id, commit_sha, test_path, test_name, test_code, test_sha256, fix_diff, fix_sha256, "
    "passed, gates, cpu_seconds, created_at, mutation, support_files"
)


def save(store: Store, r: Receipt) -> None:
    with store.transaction() as conn:
        conn.execute(
            f"INSERT INTO receipts ({_COLUMNS}) VALUES ({','.join('?' * 16)})",
            (
                r.id, r.issue_id, r.event_id, r.commit_sha, r.test_path, r.test_name, r.test_code, r.test_sha256,
                r.fix_diff, r.fix_sha256, int(r.passed), json.dumps([g.model_dump() for g in r.gates]),
                r.cpu_seconds, r.created_at, r.mutation.model_dump_json() if r.mutation is not None else None,
                json.dumps(r.support_files) if r.support_files else None,
            ),
        )  # fmt: skip


def get(store: Store, receipt_id: str) -> Receipt:
    row = store.reader().execute(f"SELECT {_COLUMNS} FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
    if row is None:
        raise NotFoundError("receipt", receipt_id[:64], "run_candidate_test issues receipts; pass its receipt_id")
    (rid, issue_id, event_id, commit, test_path, test_name, test_code, test_sha, fix_diff, fix_sha, passed, gates,
     cpu, created, mutation, support) = row  # fmt: skip
    return Receipt(
        id=rid, issue_id=issue_id, event_id=event_id, commit_sha=commit, test_path=test_path, test_name=test_name,
        test_code=test_code, test_sha256=test_sha, fix_diff=fix_diff, fix_sha256=fix_sha, passed=bool(passed),
        gates=tuple(_gates(gates)), cpu_seconds=cpu, created_at=created, mutation=_mutation(mutation),
        support_files=json.loads(support) if support else None,
    )  # fmt: skip


def set_mutation(store: Store, receipt_id: str, mutation: MutationResult) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE receipts SET mutation = ? WHERE id = ?", (mutation.model_dump_json(), receipt_id))


def _gates(text: str) -> list[Gate]:
    """Gates as stored; a record this version cannot read counts as a gate that did not pass."""
    out = []
    for raw in json.loads(text) if text else []:
        try:
            out.append(Gate.model_validate(raw))
        except ValidationError:
            name = raw.get("name") if isinstance(raw, dict) else None
            out.append(Gate(name=name if name in GATE_ORDER else "hermetic", passed=False, evidence="unreadable"))
    return out


def _mutation(text: str | None) -> MutationResult | None:
    """The stored mutation result; one written by a version whose fields differ reads as none on record (mutation
    testing runs again), never as a pass."""
    if not text:
        return None
    try:
        return MutationResult.model_validate_json(text)
    except ValidationError:
        return None
