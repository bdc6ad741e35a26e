"""A throwaway PostgreSQL database for a bench run: created on the server of an admin URL (whose own database is
only used to create and drop it), dropped afterwards whatever happens."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


@contextlib.contextmanager
def throwaway_database(admin_url: str, label: str = "") -> Iterator[str]:
    try:
        import psycopg
    except ImportError:
        raise SystemExit("a postgresql:// database needs psycopg 3: pip install 'psycopg[binary]'") from None
    name = f"prodloop_bench_{secrets.token_hex(6)}{'_' + label if label else ''}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}", query=""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
