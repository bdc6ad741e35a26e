"""The `prodloop` command line: init, serve (stdio or HTTP), ingest files, list issues."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from prodloop.server.cli_ci import ci_app
from prodloop.server.cli_common import DataOpt, ProjectOpt, RepoOpt, opened, settings_for
from prodloop.server.cli_store import migrate, store_app
from prodloop.server.cli_suite import suite_app
from prodloop.server.context import AppContext
from prodloop.server.errors import ConfigError, ProdloopError
from prodloop.server.settings import Settings
from prodloop.server.store import Project

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Close the loop from production errors to code.")
err = Console(stderr=True)
out = Console()
logger = logging.getLogger("prodloop.server")


def _project(ctx: AppContext, name: str | None, *, create: bool) -> Project:
    if name is None:
        projects = ctx.store.list_projects()
        if len(projects) == 1:
            return projects[0]
        name = ctx.settings.repo.resolve().name or "default"
    project = ctx.store.project_by_name(name)
    if project is None:
        if not create:
            raise ProdloopError(f"no project named {name}; run `prodloop init --project {name}` first")
        project = ctx.store.create_project(name)
    return project


def dsn_for(settings: Settings, project: Project) -> str:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{project.public_key}@{rest.rstrip('/')}/{project.id}"


@app.command()
def init(repo: RepoOpt = None, data_dir: DataOpt = None, project: ProjectOpt = None) -> None:
    """Create the data directory and a project; print its DSN and how to add prodloop to an agent."""
    settings = settings_for(repo, data_dir)
    with opened(settings) as ctx:
        proj = _project(ctx, project, create=True)
    repo_path = settings.repo.resolve()
    out.print(f"data dir   {settings.resolved_data_dir}")
    out.print(f"project    {proj.name} (id {proj.id})")
    out.print(f"DSN        {dsn_for(settings, proj)}")
    out.print("           sentry_sdk.init(dsn=...) in the service sends its errors here (prodloop serve --http)")
    from prodloop.server import sdk_capture

    out.print(
        f"capture    optional: copy {sdk_capture.__file__} into the service as prodloop_capture.py (it needs only\n"
        "           sentry-sdk) and call prodloop_capture.install() after sentry_sdk.init(...): frame locals that\n"
        "           are objects then arrive as their class and state, so regression tests can rebuild them",
        markup=False,
        highlight=False,
    )
    out.print(f"\nClaude Code:\n  claude mcp add prodloop -- prodloop serve --repo {repo_path}")
    snippet = {"mcpServers": {"prodloop": {"command": "prodloop", "args": ["serve", "--repo", str(repo_path)]}}}
    out.print("\n.mcp.json:\n" + json.dumps(snippet, indent=2), markup=False, highlight=False)


@app.command()
def serve(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    http: Annotated[bool, typer.Option("--http", help="serve MCP and ingest over HTTP instead of stdio")] = False,
    host: Annotated[str | None, typer.Option(help="HTTP host (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8765)")] = None,
) -> None:
    """Run the MCP server: stdio for one agent (default), or HTTP with ingest for a team."""
    settings = settings_for(repo, data_dir, host=host, port=port)
    with opened(settings) as ctx:
        if http:
            _serve_http(ctx)
        else:
            from prodloop.server.mcp_app import build_mcp

            build_mcp(ctx).run("stdio")


@app.command("serve-ingest")
def serve_ingest(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    host: Annotated[str | None, typer.Option(help="HTTP host (default 127.0.0.1)")] = None,
    port: Annotated[int, typer.Option(help="HTTP port, its own (serve --http keeps 8765)")] = 8766,
    processes: Annotated[int, typer.Option(min=1, max=64, help="ingest processes sharing the port")] = 1,
    scrubbers: Annotated[
        int,
        typer.Option(min=0, max=64, help="scrubbing processes per ingest process (0: on its loop)"),
    ] = 0,
) -> None:
    """Serve Sentry ingest only (no MCP), in one or more processes on one port, all writing one store: what a team
    puts behind its load balancer, beside one `serve --http` for agents."""
    import uvicorn

    from prodloop.server.http_app import allowed_hosts
    from prodloop.server.ingest.app import build_ingest_app, worker_settings

    settings = settings_for(repo, data_dir, host=host, port=port)
    settings = settings.model_copy(update={"repo": settings.repo.resolve()})
    allowed_hosts(settings)  # a bind beyond loopback without allowed_hosts is refused before anything starts
    with opened(settings) as ctx:  # migrated and checked once, here, before any worker opens it
        projects = len(ctx.store.list_projects())
    err.print(
        f"prodloop ingest on http://{settings.host}:{settings.port}/api/<project>/envelope/ "
        f"({processes} process{'es' if processes > 1 else ''}, {projects} project(s); no MCP here: serve --http)"
    )
    if processes == 1:  # in this process: the settings stay in memory (no file a SIGTERM could leave behind)
        app_ = build_ingest_app(AppContext.open(settings), workers=scrubbers)
        uvicorn.run(app_, host=settings.host, port=settings.port, log_level="warning", access_log=False)
        return
    with worker_settings(settings, scrubbers=scrubbers):
        uvicorn.run(
            "prodloop.server.ingest.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=processes,
            log_level="warning",
            access_log=False,
        )


def _serve_http(ctx: AppContext) -> None:
    import uvicorn

    from prodloop.server.auth import ensure_token
    from prodloop.server.http_app import build_http_app

    settings = ctx.settings
    if settings.mcp_token is not None:
        token = settings.mcp_token.get_secret_value()
    else:
        token, created = ensure_token(settings.resolved_data_dir)
        if created:
            # Printed once, on the terminal only: the file in the data dir is where it lives.
            err.print(f"MCP bearer token (shown once, kept in {settings.resolved_data_dir}/mcp-token): {token}")
    app_ = build_http_app(ctx, mcp_token=token)
    err.print(f"prodloop on http://{settings.host}:{settings.port}  (MCP /mcp, ingest /api/<project>/envelope/)")
    uvicorn.run(app_, host=settings.host, port=settings.port, log_level="warning", access_log=False)


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Sentry event JSON, JSON array or JSON lines files")],
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Import exported Sentry events through the same scrubbing and grouping as live ingest."""
    from prodloop.server.ingest.importer import import_events
    from prodloop.server.sources.files import read_event_file

    failed = False
    with opened(settings_for(repo, data_dir)) as ctx:
        proj = _project(ctx, project, create=True)
        for path in files:
            events = list(read_event_file(path))
            report = import_events(ctx, proj, events, source=f"file:{path.name}")
            err.print(
                f"{path}: {report.stored} stored, {report.duplicates} already held, {len(report.refused)} refused"
            )
            for where, reason in report.refused:
                err.print(f"  {where}: {reason}", markup=False)
                failed = True
    if failed:
        raise typer.Exit(1)


deploy_app = typer.Typer(no_args_is_help=True, help="Deploy records: which commit ran where.")
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("record")
def deploy_record(
    release: Annotated[str, typer.Option(help="release name, as events carry it")],
    commit: Annotated[str, typer.Option(help="sha, tag or branch that was deployed")],
    environment: Annotated[str, typer.Option(help="environment name")] = "production",
    time: Annotated[str | None, typer.Option(help="ISO 8601 time of the deploy (default now)")] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Record a deploy so production errors map to the commit that ran."""
    from datetime import datetime

    from prodloop.tools.observe.deploys import record_deploy

    at = None
    if time is not None:
        try:
            at = datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise typer.BadParameter(f"{time!s} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)") from None
    with opened(settings_for(repo, data_dir)) as ctx:
        rec = record_deploy(
            ctx.store, ctx.git(), ctx.clock, release=release, commit=commit, environment=environment, deployed_at=at
        )
    out.print(f"deploy {rec.id}: {rec.release} = {rec.commit[:12]} to {rec.environment} at {rec.deployed_at}")


budget_app = typer.Typer(no_args_is_help=True, help="Per-issue budgets of candidate runs.")
app.add_typer(budget_app, name="budget")


@budget_app.command("status")
def budget_status_cmd(
    issue: Annotated[int, typer.Argument(min=1)], repo: RepoOpt = None, data_dir: DataOpt = None
) -> None:
    """Show an issue's used and remaining budget."""
    from prodloop.tools.budget import budget_status

    with opened(settings_for(repo, data_dir)) as ctx:
        status = budget_status(ctx.store, ctx.settings.budgets, issue)
    out.print_json(status.model_dump_json())


@budget_app.command("reset")
def budget_reset_cmd(
    issue: Annotated[int, typer.Argument(min=1)],
    by: Annotated[str, typer.Option("--by", help="who decides (recorded)")],
    why: Annotated[str, typer.Option("--why", help="why the lineage may go on (recorded)")],
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Start an issue lineage's counters again (runs, CPU, tokens, money, no-effect iterations, a halt) and close
    its escalations: a person's decision, recorded with who and why."""
    from prodloop.tools.budget import reset

    with opened(settings_for(repo, data_dir)) as ctx:
        status = reset(ctx.store, ctx.settings.budgets, ctx.clock, issue, who=by, why=why)
    out.print(f"budget of issue {issue} reset by {by}")
    out.print_json(status.model_dump_json())


@app.command()
def watch(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """One pass of the closing stage (for cron or CI): follow prodloop's PRs to their merge and deploy and judge the
    fix against production, and pull the andon cord on a deploy that made things worse.

    Exit codes: 0 every deployed fix is fixed (or nothing to watch), 3 a deployed fix is still watched, 4 a fix had
    no effect or regressed, 6 an andon cord is active (a person releases it), 2 an error.
    """
    from prodloop.tools.watch import watch_pass

    with opened(settings_for(repo, data_dir)) as ctx:
        report = watch_pass(ctx.store, ctx.git(), ctx.settings, ctx.clock)
    if as_json:
        print(report.model_dump_json())
        raise typer.Exit(report.exit_code)
    table = Table("issue", "PR", "stage", "merged", "deploy", "verdict", "why")
    for s in report.lineages:
        why = (s.judgement.needed or s.judgement.reason) if s.judgement else ""
        table.add_row(str(s.issue_id), s.pull_request, s.stage, s.merged_how or "", s.deploy or "", s.verdict or "",
                      why)  # fmt: skip
    out.print(table)
    for cord in report.cords_pulled:
        out.print(f"andon cord {cord.id} pulled on deploy {cord.deploy}: {len(cord.quarantined_paths)} path(s) "
                  f"quarantined", markup=False)  # fmt: skip
    out.print(f"{report.outcome}: {report.active_cords} active andon cord(s)")
    raise typer.Exit(report.exit_code)


andon_app = typer.Typer(no_args_is_help=True, help="Andon cords: deploys that made things worse, and their quarantine.")
app.add_typer(andon_app, name="andon")


@andon_app.command("status")
def andon_status_cmd(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """The active cords (quarantined paths, evidence, revert, escalation) and the last released ones."""
    from prodloop.tools.observe.andon import andon_status

    with opened(settings_for(repo, data_dir)) as ctx:
        out.print_json(andon_status(ctx.store).model_dump_json())


@andon_app.command("release")
def andon_release_cmd(
    cord: Annotated[int, typer.Argument(min=1)],
    by: Annotated[str, typer.Option("--by", help="who releases it (recorded)")],
    why: Annotated[str, typer.Option("--why", help="why it is safe again (recorded)")],
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Release an andon cord: its paths are open to agent work again (a person's decision, recorded)."""
    from prodloop.tools.observe.andon import release

    with opened(settings_for(repo, data_dir)) as ctx:
        done = release(ctx.store, ctx.clock, cord, who=by, why=why)
    out.print(f"andon cord {done.id} released by {done.released_by}", markup=False)


app.add_typer(ci_app, name="ci")
app.add_typer(suite_app, name="suite")
app.add_typer(store_app, name="store")
app.command("migrate")(migrate)


@app.command("metrics")
def metrics_cmd(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """How well the loop closes: production-to-test latency, time to restore, regression recurrence, flake rate."""
    from prodloop.tools.observe.metrics import metrics

    with opened(settings_for(repo, data_dir)) as ctx:
        print(metrics(ctx.store).model_dump_json())


sentry_app = typer.Typer(no_args_is_help=True, help="Read events from a Sentry organisation over its API.")
app.add_typer(sentry_app, name="sentry")


@sentry_app.command("pull")
def sentry_pull(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    project: ProjectOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="issues to pull (latest event of each)")] = 25,
) -> None:
    """Store the latest event of Sentry's top issues (needs sentry_org, sentry_project, sentry_token)."""
    from prodloop.server.sources.sentry_api import SentryAPIClient, pull_from_sentry

    settings = settings_for(repo, data_dir)
    missing = [n for n in ("sentry_org", "sentry_project", "sentry_token") if getattr(settings, n) is None]
    if missing:
        raise ConfigError(
            ", ".join(missing), "is not set", "set PRODLOOP_SENTRY_ORG/_PROJECT/_TOKEN or [tool.prodloop]"
        )
    assert settings.sentry_org and settings.sentry_project and settings.sentry_token
    client = SentryAPIClient(
        settings.sentry_base_url, settings.sentry_org, settings.sentry_project, settings.sentry_token
    )
    with opened(settings) as ctx:
        report = pull_from_sentry(ctx, _project(ctx, project, create=True), client, limit=limit)
    err.print(f"sentry: {report.stored} stored, {report.duplicates} already held, {len(report.refused)} refused")
    for where, reason in report.refused:
        err.print(f"  {where}: {reason}", markup=False)
    if report.refused:
        raise typer.Exit(1)


@app.command()
def doctor(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Check that git, the repository, its remote, the service's interpreter (with pytest), the sandbox and the
    store are ready for the loop; each problem comes with how to fix it. Exit code 1 when a check fails."""
    from prodloop.server.doctor import run_checks

    checks = run_checks(settings_for(repo, data_dir))
    marks = {"ok": "✓", "warn": "!", "fail": "✗"}
    for check in checks:
        out.print(f"{marks[check.status]} {check.name}: {check.detail}", markup=False, highlight=False)
        if check.fix:
            out.print(f"    fix: {check.fix}", markup=False, highlight=False)
    raise typer.Exit(1 if any(c.status == "fail" for c in checks) else 0)


@app.command()
def loop(
    issue: Annotated[int | None, typer.Option("--issue", min=1, help="the issue to work")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, max=50, help="or the N issues with most events")] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the reports as JSON (for CI)")] = False,
) -> None:
    """Run the loop headless: synthesize, run the gates with the working tree's fix, mutate, open the PR.

    Exit codes: 0 a PR was opened (for every issue), 3 an agent or a person must supply something (the report says
    what), 4 an issue's budget is exhausted (escalated), 5 triage awaits a person, 6 stopped: the issue's code is
    quarantined by an andon cord or its lineage is halted (a person releases it), 2 an error.
    """
    from prodloop.tools.loop import EXIT_CODES, run_loop

    if (issue is None) == (top is None):
        raise typer.BadParameter("give --issue ID or --top N")
    reports = []
    with opened(settings_for(repo, data_dir)) as ctx:
        ids = (
            [issue]
            if issue is not None
            else [i.id for i in ctx.store.list_issues(order="event_count", limit=top or 1)[0]]
        )
        for issue_id in ids:
            if not as_json:
                err.print(f"[bold]issue {issue_id}[/bold]")
            report = run_loop(
                *ctx.collaborators(), issue_id=issue_id, on_step=None if as_json else lambda s: err.print(
                    f"  {'✓' if s.ok else '✗'} {s.seconds:6.2f}s  {s.name}: {s.detail}", markup=False, highlight=False
                ),
            )  # fmt: skip
            reports.append(report)
            if not as_json:
                err.print(
                    f"  → {report.outcome} in {report.seconds:.1f} s" + (f": {report.needed}" if report.needed else "")
                )
    if as_json:
        out.print_json("[" + ",".join(r.model_dump_json() for r in reports) + "]")
    worst = max((r.exit_code for r in reports), default=EXIT_CODES["error"])
    raise typer.Exit(worst)


@app.command()
def provenance(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    test_path: Annotated[str | None, typer.Option(help="only this test file")] = None,
    export: Annotated[Path | None, typer.Option(help="write the records as JSON lines to this file")] = None,
) -> None:
    """List (or export) where each test prodloop added came from."""
    from prodloop.server.store import policy
    from prodloop.tools.ship.provenance import jsonl_line

    with opened(settings_for(repo, data_dir)) as ctx:
        records, _ = policy.provenance_records(ctx.store, test_path=test_path)
    if export is not None:
        export.write_text("".join(jsonl_line(r) for r in records), encoding="utf-8")
        err.print(f"{len(records)} records written to {export}")
        return
    table = Table("test", "issue", "receipt", "mutation", "branch", "client", "added")
    for r in records:
        table.add_row(
            str(r["test_node"]), str(r["issue_id"]), str(r["receipt_id"])[:12], str(r.get("mutation_score")),
            str(r["pull_request"]["branch"]), str(r.get("client")), str(r.get("created_at")),
        )  # fmt: skip
    out.print(table)


triage_app = typer.Typer(help="Which production signals deserve an agent's work, and a person's say on them.")
app.add_typer(triage_app, name="triage")


@triage_app.callback(invoke_without_command=True)
def triage_cmd(
    context: typer.Context,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    issue: Annotated[int | None, typer.Option("--issue", min=1, help="only this issue")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Triage the issues seen in the baseline window: onset, breadth, depth, causes, classification, priority."""
    if context.invoked_subcommand is not None:
        return
    from prodloop.tools.observe.triage import triage_signals

    with opened(settings_for(repo, data_dir)) as ctx:
        report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=issue, limit=limit)
    if as_json:
        print(report.model_dump_json())
        return
    table = Table("issue", "class", "decision", "tier", "priority", "onset", "users", "cause", "missing")
    for s in report.signals:
        cause = f"{s.attribution[0].cause} {s.attribution[0].confidence:.2f}" if s.attribution else ""
        table.add_row(str(s.issue_id), s.classification, s.decision, str(s.tier), f"{s.priority:.1f}",
                      s.onset.at or "", str(s.breadth.users), cause, "; ".join(s.missing))  # fmt: skip
    out.print(table)
    out.print(f"mode {report.mode}: {report.actionable} actionable, {report.observations} observations")


def _decide(issue: int, decision: str, by: str, why: str, repo: Path | None, data_dir: Path | None) -> None:
    from prodloop.server.store import signals

    with opened(settings_for(repo, data_dir)) as ctx:
        done = signals.decide(ctx.store, issue, decision, who=by, why=why, at=ctx.clock.now())
    out.print(f"issue {done.issue_id} {done.decision} by {done.who} (triage said {done.classification})")


ByOpt = Annotated[str, typer.Option("--by", help="who decides (kept with the decision)")]
WhyOpt = Annotated[str, typer.Option("--why", help="why (kept with the decision)")]


@triage_app.command("approve")
def triage_approve(
    issue: Annotated[int, typer.Argument(min=1)], by: ByOpt, why: WhyOpt = "", repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:  # fmt: skip
    """Clear a triaged issue for agent work."""
    _decide(issue, "approved", by, why, repo, data_dir)


@triage_app.command("reject")
def triage_reject(
    issue: Annotated[int, typer.Argument(min=1)], by: ByOpt, why: WhyOpt = "", repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:  # fmt: skip
    """Refuse agent work on a triaged issue."""
    _decide(issue, "rejected", by, why, repo, data_dir)


@triage_app.command("file")
def triage_file(issue: Annotated[int, typer.Argument(min=1)], repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """File an actionable (or approved) issue for people: a GitHub issue, or markdown beside the store."""
    from prodloop.tools.ship.issue_filing import file_signal

    with opened(settings_for(repo, data_dir)) as ctx:
        filed = file_signal(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=issue)
    where = filed.url or filed.path
    out.print(f"issue {filed.issue_id} {'was already filed' if filed.already else 'filed'}: {where}", markup=False)


@triage_app.command("report")
def triage_report(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """How often people agreed with triage: approvals of actionable issues and rejections of observations."""
    from prodloop.server.store import signals

    with opened(settings_for(repo, data_dir)) as ctx:
        decided = signals.decisions(ctx.store)
    agreed = sum((d.decision == "approved") == (d.classification == "actionable") for d in decided)
    table = Table("triage said", "approved", "rejected")
    for kind in ("actionable", "observation"):
        mine = [d for d in decided if d.classification == kind]
        table.add_row(kind, str(sum(d.decision == "approved" for d in mine)),
                      str(sum(d.decision == "rejected" for d in mine)))  # fmt: skip
    out.print(table)
    share = f"{agreed / len(decided):.0%}" if decided else "n/a"
    out.print(f"{len(decided)} decisions; people agreed with triage in {agreed} ({share})")


@app.command("reliability")
def reliability_cmd(
    path: Annotated[
        str | None, typer.Argument(help="a file, a folder, or file::Qualified.name; none: rank the repository's files")
    ] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    days: Annotated[int, typer.Option(min=1, max=365, help="the window, in days up to now")] = 30,
    environment: Annotated[str | None, typer.Option(help="only this environment")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the history as JSON")] = False,
) -> None:
    """How a file, folder or function behaved in production, and what happened when it changed."""
    from prodloop.tools.observe.reliability import query_reliability_history, rank_modules

    if path is None:
        with opened(settings_for(repo, data_dir)) as ctx:
            ranked = rank_modules(ctx.store, ctx.git(), ctx.settings, ctx.clock, days=days, environment=environment)
        if as_json:
            print(json.dumps([m.model_dump() for m in ranked]))
            return
        table = Table("file", "tier", "issues", "events", "users", "change failure rate", "commits", "importers")
        for m in ranked:
            rate = "n/a" if m.change_failure_rate is None else f"{m.change_failure_rate:.0%}"
            table.add_row(m.path, str(m.tier), str(m.issues), str(m.events), str(m.users), rate, str(m.commits),
                          str(m.importers))  # fmt: skip
        out.print(table)
        out.print(f"{len(ranked)} files production errors ran through in the last {days} days")
        return
    with opened(settings_for(repo, data_dir)) as ctx:
        h = query_reliability_history(
            ctx.store, ctx.git(), ctx.settings, ctx.clock, path=path, days=days, environment=environment
        )
    if as_json:
        print(h.model_dump_json())
        return
    d = h.delivery
    out.print(f"{h.path} ({h.kind}), last {h.window_days} days: tier {h.tier.tier} — {'; '.join(h.tier.reasons)}",
              markup=False)  # fmt: skip
    share = f" ({h.events_share:.0%} of all)" if h.events_share is not None else ""
    out.print(f"issues {h.issues_total}, events {h.events}{share}, users {h.blast_radius.users}; "
              f"churn {h.churn.commits} commits by {len(h.churn.authors)} authors; "
              f"{h.blast_radius.importers_total} importers", markup=False)  # fmt: skip
    cfr = f"{d.change_failure_rate:.0%}" if d.change_failure_rate is not None else "n/a"
    out.print(f"deploys touching it {d.deploys_touching} ({d.deploys_per_week}/week), change failure rate {cfr}, "
              f"median time to restore {d.median_time_to_restore_hours or 'n/a'} h", markup=False)  # fmt: skip
    table = Table("id", "events", "users", "last seen", "status", "title")
    for i in h.issues:
        table.add_row(str(i.id), str(i.events), str(i.users), i.last_seen or "", i.status, i.title)
    out.print(table)
    for note in h.notes:
        err.print(f"note: {note}", markup=False)


@app.command("issues")
def issues_cmd(
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    order_by: Annotated[
        str, typer.Option(help="last_seen, event_count, first_seen, user_count or priority")
    ] = "last_seen",
) -> None:
    """Show the issues prodloop holds."""
    from prodloop.server.store.db import IssueOrder
    from prodloop.tools.observe.issues import list_issues

    if order_by not in get_args(IssueOrder):
        raise typer.BadParameter(f"{order_by[:40]!r} is not a sort key; use one of {', '.join(get_args(IssueOrder))}")
    with opened(settings_for(repo, data_dir)) as ctx:
        page = list_issues(ctx.store, limit=limit, order_by=cast(IssueOrder, order_by))
    table = Table("id", "events", "users", "last seen", "title", "culprit")
    for i in page.issues:
        table.add_row(str(i.id), str(i.event_count), str(i.user_count), i.last_seen or "", i.title, i.culprit or "")
    out.print(table)
    out.print(f"{page.total} issues")


@app.command()
def resolve(
    issue: Annotated[int, typer.Argument(min=1, help="the issue id (prodloop issues)")],
    in_release: Annotated[str | None, typer.Option("--in-release", help="the release that carries the fix")] = None,
    reopen: Annotated[bool, typer.Option("--reopen", help="mark it unresolved again")] = False,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Mark an issue resolved: seen again afterwards in a release it had not failed in, it regresses."""
    with opened(settings_for(repo, data_dir)) as ctx:
        row = ctx.store.set_status(issue, "unresolved" if reopen else "resolved", in_release=in_release)
    said = f" in {row.resolved_in}" if row.resolved_in else ""
    out.print(f"issue {row.id} is {row.status}{said if row.status == 'resolved' else ''}")


@app.command()
def prune(repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Apply the retention settings now (`retention.*`; `prodloop serve` does so hourly while it ingests)."""
    with opened(settings_for(repo, data_dir)) as ctx:
        pruned = ctx.apply_retention()
        r = ctx.settings.retention
    out.print(f"{pruned} (hours kept {r.hourly_days} days, day counts {r.aggregate_days}, events {r.event_days})")


@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(help="keep the sample service, its remote and the store here")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="then serve the dashboard of the result until Ctrl-C")] = False,
) -> None:
    """The whole loop on a sample service: a real crash through ingest, MCP, synthesis, gates, mutation, PR branch."""
    from prodloop.server.demo import run_demo

    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise typer.BadParameter(f"{workdir} is not empty")
    seen = run_demo(out, workdir=workdir, keep=_serve_until_interrupted if keep else None)
    raise typer.Exit(0 if seen["loop"]["outcome"] == "pr_opened" else 1)


def _serve_until_interrupted(url: str, token: str) -> None:
    out.print("serving until Ctrl-C", highlight=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ProdloopError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
