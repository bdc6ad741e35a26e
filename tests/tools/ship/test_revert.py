"""propose_revert: a deploy's commits reverted on the base branch as it is now, with plumbing only, pushed to a real
bare remote; a PR labelled `revert` through a local GitHub API server, or its description beside the store."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.errors import InvalidArgument, RevertRefused
from prodloop.server.settings import Settings, load_settings
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship.revert import RevertProposal, propose_revert
from tests.fakes.github_api import FakeGitHub
from tests.repos import GitFixture, new_repo

TOKEN = "ghp_" + "r3v3rt" * 6
BODY = "## Blast radius\n3 issues, 41 users, 212 sessions affected; files shop/pricing.py.\n"
PRICING = "PRICES = {\n    'kiwi': 3,\n    'apple': 1,\n    'pear': 2,\n    'plum': 2,\n    'fig': 5,\n}\n"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def _tree(root: Path, rev: str) -> dict[str, str]:
    """Every file at `rev` and its content."""
    paths = _git(root, "ls-tree", "-r", "--name-only", rev).split()
    return {path: _git(root, "show", f"{rev}:{path}") for path in paths}


def _remote_branches(remote: Path) -> set[str]:
    return set(_git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


@pytest.fixture
def shop(tmp_path: Path) -> Callable[..., tuple[GitFixture, Path, Settings]]:
    """Factory: a service repository with a bare remote ('origin') holding main, and settings for it."""

    def factory(**settings: Any) -> tuple[GitFixture, Path, Settings]:
        fixture = new_repo(tmp_path / "shop")
        fixture.commit({"shop/pricing.py": PRICING, "README.md": "shop\n"}, "Initial shop")
        remote = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        fixture.git("remote", "add", "origin", str(remote))
        return fixture, remote, load_settings(repo=fixture.root, data_dir=tmp_path / "data", **settings)

    return factory


def _push_main(fixture: GitFixture) -> None:
    fixture.git("push", "-q", "origin", "main")


def _propose(fixture: GitFixture, settings: Settings, commits: list[str], **kw: Any) -> RevertProposal:
    args: dict[str, Any] = {"key": "andon-1", "title": "Revert deploy shop@1.2.0", "body": BODY, **kw}
    repo = GitRepo(fixture.root)
    try:
        return propose_revert(repo, settings, FixedClock(at=1_790_000_000.0), commits=commits, **args)
    finally:
        repo.close()


def test_a_deploys_two_commits_are_reverted_on_a_base_that_moved_on(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    fixture, remote, settings = shop()
    base = fixture.shas[-1]
    first = fixture.commit({"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 4")}, "Kiwi costs more")
    second = fixture.commit({"shop/discount.py": "RATE = 0.1\n"}, "Add discounts")
    later = fixture.commit(
        {"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 4").replace("'fig': 5", "'fig': 6"),
         "README.md": "shop, now with docs\n"}, "Figs cost more (after the deploy)"
    )  # fmt: skip
    _push_main(fixture)
    user_state = (_git(fixture.root, "status", "--porcelain"), _git(fixture.root, "branch", "--list"))

    proposal = _propose(fixture, settings, [first, second])

    assert proposal.mode == "local" and proposal.base == "main" and proposal.remote == "origin"
    assert proposal.branch == "prodloop/revert-andon-1"
    assert proposal.reverted == [second, first] and proposal.skipped == []
    assert proposal.labels == ["prodloop", "revert"]
    assert _git(remote, "rev-parse", proposal.branch).strip() == proposal.commit
    expected = _tree(fixture.root, later)
    expected["shop/pricing.py"] = PRICING.replace("'fig': 5", "'fig': 6")  # kiwi back to 3, the later fig kept
    del expected["shop/discount.py"]
    assert _tree(remote, proposal.commit) == expected
    assert _tree(remote, proposal.commit) != _tree(fixture.root, base)  # the later commit survives the revert
    log = _git(remote, "log", "--format=%P%x00%an%x00%B%x01", f"{later}..{proposal.commit}").split("\x01")[:-1]
    parents, authors, messages = zip(*(entry.strip("\n").split("\x00") for entry in log), strict=True)
    assert messages == (
        f'Revert "Kiwi costs more"\n\nThis reverts commit {first}.',
        f'Revert "Add discounts"\n\nThis reverts commit {second}.',
    )
    assert set(authors) == {"prodloop"} and parents[1] == later  # one commit each, on top of the moved base
    assert _git(remote, "log", "-1", "--format=%at %ct", proposal.commit).split() == ["1790000000"] * 2  # the clock
    assert (_git(fixture.root, "status", "--porcelain"), _git(fixture.root, "branch", "--list")) == user_state
    description = Path(proposal.description_path or "").read_text()
    assert description.startswith("# Revert deploy shop@1.2.0\n\n## Blast radius\n3 issues, 41 users")
    assert f"- `{second[:12]}` Add discounts\n- `{first[:12]}` Kiwi costs more" in description
    again = _propose(fixture, settings, [first, second])  # the name is taken on the remote: the next free one
    assert again.branch == "prodloop/revert-andon-1-2" and again.commit == proposal.commit


def test_commits_not_on_the_base_or_already_undone_are_skipped_and_said_so(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    fixture, remote, settings = shop()
    shipped = fixture.commit({"shop/discount.py": "RATE = 0.1\n"}, "Add discounts")
    fixed = fixture.commit({"shop/pricing.py": PRICING.replace("'fig': 5", "'fig': 6")}, "Figs cost more")
    fixture.git("revert", "--no-edit", fixed)  # a person already undid it
    fixture.git("checkout", "-q", "-b", "elsewhere")
    elsewhere = fixture.commit({"shop/other.py": "X = 1\n"}, "On a branch the base never merged")
    fixture.git("checkout", "-q", "main")
    _push_main(fixture)
    proposal = _propose(fixture, settings, [shipped, fixed, elsewhere])
    assert proposal.reverted == [shipped]
    assert [(s.commit, s.why) for s in proposal.skipped] == [
        (elsewhere, "not on the base branch"), (fixed, "already undone on the base branch")
    ]  # fmt: skip
    assert "shop/discount.py" not in _tree(remote, proposal.commit)
    with pytest.raises(RevertRefused, match=r"none of the commits can be reverted on main .*not on the base branch"):
        _propose(fixture, settings, [elsewhere], key="andon-2")
    assert "prodloop/revert-andon-2" not in _remote_branches(remote)


def test_a_merge_commit_is_reverted_against_its_first_parent(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    fixture, remote, settings = shop()
    main_before = fixture.commit({"README.md": "shop\nmain moved\n"}, "Main moves on")
    fixture.git("checkout", "-q", "-b", "feature", fixture.shas[0])
    fixture.commit({"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 4")}, "Feature: kiwi")
    fixture.commit({"shop/feature.py": "ON = True\n"}, "Feature: flag")
    fixture.git("checkout", "-q", "main")
    fixture.git(
        "-c", "user.name=Ada", "-c", "user.email=a@x", "merge", "-q", "--no-ff", "-m", "Merge feature", "feature"
    )
    merge = fixture.git("rev-parse", "HEAD")
    after = fixture.commit({"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 4") + "# tax later\n"}, "Tax")
    _push_main(fixture)
    proposal = _propose(fixture, settings, [merge])
    assert proposal.reverted == [merge]
    expected = _tree(fixture.root, after)
    expected["shop/pricing.py"] = PRICING + "# tax later\n"
    del expected["shop/feature.py"]
    assert _tree(remote, proposal.commit) == expected
    assert expected["README.md"] == "shop\nmain moved\n"  # what the first parent had stays
    message = _git(remote, "log", "-1", "--format=%B", proposal.commit)
    assert message.startswith(f'Revert "Merge feature"\n\nThis reverts commit {merge}, reversing\n')
    assert f"changes made to {main_before}." in message


def test_a_revert_that_conflicts_with_the_base_is_refused_for_a_person_and_nothing_is_pushed(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    fixture, remote, settings = shop()
    deployed = fixture.commit({"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 4")}, "Kiwi costs more")
    fixture.commit({"shop/pricing.py": PRICING.replace("'kiwi': 3", "'kiwi': 7")}, "Kiwi costs even more")
    _push_main(fixture)
    with pytest.raises(RevertRefused) as caught:
        _propose(fixture, settings, [deployed])
    said = str(caught.value)
    assert f"reverting commit {deployed} conflicts with main" in said and "shop/pricing.py" in said
    assert "the revert needs a person" in said and "nothing was pushed" in said
    assert _remote_branches(remote) == {"main"}
    assert not (settings.resolved_data_dir / "pull-requests").exists()


def test_github_mode_opens_a_pull_request_labelled_revert(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    with FakeGitHub(token=TOKEN) as fake:
        fixture, remote, settings = shop(github_token=TOKEN, github_base_url=fake.base_url, github_repo="acme/shop")
        deployed = fixture.commit({"shop/discount.py": "RATE = 0.1\n"}, "Add discounts")
        _push_main(fixture)
        proposal = _propose(fixture, settings, [deployed])
        assert (proposal.mode, proposal.number, proposal.description_path) == ("github", 1, None)
        assert proposal.url == "https://github.example/acme/shop/pull/1"
        pull = fake.pulls[1]
        assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"]) == (
            "prodloop/revert-andon-1", "main", "Revert deploy shop@1.2.0"
        )  # fmt: skip
        assert [label["name"] for label in pull["labels"]] == ["prodloop", "revert"]
        assert pull["body"].startswith(BODY) and f"`{deployed[:12]}` Add discounts" in pull["body"]
        assert _git(remote, "rev-parse", "prodloop/revert-andon-1").strip() == proposal.commit


def test_a_secret_in_the_title_body_or_a_reverted_subject_is_refused_before_the_push(
    shop: Callable[..., tuple[GitFixture, Path, Settings]],
) -> None:
    fixture, remote, settings = shop()
    key = "AKIA" + "QWERTYUIOPASDFGH"
    deployed = fixture.commit({"shop/discount.py": "RATE = 0.1\n"}, "Add discounts")
    leaky = fixture.commit({"shop/aws.py": "REGION = 'eu'\n"}, f"Use key {key}")
    _push_main(fixture)
    for what, commits, extra in (
        ("the PR title", [deployed], {"title": f"Revert {key}"}),
        ("the PR description", [deployed], {"body": f"see {key}"}),
        (f"the revert of {leaky[:12]}", [deployed, leaky], {}),
    ):
        with pytest.raises(RevertRefused, match=f"{what} carries aws_access_key") as caught:
            _propose(fixture, settings, commits, **extra)
        assert key not in str(caught.value)
    assert _remote_branches(remote) == {"main"}


@pytest.mark.parametrize(
    ("key", "branch"),
    [("3-shop@1.2.0", "prodloop/revert-3-shop-1.2.0"), ("-delete", "prodloop/revert-delete"),
     ("a..b", "prodloop/revert-a-b"), ("x.lock", "prodloop/revert-x"), ("a/b c", "prodloop/revert-a-b-c"),
     ("é@{u}", "prodloop/revert-u")],
)  # fmt: skip
def test_a_key_becomes_a_branch_name_git_accepts(
    shop: Callable[..., tuple[GitFixture, Path, Settings]], key: str, branch: str
) -> None:
    fixture, remote, settings = shop()
    deployed = fixture.commit({"shop/discount.py": "RATE = 0.1\n"}, "Add discounts")
    _push_main(fixture)
    assert _propose(fixture, settings, [deployed], key=key).branch == branch
    assert _remote_branches(remote) == {"main", branch}


@pytest.mark.parametrize("key", ["", "@@", "..", "-."])
def test_a_key_with_nothing_to_name_a_branch_is_refused(
    shop: Callable[..., tuple[GitFixture, Path, Settings]], key: str
) -> None:
    fixture, remote, settings = shop()
    with pytest.raises(InvalidArgument, match="cannot name a branch"):
        _propose(fixture, settings, [fixture.shas[0]], key=key)
    assert _remote_branches(remote) == set()
