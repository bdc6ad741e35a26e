"""`open_heal_pr`: ship a healed CI test as a pull request, with a provenance record of kind `healed`.

Refused unless the heal passed every gate (mutation testing included), its stored test still hashes to what its gates
judged, the base branch still holds the test exactly as it was healed from (else the base moved: heal again), and
the repository has PRs left today. The commit (the healed file and the provenance line, nothing else) is built with
plumbing on the base, the healed test run once more on it, then pushed and offered for review like `open_pr`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from prodloop.server.clock import Clock
from prodloop.server.errors import HealRefused
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, heals, policy
from prodloop.tools.engine._shape import cap, iso, md_inline
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import outcome_of, workspace
from prodloop.tools.judge.heal import sha256
from prodloop.tools.ship.provenance import jsonl_line
from prodloop.tools.ship.publish import check_pushed, fetch_base, free_branch, publish, push

DAY = 86_400.0


class HealPullRequest(BaseModel):
    mode: str
    branch: str
    base: str
    commit: str
    url: str | None
    number: int | None
    description_path: str | None
    labels: list[str]
    provenance: dict[str, Any]


def open_heal_pr(
    store: Store, repo: GitRepo, runner: Runner, settings: Settings, clock: Clock, *, heal_id: str,
    client: str = "unknown",
) -> HealPullRequest:  # fmt: skip
    heal = heals.get(store, heal_id)
    what = f"heal {heal_id}"
    if sha256(heal.test_code) != heal.test_sha256:
        raise HealRefused(what, "its stored test no longer matches the hash its gates judged", "heal_test again")
    failed = [g.name for g in heal.gates if not g.passed]
    if not heal.passed or failed:
        raise HealRefused(what, f"gates not passed: {', '.join(failed) or 'isolation'}", "heal_test until all pass")
    held = heals.reserve_ship(store, heal_id)
    if held is not None:
        raise HealRefused(what, f"it was already shipped ({cap(held, 200)})", "one heal makes one pull request")
    pushed: list[str] = []
    try:
        return _ship(store, repo, runner, settings, clock, heal, client, pushed)
    finally:
        heals.set_shipped(store, heal_id, pushed[0] if pushed else None)


def _ship(
    store: Store, repo: GitRepo, runner: Runner, settings: Settings, clock: Clock, heal: heals.Heal, client: str,
    pushed: list[str],
) -> HealPullRequest:  # fmt: skip
    what = f"heal {heal.id}"
    now = clock.now()
    opened = len(policy.pull_requests(store, since=now - DAY)) + policy.provenance_count(
        store, action="healed", since=now - DAY
    )
    if opened >= settings.budgets.max_prs_per_day:
        raise HealRefused(what, f"{opened} PRs were opened in the last 24 hours", "a person reviews the open PRs first")
    remote = settings.git_remote
    base = settings.base_branch or repo.default_branch(remote)
    base_sha = fetch_base(repo, remote, base)
    current = repo.read(base_sha, heal.test_path)
    if current is None or sha256(current) != heal.old_sha256:
        state = "no longer has" if current is None else "changed"
        raise HealRefused(what, f"{base} {state} {heal.test_path} since it was healed", "heal_test against the base")
    name = heal.test_name.replace("::", "-").lower()
    branch = free_branch(repo, remote, f"prodloop/heal-{heal.failure_id}-{name}"[:80])
    record = _record(heal, branch, base, client, iso(now) or "")
    message = (
        f"Heal {heal.test_path}::{heal.test_name} after an intended behaviour change (prodloop)\n\n"
        f"The test failed in CI (failure {heal.failure_id}) after a change it did not follow; healed through "
        f"prodloop's gates (not weakened, passes, mutation score {record['mutation_score']}).\n\n"
        f"Prodloop-Heal: {heal.id}\n"
    )
    body = _body(heal, record)
    for label, text in (("the healed test", heal.test_code), ("the description", body), ("the message", message)):
        found = secret_findings(text, production_values=label == "the healed test")
        if found:
            raise HealRefused(what, f"{label} carries {', '.join(found)}; nothing was pushed", "remove it, heal again")
    ledger = {settings.ledger_path: jsonl_line(record)}
    commit = repo.build_commit(base_sha, "", {heal.test_path: heal.test_code}, ledger, message)
    extra = repo.changed_between(base_sha, commit) - {heal.test_path, settings.ledger_path}
    if extra:
        raise HealRefused(what, f"the commit would change {sorted(extra)} too", "nothing was pushed")
    node = f"{heal.test_path}::{heal.test_name}"
    with workspace(repo, commit) as ws:
        outcome = outcome_of(runner.pytest(ws, [node]), node)
    if outcome is None or outcome.outcome != "passed":
        raise HealRefused(what, f"on {base} ({base_sha[:12]}) the healed test "
                          f"{outcome.outcome if outcome else 'did not run'}", "heal_test against the base")  # fmt: skip
    push(repo, remote, commit, branch)
    pushed.append(branch)
    check_pushed(repo, remote, branch, commit)
    labels = [x for x in [*settings.pr_labels, "test-heal"] if x != settings.auto_merge.label]
    out = publish(
        settings, branch=branch, base=base, commit=commit, title=f"Heal test {heal.test_name} (prodloop)", body=body,
        draft=False, labels=labels, again="open_heal_pr again",
    )  # fmt: skip
    record["pull_request"] = {"branch": branch, "base": base, "url": out.url, "number": out.number}
    policy.save_provenance(store, [record], now)
    return HealPullRequest(mode=out.mode, branch=branch, base=base, commit=commit, url=out.url, number=out.number,
                           description_path=out.description_path, labels=labels, provenance=record)  # fmt: skip


def _record(heal: heals.Heal, branch: str, base: str, client: str, created_at: str) -> dict[str, Any]:
    found = heal.classification
    evidence = found.get("evidence")
    return {
        "action": "healed",
        "kind": "heal",
        "test_node": f"{heal.test_path}::{heal.test_name}",
        "test_path": heal.test_path,
        "test_sha256": heal.test_sha256,
        "previous_sha256": heal.old_sha256,
        "ci_failure_id": heal.failure_id,
        "heal_id": heal.id,
        "failing_commit": heal.commit_sha,
        "classification": found.get("kind"),
        "decided_by": found.get("decided_by"),
        "evidence": [cap(str(e), 300) for e in (evidence if isinstance(evidence, list) else [])[:6]],
        "gates": {g.name: g.passed for g in heal.gates},
        "mutation_score": heal.mutation.score if heal.mutation else None,
        "mutants": heal.mutation.mutants if heal.mutation else None,
        "pull_request": {"branch": branch, "base": base},
        "client": cap(client, 100),
        "created_at": created_at,
    }


def _body(heal: heals.Heal, record: dict[str, Any]) -> str:
    gates = [f"| {g.name} | {'pass' if g.passed else 'FAIL'} | {md_inline(g.evidence, 200)} |" for g in heal.gates]
    suspects = heal.classification.get("suspects")
    changes = [f"- {md_inline(str(s.get('commit', ''))[:12], 12)} {md_inline(s.get('summary', ''), 120)}"
               for s in (suspects if isinstance(suspects, list) else []) if isinstance(s, dict)]  # fmt: skip
    return "\n".join([
        "## Why the test is healed, not the code",
        *(f"- {md_inline(e, 300)}" for e in record["evidence"]),
        "", "## The change it follows", *changes,
        "", "## Gates", "| gate | result | evidence |", "| --- | --- | --- |", *gates,
        "", "## Provenance", "```json", jsonl_line(record).strip(), "```",
    ]) + "\n"  # fmt: skip
