"""`prodloop migrate` and `prodloop store copy`: the store's schema, and moving a SQLite store to PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from prodloop.server.cli_common import DataOpt, RepoOpt, settings_for

store_app = typer.Typer(no_args_is_help=True, help="The store: copy a SQLite store into PostgreSQL.")
out = Console()

UrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///PATH or postgresql://... (default: the settings' store)"),
]


def migrate(database_url: UrlOpt = None, repo: RepoOpt = None, data_dir: DataOpt = None) -> None:
    """Bring the store's schema to this version (every command does so on opening; this does only that), and say
    which version it is at."""
    from prodloop.server.store import Store

    store = Store(settings_for(repo, data_dir, database_url=database_url).database)
    try:
        out.print(f"{store.dialect} store {store.where}: schema version {store.schema_version}", highlight=False)
    finally:
        store.close()


@store_app.command("copy")
def store_copy(
    target: Annotated[str, typer.Option("--to", help="postgresql://USER@HOST:PORT/DB, an empty database")],
    source: Annotated[
        Path | None, typer.Option("--from", help="the SQLite store (default: the settings' prodloop.db)")
    ] = None,
    repo: RepoOpt = None,
    data_dir: DataOpt = None,
) -> None:
    """Copy a SQLite store, whole, into an empty PostgreSQL database (stop the servers writing to it first), then
    point prodloop at it with PRODLOOP_DATABASE_URL."""
    from prodloop.server.store.copy import copy_store
    from prodloop.server.store.engine import redacted

    if not target.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("the target must be a postgresql:// URL", param_hint="--to")
    path = source or settings_for(repo, data_dir).database_path
    copied = copy_store(
        path, target, on_table=lambda table, n: out.print(f"  {table}: {n} rows", highlight=False, markup=False)
    )
    out.print(
        f"copied {copied.rows} rows in {len(copied.tables)} tables from {path} to {redacted(target)}"
        f" (schema version {copied.schema_version}); set PRODLOOP_DATABASE_URL to use it",
        highlight=False,
        markup=False,
    )
