"""prodloop_capture: frame locals as structure, so a regression test can rebuild production objects.

An opt-in helper for the service under repair. It depends on sentry-sdk and the standard
library only (no prodloop in production): import it from the installed package, or copy
this one file into the service (`prodloop init` prints where it is). Call `install()` once,
before or after `sentry_sdk.init(...)`:

    import prodloop_capture
    prodloop_capture.install()

sentry-sdk sends a frame's locals as reprs, and `<shop.Cart object at 0x7f...>` cannot be
rebuilt. Through sentry-sdk's own extension point (`before_send`, chained after any the
service set), this helper replaces, for each local that is an instance of a class with plain
state, the repr by a structured form `{"__class__": "module.Qualname", "__state__": {...}}`:
its attributes (`__dict__` or `__slots__`), containers as containers (tuples and sets marked as such), bounded in depth,
breadth and string length (a cut container carries a `"<truncated>"` marker, so it is never
mistaken for the whole). The event goes through the same scrubbing at ingest as every other
value. Classes, functions, modules, files, sockets, locks and other live resources are left
as sentry-sdk shows them. Call `install()` after `sentry_sdk.init(...)`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from prodloop.server.ingest.grouping import exceptions, frames_of

_MAX_DEPTH = 4
_MAX_ITEMS = 20
_MAX_STRING = 1000
_PLAIN = (str, bytes, int, float, bool, type(None))


def install(*, max_depth: int = _MAX_DEPTH, max_items: int = _MAX_ITEMS) -> bool:
    """Chain the structuring step into the initialized client's `before_send`; False if sentry-sdk is not
    initialized yet (call `sentry_sdk.init` first)."""
    import sentry_sdk

    client = sentry_sdk.get_client()
    if not client.is_active():
        return False
    previous = client.options.get("before_send")
    if getattr(previous, "_prodloop_capture", False):
        return True

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        try:
            _structure(event, hint, max_depth, max_items)
        except Exception:  # noqa: S110 (never lose the event over this helper)
            pass
        return previous(event, hint) if previous is not None else event

    before_send._prodloop_capture = True  # type: ignore[attr-defined]
    client.options["before_send"] = before_send
    return True


def _structure(event: dict[str, Any], hint: dict[str, Any], max_depth: int, max_items: int) -> None:
    exc_info = hint.get("exc_info") if hint else None
    if not exc_info or exc_info[2] is None:
        return
    tracebacks: dict[int, list[types.FrameType]] = {}
    exc: BaseException | None = exc_info[1]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames, tb = [], exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        tracebacks[id(exc)] = frames
        exc = exc.__cause__ or exc.__context__
    by_position: dict[tuple[Any, Any, Any], types.FrameType] = {}
    for frames in tracebacks.values():
        for frame in frames:
            by_position[(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)] = frame
    for value in exceptions(event):
        for sent in frames_of(value):
            live = by_position.get((sent.get("abs_path"), sent.get("lineno"), sent.get("function")))
            if live is None or not isinstance(sent.get("vars"), dict):
                continue
            for name, local in live.f_locals.items():
                if name in sent["vars"] and _is_object(local):
                    shaped = _shape(local, max_depth, max_items)
                    if isinstance(shaped, dict):
                        sent["vars"][name] = shaped


def _is_object(value: Any) -> bool:
    import enum

    if isinstance(value, (*_PLAIN, list, tuple, dict, set, frozenset, type, types.ModuleType, enum.Enum)):
        return False  # an enum member's repr (`<Mode.FAST: 1>`) already names it
    if callable(value) and not hasattr(value, "__dict__"):
        return False
    return isinstance(value, object) and (hasattr(value, "__dict__") or hasattr(type(value), "__slots__"))


def _state(value: Any) -> dict[str, Any] | None:
    if hasattr(value, "__dict__") and isinstance(vars(value), dict):
        return dict(vars(value))
    slots = [s for c in type(value).__mro__ for s in getattr(c, "__slots__", ()) if isinstance(s, str)]
    if slots:
        return {s: getattr(value, s) for s in slots if hasattr(value, s)}
    return None


def _shape(value: Any, depth: int, items: int) -> Any:
    if isinstance(value, (str, bytes)):  # leaves as reprs, the way sentry-sdk sends them
        shown = repr(value)
        return shown if len(shown) <= _MAX_STRING else "<truncated>"
    if isinstance(value, _PLAIN):
        return value
    if depth <= 0:
        return repr(value)[:200]
    if isinstance(value, dict):
        shaped = {repr(k)[:200]: _shape(v, depth - 1, items) for k, v in list(value.items())[:items]}
        return {**shaped, "<truncated>": True} if len(value) > items else shaped
    if isinstance(value, (list, tuple, set, frozenset)):
        listed = [_shape(v, depth - 1, items) for v in list(value)[:items]]
        listed = [*listed, "<truncated>"] if len(value) > items else listed
        # A tuple or set stays one (a list would compare unequal, or lose set semantics, in the rebuilt object).
        kind = next((k for k in (tuple, frozenset, set) if isinstance(value, k)), None)
        return {f"__{kind.__name__}__": listed} if kind is not None else listed
    if isinstance(value, (types.FunctionType, types.MethodType, types.ModuleType, type)) or not _is_object(value):
        return repr(value)[:200]
    state = _state(value)
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    if state is None or module in ("builtins", "__main__") or module.split(".")[0] in sys.stdlib_module_names:
        return repr(value)[:200]
    fields = {str(k)[:200]: _shape(v, depth - 1, items) for k, v in list(state.items())[:items]}
    if len(state) > items:
        fields["<truncated>"] = True
    return {"__class__": f"{module}.{cls.__qualname__}", "__state__": fields}
