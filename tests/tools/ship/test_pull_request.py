"""open_pr: a validated test and fix pushed to a real bare remote, PRs through a local GitHub API server."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError, PullRequestRefused, ReceiptTampered
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import policy, receipts
from prodloop.tools.judge.candidate import run_candidate_for_issue, sha256
from prodloop.tools.judge.candidate import test_digest as digest_of
from prodloop.tools.judge.mutation import mutate_validate
from prodloop.tools.ship.pull_request import open_pr
from tests.fakes.github_api import FakeGitHub
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService
from tests.tools.judge.test_mutation import STRONG_SKU, WEAK_SKU

TOKEN = "ghp_test_secret_value_0123456789abcdef"
WRITES_A_FILE = STRONG_SKU.replace(
    "def test_unknown_sku_costs_nothing():\n",
    "def test_unknown_sku_costs_nothing():\n    open('written_by_test.txt', 'w').close()\n",
)


HOST_MARKER = Path(tempfile.gettempdir()) / f"prodloop-host-ran-{uuid.uuid4().hex}"
REDIRECTS_ITS_GIT = STRONG_SKU.replace(
    "def test_unknown_sku_costs_nothing():\n",
    "def test_unknown_sku_costs_nothing(tmp_path):\n"
    "    import pathlib, subprocess\n"
    "    evil = tmp_path / 'evil.git'\n"
    "    subprocess.run(['git', 'init', '-q', '--bare', str(evil)], check=True)\n"
    f"    marker = pathlib.Path({str(HOST_MARKER)!r})\n"
    "    (evil / 'config').write_text('[core]\\n\\tbare = false\\n\\tsshCommand = touch ' + str(marker) +\n"
    "        '\\n[remote \"origin\"]\\n\\turl = ssh://127.0.0.1/x.git\\n')\n"
    "    hook = evil / 'hooks' / 'pre-push'\n"
    "    hook.write_text('#!/bin/sh\\ntouch ' + str(marker) + '\\n')\n"
    "    hook.chmod(0o755)\n"
    "    pathlib.Path('.git').write_text('gitdir: ' + str(evil) + '\\n')\n",
)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One sample service with a store holding a fully validated receipt, a weak one and a gate-failing one."""
    base = tmp_path_factory.mktemp("pr")
    service = SampleService(base / "shop")
    data = base / "data"
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=data, gates={"flaky_runs": 1}))
    import_events(ctx, ctx.store.create_project("shop"), [("e", service.event("unknown_sku"))], source="test")
    strong = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=STRONG_SKU, fix_diff=FIX_UNKNOWN_SKU)
    mutate_validate(*ctx.collaborators(), receipt_id=strong.receipt_id)
    weak = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=WEAK_SKU, fix_diff=FIX_UNKNOWN_SKU)
    mutate_validate(*ctx.collaborators(), receipt_id=weak.receipt_id)
    unmutated = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=STRONG_SKU, fix_diff=FIX_UNKNOWN_SKU
    )
    # Defence in depth: as if a test that writes into its worktree had slipped past the hermetic gate.
    slipped = {}
    ctx.settings.gates.run_non_hermetic = True
    for name, code in (("writing", WRITES_A_FILE), ("redirecting", REDIRECTS_ITS_GIT)):
        result = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=code, fix_diff=FIX_UNKNOWN_SKU)
        assert [g.name for g in result.gates if not g.passed] == ["hermetic"], result.gates
        gates = [{**g.model_dump(), "passed": True} for g in result.gates]
        with ctx.store.transaction() as conn:
            conn.execute(
                "UPDATE receipts SET passed = 1, gates = ? WHERE id = ?", (json.dumps(gates), result.receipt_id)
            )
        mutate_validate(*ctx.collaborators(), receipt_id=result.receipt_id)
        slipped[name] = result.receipt_id
    ctx.settings.gates.run_non_hermetic = False
    no_fix = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=STRONG_SKU)
    ctx.close()
    return {
        "service": service, "data": data, "strong": strong.receipt_id, "weak": weak.receipt_id,
        "unmutated": unmutated.receipt_id, "no_fix": no_fix.receipt_id, **slipped,
    }  # fmt: skip


@pytest.fixture
def setup(prepared: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., tuple[AppContext, Path]]]:
    """Factory: a fresh copy of the store and a fresh bare remote ('origin') holding main."""
    service: SampleService = prepared["service"]
    opened: list[AppContext] = []

    def factory(**settings: Any) -> tuple[AppContext, Path]:
        data = tmp_path / "data"
        shutil.copytree(prepared["data"], data)
        remote = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        subprocess.run(["git", "-C", str(service.root), "remote", "remove", "origin"], capture_output=True)
        _git(service.root, "remote", "add", "origin", str(remote))
        _git(service.root, "push", "-q", "origin", "main")
        ctx = AppContext.open(load_settings(repo=service.root, data_dir=data, **settings))
        opened.append(ctx)
        return ctx, remote

    yield factory
    for ctx in opened:
        ctx.close()


def test_local_mode_pushes_a_branch_with_fix_test_and_provenance_and_changes_nothing_of_the_user(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    service: SampleService = prepared["service"]
    before = (_git(service.root, "status", "--porcelain"), _git(service.root, "branch", "--list"))
    ctx, remote = setup()
    result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"], client="pytest-agent")
    assert result.mode == "local"
    assert result.branch == "prodloop/1-keyerror-kiwi"
    assert result.base == "main"
    assert _git(remote, "rev-parse", result.branch).strip() == result.commit
    files = _git(remote, "show", "--name-only", "--format=", result.commit).split()
    assert sorted(files) == ["shop/pricing.py", "tests/.prodloop/provenance.jsonl", "tests/test_prodloop_issue_1.py"]
    message = _git(remote, "log", "-1", "--format=%B", result.commit)
    assert "Fixes: prodloop issue 1" in message
    assert f"Prodloop-Receipt: {prepared['strong']}" in message
    committed = json.loads(_git(remote, "show", f"{result.commit}:tests/.prodloop/provenance.jsonl"))
    assert committed == policy.provenance_records(ctx.store)[0][0] == result.provenance
    assert committed["client"] == "pytest-agent"
    assert committed["mutation_score"] == 1.0
    assert committed["gates"]["reproduces"] is True
    description = Path(result.description_path or "").read_text()
    assert "| reproduces | pass |" in description
    assert result.failure_to_pr_seconds > 0
    assert [p.branch for p in policy.pull_requests(ctx.store, issue_id=1)] == [result.branch]
    assert (_git(service.root, "status", "--porcelain"), _git(service.root, "branch", "--list")) == before


def test_github_mode_creates_the_pull_request_with_labels_and_never_leaks_the_token(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeGitHub(token=TOKEN) as github:
        ctx, remote = setup(github_token=TOKEN, github_base_url=github.base_url, github_repo="acme/shop")
        result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"], draft=True, labels=["prodloop", "bug"])
        created = [r for r in github.requests if r.method == "POST" and r.path.endswith("/pulls")]
        labelled = [r for r in github.requests if r.path.endswith("/issues/1/labels")]
    assert (result.mode, result.number, result.url) == ("github", 1, "https://github.example/acme/shop/pull/1")
    body = created[0].body
    assert (body["head"], body["base"], body["draft"]) == (result.branch, "main", True)
    assert body["title"] == "Fix production KeyError (prodloop #1)"  # the message is production text: body only
    assert "```text\nKeyError: 'kiwi'\n```" in body["body"]
    assert f"Receipt `{prepared['strong']}`" in body["body"]
    assert "## Mutation testing" in body["body"]
    assert labelled[0].body == ["prodloop", "bug", "prodloop:auto-merge-eligible"]  # eligible: small, mutation 1.0
    everything = json.dumps(result.model_dump()) + caplog.text + _git(remote, "log", "-p", "--all")
    everything += json.dumps(policy.provenance_records(ctx.store)) + json.dumps([r.body for r in github.requests])
    assert TOKEN not in everything


def test_a_rejected_token_is_a_clear_error_without_the_token(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    with FakeGitHub(token="the-right-one") as github:
        ctx, _ = setup(github_token=TOKEN, github_base_url=github.base_url, github_repo="acme/shop")
        with pytest.raises(ProdloopError, match="HTTP 401") as info:
            open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    assert TOKEN not in str(info.value)
    assert "check github_token" in str(info.value)
    # The push happened before GitHub said no: the error says what exists and what to do with it.
    assert "is already pushed to origin: open the pull request from it by hand" in str(info.value)


@pytest.mark.parametrize(
    ("receipt", "message"),
    [
        ("no_fix", "gates not passed: passes_with_fix, not_flaky, covers_path"),
        ("unmutated", "no mutation testing on record"),
        ("weak", "mutation score"),
    ],
)
def test_receipts_without_every_gate_and_mutation_pass_are_refused(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]], receipt: str, message: str
) -> None:
    ctx, remote = setup()
    with pytest.raises(PullRequestRefused, match=message):
        open_pr(*ctx.collaborators(), receipt_id=prepared[receipt])
    assert _git(remote, "branch", "--list", "--format=%(refname:short)").split() == ["main"]


def test_a_tampered_receipt_is_refused(prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]) -> None:
    ctx, _ = setup()
    with ctx.store.transaction() as conn:
        conn.execute(
            "UPDATE receipts SET test_code = test_code || '\nassert True\n' WHERE id = ?", (prepared["strong"],)
        )
    with pytest.raises(ReceiptTampered, match=r"stored test .* no longer matches the hash"):
        open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])


@pytest.mark.parametrize(
    ("where", "added", "named"),
    [
        ("test_code", "# deploy key " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8" + "\n", "github_token"),
        ("test_code", "SKU = '[Filtered]'\n", "a scrubbed production value"),
        ("fix_diff", "+# " + "AKIA" + "QWERTYUIOPASDFGH" + "\n", "aws_access_key"),
    ],
)
def test_a_secret_or_scrubbed_value_never_reaches_a_repository_or_pr(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]], where: str, added: str, named: str
) -> None:
    ctx, remote = setup()
    receipt = receipts.get(ctx.store, prepared["strong"])
    test_code, fix = receipt.test_code, receipt.fix_diff
    if where == "test_code":
        test_code += added
    else:
        fix = fix.replace("\n@@", "\n@@", 1)
        lines = fix.splitlines(keepends=True)
        hunk = next(i for i, line in enumerate(lines) if line.startswith("@@"))
        fix = "".join(lines[: hunk + 1]) + added + "".join(lines[hunk + 1 :])
    with ctx.store.transaction() as conn:  # as if the agent had submitted it: hashes match, gates "passed"
        conn.execute(
            "UPDATE receipts SET test_code = ?, test_sha256 = ?, fix_diff = ?, fix_sha256 = ? WHERE id = ?",
            (test_code, digest_of(test_code, None), fix, sha256(fix), receipt.id),
        )
    with pytest.raises(PullRequestRefused, match=f"carries {named}; nothing was pushed"):
        open_pr(*ctx.collaborators(), receipt_id=receipt.id)
    assert _git(remote, "branch", "--list", "--format=%(refname:short)").split() == ["main"]


def test_pr_budgets_per_issue_and_per_day_refuse_and_escalate(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    ctx, _ = setup(budgets={"max_prs_per_issue": 1})
    open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    with pytest.raises(PullRequestRefused, match="already has 1 of 1 PRs"):
        open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    assert [e.kind for e in policy.escalations(ctx.store, open_only=True)] == ["pr-budget"]


def test_per_day_limit(prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]) -> None:
    ctx, _ = setup(budgets={"max_prs_per_day": 1})
    open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    with pytest.raises(PullRequestRefused, match="1 of 1 PRs were opened in the last 24 hours"):
        open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])


def test_a_base_that_moved_into_a_conflict_is_refused_with_the_evidence(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]], tmp_path: Path
) -> None:
    ctx, remote = setup()
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    pricing = other / "shop" / "pricing.py"
    pricing.write_text(
        pricing.read_text().replace('PRICES[item["sku"]] * item["qty"]', 'PRICES[item["sku"]] * int(item["qty"])')
    )
    _git(other, "-c", "user.name=Eve", "-c", "user.email=eve@example.com", "commit", "-qam", "qty as int")
    _git(other, "push", "-q", "origin", "main")
    with pytest.raises(PullRequestRefused, match="the fix conflicts with main"):
        open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    assert ctx.store.reader().execute("SELECT count(*) FROM pull_requests").fetchone()[0] == 0  # slot given back
    assert _git(remote, "branch", "--list", "--format=%(refname:short)").split() == ["main"]


def test_provenance_is_listed_and_exported_by_the_cli(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]], tmp_path: Path
) -> None:
    import os
    import sys

    ctx, _ = setup()
    result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"], client="cli-test")
    export = tmp_path / "provenance.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    done = subprocess.run(
        [sys.executable, "-m", "prodloop.server.cli", "provenance", "--repo", str(prepared["service"].root),
         "--data-dir", str(ctx.settings.data_dir), "--export", str(export)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in export.read_text().splitlines()] == [result.provenance]


def test_files_the_test_writes_while_running_never_ship(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    ctx, remote = setup()
    result = open_pr(*ctx.collaborators(), receipt_id=prepared["writing"])
    files = _git(remote, "show", "--name-only", "--format=", result.commit).split()
    assert "written_by_test.txt" not in files
    assert sorted(files) == ["shop/pricing.py", "tests/.prodloop/provenance.jsonl", "tests/test_prodloop_issue_1.py"]


def test_a_test_that_redirects_its_worktrees_git_cannot_run_a_command_or_steer_the_push(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    ctx, remote = setup()
    result = open_pr(
        *ctx.collaborators(), receipt_id=prepared["redirecting"]
    )  # the test runs on the base, then the push
    assert not HOST_MARKER.exists(), "a host git command read the git directory the test pointed its tree at"
    assert result.branch in _git(remote, "branch", "--list", "--format=%(refname:short)").split()
    assert _git(remote, "rev-parse", result.branch).strip() == result.commit


def test_a_pr_whose_labels_fail_still_counts_and_is_not_opened_twice(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    class NoLabels(FakeGitHub):
        def _labels(self, method: str, match: Any, body: Any) -> tuple[int, Any]:
            return 403, {"message": "Resource not accessible by integration"}

    with NoLabels(token=TOKEN) as github:
        ctx, _ = setup(
            github_token=TOKEN,
            github_base_url=github.base_url,
            github_repo="acme/shop",
            budgets={"max_prs_per_issue": 1},
        )
        result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
        with pytest.raises(PullRequestRefused, match="already has 1 of 1 PRs"):
            open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    assert result.number == 1
    assert len(github.pulls) == 1


def test_a_small_well_mutated_fix_is_labelled_for_auto_merge_and_metrics_count_it(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    from prodloop.tools.observe.metrics import metrics

    ctx, _ = setup()
    result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"])
    assert result.auto_merge.eligible and "prodloop:auto-merge-eligible" in result.labels
    assert "mutation score 1.0 >= 0.95" in result.auto_merge.reasons[0]
    assert "## Auto-merge\nEligible:" in Path(result.description_path or "").read_text()
    measured = metrics(ctx.store)
    assert (measured.pull_requests, measured.auto_merge_eligible, measured.auto_merged) == (1, 1.0, 0.0)


def test_a_fix_over_the_auto_merge_size_is_not_labelled_even_when_the_agent_asks(
    prepared: dict[str, Any], setup: Callable[..., tuple[AppContext, Path]]
) -> None:
    ctx, _ = setup(auto_merge={"max_fix_lines": 1})
    result = open_pr(*ctx.collaborators(), receipt_id=prepared["strong"], labels=["prodloop:auto-merge-eligible"])
    assert not result.auto_merge.eligible and "prodloop:auto-merge-eligible" not in result.labels
    assert any("over 1 lines" in r for r in result.auto_merge.reasons)
