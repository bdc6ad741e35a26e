"""The command line of the suite following production: `prodloop suite proposals|apply|log` and
`prodloop ci quarantine|lift`. Suite changes are a person's decisions: they are commands, never MCP tools."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prodloop.server.cli_common import DataOpt, RepoOpt, opened, settings_for

suite_app = typer.Typer(no_args_is_help=True, help="The test suite follows production: proposals, changes, their log.")
out = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
QuietOpt = Annotated[int, typer.Option("--quiet-days", min=1, max=3650, help="quiet this long: the slower suite")]


@suite_app.command("proposals")
def suite_proposals(
    quiet_days: QuietOpt = 180, as_json: JsonOpt = False, repo: RepoOpt = None, data_dir: DataOpt = None
) -> None:
    """Test files to move to the slower suite (quiet code), to remove (vanished code), or to keep (prodloop's)."""
    from prodloop.tools.ship.suite import suggest_suite_changes

    with opened(settings_for(repo, data_dir)) as ctx:
        found = suggest_suite_changes(ctx.store, ctx.git(), ctx.clock, quiet_days=quiet_days)
    if as_json:
        print(found.model_dump_json())
        return
    table = Table("test", "proposal", "why")
    for p in found.proposals:
        table.add_row(p.test_path, p.action, "; ".join(p.reasons))
    out.print(table)
    out.print(found.note, markup=False)


@suite_app.command("apply")
def suite_apply(
    paths: Annotated[list[str], typer.Argument(help="test files proposed as move_to_slow_suite or remove")],
    by: Annotated[str, typer.Option("--by", help="who accepts them (recorded)")],
    why: Annotated[str, typer.Option("--why", help="why (recorded)")],
    quiet_days: QuietOpt = 180,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Apply accepted proposals in one commit on the base branch, pushed with provenance and offered as a PR."""
    from prodloop.tools.ship.suite_apply import apply_suite_changes

    with opened(settings_for(repo, data_dir)) as ctx:
        done = apply_suite_changes(ctx.store, ctx.git(), ctx.settings, ctx.clock, accept=paths, by=by, why=why,
                                   quiet_days=quiet_days)  # fmt: skip
    print(done.model_dump_json())


@suite_app.command("log")
def suite_log_cmd(
    test_path: Annotated[str | None, typer.Option("--test", help="only this test file")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """How the suite changed: tests added, moved, removed, quarantined and unquarantined, oldest first."""
    from prodloop.tools.ship.suite_log import suite_log

    with opened(settings_for(repo, data_dir)) as ctx:
        page = suite_log(ctx.store, test_path=test_path, limit=limit, cursor=cursor)
    if as_json:
        print(page.model_dump_json())
        return
    table = Table("when", "action", "test", "why", "PR")
    for e in page.entries:
        table.add_row(e.at or "", e.action, e.test, "; ".join(e.reasons), e.url or e.branch or "")
    out.print(table)
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    out.print(f"{page.total} changes{more}", markup=False)


def add_ci_commands(ci_app: typer.Typer) -> None:
    """`prodloop ci quarantine` and `prodloop ci lift`."""
    ci_app.command("quarantine")(ci_quarantine)
    ci_app.command("lift")(ci_lift)


ApplyOpt = Annotated[bool, typer.Option("--apply", help="push the change and open its PR (else: list only)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="who decides (recorded; required with --apply)")]


def _who(apply: bool, by: str | None) -> str:
    if apply and not (by or "").strip():
        raise typer.BadParameter("--apply needs --by NAME: a person decides a quarantine and its lift")
    return by or ""


def ci_quarantine(
    apply: ApplyOpt = False, by: ByOpt = None,
    why: Annotated[str | None, typer.Option("--why", help="why (recorded)")] = None,
    repo: RepoOpt = None, data_dir: DataOpt = None,
) -> None:  # fmt: skip
    """Flaky tests over the quarantine bars (suite.quarantine_min_rate, _min_commits), marked xfail(strict=False)."""
    from prodloop.tools.ship.quarantine import propose_quarantine

    who = _who(apply, by)
    with opened(settings_for(repo, data_dir)) as ctx:
        found = propose_quarantine(ctx.store, ctx.git(), ctx.settings, ctx.clock, by=who, why=why, apply=apply)
    print(found.model_dump_json())


def ci_lift(apply: ApplyOpt = False, by: ByOpt = None, repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Quarantined tests with suite.lift_after_clean_runs clean CI runs in a row since: their decorator removed."""
    from prodloop.tools.ship.quarantine import lift_quarantine

    who = _who(apply, by)
    with opened(settings_for(repo, data_dir)) as ctx:
        found = lift_quarantine(ctx.store, ctx.git(), ctx.settings, ctx.clock, by=who, apply=apply)
    print(found.model_dump_json())
