"""The Conversation API for one conversation (``AsyncConversation``), and Async API jobs (``AsyncJob``)."""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from convoscope_sdk.exceptions import JobFailedError, NotFoundError, TimeoutError
from convoscope_sdk.records import Record, camel_case

if TYPE_CHECKING:
    from convoscope_sdk.client import AsyncClient

__all__ = ["AsyncConversation", "AsyncJob", "JobStatus", "query_params"]

Parameters = Mapping[str, Any]


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


def query_params(parameters: Parameters | None) -> dict[str, str]:
    """Query parameters as the API reads them: camelCase names (``parent_refs`` → ``parentRefs``), booleans as
    ``true``/``false``, lists and objects as JSON text (how the official SDK sent them)."""
    params: dict[str, str] = {}
    for name, value in (parameters or {}).items():
        if value is None:
            continue
        key = camel_case(name)
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            params[key] = json.dumps(value)
        else:
            params[key] = str(value)
    return params


class AsyncJob:
    """An Async API job (``GET /v1/job/{id}``) that produces one conversation."""

    def __init__(self, client: AsyncClient, job_id: str, conversation_id: str) -> None:
        self._client = client
        self.job_id = job_id
        self.conversation_id = conversation_id
        self.status = JobStatus.SCHEDULED

    async def refresh(self) -> JobStatus:
        answer = await self._client.request("GET", f"/v1/job/{self.job_id}")
        self.status = JobStatus(answer["status"])
        return self.status

    async def wait(self, timeout_s: float | None = None, poll_s: float | None = None) -> JobStatus:
        """Poll until the job is completed (returned) or failed (``JobFailedError``); ``TimeoutError`` after
        ``timeout_s`` (default ``Timeouts.job_s``)."""
        timeouts = self._client.timeouts
        poll = timeouts.job_poll_s if poll_s is None else poll_s
        try:
            async with asyncio.timeout(timeouts.job_s if timeout_s is None else timeout_s):
                while True:
                    if (await self.refresh()).finished:
                        break
                    await asyncio.sleep(poll)  # the API has no push for job status; webhooks need a public URL
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"job {self.job_id} still {self.status.value} after the timeout") from exc
        if self.status is JobStatus.FAILED:
            raise JobFailedError(self.job_id, self.conversation_id)
        return self.status


class AsyncConversation:
    """One conversation's REST endpoints. Every method returns the API's JSON as ``Record``s and raises
    ``ApiError`` (``NotFoundError`` for 404), ``AuthenticationError``, ``NetworkError`` or ``TimeoutError``.

    Methods that take ``parameters`` accept the official SDK's dict (``{"verbose": True}``); as in the examples
    users copied, a conversation id may be passed instead, to query that conversation."""

    def __init__(self, client: AsyncClient, conversation_id: str, job: AsyncJob | None = None) -> None:
        self._client = client
        self.conversation_id = conversation_id
        self.job = job

    def __repr__(self) -> str:
        return f"AsyncConversation({self.conversation_id!r})"

    def get_conversation_id(self) -> str:
        return self.conversation_id

    def _path(self, conversation_id: str | None, suffix: str = "") -> str:
        return f"/v1/conversations/{conversation_id or self.conversation_id}{suffix}"

    @staticmethod
    def _split(parameters: Parameters | str | None) -> tuple[str | None, Parameters | None]:
        if isinstance(parameters, str):
            return parameters, None
        return None, parameters

    async def _get(self, suffix: str, parameters: Parameters | str | None = None) -> Any:
        conversation_id, params = self._split(parameters)
        return await self._client.request("GET", self._path(conversation_id, suffix), params=query_params(params))

    async def get_conversation(self, conversation_id: str | None = None) -> Record:
        """``GET /v1/conversations/{id}``: name, type, start and end time, members, metadata."""
        return await self._get("", conversation_id)  # type: ignore[no-any-return]

    async def get_messages(self, parameters: Parameters | str | None = None) -> Record:
        """``GET .../messages``; ``{"verbose": True}`` adds word timings, ``{"sentiment": True}`` sentiment."""
        return await self._get("/messages", parameters)  # type: ignore[no-any-return]

    async def get_members(self, conversation_id: str | None = None) -> Record:
        return await self._get("/members", conversation_id)  # type: ignore[no-any-return]

    async def get_topics(self, parameters: Parameters | str | None = None) -> Record:
        """``GET .../topics``; parameters ``sentiment``, ``parent_refs``."""
        return await self._get("/topics", parameters)  # type: ignore[no-any-return]

    async def get_questions(self, conversation_id: str | None = None) -> Record:
        return await self._get("/questions", conversation_id)  # type: ignore[no-any-return]

    async def get_action_items(self, conversation_id: str | None = None) -> Record:
        return await self._get("/action-items", conversation_id)  # type: ignore[no-any-return]

    async def get_follow_ups(self, conversation_id: str | None = None) -> Record:
        return await self._get("/follow-ups", conversation_id)  # type: ignore[no-any-return]

    async def get_entities(self, conversation_id: str | None = None) -> Record:
        return await self._get("/entities", conversation_id)  # type: ignore[no-any-return]

    async def get_trackers(self, conversation_id: str | None = None) -> list[Record]:
        """``GET .../trackers-detected`` (a bare array), or the deprecated ``.../trackers`` the official SDK
        called, on servers that only have that one."""
        try:
            return await self._get("/trackers-detected", conversation_id)  # type: ignore[no-any-return]
        except NotFoundError as first:
            try:
                return await self._get("/trackers", conversation_id)  # type: ignore[no-any-return]
            except NotFoundError:
                raise first from None

    async def get_analytics(self, conversation_id: str | None = None) -> Record:
        return await self._get("/analytics", conversation_id)  # type: ignore[no-any-return]

    async def get_summary(self, parameters: Parameters | str | None = None) -> Record:
        """``GET .../summary``; ``{"refresh": True}`` recomputes it."""
        return await self._get("/summary", parameters)  # type: ignore[no-any-return]

    async def get_formatted_transcript(self, parameters: Parameters | None = None) -> Record:
        """``POST .../transcript`` with e.g. ``{"contentType": "text/markdown"}`` or ``"text/srt"``."""
        body = dict(parameters or {"contentType": "text/markdown"})
        return await self._client.request("POST", self._path(None, "/transcript"), json_body=body)  # type: ignore[no-any-return]

    async def put_members(self, member_id: str, parameters: Parameters) -> Record:
        """``PUT .../members/{memberId}`` with ``{"id", "name", "email"}``."""
        path = self._path(None, f"/members/{member_id}")
        return await self._client.request("PUT", path, json_body=dict(parameters))  # type: ignore[no-any-return]

    async def put_speakers_events(self, parameters: Parameters) -> Record:
        """``PUT .../speakers`` with ``{"speakerEvents": [...]}``."""
        path = self._path(None, "/speakers")
        return await self._client.request("PUT", path, json_body=dict(parameters))  # type: ignore[no-any-return]

    async def put_metadata(self, metadata: Parameters) -> Record:
        """``PUT /v1/conversations/{id}`` with ``{"metadata": {...}}``."""
        body = {"metadata": dict(metadata)}
        return await self._client.request("PUT", self._path(None), json_body=body)  # type: ignore[no-any-return]

    async def delete_conversation(self) -> Record:
        return await self._client.request("DELETE", self._path(None))  # type: ignore[no-any-return]

    # -- Async API jobs ------------------------------------------------------------------------------------------

    def get_job_id(self) -> str | None:
        return self.job.job_id if self.job else None

    def get_job_status(self) -> str | None:
        return self.job.status.value if self.job else None

    async def wait(self, timeout_s: float | None = None) -> AsyncConversation:
        """Until the job that is producing this conversation has completed (no-op without a job)."""
        if self.job is not None:
            await self.job.wait(timeout_s)
        return self
