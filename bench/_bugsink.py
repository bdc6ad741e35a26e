"""Bugsink (https://www.bugsink.com, a self-hosted Sentry-compatible error tracker in Django) as a bench target.

Set up as its Docker image runs it, but on SQLite files in a temp dir: gunicorn (`bugsink.wsgi`, its Docker config's
`min(CPUs, 4)` sync workers) answers the SDK and writes each event to a file, and one snappea foreman (the
`bugsink-runsnappea` process, 2 worker threads, workaholic) digests them into the database afterwards. An event
counts as stored once it is a row of `events_event`: digested, not only acknowledged. Its quotas (1,000 events per
5 minutes by default) and the project's retention (10,000 events) are lifted, as prodloop's rate limit is turned
off; phone-home is off. None of Bugsink is part of prodloop: it lives in its own virtualenv, named by
`--bugsink-venv`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _server_procs import free_port, stop, wait_healthy

HOW_TO_INSTALL = "python3 -m venv {venv} && {venv}/bin/pip install bugsink"

_UNLIMITED = 10**12

_CONF = """\
# Written by prodloop's bench/ingest.py: Bugsink's production defaults, SQLite in a temp dir, quotas lifted.
from bugsink.settings.default import *  # noqa: F403
from bugsink.settings.default import DATABASES

SECRET_KEY = {secret!r}
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
TIME_ZONE = "UTC"
DATABASES["default"]["NAME"] = {base!r} + "/db.sqlite3"
DATABASES["snappea"]["NAME"] = {base!r} + "/snappea.sqlite3"
SNAPPEA = {{
    "TASK_ALWAYS_EAGER": False,  # digest in the snappea process, after the acknowledgement, as in production
    "WORKAHOLIC": True,
    "NUM_WORKERS": {snappea_workers},
    "PID_FILE": None,
    "WAKEUP_CALLS_DIR": {base!r} + "/snappea/wakeup",
    "STATS_RETENTION_MINUTES": 60,
}}
EMAIL_BACKEND = "bugsink.email_backends.QuietConsoleEmailBackend"
BUGSINK = {{
    "BASE_URL": "http://127.0.0.1:{port}",
    "SINGLE_USER": True,
    "PHONEHOME": False,
    "INGEST_STORE_BASE_DIR": {base!r} + "/ingestion",
    "MAX_EVENTS_PER_PROJECT_PER_5_MINUTES": {unlimited},
    "MAX_EVENTS_PER_PROJECT_PER_HOUR": {unlimited},
    "MAX_EVENTS_PER_PROJECT_PER_MONTH": {unlimited},
    "MAX_EVENTS_PER_5_MINUTES": {unlimited},
    "MAX_EVENTS_PER_HOUR": {unlimited},
    "MAX_EVENTS_PER_MONTH": {unlimited},
}}
"""

_CREATE_PROJECT = """
from projects.models import Project
project = Project.objects.create(name="bench", slug="bench", retention_max_event_count={unlimited})
print(project.id, project.sentry_key.hex)
"""


def check_venv(venv: Path) -> None:
    missing = [n for n in ("bugsink-manage", "bugsink-runsnappea", "gunicorn") if not (venv / "bin" / n).exists()]
    if missing:
        raise SystemExit(
            f"--bugsink-venv {venv}: no {', '.join(missing)} there. Make one (outside the repository):\n"
            f"  {HOW_TO_INSTALL.format(venv=venv)}"
        )


def version(venv: Path) -> str:
    done = subprocess.run([str(venv / "bin" / "bugsink-show-version")], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


@dataclasses.dataclass
class Bugsink:
    venv: Path
    base: Path
    port: int
    project_id: int
    sentry_key: str
    gunicorn_workers: int
    snappea_workers: int
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    name = "Bugsink"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def dsn(self) -> str:
        return f"http://{self.sentry_key}@127.0.0.1:{self.port}/{self.project_id}"

    @property
    def envelope_path(self) -> str:
        return f"/api/{self.project_id}/envelope/"

    def stored(self) -> int:
        conn = sqlite3.connect(f"file:{self.base / 'db.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute("SELECT count(*) FROM events_event").fetchone()[0])
        finally:
            conn.close()

    def root_pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def describe(self) -> str:
        return (
            f"Bugsink {version(self.venv)}: gunicorn bugsink.wsgi ({self.gunicorn_workers} sync workers) + snappea "
            f"({self.snappea_workers} digest threads), SQLite, quotas and retention lifted, port {self.port}"
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[Bugsink]:
        env = _env(self.base)
        log_path = self.base / "server.log"
        log = log_path.open("ab")
        try:
            snappea = [str(self.venv / "bin" / "bugsink-runsnappea")]
            self.procs.append(subprocess.Popen(snappea, cwd=self.base, env=env, stdout=log, stderr=log))
            gunicorn = [str(self.venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}"]
            gunicorn += ["--workers", str(self.gunicorn_workers), "--pythonpath", str(self.base), "bugsink.wsgi"]
            self.procs.append(subprocess.Popen(gunicorn, cwd=self.base, env=env, stdout=log, stderr=log))
            wait_healthy(self.port, "/health/ready", self.procs[-1], log_path, "Bugsink")
            yield self
        finally:
            for proc in reversed(self.procs):
                stop(proc, signal.SIGTERM)
            self.procs.clear()
            log.close()


def _env(base: Path) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bugsink_conf", "PYTHONPATH": str(base)}


def _manage(venv: Path, base: Path, *args: str) -> str:
    cmd = [str(venv / "bin" / "bugsink-manage"), *args]
    done = subprocess.run(cmd, cwd=base, env=_env(base), capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bugsink-manage {' '.join(args[:2])} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def bugsink_target(venv: Path) -> Iterator[Bugsink]:
    """A configured, migrated Bugsink with one project in a temp dir; started per round by `running()`."""
    check_venv(venv)
    base = Path(tempfile.mkdtemp(prefix="prodloop-bench-bugsink-"))
    try:
        port = free_port()
        gunicorn_workers, snappea_workers = min(os.cpu_count() or 1, 4), 2
        conf = _CONF.format(
            secret=secrets.token_urlsafe(48),
            base=str(base),
            port=port,
            snappea_workers=snappea_workers,
            unlimited=_UNLIMITED,
        )
        (base / "bugsink_conf.py").write_text(conf)
        _manage(venv, base, "migrate", "snappea", "--database=snappea")
        _manage(venv, base, "migrate")
        out = _manage(venv, base, "shell", "-c", _CREATE_PROJECT.format(unlimited=2**31 - 1))
        project_id, key = out.split()[-2:]
        yield Bugsink(venv, base, port, int(project_id), key, gunicorn_workers, snappea_workers)
    finally:
        shutil.rmtree(base, ignore_errors=True)
