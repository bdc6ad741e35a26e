import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A pre-commit style job for a legacy Python 2.7 code base: every changed file is
# formatted by black with the project's configured target version (py27).
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
}


def format_for_project(source: str, config: dict) -> str:
    mode = black.FileMode(
        target_versions={black.TargetVersion[config["target_version"].upper()]},
        line_length=config["line_length"],
    )
    return black.format_str(source, mode=mode)


for path, source in CHANGED_FILES.items():
    print(path)
    print(format_for_project(source, PROJECT_CONFIG))
