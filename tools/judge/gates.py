"""The dynamic gates of a candidate run, each judged from what pytest runs recorded, with its evidence.

(The static gates read the test's source: public interface and real assertion in `test_checks`,
hermetic in `hermetic`.)
"""

from __future__ import annotations

from prodloop.server.settings import GateSettings
from prodloop.server.store.receipts import Gate
from prodloop.tools.engine.diffs import added_lines, code_lines
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import RunResult, Workspace, outcome_of
from prodloop.tools.locate.code_path import CodePath


def reproduces(run: RunResult, node: str, code_path: CodePath, ws: Workspace) -> Gate:
    if run.timed_out:
        return Gate(
            name="reproduces", passed=False, evidence=f"the run was killed at the {run.wall_seconds:.0f} s timeout"
        )
    outcome = outcome_of(run, node)
    if outcome is None:
        return Gate(name="reproduces", passed=False, evidence=f"the test did not run: {run.output_tail[-400:]}")
    if outcome.outcome == "passed":
        return Gate(
            name="reproduces", passed=False, evidence="the test passes on the deployed code: it does not reproduce"
        )
    production = {e.type for e in code_path.exceptions if e.type}
    # A frame is on the path when its line lies inside a mapped function: a lambda, comprehension or nested
    # def raising inside the mapped function counts as raised from it.
    spans = [
        (f.location.repo_path, f.extent.start, f.extent.end)
        for e in code_path.exceptions
        for f in e.path
        if f.extent is not None and f.location.repo_path
    ]
    root = str(ws.root.resolve()) + "/"
    seen = []
    for exc in outcome.chain:
        frames = [f for f in exc["frames"] if str(f["filename"]).startswith(root)]
        inner = next((f for f in reversed(frames) if not str(f["filename"]).endswith(node.split("::")[0])), None)
        where = (
            f"{inner['filename'][len(root) :]}:{inner['lineno']} in {inner['function']}" if inner else "the test itself"
        )
        seen.append(f"{exc['type']} from {where}")
        on_path = inner is not None and any(
            inner["filename"][len(root) :] == path and start <= int(inner["lineno"]) <= end
            for path, start, end in spans
        )
        if exc["type"] in production and on_path:
            return Gate(
                name="reproduces",
                passed=True,
                evidence=f"fails on the deployed code with {exc['type']} raised from {where}, on the mapped path",
            )
    # A framework may catch the production exception (a web handler's error becomes a 500) and the test then
    # fails on its own assertion: it reproduces when the exception was raised on the mapped path meanwhile.
    for raised in outcome.raised:
        rel = str(raised.get("filename", ""))[len(root) :] if str(raised.get("filename", "")).startswith(root) else ""
        line = int(raised.get("lineno") or 0)
        if raised.get("type") in production and any(rel == p and a <= line <= b for p, a, b in spans):
            return Gate(
                name="reproduces",
                passed=True,
                evidence=f"fails on the deployed code ({'; '.join(seen) or outcome.message[:120]}) after "
                f"{raised['type']} was raised from {rel}:{line} in {raised.get('function')}, on the mapped path "
                "(caught before it reached the test)",
            )
    wanted = "/".join(sorted(production)) or "the production exception"
    return Gate(
        name="reproduces",
        passed=False,
        evidence=f"fails, but with {'; '.join(seen) or outcome.message[:200]}, not {wanted} from the mapped path",
    )


def passes(run: RunResult, node: str, when: str) -> Gate:
    outcome = outcome_of(run, node)
    if run.timed_out:
        return Gate(name="passes_with_fix", passed=False, evidence=f"killed at the timeout {when}")
    if outcome is None:
        return Gate(
            name="passes_with_fix", passed=False, evidence=f"the test did not run {when}: {run.output_tail[-300:]}"
        )
    ok = outcome.outcome == "passed"
    detail = "" if ok else f": {outcome.message[:300]}"
    return Gate(name="passes_with_fix", passed=ok, evidence=f"{outcome.outcome} {when}{detail}")


def covers(run: RunResult, code_path: CodePath, sources: dict[str, str], fix_diff: str) -> Gate:
    """The test runs the culprit function and, with the fix, at least one line the fix changed.

    The old crash line is not required: a correct guard-clause fix returns before reaching it. `sources` are
    the fixed files as read before the test ran (a test may rewrite files in its tree; they are not trusted).
    """
    culprit = code_path.culprit
    if culprit is None or culprit.location.repo_path is None or culprit.qualname is None:
        return Gate(
            name="covers_path", passed=False, evidence="no culprit function was mapped to check coverage against"
        )
    path = culprit.location.repo_path
    if run.notes:
        return Gate(name="covers_path", passed=False, evidence="; ".join(run.notes))
    defs = FunctionIndex(sources.get(path, "")).named(culprit.qualname)
    found: list[str] = []
    ok = True
    if defs:
        d = defs[0]
        body = [n for n in range(d.def_line + 1, d.end + 1) if n in set(run.covered.get(path, []))]
        ok = bool(body)
        found.append(f"{len(body)} lines of {path}::{d.qualname} (lines {d.def_line}-{d.end}) executed")
    else:
        found.append(f"{culprit.qualname} is gone from {path} with the fix")
    changed = _fix_code_lines(sources, fix_diff)
    if changed:
        hit = {p: [n for n in lines if n in set(run.covered.get(p, []))] for p, lines in changed.items()}
        total = sum(len(v) for v in changed.values())
        executed = sum(len(v) for v in hit.values())
        missed = [f"{p}:{_span(lines)}" for p, lines in changed.items() if not hit[p]]
        found.append(
            f"{executed} of the fix's {total} changed code line(s) executed"
            + (f" (none in {', '.join(missed)})" if missed else "")
        )
        ok = (ok or not defs) and executed > 0
    elif not defs:
        ok = False
    return Gate(name="covers_path", passed=ok, evidence="; ".join(found))


def fix_files(fix_diff: str) -> list[str]:
    """The Python files a fix changes (measured for coverage beside the culprit's file)."""
    return [p for p in added_lines(fix_diff) if p.endswith(".py")]


def _fix_code_lines(sources: dict[str, str], fix_diff: str) -> dict[str, list[int]]:
    out = {}
    for path, lines in added_lines(fix_diff).items():
        if path in sources:
            code = code_lines(sources[path], lines)
            if code:
                out[path] = code
    return out


def _span(lines: list[int]) -> str:
    return f"{lines[0]}" if len(lines) == 1 else f"{lines[0]}-{lines[-1]}"


def fast(run: RunResult, node: str, budget_seconds: float) -> Gate:
    outcome = outcome_of(run, node)
    if run.timed_out or outcome is None:
        return Gate(
            name="fast", passed=False, evidence=f"no timing: the run {'timed out' if run.timed_out else 'failed'}"
        )
    ok = outcome.seconds <= budget_seconds
    return Gate(name="fast", passed=ok, evidence=f"{outcome.seconds:.3f} s (budget {budget_seconds:g} s)")


def not_flaky(
    ws: Workspace,
    runner: Runner,
    node: str,
    cfg: GateSettings,
    code_path: CodePath,
    runs: list[RunResult],
    *,
    seed: int,
) -> Gate:
    """The candidate passes again and again, alone and among its neighbours: after all of them (so it meets any state
    they leave behind), in an order drawn from `seed`, which the caller derives from the test and fix (the same
    receipt always gets the same verdict).

    Only the candidate's own outcome is judged. Other tests failing, files that do not collect
    (test-only dependencies missing) or a neighbourhood run that hits the timeout before the
    candidate ran say nothing about the candidate: they are reported, never held against it.
    """
    failures = []
    for i in range(cfg.flaky_runs):
        run = runner.pytest(ws, [node], hash_seed=i + 1)
        runs.append(run)
        outcome = outcome_of(run, node)
        if run.timed_out or outcome is None or outcome.outcome != "passed":
            failures.append(f"run {i + 1}: {'timeout' if run.timed_out else outcome.outcome if outcome else 'not run'}")
    extra = ""
    if cfg.shuffle_with_module and not failures:
        others = [t.path for t in code_path.related_tests if (ws.root / t.path).exists()][:3]
        targets = list(dict.fromkeys([node.split("::")[0], *others]))
        run = runner.pytest(
            ws, targets, shuffle_seed=seed, run_last=node, extra_args=["--continue-on-collection-errors"]
        )
        runs.append(run)
        outcome = outcome_of(run, node)
        others_failed = sorted(n for n, o in run.outcomes.items() if o.outcome in ("failed", "error") and n != node)
        report = f"{len(run.outcomes)} tests of {len(targets)} file(s) shuffled (seed {seed}), the candidate last"
        if others_failed:
            report += f"; {len(others_failed)} other test(s) failed, not judged ({', '.join(others_failed[:3])})"
        if run.collect_errors:
            report += f"; collection errors, not judged: {'; '.join(run.collect_errors[:2])}"
        if outcome is not None and outcome.outcome == "passed":
            extra = f", and once among {report}"
        elif outcome is not None and outcome.outcome in ("failed", "error"):
            failures.append(f"failed when run among other tests ({report}): {outcome.message[:200]}")
        elif not run.outcomes and not run.timed_out and not run.collect_errors:
            failures.append(f"the shuffled run sent back no result at all ({report})")
        else:
            why = "the run hit the timeout" if run.timed_out else "it was not collected or ran no test"
            extra = f"; the shuffled run did not reach the candidate ({why}; {report}), not judged"
    if failures:
        return Gate(
            name="not_flaky", passed=False, evidence=f"failed {len(failures)} repeat run(s): " + "; ".join(failures)
        )
    return Gate(
        name="not_flaky", passed=True, evidence=f"passed {cfg.flaky_runs} more runs with other hash seeds{extra}"
    )


def next_step(gates: list[Gate]) -> str:
    failed = [g.name for g in gates if g.passed is False]
    pending = [g.name for g in gates if g.passed is None]
    if "reproduces" in failed:
        return "make the test fail on the deployed code with the production exception from the mapped path"
    if failed:
        return f"fix the failing gates ({', '.join(failed)}) and run again"
    if pending:
        return "the test reproduces; write the fix and run again with fix_diff or fix_from_working_tree"
    return "all gates passed: run mutate_validate with this receipt_id"
