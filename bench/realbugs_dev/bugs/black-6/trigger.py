import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A small "format on save" service: it receives a module's source text and returns it
# formatted by black with default settings (no target versions -> auto-detect).
# It handles a batch of save requests; a failing request is reported and the batch goes on.
import black

REQUESTS = [
    {
        "path": "app/streams.py",
        "line_length": 88,
        "source": (
            "import asyncio\n"
            "\n"
            "def doubled(n):\n"
            "    return (i * 2 async for i in aiter_range(n))\n"
            "\n"
            "def resolved(awaitables):\n"
            "    return (await a for a in awaitables)\n"
        ),
    },
    {
        "path": "app/uploads.py",
        "line_length": 100,
        "source": ("def sizes(files):\n    return (len(await f.read()) for f in files)\n"),
    },
    {
        "path": "app/jobs.py",
        "line_length": 79,
        "source": (
            "def ready_jobs(queue):\n"
            "    pending = queue.pending()\n"
            "    return (job for job in pending if await job.is_ready())\n"
        ),
    },
    {
        "path": "app/db/loader.py",
        "line_length": 88,
        "source": (
            "class Loader:\n"
            "    def __init__(self, cursor):\n"
            "        self.cursor = cursor\n"
            "\n"
            "    def rows(self):\n"
            "        return (await self.decode(row) async for row in self.cursor)\n"
        ),
    },
]


def format_source(request: dict) -> str:
    mode = black.FileMode(line_length=request["line_length"])
    return black.format_str(request["source"], mode=mode)


last_error = None
for request in REQUESTS:
    try:
        formatted = format_source(request)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print("#", request["path"])
    print(formatted)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
