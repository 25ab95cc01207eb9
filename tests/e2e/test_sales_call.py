"""A synthesized sales call through the WebSocket API: live insights, topics, trackers and entities as they
happen, filtered by what each client asked for, and the same results from the Conversation API afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from convoscope.synth import Line, Meeting, SynthesisUnavailable, build_meeting
from producers.replay import StreamResult, stream_pcm
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SALES_CALL = (
    Line("Maria", "Hi David, thanks for taking the time to talk with Acme today."),
    Line("David", "Sure. How much does the enterprise plan cost per year?"),
    Line("Maria", "The enterprise plan is twenty thousand dollars per year for your whole team."),
    Line("David", "Honestly, that is a bit pricey for us."),
    Line("Maria", "I understand. I will send the contract with a discount by next Friday."),
    Line("David", "Great. Can we set up a follow up call next week to review it?"),
    Line("Maria", "Of course. I will get back to you tomorrow with a few times."),
)
PRICING = {"name": "Pricing", "vocabulary": ["too expensive", "a bit pricey", "cost per year"]}
CONTRACT = {"name": "Contract", "vocabulary": ["sending the contracts"]}  # app-level: matched inflected


@pytest.fixture(scope="module")
def sales_call() -> Meeting:
    try:
        return build_meeting(SALES_CALL)
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required: {exc}")


def _insights(result: StreamResult) -> list[dict[str, Any]]:
    return [i for r in result.of_type("insight_response") for i in r.body["insights"]]


def _tracker_names(result: StreamResult) -> set[str]:
    return {t["name"] for r in result.of_type("tracker_response") for t in r.body["trackers"]}


async def _api_get(stack: RunningStack, path: str, **params: str) -> Any:
    async with stack.api() as client:
        response = await client.get(path, params=params or None)
        assert response.status_code == 200, response.text
        return response.json()


async def _wait_for(stack: RunningStack, path: str, ready: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        body = await _api_get(stack, path)
        if ready(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.5)


async def test_sales_call_insights_live_and_from_the_api(sqlite_stack: RunningStack, sales_call: Meeting) -> None:
    stack = sqlite_stack
    async with stack.api() as client:
        existing = (await client.get("/v1/manage/trackers", params={"name": "Contract"})).json()["trackers"]
        if not existing:
            assert (await client.post("/v1/manage/trackers", json=CONTRACT)).status_code == 201

    connection_id = str(uuid.uuid4())
    start_at = time.monotonic() + 0.5
    seller_request = {
        "insightTypes": ["question", "action_item", "follow_up"],
        "trackers": [PRICING],
        "config": {"meetingTitle": "Acme renewal", "detectEntities": True, "sentiment": True,
                   "timezoneOffset": 0,
                   "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
    }
    # The buyer's client asks for questions only and nothing else.
    buyer_request = {**seller_request, "insightTypes": ["question"],
                     "config": {**seller_request["config"], "detectEntities": False, "sentiment": False}}
    seller, buyer = await asyncio.gather(*[
        stream_pcm(stack.ws_url(connection_id), stack.token, sales_call.track_bytes(name),
                   speaker={"name": name, "userId": f"{name.lower()}@example.com"},
                   start_request=request, start_at=start_at)
        for name, request in (("Maria", seller_request), ("David", buyer_request))
    ])
    conversation_id = seller.conversation_id
    assert conversation_id and buyer.conversation_id == conversation_id
    call_day = datetime.fromtimestamp(seller.audio_origin_epoch_s).date()

    # -- live: what the seller's client saw ----------------------------------------------------------------
    live = _insights(seller)
    kinds = {i["type"] for i in live}
    assert {"question", "action_item", "follow_up"} <= kinds, [(i["type"], i["text"]) for i in live]
    question = next(i for i in live if i["type"] == "question")
    assert "cost" in question["payload"]["content"].lower() and question["text"] == question["payload"]["content"]
    assert question["from"]["name"] == "David"
    contract = next(i for i in live if i["type"] == "action_item" and "contract" in i["text"].lower())
    assert contract["from"]["name"] == "Maria" and contract["assignee"]["name"] == "Maria"
    due = date.fromisoformat(contract["dueBy"]["value"][:10])
    assert due.weekday() == 4 and call_day < due <= call_day + timedelta(days=14), contract["dueBy"]
    message_ids = {m["id"] for m in seller.final_messages()}
    assert all(i["messageReference"]["id"] in message_ids for i in live)

    assert {"Pricing", "Contract"} <= _tracker_names(seller), [r.body for r in seller.of_type("tracker_response")]
    topics = [t for r in seller.of_type("topic_response") for t in r.body["topics"]]
    assert topics and all(isinstance(t["phrases"], str) and t["messageReferences"] for t in topics)
    entity_types = {e["type"] for r in seller.of_type("entity_response") for e in r.body["entities"]}
    assert "money" in entity_types, entity_types
    assert all("sentiment" in m for m in seller.final_messages())

    # -- live: the buyer asked for questions only --------------------------------------------------------
    assert {i["type"] for i in _insights(buyer)} == {"question"}
    assert not buyer.of_type("entity_response")
    assert all("sentiment" not in m for m in buyer.final_messages())
    # Every result arrives before the client is told the conversation is complete.
    last = max(i for i, r in enumerate(seller.messages) if r.body.get("type") == "insight_response")
    completed = next(i for i, r in enumerate(seller.messages) if r.body.get("message", {}).get("type")
                     == "conversation_completed")
    assert last < completed

    # -- afterwards: the same results from the Conversation API ---------------------------------------
    base = f"/v1/conversations/{conversation_id}"
    stored = await _wait_for(stack, f"{base}/insights", lambda b: len(b["insights"]) >= len(live))
    assert {i["id"] for i in stored["insights"]} == {i["id"] for i in live}
    items = (await _api_get(stack, f"{base}/action-items"))["actionItems"]
    stored_contract = next(i for i in items if i["id"] == contract["id"])
    assert stored_contract["assignee"]["name"] == "Maria" and stored_contract["dueBy"] == contract["dueBy"]["value"]
    assert stored_contract["assignee"]["email"] == "maria@example.com"
    questions = (await _api_get(stack, f"{base}/questions"))["questions"]
    assert question["id"] in {q["id"] for q in questions}
    assert (await _api_get(stack, f"{base}/follow-ups"))["followUps"]

    detected = await _wait_for(stack, f"{base}/trackers-detected", lambda b: len(b) >= 2)
    assert {t["name"] for t in detected} >= {"Pricing", "Contract"}
    entities = (await _api_get(stack, f"{base}/entities"))["entities"]
    assert "money" in {e["type"] for e in entities}
    stored_topics = (await _api_get(stack, f"{base}/topics", sentiment="true", parentRefs="true"))["topics"]
    assert {t["text"] for t in stored_topics} & {t["phrases"] for t in topics}
    messages = (await _api_get(stack, f"{base}/messages", sentiment="true"))["messages"]
    assert messages and all(m["sentiment"]["suggested"] in ("positive", "neutral", "negative") for m in messages)

    # -- the summary was made when the call ended, so reading it computes nothing ------------------------------
    await _wait_for_stored_summary(stack, conversation_id, len(messages))
    summary = await _api_get(stack, f"{base}/summary")
    assert summary["summary"] and summary["producedBy"]["method"] == "extractive"
    assert (await _api_get(stack, f"{base}/summary"))["producedBy"] == summary["producedBy"]


async def _wait_for_stored_summary(stack: RunningStack, conversation_id: str, messages: int,
                                   timeout_s: float = 60.0) -> None:
    """Until the store worker has stored a summary covering every message (read from the database directly,
    since asking the API would make one)."""
    from convoscope.db import create_engine, session_factory
    from convoscope.db.models import Summary

    engine = create_engine(stack.stack.settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            async with session_factory(engine)() as session:
                stored = await session.get(Summary, conversation_id)
            if stored is not None and stored.message_count >= messages:
                return
            assert time.monotonic() < deadline, f"no stored summary after {timeout_s} s: {stored}"
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
