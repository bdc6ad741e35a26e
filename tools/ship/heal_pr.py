"""`open_heal_pr`: ship a healed CI test as a pull request, with a provenance record of kind `healed`.

Refused unless the heal passed every gate (mutation testing included), its stored test still hashes to what its gates
judged, the base branch still holds the test exactly as it was healed from (else the base moved: heal again), and
the repository has PRs left today. Shipped like every test-suite change (`suite_ship.ship`: the healed file and the
provenance line, nothing else, built with plumbing on the base), the healed test run once more on the built commit
before anything is pushed. One heal makes one pull request.
"""

from __future__ import annotations

from typing import Any

from prodloop.server.clock import Clock
from prodloop.server.errors import HealRefused, ProdloopError
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, heals, policy
from prodloop.tools.engine._shape import cap, iso, md_inline
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import outcome_of, workspace
from prodloop.tools.judge.heal import sha256
from prodloop.tools.ship.provenance import jsonl_line
from prodloop.tools.ship.suite_ship import ShippedChange, base_of, branch_for, labels_for, ship

DAY = 86_400.0


class HealPullRequest(ShippedChange):
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
    branch: list[str] = []
    try:
        return _ship(store, repo, runner, settings, clock, heal, client, branch)
    finally:  # the claim stays with the branch once the remote holds it (or may), else it is given back
        heals.set_shipped(store, heal_id, branch[0] if branch and _maybe_pushed(repo, settings, branch[0]) else None)


def _ship(
    store: Store, repo: GitRepo, runner: Runner, settings: Settings, clock: Clock, heal: heals.Heal, client: str,
    chosen: list[str],
) -> HealPullRequest:  # fmt: skip
    what = f"heal {heal.id}"
    now = clock.now()
    since = now - DAY
    opened = len(policy.pull_requests(store, since=since)) + policy.provenance_count(
        store, action="healed", since=since
    )
    if opened >= settings.budgets.max_prs_per_day:
        raise HealRefused(what, f"{opened} PRs were opened in the last 24 hours", "a person reviews the open PRs first")
    base = base_of(repo, settings)
    current = repo.read(base.sha, heal.test_path)
    if current is None or sha256(current) != heal.old_sha256:
        state = "no longer has" if current is None else "changed"
        raise HealRefused(
            what, f"{base.name} {state} {heal.test_path} since it was healed", "heal_test against the base"
        )
    found = secret_findings(heal.test_code, production_values=True)
    if found:
        raise HealRefused(what, f"the healed test carries {', '.join(found)}; nothing was pushed", "heal again")
    name = heal.test_name.replace("::", "-").lower()
    chosen.append(branch_for(repo, settings, f"prodloop/heal-{heal.failure_id}-{name}"[:80]))
    record = _record(heal, chosen[0], base.name, client, iso(now) or "")
    message = (
        f"Heal {heal.test_path}::{heal.test_name} after an intended behaviour change (prodloop)\n\n"
        f"The test failed in CI (failure {heal.failure_id}) after a change it did not follow; healed through "
        f"prodloop's gates (not weakened, passes, mutation score {record['mutation_score']}).\n\n"
        f"Prodloop-Heal: {heal.id}\n"
    )
    node = f"{heal.test_path}::{heal.test_name}"

    def passes_on_base(commit: str) -> None:  # the healed test, once more, on the commit about to be pushed
        with workspace(repo, commit) as ws:
            outcome = outcome_of(runner.pytest(ws, [node]), node)
        if outcome is None or outcome.outcome != "passed":
            ran = outcome.outcome if outcome else "did not run"
            raise HealRefused(what, f"on {base.name} ({base.sha[:12]}) the healed test {ran}", "heal it again")

    labels = labels_for(settings, "test-heal")
    done = ship(
        store, repo, settings, what=what, base=base, branch=chosen[0], files={heal.test_path: heal.test_code},
        deleted=(), records=[record], title=f"Heal test {heal.test_name} (prodloop)", body=_body(heal, record),
        labels=labels, at=now, message=message, check=passes_on_base,
    )  # fmt: skip
    return HealPullRequest(**done.model_dump(), labels=labels, provenance=record)


def _maybe_pushed(repo: GitRepo, settings: Settings, branch: str) -> bool:
    try:
        return branch in repo.remote_heads(settings.git_remote, branch)
    except ProdloopError:
        return True  # the remote cannot say: keep the claim rather than risk a second PR


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
