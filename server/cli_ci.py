"""`prodloop ci`: the project's own test results as signals (ingest, failures, classification, heals, selection,
flaky tests; quarantine and lift from `cli_suite`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prodloop.server.cli_common import DataOpt, RepoOpt, opened, settings_for
from prodloop.server.cli_suite import add_ci_commands
from prodloop.server.errors import InvalidArgument, ProdloopError

out = Console()

ci_app = typer.Typer(no_args_is_help=True, help="The project's own test failures (JUnit XML) as signals.")
add_ci_commands(ci_app)


@ci_app.command("ingest")
def ci_ingest(
    results: Annotated[Path, typer.Argument(help="JUnit XML (pytest --junitxml=FILE, or another runner's)")],
    commit: Annotated[str, typer.Option("--commit", help="the sha the run tested")],
    branch: Annotated[str | None, typer.Option("--branch")] = None,
    run: Annotated[str | None, typer.Option("--run", help="the CI run's URL")] = None,
    job: Annotated[str | None, typer.Option("--job", help="the CI job's name")] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Store one CI run's test results: failures grouped (test, exception, crash location), flaky tests found."""
    from prodloop.tools.observe.ci_issue import open_regressions
    from prodloop.tools.observe.ci_signals import ingest_junit, read_results

    data = read_results(results)
    with opened(settings_for(repo, data_dir)) as ctx:
        try:
            files = set(ctx.git().files(ctx.git().head()))
        except ProdloopError:
            files = None
        report = ingest_junit(ctx.store, ctx.settings, ctx.clock, data, commit=commit, branch=branch, run_url=run,
                              job=job, repo_files=files, where=str(results))  # fmt: skip
        if files is not None and not report.duplicate:
            failed = [g.id for g in report.failures]
            try:  # the results are stored: a failure here is reported, not a refusal that loses them
                report.issues = open_regressions(ctx.store, ctx.git(), ctx.settings, ctx.clock, failed, branch=branch)
            except ProdloopError as exc:
                report.issues_error = str(exc)[:500]
    print(report.model_dump_json())


@ci_app.command("select")
def ci_select(
    base: Annotated[str, typer.Option("--base", help="the branch or commit the change goes into")],
    head: Annotated[str, typer.Option("--head")] = "HEAD",
    paths_only: Annotated[bool, typer.Option("--paths", help="only the test files, one a line (for pytest)")] = False,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """The tests that guard what a change touches (its own, prodloop's regression tests, importers), to run first."""
    from prodloop.server.store import ci
    from prodloop.tools.observe.ci_select import select_tests

    with opened(settings_for(repo, data_dir)) as ctx:
        selection = select_tests(ctx.store, ctx.git(), ctx.settings, base=base, head=head)
        chosen = [t.path for t in selection.tests]
        ci.save_selection(ctx.store, base=selection.base, head=selection.head, selected=chosen,
                          test_files=selection.test_files, at=ctx.clock.now())  # fmt: skip
    if paths_only:
        print("\n".join(t.path for t in selection.tests))
        return
    print(selection.model_dump_json())


@ci_app.command("flaky")
def ci_flaky(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Tests that failed and passed on the same commit, by flake rate."""
    from prodloop.server.store import ci

    with opened(settings_for(repo, data_dir)) as ctx:
        rows = ci.flaky_tests(ctx.store)
    table = Table("test", "flaky commits", "commits", "flake rate")
    for test_id, flaky, commits in rows:
        table.add_row(test_id, str(flaky), str(commits), f"{flaky / commits:.0%}")
    out.print(table)


@ci_app.command("failures")
def ci_failures(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Failure groups CI reported (test, exception, crash location), newest first; classify one by its id."""
    from prodloop.server.store import ci

    with opened(settings_for(repo, data_dir)) as ctx:
        rows = ci.failures(ctx.store, limit=200)
    table = Table("id", "test", "exception", "location", "count")
    for row in rows:
        table.add_row(str(row.id), row.test_id, row.exception_type, row.location, str(row.count))
    out.print(table)


@ci_app.command("classify")
def ci_classify(
    failure: Annotated[int, typer.Argument(help="the failure group's id (prodloop ci failures)")],
    kind: Annotated[str | None, typer.Option("--as", help="a person's decision: regression, test_rot, flaky")] = None,
    by: Annotated[str | None, typer.Option("--by", help="who decides (with --as)")] = None,
    why: Annotated[str | None, typer.Option("--why", help="the reason (with --as)")] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Why a CI test fails, with evidence: regression, test rot, flaky or unknown. With --as, a person decides."""
    from prodloop.tools.observe.ci_classify import classify_failure, record_decision

    with opened(settings_for(repo, data_dir)) as ctx:
        if kind is not None:
            record_decision(ctx.store, ctx.clock, failure, kind=kind, by=by or "", why=why or "")
        print(classify_failure(ctx.store, ctx.git(), failure).model_dump_json())


@ci_app.command("heal")
def ci_heal(
    failure: Annotated[int, typer.Argument(help="the failure group's id, classified test_rot")],
    test_file: Annotated[Path, typer.Option("--test-file", help="the whole updated test file")],
    open_pr: Annotated[bool, typer.Option("--open-pr", help="ship it as a PR when every gate passed")] = False,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Heal a rotted test through the gates (not weakened, passes, keeps guarding, mutation); exit 1 if refused."""
    from prodloop.tools.judge.heal import heal_test
    from prodloop.tools.ship.heal_pr import open_heal_pr

    try:
        code = test_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument("--test-file", f"{test_file} cannot be read as UTF-8 ({exc})", "give the file") from exc
    with opened(settings_for(repo, data_dir)) as ctx:
        result = heal_test(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, failure_id=failure,
                           test_code=code)  # fmt: skip
        print(result.model_dump_json())
        if open_pr and result.passed:
            shipped = open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock,
                                   heal_id=result.heal_id, client="cli")  # fmt: skip
            print(shipped.model_dump_json())
    if not result.passed:
        raise typer.Exit(1)
