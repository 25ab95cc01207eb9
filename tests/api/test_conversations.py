"""The Conversation API in Symbl's shapes, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
import uuid

from convoscope.auth import create_app
from convoscope.registry import join_conversation
from schemas.topics import CONVERSATION_EVENTS, TRANSCRIPTS_FINAL
from sinks.store import StoreRecord, write_batch
from tests.api.conftest import Api
from tests.store.records import event, final, speaker

NOT_FOUND = {"message": "The conversationId is either invalid or does not exist."}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


async def _seed(api: Api) -> tuple[str, dict, dict]:
    joined = await join_conversation(api.sessions, api.app.app_id, str(uuid.uuid4()), "Weekly sync", START_MS)
    cid, app_id = joined.conversation_id, api.app.app_id
    ann = speaker(cid, "Ann", "ann@example.com")
    bob = speaker(cid, "Bob")
    s1, s2 = uuid.uuid4().hex, uuid.uuid4().hex
    records = [
        StoreRecord(CONVERSATION_EVENTS.name, event("CONVERSATION_STARTED", cid, app_id, START_MS, name="Weekly sync")),
        StoreRecord(CONVERSATION_EVENTS.name, event("MEMBER_JOINED", cid, app_id, START_MS, member=ann)),
        StoreRecord(CONVERSATION_EVENTS.name, event("MEMBER_JOINED", cid, app_id, START_MS + 1000, member=bob)),
        # Bob's stream started 1 s into the conversation; his first words are stored last but sort between Ann's
        StoreRecord(TRANSCRIPTS_FINAL.name, final(cid, app_id, s1, ann, 0, 0, 24_000, "hello everyone", START_MS)),
        StoreRecord(TRANSCRIPTS_FINAL.name, final(cid, app_id, s1, ann, 1, 64_000, 80_000, "second ann", START_MS)),
        StoreRecord(
            TRANSCRIPTS_FINAL.name, final(cid, app_id, s2, bob, 0, 16_000, 32_000, "hi ann", START_MS + 1000, 1000)
        ),
        StoreRecord(CONVERSATION_EVENTS.name, event("CONVERSATION_COMPLETED", cid, app_id, START_MS + 60_000)),
    ]
    await write_batch(api.sessions, records)
    return cid, ann, bob


async def test_get_conversation(api: Api) -> None:
    cid, ann, bob = await _seed(api)
    response = await api.client.get(f"/v1/conversations/{cid}", headers=api.auth())
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": cid,
        "type": "meeting",
        "name": "Weekly sync",
        "startTime": "2023-11-14T22:13:20.000Z",
        "endTime": "2023-11-14T22:14:20.000Z",
        "members": [
            {"id": ann["id"], "name": "Ann", "email": "ann@example.com"},
            {"id": bob["id"], "name": "Bob"},
        ],
        "metadata": {},
    }
    members = await api.client.get(f"/v1/conversations/{cid}/members", headers=api.auth())
    assert members.json()["members"] == response.json()["members"]


async def test_live_conversation_has_no_end_and_defaults_its_name(api: Api) -> None:
    joined = await join_conversation(api.sessions, api.app.app_id, "live", None, int(time.time() * 1000))
    body = (await api.client.get(f"/v1/conversations/{joined.conversation_id}", headers=api.auth())).json()
    assert body["name"] == joined.conversation_id and body["endTime"] is None and body["members"] == []
    assert ISO_Z.match(body["startTime"])


async def test_messages(api: Api) -> None:
    cid, ann, bob = await _seed(api)
    response = await api.client.get(f"/v1/conversations/{cid}/messages", headers=api.auth())
    assert response.status_code == 200, response.text
    messages = response.json()["messages"]
    assert [m["text"] for m in messages] == ["hello everyone", "hi ann", "second ann"]
    first, second, _ = messages
    assert first["from"] == {"id": ann["id"], "name": "Ann", "userId": "ann@example.com", "email": "ann@example.com"}
    assert second["from"] == {"id": bob["id"], "name": "Bob"}
    assert first["startTime"] == "2023-11-14T22:13:20.000Z" and first["endTime"] == "2023-11-14T22:13:21.500Z"
    assert (first["timeOffset"], first["duration"]) == (0.0, 1.5)
    assert second["startTime"] == "2023-11-14T22:13:22.000Z" and second["timeOffset"] == 2.0
    assert all(m["conversationId"] == cid for m in messages)
    assert all("words" not in m for m in messages)
    assert set(first) == {"id", "text", "from", "startTime", "endTime", "timeOffset", "duration", "conversationId"}


async def test_messages_verbose_words(api: Api) -> None:
    cid, _, _ = await _seed(api)
    response = await api.client.get(f"/v1/conversations/{cid}/messages", params={"verbose": "true"}, headers=api.auth())
    messages = response.json()["messages"]
    hello, hi_ann = messages[0]["words"], messages[1]["words"]
    assert hello[0] == {
        "word": "hello",
        "startTime": "2023-11-14T22:13:20.000Z",
        "endTime": "2023-11-14T22:13:20.750Z",
        "score": 0.9,
        "timeOffset": 0.0,
        "duration": 0.75,
    }
    assert [w["word"] for w in hi_ann] == ["hi", "ann"]
    assert hi_ann[0]["timeOffset"] == 2.0 and hi_ann[0]["startTime"] == "2023-11-14T22:13:22.000Z"


async def test_unknown_and_foreign_conversations_are_404(api: Api) -> None:
    cid, _, _ = await _seed(api)
    other = await create_app(api.sessions, "other")
    other_token, _ = api.tokens.issue(other.app_id)
    for path in (f"/v1/conversations/{cid}", f"/v1/conversations/{cid}/messages", f"/v1/conversations/{cid}/members"):
        response = await api.client.get(path, headers=api.auth(other_token))
        assert response.status_code == 404 and response.json() == NOT_FOUND
    response = await api.client.get("/v1/conversations/123456789", headers=api.auth())
    assert response.status_code == 404 and response.json() == NOT_FOUND


async def test_list_conversations(api: Api) -> None:
    other = await create_app(api.sessions, "lister")
    token, _ = api.tokens.issue(other.app_id)
    for i in range(3):
        await join_conversation(api.sessions, other.app_id, f"c{i}", f"n{i}", START_MS + i)
    body = (await api.client.get("/v1/conversations", headers=api.auth(token))).json()
    assert [c["name"] for c in body["conversations"]] == ["n0", "n1", "n2"]
    body = (await api.client.get("/v1/conversations?order=desc&limit=2", headers=api.auth(token))).json()
    assert [c["name"] for c in body["conversations"]] == ["n2", "n1"]
    response = await api.client.get("/v1/conversations?limit=x", headers=api.auth(token))
    assert response.status_code == 400 and "limit" in response.json()["message"]


async def test_healthz_and_json_errors(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    response = await api.client.get("/v1/nope", headers=api.auth())
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    response = await api.client.delete("/healthz")
    assert response.status_code == 405 and response.json()["message"]
