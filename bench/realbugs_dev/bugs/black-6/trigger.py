import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A small "format on save" service: it receives a module's source text and returns it
# formatted by black with default settings (no target versions -> auto-detect).
import black

REQUEST = {
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
}


def format_source(source: str, line_length: int) -> str:
    mode = black.FileMode(line_length=line_length)
    return black.format_str(source, mode=mode)


formatted = format_source(REQUEST["source"], REQUEST["line_length"])
print(formatted)
