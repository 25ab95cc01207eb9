"""The rest of the Conversation API on SQLite and PostgreSQL: analytics, summary, formatted transcript, metadata,
members, speaker events, delete and time filters."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import func, select

from convoscope.auth import create_app
from convoscope.db.models import Member, Message, Summary
from convoscope.registry import join_conversation
from schemas.topics import CONVERSATION_EVENTS, TRANSCRIPTS_FINAL
from sinks.store import StoreRecord, write_batch
from tests.api.conftest import Api
from tests.store.records import event, final, speaker

START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z
SECOND = 16_000  # samples

ANN_LINES = [
    (0.0, 4.0, "Good morning everyone. Today we review the launch plan together."),
    (9.0, 12.0, "Can you finish the payment tests before Friday?"),
    (16.0, 19.0, "Great. I will talk to the marketing team about the launch announcement."),
]
BOB_LINES = [
    (3.5, 8.0, "Thanks Ann. The launch pricing page is ready but the payment system needs more testing."),
    (12.5, 15.0, "Yes, I will send the payment test report on Thursday."),
]


async def _seed(api: Api, app_id: str | None = None, start_ms: int = START_MS
                ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Ann and Bob on their own streams; Bob talks over Ann's first line for half a second. Each line's words
    share its time evenly and end with it (word counts divide the durations)."""
    app_id = app_id or api.app.app_id
    joined = await join_conversation(api.sessions, app_id, str(uuid.uuid4()), "Launch sync", start_ms)
    cid = joined.conversation_id
    ann, bob = speaker(cid, "Ann", "ann@example.com"), speaker(cid, "Bob")
    records = [
        StoreRecord(CONVERSATION_EVENTS.name, event("CONVERSATION_STARTED", cid, app_id, start_ms, name="Launch sync")),
        StoreRecord(CONVERSATION_EVENTS.name, event("MEMBER_JOINED", cid, app_id, start_ms, member=ann)),
        StoreRecord(CONVERSATION_EVENTS.name, event("MEMBER_JOINED", cid, app_id, start_ms, member=bob)),
    ]
    for who, lines in ((ann, ANN_LINES), (bob, BOB_LINES)):
        stream = uuid.uuid4().hex
        for index, (start, end, text) in enumerate(lines):
            value = final(cid, app_id, stream, who, index, round(start * SECOND), round(end * SECOND), text, start_ms)
            records.append(StoreRecord(TRANSCRIPTS_FINAL.name, value))
    await write_batch(api.sessions, records)
    return cid, ann, bob


async def test_analytics_in_symbl_shape(api: Api) -> None:
    cid, ann, _ = await _seed(api)
    response = await api.client.get(f"/v1/conversations/{cid}/analytics", headers=api.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    metrics = {m["type"]: m for m in body["metrics"]}
    # Speech starts 0.2 s into each message (the transcriber's lead-in): Ann 0.2-4, 9.2-12, 16.2-19 (9.4 s);
    # Bob 3.7-8, 12.7-15 (6.6 s); together 0.2-8, 9.2-12, 12.7-15, 16.2-19: 15.7 s of 19.
    assert metrics["total_talk_time"] == {"type": "total_talk_time", "seconds": 15.7, "percent": 82.632}
    assert metrics["total_silence"] == {"type": "total_silence", "seconds": 3.3, "percent": 17.368}
    assert metrics["total_overlap"] == {"type": "total_overlap", "seconds": 0.3, "percent": 1.911}
    members = {m["name"]: m for m in body["members"]}
    assert members["Ann"]["id"] == ann["id"] and members["Ann"]["userId"] == "ann@example.com"
    assert members["Ann"]["talkTime"] == {"seconds": 9.4, "percentage": 59.873}
    assert members["Bob"]["listenTime"] == {"seconds": 9.1, "percentage": 57.962}
    assert members["Bob"]["overlap"]["overlappingMembers"] == [
        {"id": ann["id"], "name": "Ann", "userId": "ann@example.com", "percent": 1.875, "seconds": 0.3,
         "interruptions": 1}
    ]
    assert members["Ann"]["pace"]["wpm"] == 191  # 30 words in 9.4 s
    assert members["Bob"]["turns"] == 2 and members["Ann"]["turns"] == 3


async def test_extractive_summary_is_stored_and_refreshed(api: Api) -> None:
    cid, _, _ = await _seed(api)
    url = f"/v1/conversations/{cid}/summary"
    first = (await api.client.get(url, headers=api.auth())).json()
    assert first["producedBy"]["method"] == "extractive" and "fallbackReason" not in first["producedBy"]
    assert first["summary"], first
    messages = (await api.client.get(f"/v1/conversations/{cid}/messages", headers=api.auth())).json()["messages"]
    by_id = {m["id"]: m for m in messages}
    for item in first["summary"]:
        (ref,) = item["messageRefs"]
        speaker_name, sentence = item["text"].split(": ", 1)
        assert sentence in by_id[ref["id"]]["text"] and speaker_name == by_id[ref["id"]]["from"]["name"]
        assert item["startTime"] == by_id[ref["id"]]["startTime"]
    assert any("before Friday?" in item["text"] for item in first["summary"])  # the question with a deadline

    again = (await api.client.get(url, headers=api.auth())).json()
    assert again == first  # served from the table
    async with api.sessions() as session:
        assert await session.scalar(select(func.count()).where(Summary.conversation_id == cid)) == 1
    refreshed = (await api.client.get(url, params={"refresh": "true"}, headers=api.auth())).json()
    assert refreshed["summary"] == first["summary"] and refreshed["producedBy"]["createdAt"] >= first["producedBy"][
        "createdAt"]


async def test_formatted_transcripts(api: Api) -> None:
    cid, _, _ = await _seed(api)
    url = f"/v1/conversations/{cid}/transcript"
    markdown = (await api.client.post(url, json={"contentType": "text/markdown", "showSpeakerSeparation": True,
                                                  "createParagraphs": True}, headers=api.auth())).json()
    assert markdown["transcript"]["contentType"] == "text/markdown"
    paragraphs = markdown["transcript"]["payload"].split("<br/><br/>")
    assert paragraphs[-1] == ""
    assert [p.split(":")[0] for p in paragraphs[:-1]] == ["Ann", "Bob", "Ann", "Bob", "Ann"]
    assert paragraphs[1].startswith("Bob: Thanks Ann.")

    plain = (await api.client.post(url, json={"contentType": "text/markdown", "showSpeakerSeparation": False,
                                               "createParagraphs": False}, headers=api.auth())).json()
    assert plain["transcript"]["payload"].startswith("Good morning everyone.")
    assert plain["transcript"]["payload"].count("<br/><br/>") == 1

    srt = (await api.client.post(url, json={"contentType": "text/srt", "showSpeakerSeparation": True},
                                 headers=api.auth())).json()["transcript"]
    assert srt["contentType"] == "text/srt"
    cues = srt["payload"].strip().split("\n\n")
    assert len(cues) == 5
    assert cues[0].split("\n")[:2] == ["1", "00:00:00,000 --> 00:00:04,000"]
    assert cues[1].split("\n")[1] == "00:00:03,500 --> 00:00:08,000" and cues[1].split("\n")[2].startswith("Bob: ")
    assert re.fullmatch(r"\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+", cues[-1])

    bad = await api.client.post(url, json={"contentType": "application/pdf"}, headers=api.auth())
    assert bad.status_code == 400 and "contentType" in bad.json()["message"]


async def test_metadata_and_member_updates(api: Api) -> None:
    cid, ann, _ = await _seed(api)
    response = await api.client.put(f"/v1/conversations/{cid}", json={"metadata": {"agentId": "johndoe", "n": 2}},
                                    headers=api.auth())
    assert response.status_code == 200 and response.json() == {"id": cid, "metadata": {"agentId": "johndoe", "n": 2}}
    conversation = (await api.client.get(f"/v1/conversations/{cid}", headers=api.auth())).json()
    assert conversation["metadata"] == {"agentId": "johndoe", "n": 2}
    bad = await api.client.put(f"/v1/conversations/{cid}", json={"name": "x"}, headers=api.auth())
    assert bad.status_code == 400

    response = await api.client.put(f"/v1/conversations/{cid}/members/{ann['id']}",
                                    json={"id": ann["id"], "name": "Ann Smith", "email": "ann.smith@example.com"},
                                    headers=api.auth())
    assert response.status_code == 200 and "updated successfully" in response.json()["message"]
    messages = (await api.client.get(f"/v1/conversations/{cid}/messages", headers=api.auth())).json()["messages"]
    assert messages[0]["from"] == {"id": ann["id"], "name": "Ann Smith", "userId": "ann.smith@example.com",
                                   "email": "ann.smith@example.com"}
    missing = await api.client.put(f"/v1/conversations/{cid}/members/nobody", json={"name": "X"}, headers=api.auth())
    assert missing.status_code == 404
    nul = await api.client.put(f"/v1/conversations/{cid}/members/{ann['id']}", json={"name": "A\x00B"},
                               headers=api.auth())
    assert nul.status_code == 400  # PostgreSQL text cannot hold NUL: refused, not a 500


def _event(kind: str, user: dict[str, str], seconds: float) -> dict[str, Any]:
    return {"type": kind, "user": user, "offset": {"seconds": int(seconds), "nanos": round(seconds % 1 * 1e9)}}


async def test_speaker_events_reassign_and_merge_speakers(api: Api) -> None:
    """A single mixed stream (one member "Speaker") split into Derek and Maria by speaker events."""
    joined = await join_conversation(api.sessions, api.app.app_id, str(uuid.uuid4()), "Phone call", START_MS)
    cid, app_id = joined.conversation_id, api.app.app_id
    mixed, stream = speaker(cid, "Speaker"), uuid.uuid4().hex
    lines = [(0.0, 2.0, "hello maria"), (3.0, 5.0, "hi derek how are you"), (6.0, 8.0, "fine thanks")]
    await write_batch(api.sessions, [
        StoreRecord(TRANSCRIPTS_FINAL.name, final(cid, app_id, stream, mixed, i, round(a * SECOND), round(b * SECOND),
                                                  text, START_MS))
        for i, (a, b, text) in enumerate(lines)
    ])
    derek = {"id": str(uuid.uuid4()), "name": "Derek", "email": "derek@example.com"}
    maria = {"name": "Maria"}
    events = [
        _event("started_speaking", derek, 0), _event("stopped_speaking", derek, 2.5),
        _event("started_speaking", maria, 2.5), _event("stopped_speaking", maria, 5.5),
        _event("started_speaking", derek, 5.5),  # never stopped: speaks to the end
    ]
    response = await api.client.put(f"/v1/conversations/{cid}/speakers", json={"speakerEvents": events},
                                    headers=api.auth())
    assert response.status_code == 200, response.text
    assert response.json()["message"].startswith(f"Speaker events associated for conversationId: {cid}")
    messages = (await api.client.get(f"/v1/conversations/{cid}/messages", headers=api.auth())).json()["messages"]
    assert [m["from"].get("name") for m in messages] == ["Derek", "Maria", "Derek"]
    assert messages[0]["from"]["id"] == derek["id"] and messages[0]["from"]["email"] == "derek@example.com"
    members = (await api.client.get(f"/v1/conversations/{cid}/members", headers=api.auth())).json()["members"]
    assert sorted(m["name"] for m in members) == ["Derek", "Maria"]  # "Speaker" merged away
    analytics = (await api.client.get(f"/v1/conversations/{cid}/analytics", headers=api.auth())).json()
    assert {m["name"]: m["talkTime"]["seconds"] for m in analytics["members"]} == {"Derek": 3.6, "Maria": 1.8}

    bad = await api.client.put(f"/v1/conversations/{cid}/speakers", json={"speakerEvents": [{"type": "x"}]},
                               headers=api.auth())
    assert bad.status_code == 400


async def test_delete_removes_every_row_of_the_conversation(api: Api) -> None:
    cid, _, _ = await _seed(api)
    keep, _, _ = await _seed(api)
    await api.client.get(f"/v1/conversations/{cid}/summary", headers=api.auth())
    response = await api.client.delete(f"/v1/conversations/{cid}", headers=api.auth())
    assert response.status_code == 200 and response.json() == {"message": "successfully deleted the conversation"}
    for path in ("", "/messages", "/members", "/analytics", "/summary"):
        gone = await api.client.get(f"/v1/conversations/{cid}{path}", headers=api.auth())
        assert gone.status_code == 404, path
    async with api.sessions() as session:
        for model in (Message, Member, Summary):
            assert await session.scalar(select(func.count()).where(model.conversation_id == cid)) == 0
        assert await session.scalar(select(func.count()).where(Message.conversation_id == keep)) == 5
    assert (await api.client.delete(f"/v1/conversations/{cid}", headers=api.auth())).status_code == 404


async def test_list_filters_by_start_time(api: Api) -> None:
    lister = await create_app(api.sessions, "time filter")
    token, _ = api.tokens.issue(lister.app_id)
    day_ms = 86_400_000
    for i in range(3):
        await join_conversation(api.sessions, lister.app_id, f"c{i}", f"day {i}", START_MS + i * day_ms)
    url = "/v1/conversations"

    async def names(**params: str) -> list[str]:
        response = await api.client.get(url, params=params, headers=api.auth(token))
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["conversations"]]

    assert await names() == ["day 0", "day 1", "day 2"]
    assert await names(startTime="2023-11-15T00:00:00Z") == ["day 1", "day 2"]
    assert await names(endTime="2023-11-15T23:00:00.000Z") == ["day 0", "day 1"]
    assert await names(startTime="2023-11-15T00:00:00", endTime="2023-11-15T23:00:00+00:00") == ["day 1"]
    bad = await api.client.get(url, params={"startTime": "yesterday"}, headers=api.auth(token))
    assert bad.status_code == 400 and "startTime" in bad.json()["message"]
