"""Refusing oversized request bodies before any route reads them (a plain ASGI middleware).

A body announced larger than ``max_bytes`` (``Content-Length``) is answered
413 at once; a body sent without a length (chunked) is read up to the limit
and refused as soon as it passes it, then replayed to the app when it fits.
The answer is the usual error body (``code``, ``message``, ``hint``).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _refuse(send, 400, "invalid_input", "the Content-Length header is not a number")
                return
            if int(length) > self.max_bytes:
                await _refuse_too_large(send, self.max_bytes)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse_too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


async def _refuse_too_large(send: Send, max_bytes: int) -> None:
    await _refuse(send, 413, "payload_too_large", f"the request body is larger than {max_bytes} bytes")


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(
        {"code": code, "message": message, "hint": "send a smaller, well-formed request"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
