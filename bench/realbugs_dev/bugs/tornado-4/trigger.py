import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import asyncio
import tempfile

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, StaticFileHandler

# Errors raised inside request handlers; the client side re-raises them for its request.
handler_errors = []

LOGS = {
    "worker.log": "2024-05-01 12:00:01 INFO worker started\n2024-05-01 12:00:07 INFO processed batch 1\n",
    "scheduler.log": "2024-05-01 00:00:00 INFO tick\n" * 40,
    "api-access.log": '10.0.3.17 - - [01/May/2024:12:00:03] "GET /health HTTP/1.1" 200 2\n' * 150,
    "db-migrate.log": "applied 0042_add_invoice_index\n",
}


class LogFileHandler(StaticFileHandler):
    def log_exception(self, typ, value, tb):
        handler_errors.append(value)


async def start_server(log_dir):
    app = Application([(r"/logs/(.*)", LogFileHandler, {"path": log_dir})])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, "http://127.0.0.1:%d" % sockets[0].getsockname()[1]


async def tail_log(base_url, log_name, tail_bytes):
    """Ask the log server for the last `tail_bytes` bytes of a log file."""
    client = AsyncHTTPClient()
    response = await client.fetch(
        "%s/logs/%s" % (base_url, log_name), headers={"Range": "bytes=-%d" % tail_bytes}, raise_error=False
    )
    if handler_errors:
        raise handler_errors.pop(0)
    return response


if __name__ == "__main__":
    log_dir = tempfile.mkdtemp(prefix="logs-")
    for name, text in LOGS.items():
        with open(os.path.join(log_dir, name), "w") as f:
            f.write(text)
    # "tail" requests from an ops dashboard, each for more bytes than the file holds.
    requests = [("worker.log", 1000000), ("scheduler.log", 4096), ("api-access.log", 65536), ("db-migrate.log", 512)]
    last_error = None
    with asyncio.Runner() as runner:
        server, base_url = runner.run(start_server(log_dir))
        try:
            for log_name, tail_bytes in requests:
                try:
                    response = runner.run(tail_log(base_url, log_name, tail_bytes))
                    print(log_name, response.code, len(response.body), "bytes")
                except Exception as exc:
                    sentry_sdk.capture_exception()
                    last_error = exc
        finally:
            server.stop()
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
