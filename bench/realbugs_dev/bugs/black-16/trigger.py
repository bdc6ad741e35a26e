import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A CI "lint" worker: checks out a repository and runs `black --check` on it through
# black's click entry point. The repository vendors a shared package via a symlink that
# points outside the checkout (a common monorepo layout).
import tempfile
from pathlib import Path

import black

workspace = Path(tempfile.mkdtemp(prefix="ci-"))
shared = workspace / "shared-libs" / "billing_common"
shared.mkdir(parents=True)
(shared / "__init__.py").write_text('VERSION = "1.4.0"\n')

checkout = workspace / "checkout"
checkout.mkdir()
(checkout / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
(checkout / "app.py").write_text('def health():\n    return {"status": "ok"}\n')
(checkout / "billing_common").symlink_to(shared, target_is_directory=True)


def run_black_check(repo_dir: str) -> int:
    return black.main([repo_dir, "--check"], standalone_mode=False)


status = run_black_check(str(checkout))
print("black exit status:", status)
