"""An ASGI middleware that responds 413 to request bodies larger than a limit."""

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class BodySizeLimitMiddleware:
    """Reject request bodies larger than ``max_bytes`` with 413 Content Too Large.

    A declared Content-Length over the limit is rejected before any byte is read.
    Otherwise the body is read into memory, counting bytes, and rejected as soon as
    it grows past the limit, so a chunked body cannot get around the check. The
    application receives the body already read, as one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.reject(scope, send, f"Content-Length {declared}")
            return

        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending its whole body.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.reject(scope, send, f"more than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)

        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def reject(self, scope: Scope, send: Send, size: str) -> None:
        """Send a 413 response that states the limit."""
        logger.warning(
            "rejected %s %s: body of %s is over the limit of %d bytes",
            scope.get("method"),
            scope.get("path"),
            size,
            self.max_bytes,
        )
        detail = (
            f"request body is too large: {size}, the limit is {self.max_bytes} bytes"
        )
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int | None:
    """Return the Content-Length header as an int, or None when absent or invalid."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            valid = text.isascii() and text.isdigit() and len(text) < 20
            return int(text) if valid else None
    return None


def replay_body(body: bytes, receive: Receive) -> Receive:
    """Return a receive callable that yields ``body`` once, then calls ``receive``."""
    sent = False

    async def receive_body() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_body
