import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# An editor-integration endpoint: the editor sends the current buffer, we return it
# formatted. A freshly created file (e.g. a new __init__.py) has an empty buffer.
import black

BUFFERS = [
    {"uri": "file:///srv/app/models.py", "text": "x = {  'a':37,'b':42,\n'c':927}\n"},
    {"uri": "file:///srv/app/__init__.py", "text": ""},
]


def format_buffer(text: str, line_length: int = 88) -> str:
    return black.format_str(text, line_length=line_length)


for buf in BUFFERS:
    print(buf["uri"])
    print(format_buffer(buf["text"]))
