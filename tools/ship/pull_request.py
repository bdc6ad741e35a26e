"""`open_pr`: ship a validated regression test (and fix) as a pull request, with provenance.

Refused unless the receipt passed every candidate gate and mutation testing, its stored test
and fix still hash to what it recorded, and the issue and repository have PRs left in their
budgets. The change is built in a throwaway worktree of the base branch (which may have moved
since the deployed commit): fix and test applied, the provenance line appended, the candidate
test run once more; then committed, pushed with GitPython to the configured remote and, with a
GitHub token, opened as a pull request with PyGithub. Without a token the branch is pushed
and the description written beside the store.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import GitError, PullRequestRefused
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, policy
from prodloop.server.store.receipts import MutationResult, Receipt
from prodloop.tools.engine._shape import cap, iso, md_inline, untrusted_md
from prodloop.tools.engine.collaborators import Collaborators
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import outcome_of, workspace
from prodloop.tools.judge.candidate import fix_paths, verified_receipt
from prodloop.tools.locate.code_path import CodePath, mapped_for
from prodloop.tools.observe.triage import require_clearance
from prodloop.tools.ship.auto_merge import Eligibility, eligibility
from prodloop.tools.ship.provenance import build_record, jsonl_line
from prodloop.tools.ship.publish import check_pushed, fetch_base, free_branch, publish, push


class PullRequestResult(BaseModel):
    mode: Literal["github", "local"]
    branch: str
    base: str
    commit: str
    remote: str
    url: str | None
    number: int | None
    description_path: str | None = Field(description="local mode: where the PR description was written")
    labels: list[str]
    auto_merge: Eligibility
    failure_to_pr_seconds: float = Field(description="from the issue's first event to this PR")
    provenance: dict[str, Any]


def open_pr(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    *,
    receipt_id: str,
    title: str | None = None,
    body_extra: str | None = None,
    draft: bool = False,
    labels: list[str] | None = None,
    client: str = "unknown",
    code_path: CodePath | None = None,
) -> PullRequestResult:
    ctx = Collaborators(store, repo, runner, settings, clock)
    receipt = verified_receipt(store, receipt_id)
    require_clearance(store, repo, settings, clock, receipt.issue_id, action="open_pr",
                      paths=[receipt.test_path, *fix_paths(repo, receipt.commit_sha, receipt.fix_diff)])  # fmt: skip
    mutation = _check_receipt(receipt)
    issue = ctx.store.get_issue(receipt.issue_id)
    slot = _reserve(ctx, receipt)
    pushed: list[str] = []  # the branch and commit, once they left this machine
    try:
        return _open(
            ctx, receipt, mutation, issue, slot, pushed,
            title=title, body_extra=body_extra, draft=draft, labels=labels, client=client, code_path=code_path,
        )  # fmt: skip
    except BaseException:
        if pushed:  # a branch (and maybe a PR) exists: the slot stays spent, for a person to see
            policy.fail_pull_request(ctx.store, slot, branch=pushed[0], commit=pushed[1])
        else:
            policy.release_pull_request(ctx.store, slot)
        raise


def _open(
    ctx: Collaborators,
    receipt: Receipt,
    mutation: MutationResult,
    issue: Any,
    slot: int,
    pushed: list[str],
    *,
    title: str | None,
    body_extra: str | None,
    draft: bool,
    labels: list[str] | None,
    client: str,
    code_path: CodePath | None,
) -> PullRequestResult:
    receipt_id = receipt.id
    code_path = mapped_for(
        ctx.store, ctx.repo, code_path, event_id=receipt.event_id, path_rewrites=ctx.settings.path_rewrites
    )
    settings = ctx.settings
    remote = settings.git_remote
    base = settings.base_branch or ctx.repo.default_branch(remote)
    base_sha = fetch_base(ctx.repo, remote, base)
    branch = free_branch(ctx.repo, remote, f"prodloop/{issue.id}-{_slug(issue.title)}")
    now = ctx.clock.now()
    record = build_record(
        receipt=receipt,
        fingerprint=issue.fingerprint,
        branch=branch,
        base=base,
        client=client,
        created_at=iso(now) or "",
    )
    message = _commit_message(issue.id, issue.title, issue.fingerprint, receipt)
    fixed = fix_paths(ctx.repo, receipt.commit_sha, receipt.fix_diff)
    eligible = eligibility(settings.auto_merge, mutation, receipt.fix_diff, fixed)
    body = _body(issue, code_path, receipt, mutation, record, body_extra, eligible)
    _refuse_secrets(receipt, {"the PR title": title or "", "the PR description": body, "the commit message": message,
                              "the provenance line": jsonl_line(record)})  # fmt: skip
    repo = ctx.repo
    files = {**(receipt.support_files or {}), receipt.test_path: receipt.test_code}
    if repo.exists(base_sha, receipt.test_path):
        # A CI regression's failing test is already on the base: the fix ships alone, the test as it stands.
        if repo.read(base_sha, receipt.test_path) != receipt.test_code:
            raise PullRequestRefused(
                receipt_id, f"{receipt.test_path} already exists on {base}", "choose another test_path"
            )
        del files[receipt.test_path]
    try:
        # Built from the receipt's hashed test and fix alone, before anything runs: nothing a test writes can ship.
        commit = repo.build_commit(
            base_sha, receipt.fix_diff, files, {settings.ledger_path: jsonl_line(record)}, message
        )
    except GitError as exc:
        raise PullRequestRefused(
            receipt_id, f"the fix conflicts with {base} ({str(exc)[:300]})", "rebase the fix on the base and run again"
        ) from exc
    _check_tree(repo, receipt_id, base_sha, commit, _expected_files(repo, base_sha, receipt, settings.ledger_path))
    with workspace(repo, commit) as ws:
        node = f"{receipt.test_path}::{receipt.test_name}"
        check = ctx.runner.pytest(ws, [node])
        outcome = outcome_of(check, node)
        if outcome is None or outcome.outcome != "passed":
            what = "timed out" if check.timed_out else (outcome.outcome if outcome else "did not run")
            detail = (outcome.message if outcome else check.output_tail)[-300:]
            raise PullRequestRefused(
                receipt_id,
                f"on {base} ({base_sha[:12]}) the test {what}: {detail}",
                "the base moved: run run_candidate_test against it, then open_pr again",
            )
    push(repo, remote, commit, branch)
    pushed += [branch, commit]
    check_pushed(repo, remote, branch, commit)
    # The eligibility label is prodloop's judgement alone: an agent's labels can neither add nor drop it.
    mark = settings.auto_merge.label
    labels = [x for x in (labels if labels is not None else settings.pr_labels) if x != mark]
    labels += [mark] if eligible.eligible else []
    out = publish(
        settings, branch=branch, base=base, commit=commit, title=title or _title(issue.id, issue.title), body=body,
        draft=draft, labels=labels, again="open_pr again (this PR slot stays spent)",
    )  # fmt: skip
    policy.complete_pull_request(
        ctx.store,
        policy.PullRequestRow(slot, issue.id, receipt_id, branch, commit, out.url, out.number, out.mode, now),
        record,
        auto_merge=eligible.model_dump_json(),
    )
    return PullRequestResult(
        mode=out.mode, branch=branch, base=base, commit=commit, remote=remote, url=out.url, number=out.number,
        description_path=out.description_path, labels=labels, auto_merge=eligible,
        failure_to_pr_seconds=round(now - issue.first_seen, 3),
        provenance=record,
    )  # fmt: skip


def _refuse_secrets(receipt: Receipt, texts: dict[str, str]) -> None:
    """Nothing prodloop writes into a repository or a PR may carry a secret or a scrubbed production value."""
    written = {
        f"the test {receipt.test_path}": (receipt.test_code, True),
        **{f"the support file {path}": (text, True) for path, text in (receipt.support_files or {}).items()},
        "the fix": (receipt.fix_diff, False),
        **{what: (text, False) for what, text in texts.items()},
    }
    for what, (text, production) in written.items():
        found = secret_findings(text, production_values=production)
        if found:
            raise PullRequestRefused(
                receipt.id,
                f"{what} carries {', '.join(found)}; nothing was pushed",
                "remove it from the test or fix (a production input that was scrubbed cannot be a test input), "
                "run_candidate_test and mutate_validate again",
            )


def _check_receipt(receipt: Receipt) -> MutationResult:
    """The receipt's mutation result, when every gate and mutation testing passed."""
    failed = receipt.failed_gates()
    if not receipt.passed or failed:
        raise PullRequestRefused(
            receipt.id, f"gates not passed: {', '.join(failed)}", "run_candidate_test until all pass"
        )
    mutation = receipt.mutation
    if mutation is None:
        raise PullRequestRefused(receipt.id, "no mutation testing on record", "run mutate_validate with this receipt")
    if not mutation.passed:
        raise PullRequestRefused(
            receipt.id,
            f"mutation score {mutation.score} is under {mutation.min_score}",
            "strengthen the test's assertions, run_candidate_test and mutate_validate again",
        )
    return mutation


def _reserve(ctx: Collaborators, receipt: Receipt) -> int:
    limits = ctx.settings.budgets
    now = ctx.clock.now()
    slot, problem = policy.reserve_pull_request(
        ctx.store, receipt.issue_id, receipt.id, max_per_issue=limits.max_prs_per_issue,
        max_per_day=limits.max_prs_per_day, now=now,
    )  # fmt: skip
    if slot is None:
        policy.escalate(ctx.store, receipt.issue_id, "pr-budget", problem or "PR budget", now)
        raise PullRequestRefused(
            receipt.id, problem or "no PR budget left", "a person must review the open PRs (escalated)"
        )
    return slot


def _expected_files(repo: GitRepo, base: str, receipt: Receipt, ledger: str) -> list[str]:
    """Every path the fix changes on the base (read by git from the diff itself, so any file name works), the test,
    its support files and the provenance ledger."""
    fixed = repo.diff_paths(base, receipt.fix_diff)
    return sorted({*fixed, receipt.test_path, *(receipt.support_files or {}), ledger})


def _check_tree(repo: GitRepo, receipt_id: str, base: str, commit: str, expected: list[str]) -> None:
    """The commit changes exactly the fix's paths, the test, its support files and the ledger: nothing else."""
    extra = repo.changed_between(base, commit) - set(expected)
    if extra:
        raise PullRequestRefused(receipt_id, f"the commit would change {sorted(extra)} too", "nothing was pushed")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "fix"


def _title(issue_id: int, title: str) -> str:
    """The exception's type only: the message is production text, never a heading (it is in the body, fenced)."""
    kind = re.match(r"[A-Za-z_][\w.]{0,80}", title)
    return f"Fix production {kind.group(0) if kind else 'error'} (prodloop #{issue_id})"


def _commit_message(issue_id: int, title: str, fingerprint: str, receipt: Receipt) -> str:
    return (
        f"{_title(issue_id, title)}\n\n"
        f"Adds {receipt.test_path}::{receipt.test_name}, a regression test that fails on the deployed commit "
        f"{receipt.commit_sha[:12]} with the production exception and passes with this fix.\n\n"
        f"Fixes: prodloop issue {issue_id} (fingerprint {fingerprint})\n"
        f"Prodloop-Receipt: {receipt.id}\n"
    )


def _body(
    issue: Any,
    code_path: CodePath,
    receipt: Receipt,
    mutation: MutationResult,
    record: dict[str, Any],
    extra: str | None,
    eligible: Eligibility,
) -> str:
    exc = code_path.exceptions[-1] if code_path.exceptions else None
    frames = [
        f"- `{f.location.repo_path}:{f.location.lineno}` in `{f.qualname or f.function}`"
        + (" **(culprit)**" if f.is_culprit else "")
        for e in code_path.exceptions
        for f in e.path
    ]
    gates = [f"| {g.name} | {'pass' if g.passed else 'FAIL'} | {md_inline(g.evidence, 200)} |" for g in receipt.gates]
    survivors = [
        f"{'' if s.observed else 'Unexercised by the inputs: '}```diff\n{cap(s.diff, 1500)}\n```"
        for s in mutation.survivors[:5]
    ]
    parts = [
        "## Production error",
        "Production raised (production data, captured from users: not instructions):",
        untrusted_md(f"{exc.type}: {exc.value}" if exc else issue.title, 400),
        "",
        f"{issue.event_count} events, {issue.user_count} users; "
        f"first seen {iso(issue.first_seen)}, last seen {iso(issue.last_seen)}.",
        "",
        "## Code path (at the deployed commit " + receipt.commit_sha[:12] + ")",
        *frames,
        "",
        "## Gates",
        "| gate | result | evidence |",
        "| --- | --- | --- |",
        *gates,
        "",
        "## Mutation testing",
        f"Score {mutation.score} over {mutation.mutants} mutants "
        f"(killed {mutation.killed}, timeout {mutation.timeout}, survived {mutation.survived}, "
        f"unexercised by the test's inputs {mutation.unexercised}); "
        f"gate {mutation.min_score}.",
        *survivors,
        "",
        f"Receipt `{receipt.id}`.",
        "",
        "## Auto-merge",
        f"{'Eligible' if eligible.eligible else 'Not eligible'}: {'; '.join(eligible.reasons)}.",
        "",
        "## Provenance",
        "```json",
        jsonl_line(record).strip(),
        "```",
    ]
    if extra:
        parts += ["", cap(extra, 4000) or ""]
    return "\n".join(parts) + "\n"
