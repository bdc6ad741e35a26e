"""The envelopes `bench/ingest.py` posts: a small shop whose handlers fail in different ways, run under the real
sentry-sdk with a capturing transport (serialized exactly as HttpTransport sends them)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from sentry_sdk.utils import Dsn

# A small shop whose handlers fail in different ways: the SDK sees real frames, modules, source
# lines, locals (some of them secrets the scrubber must catch) and chained exceptions.
_APP_SOURCES = {
    "views": """
        from shopapp import checkout, inventory, reports, users


        def handle(route, request):
            request_id = request["id"]
            return ROUTES[route](request, request_id)


        def post_checkout(request, request_id):
            amount = checkout.total(request["cart"], request["coupon"])
            return checkout.charge(request["order_id"], amount, request["card_number"])


        def post_reserve(request, request_id):
            return inventory.reserve(request["sku"], request["qty"], request["warehouse"])


        def get_profile(request, request_id):
            return users.display_name(users.load_profile(request["raw_profile"]))


        def get_report(request, request_id):
            return reports.summarize(reports.fetch(request["url"], request["timeout"]))


        ROUTES = {"/checkout": post_checkout, "/reserve": post_reserve, "/profile": get_profile,
                  "/report": get_report}
    """,
    "checkout": """
        from decimal import Decimal

        DISCOUNTS = {"NONE": Decimal(0), "SAVE10": Decimal("0.10"), "HALF": Decimal("0.50")}


        class PaymentDeclined(Exception):
            pass


        def total(cart, coupon):
            subtotal = sum(Decimal(str(item["price"])) * item["qty"] for item in cart)
            discount = DISCOUNTS[coupon]
            return subtotal * (1 - discount)


        def charge(order_id, amount, card_number):
            api_key = "sk_live_51H8Qexample" + order_id[-4:]
            if amount > 500:
                raise PaymentDeclined(f"card declined for order {order_id}: {amount} exceeds the limit")
            return {"order": order_id, "charged": str(amount), "key": api_key}
    """,
    "inventory": """
        STOCK = {"SKU-100": 3, "SKU-200": 0, "SKU-300": 12}


        def reserve(sku, qty, warehouse):
            on_hand = STOCK.get(sku, 0)
            fill_rate = qty / on_hand
            if qty > on_hand:
                raise ValueError(f"insufficient stock for {sku} in {warehouse}: wanted {qty}, have {on_hand}")
            return fill_rate
    """,
    "users": """
        import json


        def load_profile(raw):
            return json.loads(raw)


        def display_name(profile):
            first = profile["name"]["first"]
            return first.title() + " " + profile["name"]["last"].upper()
    """,
    "reports": """
        import socket


        class UpstreamUnavailable(Exception):
            pass


        def fetch(url, timeout):
            if "legacy" in url:
                try:
                    socket.create_connection(("127.0.0.1", 9), timeout=timeout).close()
                except OSError as exc:
                    raise UpstreamUnavailable(f"report service {url} unavailable after {timeout}s") from exc
            return [line.split(",") for line in ("day,region,total", "mon,eu,12", "tue,us,n/a", "wed")]


        def summarize(rows):
            return sum(int(row[2]) for row in rows[1:])
    """,
}


class _CapturingTransport(Transport):
    """Keeps what the SDK would send, serialized exactly as HttpTransport serializes it."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.bodies.append(envelope.serialize())


@dataclasses.dataclass(frozen=True)
class Pool:
    bodies: list[bytes]  # uncompressed envelopes
    event_ids: list[str]  # the id each body carries, to be replaced per post
    auth_header: str  # what sentry-sdk sends as X-Sentry-Auth


def _request(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    order_id = f"ord_{rng.randrange(10**8):08d}"
    route = rng.choice(["/checkout", "/checkout", "/reserve", "/profile", "/report"])
    request: dict[str, Any] = {"id": f"req-{i:06d}"}
    if route == "/checkout":
        cart = [{"sku": f"SKU-{rng.randrange(100, 999)}", "price": rng.randrange(5, 400), "qty": rng.randrange(1, 4)}]
        request |= {"cart": cart * rng.randrange(1, 4), "coupon": rng.choice(["NONE", "SAVE10", "BOGUS", "HALF"])}
        request |= {"order_id": order_id, "card_number": "4111 1111 1111 1111"}
    elif route == "/reserve":
        request |= {"sku": rng.choice(["SKU-100", "SKU-200", "SKU-999"]), "qty": rng.randrange(1, 9)}
        request["warehouse"] = rng.choice(["ams-1", "fra-2", "iad-1"])
    elif route == "/profile":
        name = rng.choice(['{"first": "ada", "last": null}', "null", '{"first": "alan"'])
        request["raw_profile"] = f'{{"id": {i}, "name": {name}}}'
    else:
        request |= {"url": rng.choice(["http://reports.internal/daily", "http://legacy.internal/q"]), "timeout": 2}
    return route, request


def capture_pool(dsn: str, count: int, seed: int = 7) -> Pool:
    """Run the demo shop's failing handlers under the real sentry-sdk and keep the envelopes."""
    rng = random.Random(seed)
    transport = _CapturingTransport()
    app_dir = Path(tempfile.mkdtemp(prefix="prodloop-bench-app-"))
    try:
        (app_dir / "shopapp").mkdir()
        (app_dir / "shopapp" / "__init__.py").write_text("")
        for name, source in _APP_SOURCES.items():
            (app_dir / "shopapp" / f"{name}.py").write_text(textwrap.dedent(source).lstrip())
        sys.path.insert(0, str(app_dir))
        views = importlib.import_module("shopapp.views")
        sentry_sdk.init(
            dsn=dsn,
            transport=transport,
            release=f"shop@1.{rng.randrange(3, 9)}.0",
            environment="production",
            server_name="web-3",
            in_app_include=["shopapp"],
            max_breadcrumbs=20,
        )
        for i in range(count * 3):
            if len(transport.bodies) >= count:
                break
            route, request = _request(rng, i)
            with sentry_sdk.isolation_scope() as scope:
                scope.set_user(
                    {
                        "id": str(rng.randrange(5_000)),
                        "email": f"user{rng.randrange(5_000)}@example.com",
                        "ip_address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                    }
                )
                scope.set_tag("route", route)
                scope.set_tag("region", rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]))
                scope.set_tag("customer_tier", rng.choice(["free", "pro", "enterprise"]))
                scope.add_event_processor(_http_request_processor(route, request["id"], rng.random() < 0.5))
                for n in range(rng.randrange(2, 9)):
                    sentry_sdk.add_breadcrumb(
                        category=rng.choice(["query", "http", "cache", "auth"]),
                        message=f"step {n} of {request['id']}: SELECT * FROM orders WHERE id = {rng.randrange(10**6)}",
                        level="info",
                        data={"duration_ms": rng.randrange(1, 80)},
                    )
                _serve(views.handle, route, request)
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sys.path.remove(str(app_dir))
        for name in [m for m in sys.modules if m == "shopapp" or m.startswith("shopapp.")]:
            del sys.modules[name]
        shutil.rmtree(app_dir, ignore_errors=True)
    ids = [json.loads(body.split(b"\n", 1)[0])["event_id"] for body in transport.bodies]
    auth = Dsn(dsn).to_auth(f"sentry.python/{sentry_sdk.VERSION}").to_header()
    return Pool(bodies=transport.bodies, event_ids=ids, auth_header=auth)


def _serve(handle: Callable[[str, dict[str, Any]], Any], route: str, request: dict[str, Any]) -> None:
    """The web framework's part: call the handler, report what it raises."""
    try:
        handle(route, request)
    except Exception:
        sentry_sdk.capture_exception()


def _http_request_processor(route: str, request_id: str, with_auth: bool) -> Callable[[Any, Any], Any]:
    def processor(event: Any, hint: Any) -> Any:
        headers = {"Host": "shop.example.com", "User-Agent": "Mozilla/5.0", "X-Request-Id": request_id}
        if with_auth:
            headers["Authorization"] = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.bench"
            headers["Cookie"] = "sessionid=8f2c1e0b7a; csrftoken=d41d8cd98f"
        event["request"] = {
            "method": "POST",
            "url": f"https://shop.example.com{route}",
            "query_string": "page=2&api_key=abc123def456",
            "headers": headers,
        }
        return event

    return processor


def sample_events(
    count: int, dsn: str = "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1"
) -> list[dict[str, Any]]:
    """The events of `capture_pool`'s envelopes, as the SDK serialized them (for benches that process events
    without posting them)."""
    events = []
    for body in capture_pool(dsn, count).bodies:
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events
