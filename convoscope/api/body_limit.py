"""Caps the size of HTTP request bodies before a handler reads them, so one oversized request cannot take the
gateway's memory. Recording uploads have their own, larger limit (CONVOSCOPE_MAX_UPLOAD_BYTES) and are exempt."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "is_recording_upload"]


def is_recording_upload(path: str) -> bool:
    """``POST /v1/process/audio`` and ``PUT /v1/process/audio/{id}``: the body is the recording itself."""
    return path.startswith("/v1/process/audio") and not path.startswith("/v1/process/audio/url")


DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answers 413 with a JSON ``message`` when the declared or streamed body exceeds ``limit_bytes``."""

    def __init__(self, app: ASGIApp, limit_bytes: int, exempt: Callable[[str], bool] = lambda _path: False) -> None:
        self.app, self.limit_bytes, self.exempt = app, limit_bytes, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit_bytes:
            if int(declared) <= DRAIN_LIMIT_BYTES:  # see below: let the client finish sending, then refuse
                await self._drain(receive, more=True)
            await self._refuse(send)
            return
        received = 0
        response_started = False
        more = True  # whether the client has more of the body to send

        async def counted_receive() -> Message:
            nonlocal received, more
            message = await receive()
            if message["type"] == "http.request":
                more = message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not response_started:
                await self._drain(receive, more)
                await self._refuse(send)

    @staticmethod
    async def _drain(receive: Receive, more: bool) -> None:
        """Read (and drop) the rest the client is still sending, within reason, so it gets to read the 413
        instead of a connection reset in the middle of its upload."""
        drained = 0
        while more and drained <= DRAIN_LIMIT_BYTES:
            message = await receive()
            more = message["type"] == "http.request" and message.get("more_body", False)
            drained += len(message.get("body", b""))

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"message": f"Request body too large: at most {self.limit_bytes} bytes."}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
