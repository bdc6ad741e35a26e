"""Import of exported Sentry events: a JSON object, a JSON array, or JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prodloop.server.errors import EventFileError
from prodloop.server.sources.sentry_api import api_event_to_sdk_event


def read_event_file(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, event) for each event in the file; a bad line names its line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EventFileError(str(path), "whole file", f"cannot be read ({exc.__class__.__name__})") from exc
    stripped = text.lstrip()
    if not stripped:
        raise EventFileError(str(path), "whole file", "is empty")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield "line 1", _unwrap(whole)
        return
    if isinstance(whole, list):
        for i, item in enumerate(whole):
            if not isinstance(item, dict):
                raise EventFileError(str(path), f"array item {i}", "is not a JSON object")
            yield f"array item {i}", _unwrap(item)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventFileError(str(path), f"line {lineno}", f"is not valid JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise EventFileError(str(path), f"line {lineno}", "is not a JSON object")
        yield f"line {lineno}", _unwrap(item)


def _unwrap(item: dict[str, Any]) -> dict[str, Any]:
    """Exports hold SDK events, SDK events wrapped as `{"event": ...}`, or Sentry API events (`eventID`, `entries`)."""
    inner = item.get("event")
    if isinstance(inner, dict) and "event_id" in inner:
        return inner
    if "event_id" not in item and ("eventID" in item or "entries" in item):
        return api_event_to_sdk_event(item)
    return item
