"""The bearer token that guards MCP over HTTP: made on first start, kept 0600 in the data dir."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from prodloop.server.clock import new_token
from prodloop.server.errors import ConfigError

TOKEN_FILE = "mcp-token"  # noqa: S105 (a file name, not a secret)


def ensure_token(data_dir: Path) -> tuple[str, bool]:
    """The stored token, creating it (0600) when absent; returns (token, created)."""
    path = data_dir / TOKEN_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    token = new_token()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError("mcp token", f"{path} is readable by others (mode {mode:o})", f"run chmod 600 {path}")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError("mcp token", f"{path} holds no usable token", "delete it to have a new one made")
    return token


class BearerAuth:
    """ASGI middleware: every request must carry `Authorization: Bearer <token>`, else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self._expected):
            body = b'{"detail":"missing or wrong bearer token; send Authorization: Bearer <token from the data dir>"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="prodloop"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)
