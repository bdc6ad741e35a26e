import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A project-scaffolding service running in a minimal container whose locale is plain
# "C" (ASCII). It renders a team's template whose cookiecutter.json has non-ASCII defaults.
import json
import locale
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

locale.setlocale(locale.LC_CTYPE, "C")  # what a container without LANG/LC_* gives a service

TEMPLATE_CONTEXT = {
    "full_name": "Zoë Lefèvre",
    "email": "zoe@example.com",
    "project_slug": "invoice-service",
}

work = Path(tempfile.mkdtemp(prefix="scaffold-"))
template = work / "service-template"
(template / "{{cookiecutter.project_slug}}").mkdir(parents=True)
(template / "cookiecutter.json").write_text(
    json.dumps(TEMPLATE_CONTEXT, ensure_ascii=False, indent=2), encoding="utf-8"
)
(template / "{{cookiecutter.project_slug}}" / "README.md").write_text(
    "# {{ cookiecutter.project_slug }}\n\nMaintainer: {{ cookiecutter.full_name }} <{{ cookiecutter.email }}>\n",
    encoding="utf-8",
)
config = work / "cookiecutterrc.yaml"
config.write_text(
    f"replay_dir: {work / 'replay'}\ncookiecutters_dir: {work / 'cookiecutters'}\n",
    encoding="utf-8",
)
output = work / "out"
output.mkdir()


def scaffold(template_dir: str, output_dir: str, config_file: str) -> str:
    return cookiecutter(template_dir, no_input=True, output_dir=output_dir, config_file=config_file)


project_dir = scaffold(str(template), str(output), str(config))
print(project_dir)
print(ascii(Path(project_dir, "README.md").read_text(encoding="utf-8")))
