import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A project-scaffolding service running in a minimal container whose locale is plain
# "C" (ASCII). It renders the teams' templates, whose cookiecutter.json files have
# non-ASCII defaults. A template that fails is reported; the service goes on with the next.
import json
import locale
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

locale.setlocale(locale.LC_CTYPE, "C")  # what a container without LANG/LC_* gives a service

TEMPLATES = {
    "service-template": {
        "full_name": "Zoë Lefèvre",
        "email": "zoe@example.com",
        "project_slug": "invoice-service",
    },
    "tokyo-batch-template": {
        "full_name": "山田 太郎",
        "email": "taro.yamada@example.jp",
        "project_slug": "nightly-batch",
    },
    "payments-template": {
        "full_name": "Sofía Muñoz",
        "email": "sofia@example.es",
        "project_slug": "payments-gateway",
        "description": "Pagos rápidos 🚀",
    },
    "crm-template": {
        "company": "ООО «Ромашка»",
        "full_name": "Ivan Petrov",
        "email": "ivan@example.ru",
        "project_slug": "crm-sync",
    },
    "license-template": {
        "full_name": "Jürgen Groß",
        "email": "jg@example.de",
        "project_slug": "license-audit",
        "copyright": "© 2024 Groß & Söhne — all rights reserved",
    },
}

work = Path(tempfile.mkdtemp(prefix="scaffold-"))
config = work / "cookiecutterrc.yaml"
config.write_text(
    f"replay_dir: {work / 'replay'}\ncookiecutters_dir: {work / 'cookiecutters'}\n",
    encoding="utf-8",
)
output = work / "out"
output.mkdir()

template_dirs = []
for name, context in TEMPLATES.items():
    template = work / name
    (template / "{{cookiecutter.project_slug}}").mkdir(parents=True)
    (template / "cookiecutter.json").write_text(json.dumps(context, ensure_ascii=False, indent=2), encoding="utf-8")
    readme = "# {{ cookiecutter.project_slug }}\n\n" + "".join(
        f"- {key}: {{{{ cookiecutter.{key} }}}}\n" for key in context if key != "project_slug"
    )
    (template / "{{cookiecutter.project_slug}}" / "README.md").write_text(readme, encoding="utf-8")
    template_dirs.append(str(template))


def scaffold(template_dir: str, output_dir: str, config_file: str) -> str:
    return cookiecutter(template_dir, no_input=True, output_dir=output_dir, config_file=config_file)


last_error = None
for template_dir in template_dirs:
    try:
        project_dir = scaffold(template_dir, str(output), str(config))
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print(project_dir)
    print(ascii(Path(project_dir, "README.md").read_text(encoding="utf-8")))

sentry_sdk.flush()
if last_error is not None:
    raise last_error
