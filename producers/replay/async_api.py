"""A client of the Async API (``/v1/process/audio``, ``/v1/job``): what ``convoscope replay`` submits files with."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["DONE_STATUSES", "AsyncApiClient", "AsyncApiError"]

UPLOAD_CHUNK_BYTES = 256 * 1024
DONE_STATUSES = ("completed", "failed")


class AsyncApiError(RuntimeError):
    """The server refused a request; ``message`` is its explanation."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = str(response.json().get("message") or response.text)
    except ValueError:
        message = response.text
    raise AsyncApiError(response.status_code, message)


class AsyncApiClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 600.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(timeout_s)
        )

    async def __aenter__(self) -> AsyncApiClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self._http.aclose()

    async def submit_file(
        self, path: Path, params: Mapping[str, str] | None = None, *, conversation_id: str | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """POST (or, with ``conversation_id``, PUT to append) the file's bytes; ``on_sent`` gets each chunk's size."""
        file = await asyncio.to_thread(path.open, "rb")

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK_BYTES):
                yield chunk
                if on_sent is not None:
                    on_sent(len(chunk))

        url = "/v1/process/audio" + (f"/{conversation_id}" if conversation_id else "")
        try:
            size = os.fstat(file.fileno()).st_size
            response = await self._http.request(
                "PUT" if conversation_id else "POST", url, params=params, content=chunks(),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
        finally:
            file.close()
        _raise_for(response)
        return response.json()  # type: ignore[no-any-return]

    async def submit_url(self, body: Mapping[str, Any], *, conversation_id: str | None = None) -> dict[str, Any]:
        url = "/v1/process/audio/url" + (f"/{conversation_id}" if conversation_id else "")
        response = await self._http.request("PUT" if conversation_id else "POST", url, json=dict(body))
        _raise_for(response)
        return response.json()  # type: ignore[no-any-return]

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/v1/job/{job_id}")
        _raise_for(response)
        return response.json()  # type: ignore[no-any-return]

    async def wait_job(
        self, job_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is completed or failed (or ``timeout_s`` passes: TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            while True:
                job = await self.job(job_id)
                if on_update is not None:
                    on_update(job)
                if job["status"] in DONE_STATUSES:
                    return job
                await asyncio.sleep(poll_s)

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        response = await self._http.get(f"/v1/conversations/{conversation_id}/messages")
        _raise_for(response)
        return response.json()["messages"]  # type: ignore[no-any-return]

    async def reprocess(self, body: Mapping[str, Any]) -> dict[str, Any]:
        response = await self._http.post("/v1/process/reprocess", json=dict(body))
        _raise_for(response)
        return response.json()  # type: ignore[no-any-return]
