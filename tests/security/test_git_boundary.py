"""Host git never trusts what a run could touch: a test that rewrites its worktree's `.git` runs nothing on the host."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.tools.engine.git_repo import git_command, git_env
from prodloop.tools.judge.candidate import run_candidate_for_issue
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService


def _hostile_test(marker: Path) -> str:
    """A test that builds a git directory whose config and hooks run a command, and points its worktree at it."""
    command = f"touch {marker}"
    return f"""
import os
import pathlib
import subprocess

from shop.pricing import cart_total


def test_unknown_sku_costs_nothing(tmp_path):
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    (evil / "config").write_text(
        "[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n"
        "\\tfsmonitor = {command}\\n\\tsshCommand = {command}\\n\\tpager = {command}\\n"
    )
    for hook in ("pre-push", "post-checkout", "reference-transaction", "pre-commit"):
        script = evil / "hooks" / hook
        script.write_text("#!/bin/sh\\n{command}\\n")
        script.chmod(0o755)
    pathlib.Path(".git").write_text(f"gitdir: {{evil}}\\n")
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""


def test_a_rewritten_worktree_pointer_never_runs_a_command_on_the_host(
    service: SampleService, service_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    marker = tmp_path / "host-ran-this"
    # Run what the hermetic gate refuses anyway: this is the test of the layer behind it.
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=_hostile_test(marker), fix_diff=FIX_UNKNOWN_SKU
    )
    assert "subprocess" in next(g.evidence for g in result.gates if g.name == "hermetic")
    assert not result.passed
    assert not marker.exists(), "a git command on the host read the test's git directory"
    worktrees = subprocess.run(
        git_command("-C", str(service.root), "worktree", "list", "--porcelain"),
        capture_output=True, text=True, env=git_env(), check=True,
    ).stdout  # fmt: skip
    assert worktrees.count("worktree ") == 1  # every run's tree is gone, the repository forgot it


def test_host_git_runs_without_hooks_or_fsmonitor_even_when_the_repository_configures_them(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", f"touch {marker}"], check=True)
    (repo / "a.txt").write_text("a\n")
    for args in (("add", "a.txt"), ("status", "--porcelain"), ("-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                                              "-qm", "x")):  # fmt: skip
        subprocess.run(git_command("-C", str(repo), *args), check=True, capture_output=True, env=git_env())
    assert not marker.exists()


def test_doctor_runs_the_repositorys_interpreter_only_inside_the_sandbox(tmp_path: Path) -> None:
    from prodloop.server.doctor import run_checks
    from prodloop.server.settings import load_settings
    from prodloop.tools.engine.sandbox import isolation_available

    service = SampleService(tmp_path / "shop")
    marker = service.root / "ran-on-the-host"
    planted = service.root / ".venv" / "bin" / "python"  # what a stranger's branch could carry
    planted.parent.mkdir(parents=True)
    planted.write_text(f"#!/bin/sh\ntouch {marker}\necho 3.99\n")
    planted.chmod(0o755)
    checks = run_checks(load_settings(repo=service.root, data_dir=tmp_path / "data"))
    assert not marker.exists(), "doctor executed a repository file on the host"
    interpreter = next(c for c in checks if c.name == "service interpreter")
    assert interpreter.status == "ok" or not isolation_available()  # it ran, confined: the checkout is read-only


def test_no_module_but_git_repo_runs_git_or_opens_a_repository() -> None:
    """GitRepo is the one boundary: every host git command gets its hardening and name checks there."""
    import ast

    import prodloop.server
    import prodloop.tools

    roots = [Path(prodloop.server.__file__).parent, Path(prodloop.tools.__file__).parent]
    offenders = []
    for path in sorted(p for root in roots for p in root.rglob("*.py")):
        if path.name == "git_repo.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imports_git = isinstance(node, ast.Import) and any(a.name == "git" for a in node.names)
            imports_git |= isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "git"
            runs_git = isinstance(node, ast.List) and node.elts and ast.unparse(node.elts[0]) in ("'git'", '"git"')
            calls_git = isinstance(node, ast.Call) and ast.unparse(node.func).endswith("git_command")
            if imports_git or runs_git or calls_git:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_names_that_git_could_read_as_options_are_refused_before_git_runs(tmp_path: Path) -> None:
    from prodloop.server.errors import GitError
    from prodloop.tools.engine.git_repo import GitRepo

    marker = tmp_path / "ran"
    repo_root = tmp_path / "r"
    repo_root.mkdir()
    subprocess.run(git_command("-C", str(repo_root), "init", "-q"), check=True, env=git_env())
    repo = GitRepo(repo_root)
    evil = f"--upload-pack=touch {marker}"
    for attempt in (
        lambda: repo.remote_heads(evil),
        lambda: repo.fetch(evil, "main"),
        lambda: repo.fetch("origin", "-q"),
        lambda: repo.push("origin", "HEAD", "--force"),
        lambda: repo.remote_url("-v"),
        lambda: repo.default_branch(evil),
        lambda: repo.working_tree_diff("--output=/tmp/x", "t.py"),
    ):
        with pytest.raises(GitError, match="is not usable as a git"):
            attempt()
    assert not marker.exists()


def test_the_pr_commit_is_built_by_plumbing_from_base_fix_test_and_ledger_alone(tmp_path: Path) -> None:
    from prodloop.server.errors import GitError
    from prodloop.tools.engine.git_repo import GitRepo

    root = tmp_path / "r"
    root.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            git_command("-C", str(root), "-c", "user.name=t", "-c", "user.email=t@x", *args),
            check=True, capture_output=True, text=True, env=git_env(),
        ).stdout  # fmt: skip

    git("init", "-q", "-b", "main")
    (root / "app.py").write_text("def f():\n    return 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "ledger.jsonl").write_text('{"old": 1}\n')
    git("add", ".")
    git("commit", "-q", "-m", "base")
    base = git("rev-parse", "HEAD").strip()
    (root / "app.py").write_text("def f():\n    return 2\n")
    diff = git("diff")
    git("checkout", "-q", "--", "app.py")
    (root / "untracked.txt").write_text("the user's own work in progress\n")
    repo = GitRepo(root)
    commit = repo.build_commit(
        base, diff, {"tests/test_f.py": "from app import f\n\ndef test_f():\n    assert f() == 2\n"},
        {"tests/ledger.jsonl": '{"new": 2}\n'}, "prodloop: fix f",
    )  # fmt: skip
    assert git("rev-parse", f"{commit}^").strip() == base
    assert repo.changed_between(base, commit) == {"app.py", "tests/test_f.py", "tests/ledger.jsonl"}
    assert repo.read(commit, "app.py") == "def f():\n    return 2\n"
    assert repo.read(commit, "tests/ledger.jsonl") == '{"old": 1}\n{"new": 2}\n'
    # The user's checkout, index and branch are untouched: no working tree took part.
    assert git("rev-parse", "HEAD").strip() == base
    assert git("status", "--porcelain") == "?? untracked.txt\n"
    with pytest.raises(GitError, match="does not apply"):
        repo.build_commit(base, diff.replace("return 1", "return 7"), {}, {}, "bad")
    # What a fix changes is read by applying it: a rename's two names, a diff without its last newline.
    git("mv", "app.py", "core.py")
    renamed = git("diff", "--cached", "-M", base)
    git("reset", "-q", "--hard", base)
    assert repo.diff_paths(base, renamed) == {"app.py", "core.py"}
    assert repo.diff_paths(base, diff.rstrip("\n")) == {"app.py"}


def test_host_git_reads_the_users_global_config_only_to_talk_to_a_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worktrees, plumbing and blame run without the user's global config (a filter it defines, which a
    stranger's `.gitattributes` names, runs nothing on the host); push, fetch and ls-remote keep it, for
    credential helpers and URL rewrites."""
    from prodloop.tools.engine import git_repo
    from prodloop.tools.engine.git_repo import GitRepo

    root, remote, home = tmp_path / "r", tmp_path / "real-remote.git", tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "filter-ran"
    (home / ".gitconfig").write_text(
        f'[filter "team"]\n\tsmudge = "touch {marker}; cat"\n\tclean = "touch {marker}; cat"\n'
        f'[url "{remote}"]\n\tinsteadOf = team:shop\n'
    )
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "app.py").write_text("def f():\n    return 1\n")
    (root / ".gitattributes").write_text("*.py filter=team\n")  # from the branch: anyone may write it
    ident = ["-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run(["git", "-C", str(root), *ident, "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), *ident, "commit", "-q", "-m", "base"], check=True)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", "team:shop"], check=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(git_repo, "_SAFE", [])
    repo = GitRepo(root)
    base = repo.head()
    repo.add_worktree(tmp_path / "tree", base)
    assert (tmp_path / "tree" / "app.py").is_file()
    repo.working_tree_diff(base, "tests/")
    commit = repo.build_commit(base, "", {"tests/test_f.py": "def test_f():\n    assert True\n"}, {}, "prodloop: t")
    assert not marker.exists()  # the user's global filter never ran
    repo.push("origin", commit, "prodloop/1-t")  # the URL rewrite lives only in the global config
    assert repo.remote_heads("origin") == {"prodloop/1-t": commit}


def test_a_filter_in_the_repositorys_own_config_never_runs_on_the_host(tmp_path: Path) -> None:
    """A smudge or clean command in `.git/config`, named by a `.gitattributes` in the branch, runs nothing when
    prodloop checks a commit out for a run, diffs the working tree or applies a fix (the filter's name may hold
    `=`): every git command of a repository runs with its filters off."""
    from prodloop.tools.engine.git_repo import GitRepo

    root = tmp_path / "r"
    marker = tmp_path / "filter-ran"
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "app.py").write_text("x = 1\n")
    (root / ".gitattributes").write_text("*.py filter=a=b\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run(["git", "-C", str(root), *ident, "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), *ident, "commit", "-q", "-m", "base"], check=True)
    for key in ("smudge", "clean"):
        subprocess.run(["git", "-C", str(root), "config", f"filter.a=b.{key}", f"touch {marker}; cat"], check=True)
    (root / "app.py").write_text("x = 2\n")
    repo = GitRepo(root)
    repo.add_worktree(tmp_path / "tree", repo.head())
    assert (tmp_path / "tree" / "app.py").read_text() == "x = 1\n"
    diff = repo.working_tree_diff(repo.head(), "tests/x.py")
    assert "x = 2" in diff
    patch = tmp_path / "fix.diff"
    patch.write_text(diff)
    repo.apply(tmp_path / "tree", patch)  # git apply reads and writes the files through the filters too
    assert (tmp_path / "tree" / "app.py").read_text() == "x = 2\n"
    assert not marker.exists()
