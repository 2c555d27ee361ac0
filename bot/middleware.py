"""ASGI middleware of `serve`'s HTTP face: a body size limit and an access log without secrets.

Both wrap every route, so a route added later is bounded and logged the same way.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("bot.access")

# The longest path an access line keeps: a path is the client's text, so it is bounded too.
MAX_LOGGED_PATH = 200


class BodyTooLargeError(Exception):
    """The client sent more body than the limit; raised out of `receive` to stop the route."""


async def _refuse(send: Send, status: int, error: str) -> None:
    """Answer and ask the server to close the connection, so the rest of the body is not read."""
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # uvicorn would otherwise read (and discard) the remaining body to keep the
                # connection alive for a next request; closing is what stops the upload.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, before it is buffered.

    A declared Content-Length over the limit is refused without reading anything; a body that
    streams past it (chunked, or a lying client) is refused as soon as the limit is crossed.
    Routes read `await request.body()` as usual: what they get is never over the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over server.max_body_bytes ({self.limit} bytes)"
        declared = _header(scope, b"content-length")
        if declared is not None:
            # uvicorn's parsers already refuse a malformed Content-Length; this is for others.
            if not declared.isdigit():
                await _refuse(send, 400, "Content-Length is not a number of bytes")
                return
            if int(declared) > self.limit:
                await _refuse(send, 413, too_large)
                return
        seen = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLargeError
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyTooLargeError:
            if not started:
                await _refuse(send, 413, too_large)


class AccessLog:
    """One line per request: method, path (never the query string), status, duration.

    uvicorn's own access line prints the query string, where the calendar feed token and the
    Jira webhook secret travel, so `serve` turns it off and logs this instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before responding

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            log.info(
                "http.request",
                method=str(scope.get("method", "?"))[:16],
                path=logged_path(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                client=_client(scope),
            )


def logged_path(scope: Scope) -> str:
    """The request path as sent (still percent-encoded, so one printable line), bounded."""
    raw: Any = scope.get("raw_path")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))
    text = text.split("?", 1)[0]  # some servers keep the query in raw_path
    # Control and non-ASCII characters become \xNN escapes: a path cannot start a new log line.
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= MAX_LOGGED_PATH else text[:MAX_LOGGED_PATH] + "..."


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"
