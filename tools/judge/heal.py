"""`heal_test`: a CI test that rotted (the code's behaviour changed on purpose) healed through gates.

Only a failure classified `test_rot` (`tools/observe/ci_classify.py`, or a person's decision) is healed: a regression
is fixed in the code, a flaky test quarantined. The agent gives the whole updated test file; prodloop judges it on
the commit CI failed on:

- `only_the_test`: the file is statement for statement as it was outside the failing test's function (new imports
  of new names aside; `heal_scope`): only that test is run and mutation-tested, so nothing else may change;
- `not_weakened`: an AST diff of the test against itself as it was (`weakening.weakenings`): no assertion dropped or
  loosened, no broad except, skip, widened `pytest.raises`, short circuit or new patch;
- `real_assertion`, `hermetic`: the candidate gates' static checks, on the healed test;
- `fails_unhealed`: the test as it is fails there (there is something to heal);
- `passes_on_head`, `not_flaky`: the healed test passes there, and again with other hash seeds;
- `keeps_guarding`: when prodloop added the test for a production issue (provenance), the healed test still fails on
  that issue's deployed commit (it keeps guarding the bug it was written for);
- `mutation`: mutants of the code changed since the test last passed (what the healed test now claims) are killed
  at the gates' score.

Each attempt is stored (`heals`) with the sha256 of the test it judged; `open_heal_pr` ships only a passed heal whose
stored test still hashes to it, onto a base where the test is still the one healed.
"""

from __future__ import annotations

import hashlib
import uuid

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import HealRefused, InvalidArgument, MutationRefused, ProdloopError
from prodloop.server.settings import Settings
from prodloop.server.store import Store, heals, policy
from prodloop.server.store.heals import HEAL_GATES, Gate, HealGateName
from prodloop.server.store.receipts import MutationResult
from prodloop.tools.engine._shape import cap
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import RunResult, outcome_of, workspace
from prodloop.tools.judge.candidate import service_packages
from prodloop.tools.judge.heal_scope import changes_outside
from prodloop.tools.judge.hermetic import hermetic_findings
from prodloop.tools.judge.mutation import mutate_in, wanted_lines
from prodloop.tools.judge.test_checks import assertion_findings, is_test_module, parse_test, test_function_names
from prodloop.tools.judge.weakening import weakenings
from prodloop.tools.observe.ci_classify import Classification, classify_failure

DAY = 86_400.0


class HealResult(BaseModel):
    heal_id: str
    failure_id: int
    commit: str
    test_path: str
    test_node: str
    kind: str = Field(description="the failure's classification the heal was judged under")
    passed: bool = Field(description="every gate passed, mutation testing included")
    gates: list[Gate]
    mutation: MutationResult | None
    cpu_seconds: float
    next_step: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def heal_test(
    store: Store, repo: GitRepo, runner: Runner, settings: Settings, clock: Clock, *, failure_id: int, test_code: str
) -> HealResult:
    what = f"CI failure {failure_id}"
    found = classify_failure(store, repo, failure_id)
    if found.kind != "test_rot":
        raise HealRefused(what, f"it is classified {found.kind} ({cap(found.evidence[-1], 300)})", found.next_step)
    commit, test_path = found.failing_commit, found.test_path
    old = repo.read(commit, test_path) if commit and test_path else None
    if commit is None or test_path is None or old is None:
        raise HealRefused(what, f"the test file {test_path} is not in the failing commit", "fetch the commit CI tested")
    if not is_test_module(test_path):
        raise HealRefused(what, f"{test_path} is not a test module (test_*.py, *_test.py)", "heal only test files")
    if heals.attempts(store, failure_id, since=clock.now() - DAY) >= settings.budgets.max_runs:
        raise HealRefused(what, f"{settings.budgets.max_runs} heal attempts in 24 hours", "a person looks at the test")
    tree = parse_test(test_code, "test_code")
    name = _test_name(found.test_id, test_function_names(parse_test(old, "the test file")))
    if name not in test_function_names(tree):
        raise InvalidArgument("test_code", f"has no test {name} (the failing test)", "give the whole updated file")
    node = f"{test_path}::{name}"
    gates: dict[HealGateName, Gate] = {}
    outside = changes_outside(old, test_code, name)
    gates["only_the_test"] = Gate(
        name="only_the_test", passed=not outside, evidence="; ".join(outside[:10])
        or f"the file is as it was outside {name} (new imports aside)",
    )  # fmt: skip
    findings = weakenings(old, test_code, name)
    gates["not_weakened"] = Gate(
        name="not_weakened", passed=not findings,
        evidence="; ".join(f"{w.kind}: {w.evidence}" for w in findings[:10])
        or "every assertion of the test as it was has a counterpart as strong",
    )  # fmt: skip
    evidence, problems = assertion_findings(tree, name, service_packages(repo, commit))
    gates["real_assertion"] = Gate(
        name="real_assertion", passed=bool(evidence) and not problems,
        evidence="; ".join([*(f"line {f.line}: {f.problem}" for f in problems), *evidence])
        or "no assertion depends on the code under test",
    )  # fmt: skip
    unsealed = hermetic_findings(tree, name)
    gates["hermetic"] = Gate(
        name="hermetic", passed=not unsealed,
        evidence="; ".join(f"line {f.line}: {f.problem}" for f in unsealed) or "touches only the service and pytest",
    )  # fmt: skip
    runs: list[RunResult] = []
    spent: list[float] = []  # mutation testing's CPU
    mutation: MutationResult | None = None
    heal_id = uuid.uuid4().hex
    if not all(gates[g].passed for g in ("only_the_test", "not_weakened", "real_assertion", "hermetic")):
        for gate in ("fails_unhealed", "passes_on_head", "not_flaky", "keeps_guarding", "mutation"):
            gates[gate] = Gate(name=gate, passed=None, evidence="not run: a static gate failed")
    else:
        mutation = _run_gates(store, repo, runner, settings, found, heal_id, node, test_code, gates, runs, spent)
    cpu = sum(r.cpu_seconds for r in runs) + sum(spent)
    isolated = all(r.protected_checkout for r in runs)
    gate_list = [gates[g] for g in HEAL_GATES]
    passed = all(g.passed for g in gate_list) and (isolated or not settings.gates.require_isolation)
    heals.save(store, heals.Heal(
        id=heal_id, failure_id=failure_id, commit_sha=commit, test_path=test_path, test_name=name,
        old_sha256=sha256(old), test_code=test_code, test_sha256=sha256(test_code),
        classification=found.model_dump(mode="json"), gates=tuple(gate_list), mutation=mutation, passed=passed,
        cpu_seconds=cpu, created_at=clock.now(),
    ))  # fmt: skip
    failed = [g.name for g in gate_list if not g.passed]
    return HealResult(
        heal_id=heal_id, failure_id=failure_id, commit=commit, test_path=test_path, test_node=node, kind=found.kind,
        passed=passed, gates=gate_list, mutation=mutation, cpu_seconds=round(cpu, 3),
        next_step=f"open_heal_pr(heal_id={heal_id!r})" if passed
        else f"fix what the failing gates say ({', '.join(failed) or 'isolation'}) and heal_test again",
    )  # fmt: skip


def _run_gates(
    store: Store, repo: GitRepo, runner: Runner, settings: Settings, found: Classification, heal_id: str, node: str,
    test_code: str, gates: dict[HealGateName, Gate], runs: list[RunResult], cpu: list[float],
) -> MutationResult | None:  # fmt: skip
    commit, test_path = found.failing_commit or "", found.test_path or ""
    with workspace(repo, commit) as ws:
        before = runner.pytest(ws, [node])
        runs.append(before)
        outcome = outcome_of(before, node)
        gates["fails_unhealed"] = Gate(
            name="fails_unhealed", passed=outcome is not None and outcome.outcome in ("failed", "error"),
            evidence=f"as it is, the test {outcome.outcome if outcome else 'did not run'} on {commit[:12]}"
            + (f": {cap(outcome.message, 200)}" if outcome and outcome.message else ""),
        )  # fmt: skip
    with workspace(repo, commit) as ws:
        ws.write(test_path, test_code)
        healed = runner.pytest(ws, [node])
        runs.append(healed)
        outcome = outcome_of(healed, node)
        ok = outcome is not None and outcome.outcome == "passed"
        gates["passes_on_head"] = Gate(
            name="passes_on_head", passed=ok,
            evidence=f"healed, it {outcome.outcome if outcome else 'did not run'} on {commit[:12]}"
            + ("" if ok or outcome is None else f": {cap(outcome.message, 200)}"),
        )  # fmt: skip
        flaky = []
        for i in range(settings.gates.flaky_runs if ok else 0):
            again = runner.pytest(ws, [node], hash_seed=i + 1)
            runs.append(again)
            o = outcome_of(again, node)
            if o is None or o.outcome != "passed":
                flaky.append(f"run {i + 1}: {o.outcome if o else 'not run'}")
        gates["not_flaky"] = Gate(
            name="not_flaky", passed=ok and not flaky,
            evidence="; ".join(flaky) or (f"passed {settings.gates.flaky_runs} more times with other hash seeds"
                                          if ok else "not run: the healed test does not pass"),
        )  # fmt: skip
    gates["keeps_guarding"] = _keeps_guarding(store, repo, runner, node, test_path, test_code, runs)
    if not (gates["passes_on_head"].passed and gates["not_flaky"].passed):
        gates["mutation"] = Gate(name="mutation", passed=None, evidence="not run: the healed test does not pass")
        return None
    return _mutate(repo, runner, settings, found, heal_id, node, test_code, gates, cpu)


def _keeps_guarding(
    store: Store, repo: GitRepo, runner: Runner, node: str, test_path: str, test_code: str, runs: list[RunResult]
) -> Gate:
    """A prodloop regression test, healed, still fails on the deployed commit of each production bug it guards, and
    with the production exception (so the bug's input is still exercised, not cut short by a new assertion)."""
    records = [r for r in policy.provenance_records(store, test_path=test_path)[0]
               if policy.is_added(r) and r.get("test_node") == node]  # fmt: skip
    if not records:
        return Gate(name="keeps_guarding", passed=True, evidence="prodloop did not add this test: no production bug")
    failures, held = [], []
    for record in records:
        issue, deployed = record.get("issue_id"), str(record.get("deployed_commit", ""))
        if repo.resolve(deployed) is None:
            failures.append(f"issue {issue}: its deployed commit {deployed[:12]} is not here")
            continue
        with workspace(repo, deployed) as ws:
            ws.write(test_path, test_code)
            run = runner.pytest(ws, [node], watch_raises=True)
            runs.append(run)
        outcome = outcome_of(run, node)
        wanted = _exception_type(store, issue)
        raised = {str(c.get("type")) for c in outcome.chain} | {str(r.get("type")) for r in outcome.raised} \
            if outcome else set()  # fmt: skip
        if outcome is None or outcome.outcome not in ("failed", "error"):
            failures.append(f"issue {issue}: the healed test {outcome.outcome if outcome else 'did not run'} on "
                            f"{deployed[:12]}, where the production bug is: it no longer guards it")  # fmt: skip
        elif wanted and wanted not in raised:
            failures.append(
                f"issue {issue}: on {deployed[:12]} the healed test fails ({cap(outcome.message, 120)}) but never "
                f"raises {wanted}, the production exception: put the bug's input before the new assertions"
            )
        else:
            held.append(f"issue {issue} ({wanted or 'failure'} on {deployed[:12]})")
    return Gate(name="keeps_guarding", passed=not failures,
                evidence="; ".join(failures) or f"still fails on: {', '.join(held)}")  # fmt: skip


def _exception_type(store: Store, issue_id: object) -> str | None:
    try:
        return store.get_issue(int(str(issue_id))).exception_type
    except (ValueError, ProdloopError):
        return None


def _mutate(
    repo: GitRepo, runner: Runner, settings: Settings, found: Classification, heal_id: str, node: str,
    test_code: str, gates: dict[HealGateName, Gate], cpu: list[float],
) -> MutationResult | None:  # fmt: skip
    """Mutants of what changed in the code under test since the test last passed: the behaviour it now claims."""
    commit, test_path = found.failing_commit or "", found.test_path or ""
    changed = tuple(sorted({f for s in found.suspects for f in s.code_files}))
    diff = repo.diff(found.last_pass or commit, commit, changed) if changed and found.last_pass else ""
    spent = cpu
    try:
        with workspace(repo, commit) as ws:
            wanted = wanted_lines(ws.root, "fix", [], diff, test_path)
            sources = ws.read_sources(list(wanted))
            ws.write(test_path, test_code)
            if not wanted:
                raise MutationRefused(heal_id, "the change since the test last passed has no Python code line", "")
            result = mutate_in(ws, runner, settings.gates, wanted=wanted, sources=sources, tests=[node], label=heal_id,
                               scope="change", charge=spent.append)  # fmt: skip
    except ProdloopError as exc:
        gates["mutation"] = Gate(name="mutation", passed=False, evidence=cap(str(exc), 400) or "")
        return None
    gates["mutation"] = Gate(
        name="mutation", passed=result.passed,
        evidence=f"score {result.score} over {result.mutants} mutants of {', '.join(result.functions[:4])} "
        f"(gate {result.min_score})",
    )  # fmt: skip
    return result


def _test_name(test_id: str, names: list[str]) -> str:
    """The pytest name (`test_x` or `TestC::test_x`) a JUnit id names, parametrization dropped."""
    classname, _, name = test_id.partition("::")
    name = name.split("[", 1)[0]
    owner = classname.rsplit(".", 1)[-1]
    qualified = f"{owner}::{name}"
    if qualified in names:
        return qualified
    if name in names:
        return name
    raise HealRefused(f"test {cap(test_id, 200)}", "its function is not in the test file", "check the test id")
