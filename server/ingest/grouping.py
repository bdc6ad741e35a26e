"""Grouping events into issues, and the facts about an event that the store indexes.

An event's own `fingerprint` wins ("{{ default }}" expands to the default components).
Otherwise: each exception's type plus its in-app frames' module and function, from the
outermost exception to the innermost, with no line numbers, so a moved line stays one issue.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

_DEFAULT_MARKERS = {"{{ default }}", "{{default}}"}
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\d+")


@dataclass(frozen=True, slots=True)
class Culprit:
    module: str | None
    function: str | None
    filename: str | None

    def label(self) -> str | None:
        where = self.module or self.filename
        if where and self.function:
            return f"{where} in {self.function}"
        return where or self.function


def exceptions(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The exception chain in Sentry's order: causes first, the exception finally raised last."""
    container = event.get("exception")
    values = container.get("values") if isinstance(container, dict) else container
    return [v for v in values or [] if isinstance(v, dict)] if isinstance(values, list) else []


def frames_of(exc: dict[str, Any]) -> list[dict[str, Any]]:
    stack = exc.get("stacktrace")
    frames = stack.get("frames") if isinstance(stack, dict) else None
    return [f for f in frames if isinstance(f, dict)] if isinstance(frames, list) else []


def app_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames marked in_app; when the SDK marked none, those outside site-packages and the stdlib."""
    marked = [f for f in frames if f.get("in_app") is True]
    if marked:
        return marked
    if any(f.get("in_app") is False for f in frames):
        return [f for f in frames if f.get("in_app") is not False]
    return [f for f in frames if not _library_path(str(f.get("abs_path") or f.get("filename") or ""))]


def _library_path(path: str) -> bool:
    return "site-packages" in path or "dist-packages" in path or "/lib/python" in path


def default_components(event: dict[str, Any]) -> list[str]:
    chain = exceptions(event)
    if chain:
        parts: list[str] = []
        for exc in chain:
            parts.append(str(exc.get("type") or "Error"))
            frames = frames_of(exc)
            for frame in app_frames(frames) or frames:
                where = frame.get("module") or frame.get("filename") or "?"
                parts.append(f"{where}:{frame.get('function') or '?'}")
        return parts
    message = _message(event) or "<no message>"
    return ["message", _VOLATILE.sub("<n>", message)[:512]]


def fingerprint(event: dict[str, Any]) -> str:
    own = event.get("fingerprint")
    parts: list[str]
    if isinstance(own, list) and own and all(isinstance(p, str) for p in own):
        parts = []
        for part in own:
            parts.extend(default_components(event) if part in _DEFAULT_MARKERS else [f"custom:{part}"])
    else:
        parts = default_components(event)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def culprit(event: dict[str, Any]) -> Culprit:
    chain = exceptions(event)
    if chain:
        frames = frames_of(chain[-1])
        candidates = app_frames(frames) or frames
        if candidates:
            f = candidates[-1]
            return Culprit(_str(f.get("module")), _str(f.get("function")), _str(f.get("filename")))
    return Culprit(None, None, None)


def title(event: dict[str, Any]) -> tuple[str, str | None]:
    """(title, exception type) of an event."""
    chain = exceptions(event)
    if chain:
        last = chain[-1]
        etype = _str(last.get("type")) or "Error"
        value = _str(last.get("value")) or ""
        first_line = value.splitlines()[0] if value else ""
        return (f"{etype}: {first_line}" if first_line else etype)[:200], etype
    return (_message(event) or "<no message>")[:200], None


def _message(event: dict[str, Any]) -> str | None:
    entry = event.get("logentry")
    if isinstance(entry, dict):
        text = entry.get("formatted") or entry.get("message")
        if isinstance(text, str):
            return text
    message = event.get("message")
    return message if isinstance(message, str) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
