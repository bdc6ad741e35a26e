"""What the command line's modules share: the repository and data-dir options, and opening the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from prodloop.server.context import AppContext
from prodloop.server.settings import Settings, load_settings

RepoOpt = Annotated[Path | None, typer.Option("--repo", help="git repository of the service (default: cwd)")]
DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="store and tokens (default: <repo>/.prodloop)")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="project name (default: the only one, or repo name)")]


def settings_for(repo: Path | None, data_dir: Path | None, **extra: object) -> Settings:
    return load_settings(repo=repo, data_dir=data_dir, **extra)


@contextmanager
def opened(settings: Settings) -> Iterator[AppContext]:
    ctx = AppContext.open(settings)
    try:
        yield ctx
    finally:
        ctx.close()
