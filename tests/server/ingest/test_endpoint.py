"""The HTTP ingest, over real HTTP: what it accepts, and every refusal with its status and message.

Each refusal test first stores a good event and checks afterwards that it is intact."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable

import brotli
import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.store import EventRecord
from prodloop.server.store.migrations import MIGRATIONS
from tests.conftest import LiveServer, auth_header, envelope_bytes, gz, make_event, post


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def _send_good(server: LiveServer) -> str:
    event = make_event()
    reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
    assert reply.status == 200, reply.body
    return event["event_id"]


def _intact(server: LiveServer, event_id: str, events: int = 1) -> None:
    assert server.ctx.store.get_event(event_id).event_id == event_id
    assert server.ctx.store.count_events() == events


def test_envelope_event_is_stored_grouped_and_acknowledged_with_its_id(server: LiveServer) -> None:
    event = make_event()
    reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
    assert reply.status == 200
    assert reply.body == {"id": event["event_id"]}
    stored = server.ctx.store.get_event(event["event_id"])
    issue = server.ctx.store.get_issue(stored.issue_id)
    assert issue.title == "KeyError: 'sku'"
    assert issue.culprit == "shop.pricing in price_of"
    assert issue.event_count == 1


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gz),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),
        ("br", brotli.compress),
        ("identity", lambda b: b),
    ],
)
def test_compressed_bodies_are_accepted(server: LiveServer, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    event = make_event()
    headers = {**auth_header(server.project.public_key), "Content-Encoding": encoding}
    reply = post(server.envelope_url(), compress(envelope_bytes(event)), headers)
    assert reply.status == 200, reply.body
    _intact(server, event["event_id"])


def test_key_is_taken_from_query_string_or_envelope_dsn(server: LiveServer) -> None:
    first = make_event()
    url = f"{server.envelope_url()}?sentry_key={server.project.public_key}&sentry_version=7"
    assert post(url, envelope_bytes(first)).status == 200
    second = make_event()
    assert post(server.envelope_url(), envelope_bytes(second, dsn=server.dsn)).status == 200
    assert server.ctx.store.count_events() == 2


def test_store_endpoint_accepts_a_plain_event(server: LiveServer) -> None:
    event = make_event()
    url = f"{server.base_url}/api/{server.project.id}/store/"
    reply = post(url, json.dumps(event).encode(), auth_header(server.project.public_key))
    assert reply.status == 200
    _intact(server, event["event_id"])


def test_other_item_types_are_accepted_and_dropped(server: LiveServer) -> None:
    body = envelope_bytes(
        extra_items=[("session", b'{"sid":"x"}'), ("client_report", b"{}"), ("transaction", b'{"type":"transaction"}')]
    )
    reply = post(server.envelope_url(), body, auth_header(server.project.public_key))
    assert reply.status == 200
    assert server.ctx.store.count_events() == 0


def test_duplicate_event_id_is_idempotent(server: LiveServer) -> None:
    event = make_event()
    for _ in range(3):
        reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
        assert reply.status == 200
    stored = server.ctx.store.get_event(event["event_id"])
    assert server.ctx.store.count_events() == 1
    assert server.ctx.store.get_issue(stored.issue_id).event_count == 1


def test_dashed_uuid_event_id_is_folded(server: LiveServer) -> None:
    event = make_event(event_id=str(uuid.uuid4()).upper())
    reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
    assert reply.status == 200
    assert server.ctx.store.get_event(event["event_id"].replace("-", "").lower())


BAD_BODIES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("malformed envelope header", b"not json\n{}", {}, 400, "envelope header is not valid JSON"),
    ("item header without type", b'{}\n{"length":2}\n{}', {}, 400, "has no type"),
    ("item shorter than its length", b'{}\n{"type":"event","length":999}\n{}', {}, 400, "shorter than its length"),
    ("invalid event JSON", b'{}\n{"type":"event"}\n{"event_id": ', {}, 400, "event item 1 is not valid JSON"),
    ("event JSON that is not an object", b'{}\n{"type":"event"}\n[1,2]', {}, 400, "not an object"),
    ("missing event_id", b'{}\n{"type":"event"}\n{"message":"x"}', {}, 400, "has no event_id"),
    ("invalid event_id", b'{}\n{"type":"event"}\n{"event_id":"zz"}', {}, 400, "invalid event_id"),
    ("bad gzip", b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ("truncated gzip", gz(b'{"event_id":"' + b"a" * 32 + b'"}')[:-6], {"Content-Encoding": "gzip"}, 400, "truncated"),
    ("bad brotli", b"\xff\xff\xff", {"Content-Encoding": "br"}, 400, "not valid br"),
    ("unknown encoding", b"{}", {"Content-Encoding": "zstd"}, 400, "zstd is not supported"),
    ("empty body", b"", {}, 400, "body is empty"),
    (
        "huge integer",
        b'{}\n{"type":"event"}\n{"event_id":"' + b"a" * 32 + b'","extra":{"n":' + b"9" * 5000 + b"}}",
        {},
        400,
        "number too large to read",
    ),
    (
        "deep nesting",
        b'{}\n{"type":"event"}\n{"event_id":"' + b"a" * 32 + b'","extra":{"n":' + b"[" * 3000 + b"]" * 3000 + b"}}",
        {},
        400,
        "nested",
    ),
    (
        "nesting past the limit",
        b'{}\n{"type":"event"}\n{"event_id":"' + b"a" * 32 + b'","extra":{"n":' + b"[" * 150 + b"]" * 150 + b"}}",
        {},
        400,
        "nested deeper than 100 levels",
    ),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "message"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_refused_with_a_clear_message_and_lose_nothing(
    server: LiveServer, case: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    kept = _send_good(server)
    reply = post(server.envelope_url(), body, {**auth_header(server.project.public_key), **headers})
    assert reply.status == status, (case, reply.body)
    assert message in reply.body["detail"]
    _intact(server, kept)


def test_missing_key_is_401(server: LiveServer) -> None:
    kept = _send_good(server)
    reply = post(server.envelope_url(), envelope_bytes(make_event()))
    assert reply.status == 401
    assert "no DSN key" in reply.body["detail"]
    _intact(server, kept)


def test_wrong_key_is_403_and_never_echoes_the_key(server: LiveServer) -> None:
    kept = _send_good(server)
    wrong = "f" * 32
    reply = post(server.envelope_url(), envelope_bytes(make_event()), auth_header(wrong))
    assert reply.status == 403
    assert "not a key of project" in reply.body["detail"]
    assert wrong not in json.dumps(reply.body)
    _intact(server, kept)


def test_an_unknown_project_answers_exactly_like_a_wrong_key(server: LiveServer) -> None:
    kept = _send_good(server)
    unknown = post(
        server.envelope_url(project_id=99), envelope_bytes(make_event()), auth_header(server.project.public_key)
    )
    real_id = server.project.id
    wrong = post(server.envelope_url(project_id=real_id), envelope_bytes(make_event()), auth_header("f" * 32))
    assert unknown.status == wrong.status == 403
    assert unknown.body["detail"] == wrong.body["detail"].replace(f"project {real_id} ", "project 99 ")
    bad = post(f"{server.base_url}/api/abc/envelope/", envelope_bytes(make_event()), auth_header("k"))
    assert bad.status == 400
    assert "not a number" in bad.body["detail"]
    _intact(server, kept)


def test_event_over_one_mib_is_413(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(max_event_bytes=64 * 1024)
    kept = _send_good(server)
    big = make_event(extra={"blob": "x" * 70_000})
    reply = post(server.envelope_url(), envelope_bytes(big), auth_header(server.project.public_key))
    assert reply.status == 413
    assert "over the limit of 65536 bytes" in reply.body["detail"]
    _intact(server, kept)


def test_envelope_over_limit_is_413_also_when_a_small_body_inflates(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(max_envelope_bytes=256 * 1024)
    kept = _send_good(server)
    huge = b"{}\n" + b" " * (300 * 1024)
    reply = post(server.envelope_url(), huge, auth_header(server.project.public_key))
    assert reply.status == 413
    bomb = gz(b"{}\n" + b"\n" * (10 * 1024 * 1024))
    assert len(bomb) < 256 * 1024
    reply = post(server.envelope_url(), bomb, {**auth_header(server.project.public_key), "Content-Encoding": "gzip"})
    assert reply.status == 413
    assert "decompressed envelope" in reply.body["detail"]
    _intact(server, kept)


def test_rate_limit_answers_429_with_retry_after(
    live_server: Callable[..., LiveServer], fixed_clock: FixedClock
) -> None:
    server = live_server(ingest_rate_limit=0.5, ingest_rate_burst=3.0, clock=fixed_clock)
    replies = [
        post(server.envelope_url(), envelope_bytes(make_event()), auth_header(server.project.public_key))
        for _ in range(4)
    ]
    assert [r.status for r in replies] == [200, 200, 200, 429]
    assert replies[3].headers["retry-after"] == "2"
    assert "over its event rate limit" in replies[3].body["detail"]
    assert server.ctx.store.count_events() == 3
    fixed_clock.advance(2.0)
    again = post(server.envelope_url(), envelope_bytes(make_event()), auth_header(server.project.public_key))
    assert again.status == 200


def test_healthz(server: LiveServer) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{server.base_url}/healthz", timeout=5) as resp:
        assert json.loads(resp.read()) == {"status": "ok", "schema_version": MIGRATIONS[-1][0]}


def test_random_garbage_never_crashes_the_server_or_touches_stored_events(server: LiveServer) -> None:
    import random

    kept = _send_good(server)
    rng = random.Random(20261122)
    good = envelope_bytes(make_event())
    statuses = set()
    for i in range(60):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        elif i % 3 == 1:  # a real envelope with bytes flipped
            flipped = bytearray(good)
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            body = bytes(flipped)
        else:  # a real envelope cut short
            body = good[: rng.randrange(1, len(good))]
        encoding = rng.choice(["", "gzip", "deflate", "br"])
        headers = {**auth_header(server.project.public_key), **({"Content-Encoding": encoding} if encoding else {})}
        reply = post(server.envelope_url(), body, headers)
        statuses.add(reply.status)
        assert reply.status in (200, 400, 413), reply.body
        assert reply.body.get("detail") or reply.status == 200
    assert 400 in statuses
    assert server.ctx.store.get_event(kept).event_id == kept
    healthy = post(server.envelope_url(), envelope_bytes(make_event()), auth_header(server.project.public_key))
    assert healthy.status == 200


def test_a_sender_that_hangs_up_does_not_stop_the_writer(ctx: AppContext) -> None:
    from prodloop.server.ingest.pipeline import EventProcessor
    from prodloop.server.ingest.writer import EventWriter

    project = ctx.store.create_project("svc")
    processor = EventProcessor(ctx.settings, ctx.clock)

    def record() -> EventRecord:
        return processor.process(make_event(), project_id=project.id, user_salt=project.public_key, source="test")

    writer = EventWriter(ctx.store)
    try:
        abandoned = writer.submit([record()])
        abandoned.cancel()
        answered = writer.submit([record()]).result(timeout=10)
    finally:
        writer.close()
    assert answered == [True]
    assert ctx.store.count_events() == 2  # the abandoned sender's event was valid and is kept


def test_secrets_under_a_sensitive_parent_and_in_keys_are_scrubbed(server: LiveServer) -> None:
    event = make_event(extra={"my_session": {"id": "SESS-0042-secret"}, "contacts": {"alice@example.com": "vip"}})
    reply = post(server.envelope_url(), envelope_bytes(event), auth_header(server.project.public_key))
    assert reply.status == 200
    stored = server.ctx.store.get_event(event["event_id"]).payload
    assert "SESS-0042-secret" not in stored
    assert "alice@example.com" not in stored
