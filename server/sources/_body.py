"""Reading a request body that must stay under a limit: refused on its declared length before a byte is read, and
while it streams (a chunked body declares none)."""

from __future__ import annotations

from starlette.requests import Request


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The whole body, or None once it is over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
