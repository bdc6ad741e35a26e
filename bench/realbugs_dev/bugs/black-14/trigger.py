import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A repository-wide "reformat" job: walks a (here: in-memory) package and formats each module.
# A module that fails is reported and left as it is; the job goes on with the next one.
import black

MODULES = {
    "compat/text.py": (
        '"""Text helpers shared by the py2 and py3 code paths."""\n'
        "from __future__ import unicode_literals as _unicode_literals\n"
        "from __future__ import absolute_import\n"
        "\n"
        "def to_text(value, encoding='utf-8'):\n"
        "    if isinstance(value, bytes):\n"
        "        return value.decode(encoding)\n"
        "    return value\n"
    ),
    "compat/numbers.py": (
        "from __future__ import absolute_import\n"
        "from __future__ import division as _division\n"
        "\n"
        "def ratio(a, b):\n"
        "    return a / b if b else 0.0\n"
    ),
    "compat/console.py": (
        "from __future__ import print_function as _print_function\n"
        "import sys\n"
        "\n"
        "def warn(msg):\n"
        "    print('warning:', msg, file=sys.stderr)\n"
    ),
    "compat/gen.py": (
        "# -*- coding: utf-8 -*-\n"
        "from __future__ import (generator_stop as _generator_stop)\n"
        "\n"
        "def take(n, it):\n"
        "    for i, x in zip(range(n), it):\n"
        "        yield x\n"
    ),
}


def reformat_module(path: str, source: str, line_length: int = 88) -> str:
    return black.format_str(source, line_length=line_length)


last_error = None
for path, source in MODULES.items():
    try:
        formatted = reformat_module(path, source)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print("#", path)
    print(formatted)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
