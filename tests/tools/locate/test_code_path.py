"""map_code_path against real repositories, with events from a real sentry-sdk running their code."""

from __future__ import annotations

import copy as copy_module
import itertools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import CodePathError
from prodloop.server.ingest.importer import import_events
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.code_path import CodePath, map_code_path
from prodloop.tools.observe.deploys import record_deploy
from tests.repos import GitFixture, new_repo

PRICING_V1 = """
    import functools

    PRICES = {"apple": 30, "pear": 45}


    def log_calls(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)

        return wrapper


    class Cart:
        def __init__(self, items):
            self.items = items

        @log_calls
        def total(self):
            return sum(map(lambda item: line_total(item), self.items))


    def line_total(item):
        return PRICES[item["sku"]] * item["qty"]
"""

PRICING_V2 = PRICING_V1.replace(
    'return PRICES[item["sku"]] * item["qty"]', 'return PRICES[item["sku"]] * item["qty"] - item["discount"]'
)

APP = """
    from shop.pricing import Cart


    def handle(order):
        def inner():
            return Cart(order["items"]).total()

        return inner()


    def handle_wrapped(order):
        try:
            return handle(order)
        except KeyError as exc:
            raise ValueError("cannot price order " + order["id"]) from exc
"""

TESTS = """
    from shop.pricing import line_total


    def test_line_total():
        assert line_total({"sku": "apple", "qty": 2, "discount": 0}) == 60


    def test_unrelated():
        assert True
"""

CALL = """
    import extlib
    from shop.app import {fn}
    extlib.apply({fn}, {{"id": "o-1", "items": [{{"sku": "apple", "qty": 2}}]}})
"""


class Shop:
    def __init__(self, repo: GitFixture, site: Path) -> None:
        self.repo = repo
        self.site = site
        self._runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self.c1 = repo.commit(
            {"shop/__init__.py": "", "shop/pricing.py": PRICING_V1, "shop/app.py": APP, "tests/test_pricing.py": TESTS},
            "Initial shop",
            author="Ada Dev",
        )
        repo.tag("v1.0.0")
        self.c2 = repo.commit({"shop/pricing.py": PRICING_V2}, "Subtract discounts", author="Bob Coder")
        self.c3 = repo.commit({"README.md": "# shop\n"}, "Docs", author="Cy Writer")
        self.c3b = repo.commit(
            {"shop/app.py": textwrap.dedent(APP) + "\n\ndef unused():\n    return 1\n"},
            "Add helper",
            author="Cy Writer",
        )
        repo.tag("v1.1.0")
        self.c4 = repo.commit(
            {"shop/pricing.py": '"""Pricing."""\n\n\n' + textwrap.dedent(PRICING_V2).lstrip()},
            "Docstring on top",
            author="Dee Later",
        )

    def events(self, *, release: str, fn: str = "handle", copy: int = 0) -> list[dict[str, Any]]:
        """Events of one real run per (release, fn, copy); runs are shared between tests (a subprocess each)."""
        key = (release, fn, copy)
        if key not in self._runs:
            self._runs[key] = self.repo.capture(
                CALL.format(fn=fn), release=release, cwd_rev=self.c3b, pythonpath=(self.site,)
            )
            self.repo.checkout("main")
        return copy_module.deepcopy(self._runs[key])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    base = tmp_path_factory.mktemp("shop")
    site = base / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "extlib").mkdir(parents=True)
    (site / "extlib" / "__init__.py").write_text("def apply(fn, arg):\n    return fn(arg)\n")
    return Shop(new_repo(base / "repo"), site)


@pytest.fixture
def mapped(make_ctx: Callable[..., AppContext], shop: Shop) -> Callable[..., tuple[AppContext, CodePath]]:
    names = itertools.count()

    def run(events: list[dict[str, Any]], **kwargs: Any) -> tuple[AppContext, CodePath]:
        ctx = make_ctx(name=f"svc{next(names)}")
        project = ctx.store.create_project("svc")
        assert import_events(ctx, project, [(str(i), e) for i, e in enumerate(events)], source="test").stored
        return ctx, map_code_path(ctx.store, GitRepo(shop.repo.root), event_id=events[-1]["event_id"], **kwargs)

    return run


def _path(result: CodePath, exc: int = -1) -> list[tuple[str | None, str | None, str | None]]:
    return [(f.location.repo_path, f.qualname, f.location.confidence) for f in result.exceptions[exc].path]


def test_tagged_release_maps_every_frame_exactly_with_methods_decorators_lambdas_and_nesting(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    _, result = mapped(shop.events(release="v1.1.0"))
    assert (result.release.source, result.release.commit) == ("tag", shop.c3b)
    assert _path(result) == [
        ("shop/app.py", "handle", "exact"),
        ("shop/app.py", "handle.inner", "exact"),
        ("shop/pricing.py", "log_calls.wrapper", "exact"),
        ("shop/pricing.py", "Cart.total", "exact"),
        ("shop/pricing.py", "Cart.total", "exact"),  # the lambda belongs to its enclosing def
        ("shop/pricing.py", "line_total", "exact"),
    ]
    culprit = result.culprit
    assert culprit is not None and culprit.is_culprit
    assert culprit.qualname == "line_total"
    assert culprit.executing_line is not None and 'item["discount"]' in culprit.executing_line
    assert culprit.extent is not None
    assert culprit.extent.signature == "def line_total(item)"
    assert "PRICES[item" in culprit.extent.excerpt
    total = result.exceptions[-1].path[3]
    assert total.extent is not None and total.extent.decorators == ["log_calls"]
    assert total.extent.start == total.extent.def_line - 1  # the decorator line is part of the span


def test_library_and_stdlib_frames_are_kept_but_marked_outside(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    _, result = mapped(shop.events(release="v1.1.0"))
    outside = {f.function: f.location.reason or "" for f in result.exceptions[-1].outside}
    assert outside["apply"].startswith("library frame")
    assert "site-packages" in outside["apply"]
    assert "no file at commit" in outside["<module>"]


def test_blame_and_suspects_rank_the_commit_that_changed_the_crash_line_first(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    _, result = mapped(shop.events(release="v1.1.0"))
    attribution = result.attribution
    assert attribution is not None
    assert attribution.range_from == shop.c1
    assert "previous tag v1.0.0" in attribution.range_note
    assert attribution.crash_line is not None
    assert (attribution.crash_line.commit, attribution.crash_line.author) == (shop.c2, "Bob Coder")
    assert attribution.crash_line.summary == "Subtract discounts"
    assert {b.author for b in attribution.culprit_function} == {"Ada Dev", "Bob Coder"}
    ranked = [(s.commit, s.reason) for s in attribution.suspects]
    assert ranked == [(shop.c2, "crash_line"), (shop.c3b, "file")]  # the docs commit touched no file on the path


def test_release_as_full_sha_short_sha_and_package_version(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    for release, source in [(shop.c3b, "sha"), (shop.c3b[:10], "sha"), ("shop@1.1.0", "package-version")]:
        _, result = mapped(shop.events(release=release))
        assert (result.release.source, result.release.commit) == (source, shop.c3b), release
        assert result.culprit is not None and result.culprit.location.confidence == "exact"


def test_unknown_release_falls_back_to_head_with_drifted_lines_and_low_confidence(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    _, result = mapped(shop.events(release="shop@9.9.9"))
    assert (result.release.source, result.release.confidence, result.release.commit) == (
        "head-fallback",
        "low",
        shop.c4,
    )
    assert "matches no deploy, commit or tag" in result.notes[0]
    culprit = result.culprit
    assert culprit is not None
    assert culprit.location.confidence == "drifted"
    assert culprit.location.lineno == (culprit.location.event_lineno or 0) + 3
    assert "line moved by +3" in (culprit.location.reason or "")


def test_deploy_record_resolves_the_release_sets_the_range_and_dates_the_first_event(
    shop: Shop, make_ctx: Callable[..., AppContext]
) -> None:
    events = shop.events(release="build-42")
    ctx = make_ctx()
    git = GitRepo(shop.repo.root)
    record_deploy(ctx.store, git, ctx.clock, release="build-41", commit="v1.0.0", deployed_at=1_000.0)
    record_deploy(ctx.store, git, ctx.clock, release="build-42", commit=shop.c3b[:8], deployed_at=2_000.0)
    project = ctx.store.create_project("svc")
    import_events(ctx, project, [("e", events[0])], source="test")
    issue = ctx.store.list_issues()[0][0]
    result = map_code_path(ctx.store, git, issue_id=issue.id)
    assert (result.release.source, result.release.commit) == ("deploy", shop.c3b)
    assert result.attribution is not None
    assert result.attribution.range_from == shop.c1
    assert "previous deploy build-41" in result.attribution.range_note
    assert result.attribution.deploy_note is not None
    assert result.attribution.deploy_note.startswith("first seen ")
    assert f"after deploy build-42 (commit {shop.c3b[:12]})" in result.attribution.deploy_note


def test_chained_exception_maps_the_cause_too(shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]) -> None:
    _, result = mapped(shop.events(release="v1.1.0", fn="handle_wrapped"))
    assert [e.type for e in result.exceptions] == ["KeyError", "ValueError"]
    assert _path(result, 0)[-1] == ("shop/pricing.py", "line_total", "exact")
    assert result.culprit is not None and result.culprit.qualname == "handle_wrapped"


def test_related_tests_and_reliability_come_with_the_path(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    events = shop.events(release="v1.1.0") + shop.events(release="v1.1.0", copy=1)
    _, result = mapped(events)
    assert [(t.path, t.test_functions) for t in result.related_tests] == [
        ("tests/test_pricing.py", ["test_line_total"])
    ]
    assert "imports shop.pricing" in result.related_tests[0].reason
    by_path = {r.path: (r.issues, r.events) for r in result.reliability}
    assert by_path == {"shop/app.py": (1, 2), "shop/pricing.py": (1, 2)}


def test_a_renamed_file_is_noted_and_still_mapped_at_the_release(
    shop: Shop, make_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    events = shop.events(release="v1.1.0")
    repo = new_repo(tmp_path / "clone")
    repo.git("fetch", "-q", str(shop.repo.root), "main", "--tags")
    repo.git("reset", "-q", "--hard", "FETCH_HEAD")
    repo.git("mv", "shop/pricing.py", "shop/prices.py")
    repo.commit({}, "Rename pricing")
    ctx = make_ctx()
    import_events(ctx, ctx.store.create_project("svc"), [("e", events[0])], source="test")
    result = map_code_path(ctx.store, GitRepo(repo.root), issue_id=1)
    assert result.culprit is not None and result.culprit.location.repo_path == "shop/pricing.py"
    assert any("shop/pricing.py was deleted or renamed after this commit" in n for n in result.notes)


def test_an_event_with_only_library_frames_says_why_nothing_mapped(
    shop: Shop, mapped: Callable[..., tuple[AppContext, CodePath]]
) -> None:
    event = shop.events(release="v1.1.0")[0]
    for frame in event["exception"]["values"][-1]["stacktrace"]["frames"]:
        frame["abs_path"] = "/usr/lib/python3/site-packages/other/" + frame.get("filename", "x.py")
        frame["in_app"] = False
    _, result = mapped([event])
    assert result.culprit is None
    assert result.attribution is None
    assert any(n.startswith("no frame maps into the repository: library frame") for n in result.notes)


def test_not_a_git_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CodePathError, match="is not a git repository"):
        GitRepo(tmp_path)


def test_warm_cache_reuses_git_reads(shop: Shop, make_ctx: Callable[..., AppContext]) -> None:
    events = shop.events(release="v1.1.0")
    ctx = make_ctx()
    import_events(ctx, ctx.store.create_project("svc"), [("e", events[0])], source="test")
    git = GitRepo(shop.repo.root)
    cold = map_code_path(ctx.store, git, issue_id=1)
    warm = map_code_path(ctx.store, git, issue_id=1)
    assert cold == warm


def test_tags_are_read_once_while_no_tag_changes_and_afresh_after_any_change(tmp_path: Path) -> None:
    """The tag list and `git describe` are cached per state of the tag refs on disk: a tag made, moved (-f),
    deleted or packed shows at once, even within one clock tick."""
    git = new_repo(tmp_path / "svc")
    first = git.commit({"a.py": "x = 1\n"}, "one")
    second = git.commit({"a.py": "x = 2\n"}, "two")
    third = git.commit({"a.py": "x = 3\n"}, "three")
    repo = GitRepo(git.root)
    try:
        git.tag("v1", first)
        assert repo.tags() == {"v1": first} and repo.previous_tag(third) == "v1"
        git.tag("v2", second)
        assert repo.tags() == {"v1": first, "v2": second} and repo.previous_tag(third) == "v2"
        git.git("tag", "-f", "v2", third)
        assert repo.tags()["v2"] == third and repo.previous_tag(third) == "v1"
        git.git("pack-refs", "--all")
        git.git("tag", "-d", "v1")
        assert repo.tags() == {"v2": third} and repo.previous_tag(third) is None
        git.git("tag", "-a", "v3", "-m", "annotated", first)
        assert repo.tags()["v3"] == first  # peeled to the commit
    finally:
        repo.close()
