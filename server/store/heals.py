"""Heals of CI tests (see `tools/judge/heal.py`): each attempt with the test it judged, bound by its hash."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, Field

from prodloop.server.errors import NotFoundError
from prodloop.server.store.db import Store
from prodloop.server.store.receipts import MutationResult

HealGateName = Literal[
    "only_the_test", "not_weakened", "real_assertion", "hermetic", "fails_unhealed", "passes_on_head", "not_flaky",
    "keeps_guarding", "mutation",
]  # fmt: skip
HEAL_GATES: tuple[HealGateName, ...] = get_args(HealGateName)


class Gate(BaseModel):
    name: HealGateName
    passed: bool | None = Field(description="null when the gate could not run")
    evidence: str


@dataclass(frozen=True, slots=True)
class Heal:
    id: str
    failure_id: int
    commit_sha: str
    test_path: str
    test_name: str
    old_sha256: str
    test_code: str
    test_sha256: str
    classification: dict[str, object]
    gates: tuple[Gate, ...]
    mutation: MutationResult | None
    passed: bool
    cpu_seconds: float
    created_at: float


def save(store: Store, heal: Heal) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO heals (id, failure_id, commit_sha, test_path, test_name, old_sha256, test_code, test_sha256,"
            " classification, gates, mutation, passed, cpu_seconds, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (heal.id, heal.failure_id, heal.commit_sha, heal.test_path, heal.test_name, heal.old_sha256,
             heal.test_code, heal.test_sha256, json.dumps(heal.classification, sort_keys=True),
             json.dumps([g.model_dump() for g in heal.gates]),
             heal.mutation.model_dump_json() if heal.mutation else None, int(heal.passed), heal.cpu_seconds,
             heal.created_at),
        )  # fmt: skip


def get(store: Store, heal_id: str) -> Heal:
    row = (
        store.reader()
        .execute(
            "SELECT id, failure_id, commit_sha, test_path, test_name, old_sha256, test_code, test_sha256,"
            " classification, gates, mutation, passed, cpu_seconds, created_at FROM heals WHERE id = ?",
            (heal_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFoundError("heal", heal_id[:40], "heal_test returns the heal_id")
    gates = tuple(Gate.model_validate(g) for g in json.loads(row[9]))
    mutation = MutationResult.model_validate_json(row[10]) if row[10] else None
    return Heal(row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], json.loads(row[8]), gates,
                mutation, bool(row[11]), float(row[12]), float(row[13]))  # fmt: skip


def attempts(store: Store, failure_id: int, *, since: float) -> int:
    row = (
        store.reader()
        .execute("SELECT count(*) FROM heals WHERE failure_id = ? AND created_at >= ?", (failure_id, since))
        .fetchone()
    )
    return int(row[0])


def reserve_ship(store: Store, heal_id: str) -> str | None:
    """Claim the heal's one pull request: None when claimed, else what holds it (a branch, or 'pending')."""
    with store.transaction() as conn:
        done = conn.execute("UPDATE heals SET shipped = 'pending' WHERE id = ? AND shipped IS NULL", (heal_id,))
        if done.rowcount == 1:
            return None
        row = conn.execute("SELECT shipped FROM heals WHERE id = ?", (heal_id,)).fetchone()
        return str(row[0]) if row else "unknown"


def set_shipped(store: Store, heal_id: str, branch: str | None) -> None:
    """The claim's outcome: the pushed branch, or None to give the claim back (nothing left this machine)."""
    with store.transaction() as conn:
        conn.execute("UPDATE heals SET shipped = ? WHERE id = ?", (branch, heal_id))
