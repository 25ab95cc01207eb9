"""What the text processors found, as the Conversation API returns it, and the tracker Management API.

Records go through the store writer exactly as the store worker applies them (on SQLite and PostgreSQL).
"""

from __future__ import annotations

import uuid

from convoscope.auth import create_app
from convoscope.registry import join_conversation
from schemas.topics import ENTITIES, INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, TRANSCRIPTS_FINAL
from sinks.store import StoreRecord, write_batch
from tests.api.conftest import Api
from tests.store.records import final, insight, speaker, text_result

START_MS = 1_700_000_000_000


async def _conversation(api: Api) -> tuple[str, dict, dict, list[dict]]:
    joined = await join_conversation(api.sessions, api.app.app_id, str(uuid.uuid4()), "Acme demo", START_MS)
    cid, app_id = joined.conversation_id, api.app.app_id
    maria = speaker(cid, "Maria Lopez", "maria@example.com")
    david = speaker(cid, "David")
    stream_m, stream_d = uuid.uuid4().hex, uuid.uuid4().hex
    finals = [
        final(cid, app_id, stream_d, david, 0, 0, 48_000, "How much does the enterprise plan cost?", START_MS),
        final(cid, app_id, stream_m, maria, 0, 64_000, 128_000,
              "I'll send the contract to Acme Corp by next Friday.", START_MS),
        final(cid, app_id, stream_d, david, 1, 144_000, 192_000, "Maria, can you share the security review?",
              START_MS),
    ]
    return cid, maria, david, finals


def _records(finals: list[dict]) -> list[StoreRecord]:
    """Result ids are unique per message in real records; here they are per conversation, as the tests share
    a PostgreSQL database."""
    question, action, request = finals
    cid = question["conversation_id"]
    return [
        *(StoreRecord(TRANSCRIPTS_FINAL.name, f) for f in finals),
        StoreRecord(INSIGHTS.name, text_result(question, insights=[
            insight(f"{cid}-q1", "QUESTION", "How much does the enterprise plan cost?", 0.97)])),
        StoreRecord(INSIGHTS.name, text_result(action, insights=[
            insight(f"{cid}-a1", "ACTION_ITEM", "I'll send the contract to Acme Corp by next Friday.", 0.91,
                    assignee_name="Maria Lopez", assignee_is_speaker=True,
                    due_by="2023-11-24T23:59:59+00:00", due_text="by next Friday")])),
        StoreRecord(INSIGHTS.name, text_result(request, insights=[
            insight(f"{cid}-a2", "ACTION_ITEM", "Maria, can you share the security review?", 0.88,
                    assignee_name="Maria")])),
        StoreRecord(TOPIC_PHRASES.name, text_result(question, sentiment=0.0, phrases=[
            {"phrase": "enterprise plan", "root_words": ["plan"], "offset": 17}])),
        StoreRecord(TOPIC_PHRASES.name, text_result(action, sentiment=0.2, phrases=[
            {"phrase": "contract", "root_words": ["contract"], "offset": 15}])),
        StoreRecord(TOPIC_PHRASES.name, text_result(request, sentiment=0.1, phrases=[
            {"phrase": "security review", "root_words": ["review"], "offset": 21}])),
        StoreRecord(TRACKER_MATCHES.name, text_result(question, is_final=True, matches=[{
            "match_id": f"{cid}-t1", "tracker_id": "tr-pricing", "tracker_name": "Pricing", "vocabulary": "price",
            "mode": "SEMANTIC", "matched_text": "How much does the enterprise plan cost?", "offset": -1,
            "score": 0.71}])),
        # Interim matches are for live clients only; the API must not list them.
        StoreRecord(TRACKER_MATCHES.name, text_result({**action, "message_id": "interim-1"}, is_final=False, matches=[{
            "match_id": f"{cid}-t-interim", "tracker_id": "tr-contract", "tracker_name": "Contract",
            "vocabulary": "contract", "mode": "EXACT", "matched_text": "contract", "offset": 15, "score": 1.0}])),
        StoreRecord(ENTITIES.name, text_result(action, entities=[{
            "entity_id": f"{cid}-e1", "type": "organization", "sub_type": None, "category": "Managed",
            "value": "Acme Corp", "text": "Acme Corp", "offset": 27}])),
    ]


async def test_insights_topics_trackers_and_entities_in_symbl_shapes(api: Api) -> None:
    cid, maria, david, finals = await _conversation(api)
    records = _records(finals)
    for record in records:  # every test record must fit its topic's schema
        assert {t.name: t for t in (INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, ENTITIES, TRANSCRIPTS_FINAL)}[
            record.topic].serde.serialize(record.value)
    await write_batch(api.sessions, records)
    await write_batch(api.sessions, records)  # a replay after a crash changes nothing
    base = f"/v1/conversations/{cid}"

    questions = (await api.client.get(f"{base}/questions", headers=api.auth())).json()["questions"]
    assert [(q["id"], q["type"], q["text"], q["messageIds"]) for q in questions] == [
        (f"{cid}-q1", "question", "How much does the enterprise plan cost?", [finals[0]["message_id"]])]
    assert questions[0]["from"] == {"id": david["id"], "name": "David"}

    items = (await api.client.get(f"{base}/action-items", headers=api.auth())).json()["actionItems"]
    assert [i["id"] for i in items] == [f"{cid}-a1", f"{cid}-a2"]
    own, asked = items
    assert own["assignee"] == {"id": maria["id"], "name": "Maria Lopez", "email": "maria@example.com"}
    assert own["dueBy"] == "2023-11-24T23:59:59+00:00"
    # "Maria, can you…" said by David is assigned to the member called Maria, found by first name.
    assert asked["assignee"]["id"] == maria["id"] and asked["from"]["name"] == "David"
    assert "dueBy" not in asked

    assert (await api.client.get(f"{base}/follow-ups", headers=api.auth())).json() == {"followUps": []}
    mixed = (await api.client.get(f"{base}/insights", headers=api.auth())).json()["insights"]
    assert [i["type"] for i in mixed] == ["question", "action_item", "action_item"]

    detected = (await api.client.get(f"{base}/trackers-detected", headers=api.auth())).json()
    assert detected == (await api.client.get(f"{base}/trackers", headers=api.auth())).json()
    assert [(t["name"], [m["value"] for m in t["matches"]]) for t in detected] == [("Pricing", ["price"])]
    assert detected[0]["matches"][0]["messageRefs"] == [
        {"id": finals[0]["message_id"], "text": finals[0]["text"], "offset": -1}]

    entities = (await api.client.get(f"{base}/entities", headers=api.auth())).json()["entities"]
    assert [(e["type"], e["value"]) for e in entities] == [("organization", "Acme Corp")]
    assert entities[0]["messageRefs"][0]["offset"] == 27

    topics = (await api.client.get(f"{base}/topics", params={"sentiment": "true"}, headers=api.auth())).json()
    texts = {t["text"] for t in topics["topics"]}
    assert {"enterprise plan", "contract", "security review"} & texts
    assert all(t["sentiment"]["suggested"] in ("positive", "neutral", "negative") for t in topics["topics"])

    messages = (await api.client.get(f"{base}/messages", params={"sentiment": "true"}, headers=api.auth())).json()
    assert all(m["sentiment"]["suggested"] in ("positive", "neutral", "negative") for m in messages["messages"])


async def test_insight_endpoints_are_private_to_the_app(api: Api) -> None:
    cid, _, _, finals = await _conversation(api)
    await write_batch(api.sessions, _records(finals))
    other = await create_app(api.sessions, "other")
    token, _ = api.tokens.issue(other.app_id)
    for path in ("questions", "action-items", "follow-ups", "insights", "topics", "trackers-detected", "trackers",
                 "entities"):
        response = await api.client.get(f"/v1/conversations/{cid}/{path}", headers=api.auth(token))
        assert response.status_code == 404, path
        assert (await api.client.get(f"/v1/conversations/{cid}/{path}")).status_code == 401


async def test_tracker_management_api(api: Api) -> None:
    created = await api.client.post("/v1/manage/trackers", headers=api.auth(),
                                    json={"name": "Pricing", "vocabulary": ["price", "too expensive", "price"]})
    assert created.status_code == 201
    tracker = created.json()["tracker"]
    assert tracker["name"] == "Pricing" and tracker["vocabulary"] == ["price", "too expensive"]

    bulk = await api.client.post("/v1/manage/trackers", headers=api.auth(), json=[
        {"name": "Competitors", "vocabulary": ["Globex"]}, {"name": "Next steps", "vocabulary": ["follow up"]}])
    assert bulk.status_code == 201 and len(bulk.json()["trackers"]) == 2

    duplicate = await api.client.post("/v1/manage/trackers", headers=api.auth(),
                                      json={"name": "Pricing", "vocabulary": ["cost"]})
    assert duplicate.status_code == 409 and "Pricing" in duplicate.json()["message"]
    for bad in ({"name": "x"}, {"name": "", "vocabulary": ["a"]}, {"name": "y", "vocabulary": [1]}, "nope", []):
        response = await api.client.post("/v1/manage/trackers", headers=api.auth(), json=bad)
        assert response.status_code == 400, bad
        assert response.json()["message"]

    listed = (await api.client.get("/v1/manage/trackers", headers=api.auth())).json()["trackers"]
    assert [t["name"] for t in listed] == ["Competitors", "Next steps", "Pricing"]
    by_name = (await api.client.get("/v1/manage/trackers", params={"name": "Pricing"}, headers=api.auth())).json()
    assert [t["id"] for t in by_name["trackers"]] == [tracker["id"]]

    updated = await api.client.put(f"/v1/manage/tracker/{tracker['id']}", headers=api.auth(),
                                   json={"name": "Pricing", "vocabulary": ["budget"]})
    assert updated.json()["tracker"]["vocabulary"] == ["budget"]

    # Another app sees none of these and cannot touch them.
    other = await create_app(api.sessions, "other")
    token, _ = api.tokens.issue(other.app_id)
    assert (await api.client.get("/v1/manage/trackers", headers=api.auth(token))).json() == {"trackers": []}
    assert (await api.client.delete(f"/v1/manage/trackers/{tracker['id']}", headers=api.auth(token))).status_code == 404

    deleted = await api.client.delete(f"/v1/manage/trackers/{tracker['id']}", headers=api.auth())
    assert deleted.status_code == 200
    assert (await api.client.get(f"/v1/manage/trackers/{tracker['id']}", headers=api.auth())).status_code == 404
