import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A repository-wide "reformat" job: walks a (here: in-memory) package and formats each module.
import black

MODULES = {
    "compat/__init__.py": '"""Compatibility helpers."""\n',
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
}


def reformat_module(path: str, source: str, line_length: int = 88) -> str:
    return black.format_str(source, line_length=line_length)


for path, source in MODULES.items():
    print("#", path)
    print(reformat_module(path, source))
