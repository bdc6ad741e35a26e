"""Provenance: where each test prodloop added came from, in the store and in the repository.

A record names the test (node id, file, content hash), the production failure it guards
(issue, event, fingerprint, deployed commit), the evidence (receipt, gate results, mutation
score), the pull request branch, who asked (the MCP client) and when. The same JSON line is
appended to `provenance_path` in the PR's commit, so the suite's history lives in the repo.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from prodloop.server.store import Store, policy
from prodloop.server.store.receipts import Receipt
from prodloop.tools.engine._shape import decode_cursor, encode_cursor


class ProvenancePage(BaseModel):
    records: list[dict[str, Any]]
    total: int
    next_cursor: str | None = Field(description="null on the last page")


def build_record(
    *,
    receipt: Receipt,
    fingerprint: str,
    branch: str,
    base: str,
    client: str,
    created_at: str,
) -> dict[str, Any]:
    mutation = receipt.mutation
    return {
        "test_node": f"{receipt.test_path}::{receipt.test_name}",
        "test_path": receipt.test_path,
        "test_sha256": receipt.test_sha256,
        "issue_id": receipt.issue_id,
        "event_id": receipt.event_id,
        "fingerprint": fingerprint,
        "deployed_commit": receipt.commit_sha,
        "receipt_id": receipt.id,
        "fix_sha256": receipt.fix_sha256,
        "gates": {g.name: g.passed for g in receipt.gates},
        "mutation_score": mutation.score if mutation else None,
        "mutants": mutation.mutants if mutation else None,
        "pull_request": {"branch": branch, "base": base},
        "client": client,
        "created_at": created_at,
        "action": "added",
    }


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


def list_provenance(
    store: Store, *, test_path: str | None = None, limit: int = 50, cursor: str | None = None
) -> ProvenancePage:
    offset = decode_cursor(cursor, "provenance", "cursor")
    page, total = policy.provenance_records(store, test_path=test_path, limit=limit, offset=offset)
    end = offset + len(page)
    return ProvenancePage(
        records=page, total=total, next_cursor=encode_cursor("provenance", end) if end < total else None
    )
