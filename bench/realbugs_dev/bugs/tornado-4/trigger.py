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

# Errors raised inside request handlers; the service fails fast on the first one.
handler_errors = []


class LogFileHandler(StaticFileHandler):
    def log_exception(self, typ, value, tb):
        handler_errors.append(value)


async def tail_log(base_url, log_name, tail_bytes):
    """Ask the log server for the last `tail_bytes` bytes of a log file."""
    client = AsyncHTTPClient()
    response = await client.fetch("%s/logs/%s" % (base_url, log_name),
                                  headers={"Range": "bytes=-%d" % tail_bytes},
                                  raise_error=False)
    if handler_errors:
        raise handler_errors.pop(0)
    return response


async def main():
    log_dir = tempfile.mkdtemp(prefix="logs-")
    with open(os.path.join(log_dir, "worker.log"), "w") as f:
        f.write("2024-05-01 12:00:01 INFO worker started\n"
                "2024-05-01 12:00:07 INFO processed batch 1\n")
    app = Application([(r"/logs/(.*)", LogFileHandler, {"path": log_dir})])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        # A "tail" request for more bytes than the file holds.
        response = await tail_log("http://127.0.0.1:%d" % port, "worker.log", 1000000)
        print(response.code, len(response.body), "bytes")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
