"""`prodloop doctor`: is this machine and repository ready for the loop? Each check says how to fix it.

Checked: git, the repository and its remote, the service's interpreter and pytest in it (the only
package a service needs: coverage and mutation tooling come from prodloop's side), the sandbox
(user and mount namespaces, network namespace), mutmut on prodloop's side, and the store.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prodloop.server.errors import CodePathError, GitError
from prodloop.server.settings import Settings, service_python
from prodloop.tools.engine.git_repo import GitRepo, git_version

Status = Literal["ok", "warn", "fail"]
_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")  # user:token@ in URLs git echoes back


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run_checks(settings: Settings) -> list[Check]:
    checks = [_git(), _repository(settings), _remote(settings), *_interpreter(settings), *_isolation(settings)]
    checks += [_mutmut(), _store(settings)]
    return checks


def _run_confined(settings: Settings, args: list[str]) -> tuple[int, str]:
    """Run the service's interpreter the way test runs do, in the sandbox: it may be a file of a stranger's branch."""
    from prodloop.server.errors import IsolationUnavailable
    from prodloop.tools.engine.runner import Runner
    from prodloop.tools.engine.sandbox import Limits

    scratch = Path(tempfile.mkdtemp(prefix="prodloop-doctor-"))
    try:
        run = Runner.from_settings(settings).script(args, cwd=scratch, limits=Limits(20, 25, 1024))
    except IsolationUnavailable as exc:
        return 126, str(exc)
    except OSError as exc:
        return 127, f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run.timed_out:
        return 127, "timed out after 20 s"
    return (run.exit_code if run.exit_code is not None else 127), run.output.strip()


def _git() -> Check:
    if shutil.which("git") is None:
        return Check("git", "fail", "git is not on PATH", "install git (e.g. apt-get install git)")
    try:
        return Check("git", "ok", git_version()[:100])
    except GitError as exc:
        return Check("git", "fail", str(exc)[:160], "check the git install")


def _repository(settings: Settings) -> Check:
    repo = settings.repo
    try:
        head = GitRepo(repo).head()
    except CodePathError as exc:
        return Check("repository", "fail", f"{repo} is not a git repository with a commit ({str(exc)[:120]})",
                     "pass --repo PATH of the service's checkout")  # fmt: skip
    return Check("repository", "ok", f"{repo} at {head[:12]}")


def _remote(settings: Settings) -> Check:
    try:
        repo = GitRepo(settings.repo)
        url = repo.remote_url(settings.git_remote)
    except CodePathError:
        url = None
    if url is None:
        return Check("remote", "warn", f"no remote named {settings.git_remote}: open_pr cannot push",
                     f"git remote add {settings.git_remote} URL, or set git_remote")  # fmt: skip
    shown = url.split("@")[-1]  # never print credentials embedded in a URL
    try:
        repo.remote_heads(settings.git_remote)
    except CodePathError as exc:
        said = _CREDENTIALS.sub(r"\1", str(exc)[-160:])
        return Check("remote", "warn", f"{settings.git_remote} ({shown}) did not answer: {said}",
                     "check the URL and credentials for pushing")  # fmt: skip
    return Check("remote", "ok", f"{settings.git_remote} answers ({shown})")


def _interpreter(settings: Settings) -> list[Check]:
    python = service_python(settings)
    code, text = _run_confined(settings, ["-c", "import sys; print(sys.version.split()[0])"])
    if code != 0:
        return [Check("service interpreter", "fail", f"{python} does not run ({text[-160:]})",
                      "create the service's venv (<repo>/.venv) or set service_python")]  # fmt: skip
    checks = [Check("service interpreter", "ok", f"{python} (Python {text})")]
    code, text = _run_confined(settings, ["-c", "import pytest; print(pytest.__version__)"])
    checks.append(
        Check("pytest", "ok", f"pytest {text} in the service's interpreter")
        if code == 0
        else Check(
            "pytest", "fail", "pytest is not importable by the service's interpreter", f"{python} -m pip install pytest"
        )
    )
    code, _ = _run_confined(settings, ["-c", "import coverage"])
    checks.append(
        Check("coverage", "ok", "coverage.py in the service's interpreter")
        if code == 0
        else Check("coverage", "ok", "no coverage.py in the service's interpreter: prodloop traces lines itself")
    )
    return checks


def _isolation(settings: Settings) -> list[Check]:
    from prodloop.tools.engine.sandbox import isolation_available

    gates = settings.gates
    if not isolation_available():
        status: Status = "fail" if gates.require_isolation else "warn"
        problem, fix = namespace_blocker()
        return [Check("sandbox", status, f"{problem}: no candidate code runs (nothing could mount the checkout "
                      "read-only or hide credentials)", f"{fix}; or, knowingly, set PRODLOOP_GATES__REQUIRE_ISOLATION="
                      "false (a repository cannot switch it off)")]  # fmt: skip
    checks = [Check("sandbox", "ok", "runs get a read-only checkout and hidden credentials")]
    if gates.isolate_network:
        ok = isolation_available(offline=True)
        checks.append(Check("network isolation", "ok" if ok else "fail",
                            "runs get their own network namespace with only loopback" if ok
                            else "a network namespace cannot be created here",
                            "" if ok else "set [tool.prodloop.gates] isolate_network = false, knowingly"))  # fmt: skip
    return checks


# Grants user namespaces to the sandbox launcher alone (AppArmor 4, Ubuntu 23.10 and later), instead of lifting
# kernel.apparmor_restrict_unprivileged_userns for every program on the machine. SECURITY.md and the GitHub Actions
# example install exactly this text.
APPARMOR_PROFILE = """abi <abi/4.0>,
include <tunables/global>

profile prodloop-unshare /usr/bin/unshare flags=(unconfined) {
  userns,
}
"""


def namespace_blocker(proc_sys: Path = Path("/proc/sys")) -> tuple[str, str]:
    """(what keeps unprivileged user namespaces off here, how to lift it the narrow way)."""

    def knob(name: str) -> str | None:
        try:
            return (proc_sys / name).read_text().strip()
        except OSError:
            return None

    if shutil.which("unshare") is None:
        return "the unshare command is missing", "install util-linux (apt-get install util-linux)"
    if knob("kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, as on "
            "Ubuntu 24.04 and GitHub-hosted runners)",
            "grant them to the sandbox launcher only: write prodloop's profile (SECURITY.md, 'AppArmor') to "
            "/etc/apparmor.d/prodloop-unshare and run `sudo apparmor_parser -r /etc/apparmor.d/prodloop-unshare`",
        )
    if knob("kernel/unprivileged_userns_clone") == "0":
        return "unprivileged user namespaces are off", "sudo sysctl -w kernel.unprivileged_userns_clone=1"
    if knob("user/max_user_namespaces") == "0":
        return "user namespaces are limited to 0", "sudo sysctl -w user.max_user_namespaces=15000"
    return (
        "unprivileged user and mount namespaces are not available (a container without them, or a seccomp policy)",
        "run prodloop where they are (a VM or CI runner), or give the container user namespaces",
    )


def _mutmut() -> Check:
    from prodloop.tools.judge.mutation import mutmut_problem

    problem = mutmut_problem()
    if problem is None:
        return Check("mutmut", "ok", "a version prodloop's mutant generator supports (in prodloop's environment)")
    detail, _, fix = problem.partition(": ")
    return Check("mutmut", "fail", detail, fix)


def _store(settings: Settings) -> Check:
    from prodloop.server.errors import ProdloopError
    from prodloop.server.store import Store

    try:
        store = Store(settings.database)
    except (ProdloopError, OSError) as exc:
        return Check("store", "fail", str(exc), "check the data dir's permissions, or that the database answers")
    detail = f"{store.dialect} {store.where} at schema version {store.schema_version}"
    store.close()
    return Check("store", "ok", detail)
