"""Release health and performance from a real sentry-sdk: sessions (request-mode aggregates and an application
session) and transactions arrive at a real ingest and are kept as hourly counts, never raw."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.errors import IngestError
from prodloop.server.ingest import health
from prodloop.server.store import health as health_store
from tests import pg
from tests.conftest import LiveServer, post

SERVICE = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    sentry_sdk.init(dsn=sys.argv[1], release="shop@3.0.0", environment="production", traces_sample_rate=1.0)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/checkout":
            raise ValueError("card declined for token=" + sys.argv[2])
        start_response("200 OK", [])
        return [b"ok"]

    served = SentryWsgiMiddleware(app)
    for path in ["/cart", "/cart", "/checkout"]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "shop.internal",
                   "SERVER_PORT": "443", "wsgi.url_scheme": "https"}
        try:
            list(served(environ, lambda *a: None))
        except ValueError:
            pass

    # A script's own session (application mode): it sees one handled error, then ends.
    scope = sentry_sdk.get_isolation_scope()
    scope.start_session()
    try:
        1 / 0
    except ZeroDivisionError:
        sentry_sdk.capture_exception()
    scope.end_session()
    sentry_sdk.flush(timeout=10)
    """
)

TOKEN = "sk_live_" + "Zq8wPp3LmN5vB7xC9dR2tY4u"


@pytest.fixture
def reported(live_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    server = live_server()
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    subprocess.run([sys.executable, str(script), server.dsn, TOKEN], capture_output=True, timeout=60, check=True)
    return server


def test_sessions_and_transactions_of_a_real_sdk_are_counted_per_release(reported: LiveServer) -> None:
    store = reported.ctx.store
    with store.transaction() as conn:
        releases = health_store.release_health(conn, since_hour=0)
        transactions = health_store.transaction_stats(conn, since_hour=0)
        packages = health_store.release_packages(conn, reported.project.id, "shop@3.0.0")
    assert [(r.release, r.environment) for r in releases] == [("shop@3.0.0", "production")]
    shop = releases[0]
    # Three requests (one crashed) and the script's session (errored, ended fine).
    assert (shop.started, shop.crashed, shop.errored, shop.abnormal) == (4, 1, 2, 0)
    assert shop.crash_free_rate == 0.75
    assert sum(t.count for t in transactions) == 3
    assert sum(t.failed for t in transactions) == 1
    assert all(t.p50_ms is not None and t.p50_ms >= 0 for t in transactions)
    assert packages is not None and "sentry-sdk" in packages  # the release's dependencies, kept once
    with store.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2  # the two errors, not the transactions
    data = pg.stored_bytes(store)
    assert b"Zq8wPp3LmN5vB7xC9dR2tY4u" not in data


def test_a_health_item_that_does_not_parse_is_left_out_with_its_reason_and_the_rest_still_counts(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server()
    header = json.dumps({"dsn": server.dsn}).encode()
    now = time.time()  # a session from 1970 would be pruned by retention (the writer prunes after a batch)
    good = json.dumps({"init": True, "status": "exited", "started": now - 1, "timestamp": now,
                       "attrs": {"release": "shop@1"}}).encode()  # fmt: skip
    for bad, reason in (
        (b"[1, 2]", "session item 2: session item is not a JSON object"),
        (json.dumps({"init": True, "attrs": {}}).encode(), "session item 2: session item names no release"),
        (json.dumps({"init": True, "errors": -1, "timestamp": now, "attrs": {"release": "r"}}).encode(), "errors"),
    ):
        body = b"\n".join([header, b'{"type":"session"}', good, b'{"type":"session"}', bad]) + b"\n"
        reply = post(server.envelope_url(), body)
        assert reply.status == 200, reply.body
        assert len(reply.body["dropped"]) == 1 and reason in reply.body["dropped"][0], reply.body
    with server.ctx.store.transaction() as conn:
        kept = health_store.release_health(conn, since_hour=0)
    assert [(r.release, r.started) for r in kept] == [("shop@1", 3)]  # the good session of each envelope


def test_aggregates_count_every_ended_session_as_started_and_crashes_as_errored() -> None:
    item = {"attrs": {"release": "api@2", "environment": "staging"},
            "aggregates": [{"started": "2026-12-04T10:01:00Z", "exited": 5, "errored": 2, "crashed": 1, "did": "u1"},
                           {"started": "2026-12-04T10:02:00Z", "abnormal": 1}]}  # fmt: skip
    counts = health.parse_sessions(json.dumps(item).encode(), 1, "salt")
    assert [(c.started, c.errored, c.crashed, c.abnormal) for c in counts] == [(8, 3, 1, 0), (1, 1, 0, 1)]
    assert counts[0].environment == "staging" and counts[0].user_hash not in (None, "u1")
    with pytest.raises(IngestError, match="exited is not a count"):
        health.parse_sessions(json.dumps({**item, "aggregates": [{"started": 1.0, "exited": "5"}]}).encode(), 1, "s")


def test_durations_land_in_log_buckets_whose_quantiles_stay_within_five_percent() -> None:
    durations = [float(ms) for ms in range(1, 2001)]
    histogram: dict[int, int] = {}
    for ms in durations:
        index = health_store.duration_bucket(ms)
        histogram[index] = histogram.get(index, 0) + 1
    for q, exact in ((0.5, 1000.0), (0.95, 1900.0), (0.99, 1980.0)):
        estimate = health_store.quantile(histogram, q)
        assert estimate is not None and abs(estimate - exact) / exact <= 0.05, (q, estimate)
    assert health_store.quantile({}, 0.5) is None


def test_times_past_any_clock_and_endless_durations_are_refused_not_a_500(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(ingest_rate_limit=1.0, ingest_rate_burst=2)
    header = json.dumps({"dsn": server.dsn}).encode()
    hostile = [
        ("session", {"init": True, "timestamp": 1e300, "attrs": {"release": "r"}}),
        ("transaction", {"transaction": "/x", "start_timestamp": 0, "timestamp": 1e308}),
        ("sessions", {"attrs": {"release": "r"}, "aggregates": [{"started": 1.0, "exited": 10**12}]}),
    ]
    for kind, item in hostile:
        body = b"\n".join([header, json.dumps({"type": kind}).encode(), json.dumps(item).encode()]) + b"\n"
        reply = post(server.envelope_url(), body)
        assert reply.status in (200, 429), reply.body
        if reply.status == 200:
            assert len(reply.body["dropped"]) == 1, reply.body
    # Health items cost like events: the third envelope within a second is over the limit of two.
    assert reply.status == 429


def test_a_release_keeps_only_well_formed_packages_and_never_a_secret() -> None:
    from prodloop.server.ingest.scrub import Scrubber

    token, key = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    raw = {"modules": {"requests": "2.32.3", token: "1.0", "mypkg": key, "bad name": "1", "ok": {"nested": 1}}}
    kept = json.loads(health.packages_of(raw["modules"], Scrubber().scrub_string) or "{}")
    assert kept == {"requests": "2.32.3"}


def test_a_real_sdks_errors_sessions_and_transactions_show_in_its_files_history(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    from prodloop.tools.observe.reliability import query_reliability_history

    server = live_server()
    repo = tmp_path / "svc"  # the server's own repository folder
    (repo / "service.py").write_text(SERVICE)
    ident = ["-c", "user.name=t", "-c", "user.email=t@x"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], [*ident, "commit", "-q", "-m", "service"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    subprocess.run([sys.executable, "service.py", server.dsn, TOKEN], cwd=repo, capture_output=True, timeout=60,
                   check=True)  # fmt: skip
    ctx = server.ctx
    h = query_reliability_history(ctx.store, ctx.git(), ctx.settings, ctx.clock, path="service.py", days=1)
    assert (h.issues_total, h.events) == (2, 2)  # the declined card in a request, the script's own ZeroDivisionError
    assert [(r.release, r.sessions, r.crash_free_rate) for r in h.releases] == [("shop@3.0.0", 4, 0.75)]
    assert [(t.count, t.failure_rate) for t in h.transactions] == [(3, round(1 / 3, 4))], h.transactions
    assert TOKEN not in h.model_dump_json()


def test_release_environment_and_transaction_names_are_scrubbed_before_they_are_stored() -> None:
    from prodloop.server.clock import SystemClock
    from prodloop.server.ingest.pipeline import EventProcessor
    from prodloop.server.settings import Settings

    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    processor = EventProcessor(Settings(repo=Path(".")), SystemClock())
    session = {"init": True, "timestamp": 1.0, "attrs": {"release": f"shop@{token}", "environment": f"prod {token}"}}
    trans = {"transaction": f"/login?key={token}", "start_timestamp": 1.0, "timestamp": 2.0, "release": token}
    out = processor.health(
        [("session", json.dumps(session).encode()), ("transaction", json.dumps(trans).encode())],
        project_id=1, user_salt="s",
    )  # fmt: skip
    stored = repr(out.sessions) + repr(out.transactions)
    assert token not in stored and "shop@" in stored and "/login" in stored
