"""Reading what a sentry-sdk sends: auth, compressed bodies and envelopes, within limits."""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import brotli

from prodloop.server.errors import IngestError, PayloadTooLarge

_EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
_AUTH_PAIR = re.compile(r"(\w+)\s*=\s*([^,\s]+)")


@dataclass(frozen=True, slots=True)
class Item:
    type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    headers: dict[str, Any]
    items: list[Item]


def key_from_auth_header(value: str | None) -> str | None:
    """The `sentry_key` of an `X-Sentry-Auth` (or `Authorization: Sentry ...`) header."""
    if not value:
        return None
    value = value.strip()
    if value.lower().startswith("sentry "):
        value = value[7:]
    pairs = dict(_AUTH_PAIR.findall(value))
    return pairs.get("sentry_key")


def key_from_dsn(dsn: Any) -> str | None:
    if not isinstance(dsn, str):
        return None
    try:
        return urlsplit(dsn).username or None
    except ValueError:
        return None


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br; several in order), never past `limit` bytes."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = body
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, limit, coding)
        elif coding == "deflate":
            try:
                data = _inflate(data, zlib.MAX_WBITS, limit, coding)
            except IngestError:
                data = _inflate(data, -zlib.MAX_WBITS, limit, coding)
        elif coding == "br":
            data = _unbrotli(data, limit)
        else:
            raise IngestError(
                f"Content-Encoding {coding[:40]} is not supported", "send gzip, deflate, br or an uncompressed body"
            )
    if len(data) > limit:
        raise PayloadTooLarge("the envelope", len(data), limit)
    return data


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise IngestError(f"the body is not valid {coding} data ({exc})", "check the sender's compression") from exc
    if len(out) > limit:
        raise PayloadTooLarge("the decompressed envelope", len(out), limit)
    if not d.eof:
        raise IngestError(f"the {coding} body is truncated", "resend the complete body")
    return out


def _unbrotli(data: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=limit + 1)
    except brotli.error as exc:
        raise IngestError(f"the body is not valid br data ({exc})", "check the sender's compression") from exc
    if len(out) > limit:
        raise PayloadTooLarge("the decompressed envelope", len(out), limit)
    if not d.is_finished():
        raise IngestError("the br body is truncated", "resend the complete body")
    return bytes(out)


MAX_HEADER_BYTES = 16 * 1024  # an envelope's or item's header line (sentry-sdk's are a few hundred bytes)
MAX_ITEMS = 1000  # items of any type in one envelope


def parse_envelope(data: bytes, *, max_item_bytes: int) -> Envelope:
    """Split an envelope into its header and items (item payloads by `length` or by newline). Header lines over
    `MAX_HEADER_BYTES` and envelopes of more than `MAX_ITEMS` items are refused before they are read further."""
    pos = data.find(b"\n")
    header_line = data if pos < 0 else data[:pos]
    headers = _json_object(_header(header_line, "the envelope header"), "the envelope header")
    items: list[Item] = []
    pos = len(data) if pos < 0 else pos + 1
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        pos = len(data) if end < 0 else end + 1
        if not line.strip():
            continue
        if len(items) >= MAX_ITEMS:
            raise IngestError(
                f"the envelope holds more than {MAX_ITEMS} items", f"send at most {MAX_ITEMS} per envelope"
            )
        what = f"item header {len(items) + 1}"
        item_headers = _json_object(_header(line, what), what)
        item_type = item_headers.get("type")
        if not isinstance(item_type, str):
            raise IngestError(f"item header {len(items) + 1} has no type", 'each item header needs a "type"')
        length = item_headers.get("length")
        if length is not None:
            if not isinstance(length, int) or length < 0:
                raise IngestError(f"item {len(items) + 1} has an invalid length", "length must be a byte count")
            if pos + length > len(data):
                raise IngestError(f"item {len(items) + 1} is shorter than its length says", "resend the envelope")
            payload = data[pos : pos + length]
            pos += length
            if pos < len(data) and data[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = data.find(b"\n", pos)
            payload = data[pos:] if end < 0 else data[pos:end]
            pos = len(data) if end < 0 else end + 1
        if item_type == "event" and len(payload) > max_item_bytes:
            raise PayloadTooLarge(f"event item {len(items) + 1}", len(payload), max_item_bytes)
        items.append(Item(type=item_type, payload=payload))
    return Envelope(headers=headers, items=items)


def _header(line: bytes, what: str) -> bytes:
    if len(line) > MAX_HEADER_BYTES:
        raise IngestError(f"{what} is {len(line)} bytes long", f"keep header lines under {MAX_HEADER_BYTES} bytes")
    return line


def parse_event(payload: bytes, what: str) -> dict[str, Any]:
    return _json_object(payload, what)


def normalize_event_id(value: Any, what: str) -> str:
    """Sentry event ids are 32 hex digits; a dashed UUID is accepted and folded."""
    if value is None:
        raise IngestError(f"{what} has no event_id", "every event needs a 32-hex-digit event_id")
    if not isinstance(value, str):
        raise IngestError(f"{what} has an event_id that is not a string", "send 32 hex digits")
    folded = value.replace("-", "").lower()
    if not _EVENT_ID.match(folded):
        raise IngestError(f"{what} has an invalid event_id", "send 32 hex digits (a UUID)")
    return folded


_MAX_DEPTH = 100


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(
            f"{what} is not valid JSON ({exc.__class__.__name__} at {_where(exc)})", "send UTF-8 JSON"
        ) from exc
    except ValueError as exc:  # an integer longer than Python's digit limit
        raise IngestError(f"{what} holds a number too large to read ({str(exc)[:80]})", "send numbers as text") from exc
    except RecursionError as exc:
        raise IngestError(f"{what} is nested too deeply to read", f"nest at most {_MAX_DEPTH} levels") from exc
    if not isinstance(value, dict):
        raise IngestError(f"{what} is JSON but not an object", "send a JSON object")
    if _depth(raw) > _MAX_DEPTH:
        raise IngestError(
            f"{what} is nested deeper than {_MAX_DEPTH} levels", "flatten it (sentry-sdk never does this)"
        )
    return value


_QUOTES_AND_BRACKETS = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_OPEN_CLOSE = bytes.maketrans(b"[]{}", b"()()")


def _depth(raw: bytes) -> int:
    """The nesting depth of valid JSON text, read from its brackets outside strings (a walk over the parsed value
    cost more than parsing it). Escapes are dropped first: a run of backslashes pairs off from its left, as JSON
    reads it, so `\\\\` pairs go, then a `\\"` left is an escaped quote, which ends no string. Then only quotes and
    brackets are kept, and `""` dropped: a string without brackets, or the bracket-free gap between two strings, so
    no bracket changes sides; what still lies between quotes is inside a string. Each round deletes every empty
    container, so the rounds count the depth, up to one past the limit. No byte of a multi-byte UTF-8 character is
    ASCII, so UTF-8 is scanned as it is; JSON in UTF-16 or UTF-32 (which `json.loads` reads too) is scanned as
    UTF-8. The text is refused on the text's depth: a key repeated in an object (JSON keeps the last) counts all."""
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        raw = raw.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = raw.translate(None, _QUOTES_AND_BRACKETS).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    shape = shape.translate(_OPEN_CLOSE)
    depth = 0
    while shape and depth <= _MAX_DEPTH:
        shape = shape.replace(b"()", b"")
        depth += 1
    return depth


def _where(exc: Exception) -> str:
    pos = getattr(exc, "pos", None) or getattr(exc, "start", None)
    return f"byte {pos}" if pos is not None else "start"
