"""Grouping: which events become one issue."""

from __future__ import annotations

import copy

from prodloop.server.ingest.grouping import culprit, fingerprint, title
from tests.conftest import make_event


def test_a_moved_line_stays_one_issue() -> None:
    first = make_event()
    moved = copy.deepcopy(first)
    for frame in moved["exception"]["values"][0]["stacktrace"]["frames"]:
        frame["lineno"] += 7
    moved["exception"]["values"][0]["value"] = "'other-sku'"
    assert fingerprint(first) == fingerprint(moved)


def test_another_function_or_exception_type_is_another_issue() -> None:
    base = make_event()
    other_fn = copy.deepcopy(base)
    other_fn["exception"]["values"][0]["stacktrace"]["frames"][-1]["function"] = "discount_of"
    other_type = copy.deepcopy(base)
    other_type["exception"]["values"][0]["type"] = "IndexError"
    assert len({fingerprint(base), fingerprint(other_fn), fingerprint(other_type)}) == 3


def test_library_frames_do_not_split_issues() -> None:
    base = make_event()
    with_lib = copy.deepcopy(base)
    with_lib["exception"]["values"][0]["stacktrace"]["frames"].insert(
        0, {"module": "werkzeug.serving", "function": "run_wsgi", "in_app": False, "lineno": 3}
    )
    assert fingerprint(base) == fingerprint(with_lib)


def test_own_fingerprint_wins_and_default_expands() -> None:
    a = make_event(fingerprint=["payments-down"])
    b = make_event(fingerprint=["payments-down"])
    b["exception"]["values"][0]["type"] = "TimeoutError"
    assert fingerprint(a) == fingerprint(b)
    c = make_event(fingerprint=["{{ default }}", "tenant-a"])
    d = make_event(fingerprint=["{{ default }}", "tenant-b"])
    assert fingerprint(c) != fingerprint(d)
    assert fingerprint(c) != fingerprint(make_event())


def test_message_events_group_by_message_without_numbers() -> None:
    one = {"event_id": "a" * 32, "logentry": {"formatted": "queue 17 is 93% full"}}
    two = {"event_id": "b" * 32, "logentry": {"formatted": "queue 4 is 99% full"}}
    assert fingerprint(one) == fingerprint(two)
    assert title(one) == ("queue 17 is 93% full", None)


def test_culprit_is_the_innermost_in_app_frame_of_the_last_exception() -> None:
    event = make_event()
    event["exception"]["values"][0]["stacktrace"]["frames"].append(
        {"module": "json.decoder", "function": "decode", "in_app": False}
    )
    c = culprit(event)
    assert (c.module, c.function, c.label()) == ("shop.pricing", "price_of", "shop.pricing in price_of")
    assert title(event) == ("KeyError: 'sku'", "KeyError")
