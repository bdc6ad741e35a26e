import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A code-review bot: formats the files of a pull request with black and posts a diff.
# A file it cannot format is reported and skipped; the other files are still reviewed.
import black

PULL_REQUEST_FILES = [
    {
        "filename": "worker/pages.py",
        "content": ("def all_pages(client, url):\n    return (page async for page in client.paginate(url))\n"),
    },
    {
        "filename": "worker/repos.py",
        "content": (
            "class RepoLister:\n"
            "    def __init__(self, api):\n"
            "        self.api = api\n"
            "\n"
            "    def names(self):\n"
            "        return (r.name async for r in self.api.list_repos())\n"
        ),
    },
    {
        "filename": "worker/messages.py",
        "content": (
            "def unread(inbox):\n"
            "    return (m for m in inbox.cached if not m.seen)\n"
            "\n"
            "def live_unread(inbox):\n"
            "    return (m async for m in inbox.subscribe() if not m.seen)\n"
        ),
    },
    {
        "filename": "worker/metrics.py",
        "content": (
            "def scaled_measurements(sensor_stream, calibration_factor):\n"
            "    return (measurement.value * calibration_factor async for measurement in sensor_stream.read_all(timeout=30))\n"
        ),
    },
]


def suggest_formatting(content: str, line_length: int = 88) -> str:
    return black.format_str(content, line_length=line_length)


last_error = None
for f in PULL_REQUEST_FILES:
    try:
        suggestion = suggest_formatting(f["content"])
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print(f["filename"])
    print(suggestion)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
