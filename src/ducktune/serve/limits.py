"""Request body size limits for `ducktune serve` and `ducktune ui`: 413 before a route reads too much.

A pure ASGI middleware, so it works the same under every FastAPI/Starlette version the
package allows. A body whose Content-Length is over the limit is refused before one byte
of it is read; a body without one (chunked) is counted as it arrives and refused as soon
as it passes the limit, whatever the route was doing with it (an upload being written is
abandoned by its `atomic_file`, which leaves nothing behind).

Defaults: 8 MiB for JSON requests (a chat request with a long conversation is well under
1 MiB), 4 GiB for the UI's dataset uploads (see ducktune/ui/app.py).
"""

from __future__ import annotations

import json

MAX_BODY_BYTES = 8 * 1024 ** 2


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
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, hint)
            return
        received, over, started = 0, False, False

        async def counted_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
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
            await self._refuse(send, limit, hint)

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
