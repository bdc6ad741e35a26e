import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A CI "lint" worker: checks out repositories and runs `black --check` on each through
# black's click entry point. These repositories share code via symlinks that point outside
# the checkout (a common monorepo layout). A failing check is reported; the worker goes on.
import tempfile
from pathlib import Path

import black

workspace = Path(tempfile.mkdtemp(prefix="ci-"))
shared = workspace / "shared-libs"
(shared / "billing_common").mkdir(parents=True)
(shared / "billing_common" / "__init__.py").write_text('VERSION = "1.4.0"\n')
(shared / "proto" / "v2").mkdir(parents=True)
(shared / "proto" / "v2" / "__init__.py").write_text("")
(shared / "settings_ci.py").write_text("DEBUG = False\n")


def make_checkout(name: str, line_length: int, main_py: str, source: str, links: dict) -> str:
    # Each checkout holds exactly one .py file of its own plus symlinks leaving the checkout.
    checkout = workspace / name
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text(f"[tool.black]\nline-length = {line_length}\n")
    (checkout / main_py).parent.mkdir(parents=True, exist_ok=True)
    (checkout / main_py).write_text(source)
    for link, target in links.items():
        (checkout / link).parent.mkdir(parents=True, exist_ok=True)
        (checkout / link).symlink_to(target, target_is_directory=Path(target).is_dir())
    return str(checkout)


CHECKOUTS = [
    # a vendored package directory linked at the top level (absolute target)
    make_checkout(
        "billing-api",
        100,
        "app.py",
        'def health():\n    return {"status": "ok"}\n',
        {"billing_common": str(shared / "billing_common")},
    ),
    # a link nested one level down, relative target
    make_checkout(
        "invoice-worker",
        88,
        "worker.py",
        "def run(queue):\n    queue.drain()\n",
        {"src/proto": "../../shared-libs/proto/v2"},
    ),
    # a single module linked in from outside (a shared settings file)
    make_checkout(
        "reports",
        120,
        "reports/main.py",
        "import settings_ci\nprint(settings_ci.DEBUG)\n",
        {"settings_ci.py": str(shared / "settings_ci.py")},
    ),
    # the whole shared tree linked in under a differently named folder
    make_checkout(
        "admin-ui-backend",
        79,
        "server.py",
        "def serve(port=8080):\n    return port\n",
        {"third_party/shared": str(shared)},
    ),
]


def run_black_check(repo_dir: str) -> int:
    return black.main([repo_dir, "--check"], standalone_mode=False)


last_error = None
for repo_dir in CHECKOUTS:
    try:
        status = run_black_check(repo_dir)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        continue
    print(repo_dir, "black exit status:", status)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
