import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import asyncio
import json

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

# Errors raised inside handlers; the client side re-raises them for its request.
handler_errors = []

PRICES = {"ACME": 101.25, "GLOBEX": 47.5, "INITECH": 3.875, "UMBRELLA": 1204.0}


class PriceFeedHandler(WebSocketHandler):
    """Pushes price ticks to subscribers; disables Nagle for low latency."""

    def initialize(self, prices):
        self.prices = prices

    def open(self, symbol):
        self.set_nodelay(True)
        self.write_message(json.dumps({"symbol": symbol, "price": self.prices[symbol]}))

    def log_exception(self, typ, value, tb):
        handler_errors.append(value)


async def start_server():
    app = Application([(r"/prices/(\w+)", PriceFeedHandler, {"prices": PRICES})])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


async def subscribe(port, symbol):
    """One subscriber: connect to the feed of `symbol` and read the first tick."""
    conn = await websocket_connect("ws://127.0.0.1:%d/prices/%s" % (port, symbol))
    message = await conn.read_message()
    conn.close()
    if handler_errors:
        raise handler_errors.pop(0)
    return json.loads(message)


if __name__ == "__main__":
    # Dashboards subscribing to different symbols' feeds.
    symbols = ["ACME", "GLOBEX", "INITECH", "UMBRELLA"]
    last_error = None
    with asyncio.Runner() as runner:
        server, port = runner.run(start_server())
        try:
            for symbol in symbols:
                try:
                    tick = runner.run(subscribe(port, symbol))
                    print("received", tick)
                except Exception as exc:
                    sentry_sdk.capture_exception()
                    last_error = exc
        finally:
            server.stop()
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
