"""PyGithub calls for the loop's closing stage, against a real local HTTP server speaking GitHub's API: a PR's merge
state, the PRs that introduced a commit, a comment on a PR; GitHub's refusals and failures as clear GitHubErrors
that never carry the token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from prodloop.server.errors import GitHubError, InvalidArgument
from prodloop.server.settings import Settings, load_settings
from prodloop.tools.ship.github import PullState, comment_on_pull, pull_request_state, pulls_for_commit
from tests.fakes.github_api import FakeGitHub

TOKEN = "ghp_" + "s3cr3t" * 6
MERGE_SHA = "a" * 39 + "1"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN) as running:
        yield running


def _settings(fake: FakeGitHub, tmp_path: Path, token: str = TOKEN) -> Settings:
    return load_settings(repo=tmp_path, github_token=token, github_base_url=fake.base_url, github_repo="acme/shop")


def _token_never_sent_back(fake: FakeGitHub, error: GitHubError) -> None:
    assert TOKEN not in str(error)
    assert TOKEN not in json.dumps([r.body for r in fake.requests])


def test_an_open_pull_request_is_not_merged_and_has_no_merge_commit(fake: FakeGitHub, tmp_path: Path) -> None:
    number = fake.add_pull("prodloop/1-keyerror")
    fake.pulls[number]["merge_commit_sha"] = "b" * 40  # GitHub's test merge of an open PR: never reported
    state = pull_request_state(_settings(fake, tmp_path), tmp_path, number)
    assert state == PullState(merged=False, merge_commit_sha=None, state="open", merged_at=None)


def test_a_merged_pull_request_reports_its_merge_commit_and_time(fake: FakeGitHub, tmp_path: Path) -> None:
    number = fake.add_pull("prodloop/1-keyerror")
    fake.merge_pull(number, MERGE_SHA, merged_at="2026-05-01T12:00:00Z")
    state = pull_request_state(_settings(fake, tmp_path), tmp_path, number)
    expected_at = datetime.fromisoformat("2026-05-01T12:00:00+00:00").timestamp()
    assert state == PullState(merged=True, merge_commit_sha=MERGE_SHA, state="closed", merged_at=expected_at)
    assert [r.path for r in fake.requests] == [f"/api/v3/repos/acme/shop/pulls/{number}"]  # one request


def test_an_unknown_pull_request_is_a_404_github_error(fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(GitHubError, match=r"pull request 42 of acme/shop failed \(HTTP 404\)") as caught:
        pull_request_state(_settings(fake, tmp_path), tmp_path, 42)
    assert caught.value.status == 404
    _token_never_sent_back(fake, caught.value)


def test_a_github_server_error_is_a_500_github_error_after_the_retries(fake: FakeGitHub, tmp_path: Path) -> None:
    number = fake.add_pull("prodloop/1-keyerror")
    fake.fail(f"/repos/acme/shop/pulls/{number}", 500)
    with pytest.raises(GitHubError, match=r"HTTP 500") as caught:
        pull_request_state(_settings(fake, tmp_path), tmp_path, number)
    assert caught.value.status == 500
    assert sum(r.path.endswith(f"/pulls/{number}") for r in fake.requests) > 1  # retried before giving up
    _token_never_sent_back(fake, caught.value)


def test_a_rejected_token_is_a_401_github_error_without_the_token(fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(GitHubError, match="check github_token") as caught:
        pull_request_state(_settings(fake, tmp_path, token="ghp_" + "wrong" * 8), tmp_path, 1)
    assert caught.value.status == 401 and "wrong" not in str(caught.value)


def test_the_pull_requests_that_introduced_a_commit_are_listed(fake: FakeGitHub, tmp_path: Path) -> None:
    first, _other, second = fake.add_pull("a"), fake.add_pull("b"), fake.add_pull("c")
    fake.link_commit(MERGE_SHA, second, first)
    fake.link_commit("c" * 40)
    settings = _settings(fake, tmp_path)
    assert pulls_for_commit(settings, tmp_path, MERGE_SHA.upper()) == [first, second]
    assert pulls_for_commit(settings, tmp_path, "c" * 40) == []
    assert fake.requests[0].path == f"/api/v3/repos/acme/shop/commits/{MERGE_SHA}/pulls"


def test_a_commit_github_does_not_hold_is_a_github_error(fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(GitHubError, match=r"HTTP 422\): No commit found for SHA") as caught:
        pulls_for_commit(_settings(fake, tmp_path), tmp_path, "d" * 40)
    _token_never_sent_back(fake, caught.value)


def test_a_commit_that_is_not_a_sha_is_refused_before_any_request(fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a commit sha"):
        pulls_for_commit(_settings(fake, tmp_path), tmp_path, "main/../../issues")
    assert fake.requests == []


def test_a_comment_on_a_pull_request_is_posted_and_its_url_returned(fake: FakeGitHub, tmp_path: Path) -> None:
    number = fake.add_pull("feature")
    body = "This error started 12 minutes after deploy shop@1.2.0."
    url = comment_on_pull(_settings(fake, tmp_path), tmp_path, number, body)
    assert url.startswith(f"https://github.example/acme/shop/pull/{number}#issuecomment-")
    assert fake.comments == {number: [body]}
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", f"/api/v3/repos/acme/shop/issues/{number}/comments")
    ]


def test_a_comment_github_refuses_is_a_github_error_and_nothing_is_recorded(fake: FakeGitHub, tmp_path: Path) -> None:
    settings = _settings(fake, tmp_path)
    with pytest.raises(GitHubError, match=r"comment on pull request 7 of acme/shop failed \(HTTP 404\)"):
        comment_on_pull(settings, tmp_path, 7, "hello")
    number = fake.add_pull("feature")
    fake.fail(f"/repos/acme/shop/issues/{number}/comments", 403, "Resource not accessible by integration")
    with pytest.raises(GitHubError, match=r"Resource not accessible by integration.*lacks permission") as caught:
        comment_on_pull(settings, tmp_path, number, "hello")
    assert fake.comments == {}
    _token_never_sent_back(fake, caught.value)
