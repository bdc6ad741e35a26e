import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A pre-commit style job for a legacy Python 2.7 code base: every changed file is
# formatted by black with the project's configured target version (py27).
# A file that fails is reported and the job goes on with the next one.
import black

PROJECT_CONFIG = {"target_version": "py27", "line_length": 100}

CHANGED_FILES = {
    "tools/report.py": (
        "from __future__ import print_function\n"
        "import sys\n"
        "\n"
        "def report(errors):\n"
        "    for e in errors:\n"
        "        print('error: %s' % e, file=sys.stderr)\n"
    ),
    "tools/progress.py": (
        "from __future__ import print_function\n"
        "\n"
        "def tick(done, total):\n"
        "    print('\\r%d/%d' % (done, total), end='')\n"
    ),
    "tools/table.py": (
        "from __future__ import print_function, unicode_literals\n"
        "\n"
        "def print_row(cells):\n"
        "    print(*cells, sep='\\t')\n"
    ),
    "lib/logging_compat.py": (
        "from __future__ import absolute_import, print_function\n"
        "\n"
        "class StreamLogger(object):\n"
        "    def __init__(self, stream):\n"
        "        self.stream = stream\n"
        "\n"
        "    def log(self, msg):\n"
        "        print(msg, file=self.stream, end='\\n')\n"
    ),
}


def format_for_project(source: str, config: dict) -> str:
    mode = black.FileMode(
        target_versions={black.TargetVersion[config["target_version"].upper()]},
        line_length=config["line_length"],
    )
    return black.format_str(source, mode=mode)


last_error = None
for path, source in CHANGED_FILES.items():
    try:
        formatted = format_for_project(source, PROJECT_CONFIG)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print(path)
    print(formatted)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
