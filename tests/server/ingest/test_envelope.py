"""Reading event JSON: the nesting limit is judged on the text, and must agree with the parsed value's depth."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from prodloop.server.errors import IngestError
from prodloop.server.ingest.envelope import parse_event

# Strings that look like structure: brackets, quotes and backslashes inside them must not count.
_TRICKY = ["[", "]", "{", "}", '"', "\\", '\\"', '"]', "[[{", "\\\\", '\\\\"', "é[", "漢{字", "\U0001f600]", "\n"]


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth <= 0 or kind < 0.3:
        return rng.choice([rng.choice(_TRICKY) * rng.randint(1, 3), rng.randint(-5, 5), 1.5, None, True, ""])
    if kind < 0.6:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_TRICKY) + str(i): _value(rng, depth - 1) for i in range(rng.randint(0, 4))}


def _chain(depth: int) -> dict[str, Any]:
    value: Any = "leaf ]]]}}}"
    for n in range(depth - 1):
        value = [value] if n % 2 else {"k[": value}
    return {"event_id": "0" * 32, "x": value}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32-be"])
def test_random_json_is_read_whole_and_judged_by_its_real_depth(encoding: str) -> None:
    rng = random.Random(f"depth-{encoding}")
    for _ in range(300):
        event = {"event_id": "0" * 32, "v": _value(rng, rng.randint(0, 8))}
        for ensure_ascii in (True, False):
            text = json.dumps(event, ensure_ascii=ensure_ascii)
            assert parse_event(text.encode(encoding), "the event") == event
    for depth in (99, 100):
        assert _depth(parse_event(json.dumps(_chain(depth)).encode(encoding), "the event")) == depth
    with pytest.raises(IngestError, match="nested deeper than 100 levels"):
        parse_event(json.dumps(_chain(101)).encode(encoding), "the event")


def test_brackets_inside_strings_do_not_hide_depth_or_add_to_it() -> None:
    closing = json.dumps({"s": "]" * 500 + "}" * 500, "deep": _chain(101)}).encode()
    with pytest.raises(IngestError, match="nested deeper"):
        parse_event(closing, "the event")  # closers in a string cannot cancel real openers
    opening = json.dumps({"s": "[" * 500 + '\\"{' * 300, "t": '\\\\"'}).encode()
    assert parse_event(opening, "the event")["t"] == '\\\\"'  # openers in a string do not count
    escaped = b'{"a": "\\\\", "b": [[[' + b"[" * 98 + b"]" * 98 + b"]]]}"
    with pytest.raises(IngestError, match="nested deeper"):
        parse_event(escaped, "the event")  # an escaped backslash ends before the quote that closes the string


def test_long_header_lines_and_too_many_items_are_refused_before_they_are_read() -> None:
    from prodloop.server.ingest.envelope import MAX_HEADER_BYTES, MAX_ITEMS, parse_envelope

    deep = b"[" * MAX_HEADER_BYTES + b"]" * MAX_HEADER_BYTES
    line = b'{"x": ' + deep + b"}"
    for envelope, where in ((line + b"\n", "the envelope header"), (b"{}\n" + line + b"\n{}\n", "item header 1")):
        with pytest.raises(IngestError, match=f"{where} is {len(line)} bytes long"):
            parse_envelope(envelope, max_item_bytes=1000)
    many = b"{}\n" + b'{"type":"x"}\n{}\n' * (MAX_ITEMS + 1)
    with pytest.raises(IngestError, match=f"more than {MAX_ITEMS} items"):
        parse_envelope(many, max_item_bytes=1000)
    assert len(parse_envelope(b"{}\n" + b'{"type":"x"}\n{}\n' * MAX_ITEMS, max_item_bytes=1000).items) == MAX_ITEMS
