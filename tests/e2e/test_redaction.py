"""PII redaction end to end: a caller reads out a phone number and an e-mail address twice at once, on one stream
that asks for redaction and one that does not. The redacted stream's live results and stored messages hold only
placeholders; the other keeps what was said."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from producers.replay import StreamResult, stream_pcm
from tests.e2e.conftest import RunningStack
from tests.transcription.speech import build_meeting

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Voices whose speech Whisper tiny.en writes as "You can call me at 555-867-5300." and "... David at Yahoo.com."
CALLER = (
    ("You can call me at 555 867 5309.", "en-us+m3"),
    ("You can reach me at david at yahoo dot com.", "en-gb+f4"),
)
TEXT_KEYS = frozenset({"transcript", "content", "originalContent", "words", "word", "text", "detectedValue"})
RAW = re.compile(r"\d|yahoo|@|\.com", re.IGNORECASE)


def _texts(body: Any) -> Iterator[str]:
    """Every piece of transcript text in a result or API body: contents, transcripts, words, entity values."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in TEXT_KEYS and isinstance(value, str):
                if key == "words" and value.startswith("["):  # message_response: the words as JSON text
                    yield from _texts(json.loads(value))
                else:
                    yield value
            else:
                yield from _texts(value)
    elif isinstance(body, list):
        for item in body:
            yield from _texts(item)


def _live_texts(result: StreamResult) -> list[str]:
    kinds = ("recognition_result", "message_response", "entity_response")
    return [text for kind in kinds for received in result.of_type(kind) for text in _texts(received.body)]


async def test_a_stream_asking_for_redaction_never_shows_the_raw_text(sqlite_stack: RunningStack) -> None:
    samples, _ = build_meeting(CALLER, gaps_s=(0.9,), lead_in_s=0.5, tail_s=1.0)
    pcm = samples.astype("<i2").tobytes()

    def stream(config: dict[str, Any]) -> Any:
        return stream_pcm(sqlite_stack.ws_url(str(uuid.uuid4())), sqlite_stack.token, pcm, speaker={"name": "Caller"},
                          start_request={"config": {"detectEntities": True, **config}})

    # All types, so names are masked too: the transcription worker loads spaCy for this stream only.
    redacted, plain = await asyncio.gather(stream({"redaction": True}), stream({}))
    assert not redacted.of_type("error") and not plain.of_type("error")
    assert redacted.final_messages() and plain.final_messages()

    said = " ".join(m["payload"]["content"] for m in plain.final_messages())
    assert re.search(r"\d{3}", said) and re.search(r"yahoo", said, re.IGNORECASE), said  # kept without redaction
    masked = " ".join(m["payload"]["content"] for m in redacted.final_messages())
    assert "[PHONE_NUMBER]" in masked and "[EMAIL]" in masked, masked
    leaked = [text for text in _live_texts(redacted) if RAW.search(text)]
    assert not leaked, leaked  # finals, their words, interims and entities alike

    for result, raw_expected in ((redacted, False), (plain, True)):
        expected = len(result.final_messages())
        stored = await sqlite_stack.stored_messages(str(result.conversation_id), expected, verbose=True)
        assert len(stored) == expected
        stored_text = list(_texts(stored))
        assert any(RAW.search(text) for text in stored_text) is raw_expected, stored_text

    # Re-transcribing the redacted call from its audio (still on the audio topic) masks it the same way.
    async with sqlite_stack.api() as client:
        response = await client.post("/v1/process/reprocess", json={"conversationId": redacted.conversation_id})
        assert response.status_code in (200, 201, 202), response.text
        job = response.json()["jobs"][0]
        for _ in range(120):
            if (await client.get(f"/v1/job/{job['jobId']}")).json()["status"] == "completed":
                break
            await asyncio.sleep(0.5)
        again = (await client.get(f"/v1/conversations/{job['conversationId']}/messages",
                                  params={"verbose": "true"})).json()["messages"]
    assert again and not [text for text in _texts(again) if RAW.search(text)], again
