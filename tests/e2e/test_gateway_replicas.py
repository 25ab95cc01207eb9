"""Several gateway replicas: speakers of one conversation on different replicas all get every result."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from convoscope.synth import Meeting
from producers.replay import stream_pcm
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_speakers_on_two_gateways_share_one_conversation(sqlite_stack: RunningStack,
                                                               short_meeting: Meeting) -> None:
    async with sqlite_stack.extra_gateway() as second_url:
        connection_id = str(uuid.uuid4())
        gateways = {"Alice": sqlite_stack.base_url, "Bob": second_url}
        start_at = time.monotonic() + 0.5
        results = await asyncio.gather(*[
            stream_pcm(
                gateways[name].replace("http", "ws", 1) + f"/v1/streaming/{connection_id}",
                sqlite_stack.token, short_meeting.track_bytes(name),
                speaker={"name": name}, start_at=start_at,
            )
            for name in short_meeting.speakers
        ])
        assert results[0].conversation_id == results[1].conversation_id
        for result in results:
            speakers = {m["from"]["name"] for m in result.final_messages()}
            assert speakers == {"Alice", "Bob"}, f"a replica's client missed results: got {speakers}"
