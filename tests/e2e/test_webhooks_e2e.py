"""Webhooks through the whole stack: an app registers a receiver over the API, a recording is processed, and the
receiver (which checks every signature) gets the job's and the conversation's events; the delivery log says so."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.conftest import RunningStack
from tests.webhooks.test_worker import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_processed_recording_reaches_the_apps_webhook(sqlite_stack: RunningStack,
                                                              receiver: Receiver) -> None:
    secret = f"e2e-{uuid.uuid4().hex}"
    receiver.secrets["ok"] = secret
    async with sqlite_stack.api() as client:
        created = await client.post("/v1/manage/webhooks", json={
            "url": receiver.url("ok"), "eventTypes": ["job.completed", "conversation.completed"], "secret": secret})
        assert created.status_code == 201, created.text
        webhook_id = created.json()["webhook"]["id"]
        try:
            conversation_id, job_id = await sqlite_stack.recorded_conversation()
            for _ in range(120):
                types = {e["type"] for e in receiver.received["ok"] if e["conversationId"] == conversation_id}
                if types == {"job.completed", "conversation.completed"}:
                    break
                await asyncio.sleep(0.5)
            ours = [e for e in receiver.received["ok"] if e["conversationId"] == conversation_id]
            assert sorted(e["type"] for e in ours) == ["conversation.completed", "job.completed"], ours
            job = next(e for e in ours if e["type"] == "job.completed")
            assert job["data"]["jobId"] == job_id and job["data"]["status"] == "completed"
            assert receiver.bad_signatures == 0
            # The receiver has them; the sender records each outcome once the receiver's answer is back.
            delivered: set[str] = set()
            for _ in range(40):
                log = (await client.get(f"/v1/manage/webhooks/{webhook_id}/deliveries")).json()["deliveries"]
                delivered = {d["eventId"] for d in log if d["status"] == "delivered"}
                if {e["id"] for e in ours} <= delivered:
                    break
                await asyncio.sleep(0.25)
            assert {e["id"] for e in ours} <= delivered
        finally:
            await client.delete(f"/v1/manage/webhooks/{webhook_id}")
