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

# Errors raised inside handlers; the service fails fast on the first one.
handler_errors = []


class PriceFeedHandler(WebSocketHandler):
    """Pushes price ticks to subscribers; disables Nagle for low latency."""

    def initialize(self, prices):
        self.prices = prices

    def open(self, symbol):
        self.set_nodelay(True)
        self.write_message(json.dumps({"symbol": symbol, "price": self.prices[symbol]}))

    def log_exception(self, typ, value, tb):
        handler_errors.append(value)


async def subscribe(port, symbol):
    conn = await websocket_connect("ws://127.0.0.1:%d/prices/%s" % (port, symbol))
    message = await conn.read_message()
    conn.close()
    if handler_errors:
        raise handler_errors.pop(0)
    return json.loads(message)


async def main():
    prices = {"ACME": 101.25, "GLOBEX": 47.5}
    app = Application([(r"/prices/(\w+)", PriceFeedHandler, {"prices": prices})])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    try:
        tick = await subscribe(sockets[0].getsockname()[1], "ACME")
        print("received", tick)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
