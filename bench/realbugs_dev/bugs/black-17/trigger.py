import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# An editor-integration endpoint: the editor sends the current buffer with the workspace's
# black settings, we return it formatted. A freshly created file (a new __init__.py, a new
# stub, a new test module) has an empty buffer. A failing request is reported; the next
# request is still served.
import black

BUFFERS = [
    {
        "uri": "file:///srv/app/__init__.py",
        "text": "",
        "line_length": 88,
        "py36": False,
        "skip_string_normalization": False,
    },
    {
        "uri": "file:///srv/app/typings/client.pyi",
        "text": "",
        "line_length": 100,
        "py36": True,
        "skip_string_normalization": False,
    },
    {
        "uri": "file:///home/dev/tools/tests/test_cli.py",
        "text": "",
        "line_length": 79,
        "py36": False,
        "skip_string_normalization": True,
    },
    {"uri": "untitled:Untitled-1", "text": "", "line_length": 120, "py36": True, "skip_string_normalization": True},
]


def format_buffer(buf: dict) -> str:
    mode = black.FileMode.from_configuration(
        py36=buf["py36"],
        pyi=buf["uri"].endswith(".pyi"),
        skip_string_normalization=buf["skip_string_normalization"],
    )
    return black.format_str(buf["text"], line_length=buf["line_length"], mode=mode)


last_error = None
for buf in BUFFERS:
    try:
        formatted = format_buffer(buf)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print(buf["uri"])
    print(formatted)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
