"""A two-speaker meeting streamed live through the public WebSocket API, then read back from the API.

WER threshold: streaming Whisper tiny.en measured 7.0 % on espeak-ng speech in the platform notes
(per-utterance decoding, no cross-utterance context); 15 % leaves room for voice and VAD variation
while any broken stage (wrong resampling, lost frames, mixed speakers) drives it far higher.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from convoscope.evaluation import word_error_rate
from convoscope.synth import Meeting, Utterance
from producers.replay import StreamResult
from tests.e2e.conftest import MEETING_TITLE, RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

MAX_WER = 0.15
TIMING_TOLERANCE_S = 0.6


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _utterance_of(meeting: Meeting, speaker: str, start_s: float, end_s: float) -> Utterance | None:
    """The scripted utterance of this speaker that a message's time range falls in."""
    for utterance in meeting.utterances:
        if (utterance.speaker == speaker and start_s >= utterance.start_s - TIMING_TOLERANCE_S
                and end_s <= utterance.end_s + TIMING_TOLERANCE_S):
            return utterance
    return None


def _check_live_view(result: StreamResult, meeting: Meeting) -> list[dict[str, Any]]:
    inner_types = [r.body["message"]["type"] for r in result.messages if r.body.get("type") == "message"]
    assert inner_types[:3] == ["started_listening", "conversation_created", "recognition_started"]
    assert inner_types[-2:] == ["conversation_completed", "recognition_stopped"]
    assert result.close_code == 1000
    assert not result.of_type("error"), result.of_type("error")
    interims = [r for r in result.of_type("recognition_result") if not r.body["message"]["isFinal"]]
    assert interims, "no interim results while people were speaking"

    finals = result.final_messages()
    ids = [m["id"] for m in finals]
    assert len(ids) == len(set(ids)), "a final message was delivered twice"
    for speaker in meeting.speakers:
        spoken = " ".join(u.text for u in meeting.utterances if u.speaker == speaker)
        heard = " ".join(m["payload"]["content"] for m in finals if m["from"]["name"] == speaker)
        wer = word_error_rate([spoken], [heard])
        assert wer <= MAX_WER, f"{speaker}: WER {wer:.1%}\n  said:  {spoken}\n  heard: {heard}"
    return finals


def _check_timings(finals: list[dict[str, Any]], meeting: Meeting, audio_origin: float) -> None:
    covered = set()
    for message in finals:
        start = _epoch(message["duration"]["startTime"]) - audio_origin
        end = _epoch(message["duration"]["endTime"]) - audio_origin
        utterance = _utterance_of(meeting, message["from"]["name"], start, end)
        assert utterance is not None, (
            f"{message['from']['name']} said {message['payload']['content']!r} at {start:.2f}-{end:.2f} s, "
            f"which matches no utterance of theirs: {meeting.utterances}"
        )
        covered.add(utterance)
    assert covered == set(meeting.utterances), "some utterances produced no message"


async def _check_api(running: RunningStack, conversation_id: str, finals: list[dict[str, Any]],
                     meeting: Meeting) -> None:
    stored = await running.stored_messages(conversation_id, len(finals), verbose=True)
    assert sorted(m["id"] for m in stored) == sorted(m["id"] for m in finals)
    live_text = {m["id"]: m["payload"]["content"] for m in finals}
    for message in stored:
        assert message["text"] == live_text[message["id"]]
        assert message["conversationId"] == conversation_id
        assert message["words"], "verbose=true must include word timings"
        assert _epoch(message["words"][0]["startTime"]) <= _epoch(message["words"][-1]["endTime"])
    starts = [_epoch(m["startTime"]) for m in stored]
    assert starts == sorted(starts), "messages must come back in time order"
    # Who spoke when, in order, collapsing consecutive messages of one speaker.
    order = [m["from"]["name"] for m in stored]
    turns = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    script_turns = [u.speaker for i, u in enumerate(meeting.utterances)
                    if i == 0 or meeting.utterances[i - 1].speaker != u.speaker]
    assert turns == script_turns

    async with running.api() as client:
        conversation = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    assert conversation["id"] == conversation_id
    assert conversation["name"] == MEETING_TITLE
    assert sorted(m["name"] for m in conversation["members"]) == sorted(meeting.speakers)


async def _check_meeting(running: RunningStack, meeting: Meeting) -> None:
    results = await running.stream_meeting(meeting)
    conversation_ids = {r.conversation_id for r in results}
    assert len(conversation_ids) == 1, "both speakers must join one conversation"
    conversation_id = conversation_ids.pop()
    assert conversation_id and conversation_id.isdigit()
    views = [_check_live_view(result, meeting) for result in results]
    # Every connection sees the whole conversation, every speaker's messages.
    assert {m["id"] for m in views[0]} == {m["id"] for m in views[1]}
    _check_timings(views[0], meeting, results[0].audio_origin_epoch_s)
    await _check_api(running, str(conversation_id), views[0], meeting)


async def test_meeting_through_embedded_broker_and_sqlite(sqlite_stack: RunningStack, meeting: Meeting) -> None:
    await _check_meeting(sqlite_stack, meeting)


@pytest.mark.postgres
async def test_meeting_through_postgresql(postgres_stack: RunningStack, meeting: Meeting) -> None:
    await _check_meeting(postgres_stack, meeting)
