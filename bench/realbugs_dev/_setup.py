"""A bug's service, ready to crash: a clone of the mirror at the buggy commit with a bare `origin`, and a venv.

Venvs are built once per set of pins (and install mode, and interpreter) under a cache folder and copied
into the bug's work folder, so a rerun costs a copy; an editable install of the project is made afresh in
the copy, so that it points at this run's clone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from _bug import SERVICE_MODULE, Bug, is_test_path

_CACHE_FORMAT = 1
_GIT = ["git", "-c", "user.name=realbugs", "-c", "user.email=realbugs@localhost", "-c", "advice.detachedHead=false"]


class SetupError(Exception):
    """A step of the set-up failed; the message says which and how."""


def run(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> str:
    """Run a command; its stdout, or SetupError with the tail of its output."""
    try:
        done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"`{' '.join(args[:4])} ...` took over {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-600:]
        raise SetupError(f"`{' '.join(args[:5])} ...` failed (exit {done.returncode}): {tail}")
    return done.stdout


def git(repo: Path, *args: str, timeout: float = 300) -> str:
    return run([*_GIT, "-C", str(repo), *args], timeout=timeout)


def mirror_of(mirrors: Path, bug: Bug) -> Path:
    base = mirrors / bug.repo.replace("/", "+") / "repo"
    for candidate in (base, base / ".git"):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    raise SetupError(f"no mirror of {bug.repo} at {base} (fetch github:{bug.repo} first)")


def clone_service(mirrors: Path, bug: Bug, service: Path, origin: Path) -> None:
    """`service` at the buggy commit on branch main, its only remote a fresh bare `origin` holding main."""
    source = mirror_of(mirrors, bug)
    run([*_GIT, "clone", "--quiet", "--no-checkout", str(source), str(service)], timeout=900)
    for sha in (bug.buggy_commit, bug.fixed_commit):
        try:
            git(service, "cat-file", "-e", f"{sha}^{{commit}}")
        except SetupError as exc:
            raise SetupError(f"commit {sha[:12]} is not in the mirror of {bug.repo}") from exc
    git(service, "checkout", "--quiet", "-B", "main", bug.buggy_commit, timeout=600)
    git(service, "update-ref", "refs/realbugs/fixed", bug.fixed_commit)  # keeps the fix reachable
    git(service, "remote", "remove", "origin")  # drops the mirror's remote-tracking branches too
    run(["git", "init", "--quiet", "--bare", "-b", "main", str(origin)], timeout=60)
    git(service, "remote", "add", "origin", str(origin))
    git(service, "push", "--quiet", "origin", "main", timeout=900)
    git(service, "fetch", "--quiet", "origin", timeout=300)


def add_service_module(service: Path, bug: Bug, module_source: str, scratch: Path) -> Bug:
    """Module mode: the trigger's definitions committed as a module of the service on main (pushed) and on top of
    the fixed commit; the bug as it is deployed then (its buggy and fixed commits are those two)."""
    name = f"{SERVICE_MODULE}.py"
    identity = ("-c", "user.name=Realbugs Service", "-c", "user.email=service@realbugs.invalid")

    def commit_with_module(tree: Path) -> str:
        (tree / name).write_text(module_source, encoding="utf-8")
        git(tree, "add", "--", name)
        git(tree, *identity, "commit", "--quiet", "--no-verify", "-m", "service code calling the project", "--", name)
        return git(tree, "rev-parse", "HEAD").strip()

    deployed = commit_with_module(service)
    git(service, "push", "--quiet", "origin", "main", timeout=900)
    fixed_tree = add_worktree(service, bug.fixed_commit, scratch / "fixed-service")
    try:
        fixed = commit_with_module(fixed_tree)
    finally:
        remove_worktree(service, fixed_tree)
    git(service, "update-ref", "refs/realbugs/fixed-service", fixed)
    return replace(bug, buggy_commit=deployed, fixed_commit=fixed)


def fix_diff(service: Path, bug: Bug) -> tuple[str, list[str]]:
    """The fix without its tests: the diff buggy..fixed of every changed file that is not a test file."""
    changed = [p for p in git(service, "diff", "--name-only", "--no-renames", "-z", bug.buggy_commit, bug.fixed_commit)
               .split("\0") if p]  # fmt: skip
    kept = [p for p in changed if not is_test_path(p)]
    if not kept:
        return "", changed
    diff = git(
        service, "diff", "--no-color", "--no-ext-diff", "--no-renames", "--binary",
        bug.buggy_commit, bug.fixed_commit, "--", *(f":(literal){p}" for p in kept),
    )  # fmt: skip
    return diff, [p for p in changed if p not in kept]


def add_worktree(service: Path, commit: str, where: Path) -> Path:
    git(service, "worktree", "add", "--detach", "--quiet", str(where), commit, timeout=600)
    return where


def remove_worktree(service: Path, where: Path) -> None:
    subprocess.run([*_GIT, "-C", str(service), "worktree", "remove", "--force", str(where)], capture_output=True,
                   timeout=300)  # fmt: skip
    shutil.rmtree(where, ignore_errors=True)


# -- venvs ------------------------------------------------------------------------------------------------


def venv_spec(bug: Bug, python: str) -> dict[str, object]:
    version = run([python, "-c", "import sys; print(sys.version)"], timeout=60).strip()
    pins = [*bug.requirements, *bug.test_requirements]
    names = {p.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower() for p in pins}
    extra = [p for n, p in (("pytest", "pytest"), ("sentry-sdk", "sentry-sdk>=2,<3")) if n not in names]
    return {
        "format": _CACHE_FORMAT, "python": version, "requirements": pins + extra,
        "install_project": bug.install_project,
    }  # fmt: skip


def venv_key(spec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def build_venv(bug: Bug, python: str, cache: Path, dest: Path, service: Path) -> tuple[Path, bool]:
    """The bug's venv at `dest` (a copy of the cached one), with the project installed editable if asked.
    Returns its interpreter and whether the cache was hit."""
    spec = venv_spec(bug, python)
    key = venv_key(spec)
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / key
    hit = True
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two bugs with the same pins build it once
        if not (cached / "ready").exists():
            hit = False
            shutil.rmtree(cached, ignore_errors=True)
            _build(spec, python, cached / "venv")
            (cached / "spec.json").write_text(json.dumps(spec, indent=1))
            (cached / "ready").write_text("ok\n")
        shutil.copytree(cached / "venv", dest, symlinks=True)
    _relocate(cached / "venv", dest)
    interpreter = dest / "bin" / "python"
    if bug.install_project == "editable":
        _pip(interpreter, ["install", "--no-deps", "-e", str(service)], timeout=900)
    return interpreter, hit


def _build(spec: dict[str, object], python: str, where: Path) -> None:
    run([python, "-m", "venv", str(where)], timeout=300)
    interpreter = where / "bin" / "python"
    requirements = list(spec["requirements"])  # type: ignore[call-overload]
    _pip(interpreter, ["install", *requirements], timeout=1200)
    # The tools are added without disturbing the service's pins where they overlap.
    # Nothing of prodloop's own tooling (coverage, mutmut, libcst): the service's venv is the service's.


def _pip(interpreter: Path, args: list[str], *, timeout: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    run([str(interpreter), "-m", "pip", "--quiet", "--disable-pip-version-check", *args], timeout=timeout, env=env)


def _relocate(old: Path, new: Path) -> None:
    """Scripts in bin/ name their interpreter by absolute path: point them at the copy."""
    old_python, new_python = f"#!{old}/bin/", f"#!{new}/bin/"
    for script in (new / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.startswith(old_python):
            mode = script.stat().st_mode
            script.write_text(new_python + text[len(old_python) :], encoding="utf-8")
            script.chmod(mode)
    cfg = new / "pyvenv.cfg"
    if cfg.exists():
        cfg.write_text(cfg.read_text().replace(str(old), str(new)))
