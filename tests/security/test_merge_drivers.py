"""A merge driver the repository's config defines, named by a `.gitattributes` anyone may commit, never runs on the
host when prodloop merges (a revert of a deploy): the file's merge is a conflict for a person instead."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prodloop.tools.engine.git_repo import GitRepo


def test_a_merge_driver_in_the_repositorys_config_never_runs_and_its_file_is_a_conflict(tmp_path: Path) -> None:
    root, marker = tmp_path / "r", tmp_path / "driver-ran"
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    ident = ["-c", "user.name=t", "-c", "user.email=t@x"]

    def commit(text: str, message: str) -> str:
        (root / "app.py").write_text(text)
        subprocess.run(["git", "-C", str(root), *ident, "add", "."], check=True)
        subprocess.run(["git", "-C", str(root), *ident, "commit", "-q", "-m", message], check=True)
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    (root / ".gitattributes").write_text("*.py merge=team=x\n")  # from the branch: anyone may write it
    commit("1\n2\n3\n4\n5\n6\n", "base")
    deployed = commit("one\n2\n3\n4\n5\n6\n", "deploy")
    commit("one\n2\n3\n4\n5\nsix\n", "later")  # the revert needs a content merge of app.py
    # A driver that would succeed quietly (git would take its result as the merge) if it ever ran.
    subprocess.run(["git", "-C", str(root), "config", "merge.team=x.driver", f"touch {marker}"], check=True)
    repo = GitRepo(root)
    try:
        built = repo.build_revert(repo.head(), [deployed])
    finally:
        repo.close()
    assert not marker.exists()
    assert built.commit is None and built.conflict == (deployed, ("app.py",))
