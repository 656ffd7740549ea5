"""Request body size limits for `ducktune serve` and `ducktune ui`: 413 before a route reads too much.

A pure ASGI middleware, so it works the same under every FastAPI/Starlette version the
package allows. A body whose Content-Length is over the limit is refused before one byte
of it is read; a body without one (chunked) is counted as it arrives and refused as soon
as it passes the limit, whatever the route was doing with it (an upload being written is
abandoned by its `atomic_file`, which leaves nothing behind).

Before answering, the rest of the body is read and dropped (up to MAX_DRAIN_BYTES): a server
that closes the connection on unread data makes the client see "connection reset" instead of
the 413. A client that sent `Expect: 100-continue` (curl, for large bodies) has sent nothing
yet and gets the 413 at once.

Defaults: 8 MiB for JSON requests (a chat request with a long conversation is well under
1 MiB), 4 GiB for the UI's dataset uploads (see ducktune/ui/app.py).
"""

from __future__ import annotations

import json

MAX_BODY_BYTES = 8 * 1024 ** 2
MAX_DRAIN_BYTES = 64 * 1024 ** 2  # past this, answer and close: draining more would serve an abuser


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class BodyTooLarge(Exception):
    """Raised into the route that reads past the limit; the middleware answers 413 instead."""


class BodyLimit:
    """413 for request bodies over `limit` bytes (`per_path`: {path: (limit, hint)} for routes
    that take more, such as uploads). The answer has OpenAI's error shape, like every other error."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES, per_path: dict[str, tuple[int, str]] | None = None):
        self.app = app
        self.limit = limit
        self.per_path = per_path or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, hint = self.per_path.get(scope["path"], (self.limit, ""))
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if headers.get(b"expect", b"").lower() != b"100-continue" and int(declared) <= MAX_DRAIN_BYTES:
                await self._drain(receive, int(declared))
            await self._refuse(send, limit, hint)
            return
        received, over, started, complete = 0, False, False, False

        async def counted_receive():
            nonlocal received, over, complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if over:  # whatever the route answers once its body was cut off, the client gets the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise  # a real error: the server's own handler reports it
        if over and not started:
            if not complete:  # (once the last chunk is in, another receive() would wait for the client to leave)
                await self._drain(receive, MAX_DRAIN_BYTES - received)
            await self._refuse(send, limit, hint)

    @staticmethod
    async def _drain(receive, at_most: int) -> None:
        """Read and drop the rest of the request body (at most `at_most` bytes)."""
        dropped = 0
        while dropped < at_most:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _refuse(send, limit: int, hint: str) -> None:
        message = f"the request body is larger than {human_bytes(limit)}" + (f"; {hint}" if hint else "")
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                     "code": "request_too_large"}}).encode()
        # Connection: close: the rest of the body is not read, so this connection cannot carry another request.
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
