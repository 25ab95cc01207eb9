"""What a live client is sent for the text processors' records: Symbl's shapes, only what it asked for."""

from __future__ import annotations

from typing import Any

from sinks.live.view import LiveOptions, LiveView
from tests.store.records import final, insight, speaker, text_result

START_MS = 1_700_000_000_000
CID = "1700000000000001"


def _transcript(index: int, text: str, who: str = "Maria") -> dict[str, Any]:
    return final(CID, "app", "stream-1", speaker(CID, who, f"{who.lower()}@example.com"), index,
                 index * 64_000, index * 64_000 + 48_000, text, START_MS)


def _insights_record() -> dict[str, Any]:
    return text_result(_transcript(0, "How much is it? I'll send the quote by Friday."), insights=[
        insight("q", "QUESTION", "How much is it?", 0.95),
        insight("a", "ACTION_ITEM", "I'll send the quote by Friday.", 0.9, char_offset=17,
                assignee_name="Maria", assignee_is_speaker=True, due_by="2023-11-17T23:59:59+00:00",
                due_text="by Friday"),
    ])


def test_insight_response_carries_only_the_types_the_client_asked_for() -> None:
    view = LiveView(CID, LiveOptions(insight_types=frozenset({"action_item"})))
    [body] = view.render("insights", _insights_record())
    assert body["type"] == "insight_response" and body["sequenceNumber"] == 0
    [item] = body["insights"]
    assert item["type"] == "action_item"
    assert item["payload"] == {"content": "I'll send the quote by Friday.", "contentType": "text/plain"}
    assert item["text"] == item["payload"]["content"]
    assert item["assignee"]["name"] == "Maria" and item["assignee"] == item["from"]
    assert item["dueBy"] == {"value": "2023-11-17T23:59:59+00:00"}
    assert all(isinstance(hint["value"], str) for hint in item["hints"])

    assert LiveView(CID, LiveOptions()).render("insights", _insights_record()) == []  # none asked for
    everything = LiveView(CID, LiveOptions.everything()).render("insights", _insights_record())
    assert [i["type"] for i in everything[0]["insights"]] == ["question", "action_item"]


def test_trackers_and_entities_in_symbl_shapes() -> None:
    transcript = _transcript(1, "That is too expensive for Globex.")
    trackers = text_result(transcript, is_final=True, matches=[{
        "match_id": "m", "tracker_id": "t1", "tracker_name": "Pricing", "vocabulary": "too expensive",
        "mode": "EXACT", "matched_text": "too expensive", "offset": 8, "score": 1.0}])
    entities = text_result(transcript, entities=[{
        "entity_id": "e", "type": "organization", "sub_type": None, "category": "Managed", "value": "Globex",
        "text": "Globex", "offset": 26}])

    view = LiveView(CID, LiveOptions())
    [tracker_body] = view.render("trackers", trackers)
    assert tracker_body["type"] == "tracker_response" and tracker_body["isFinal"] is True
    [tracker] = tracker_body["trackers"]
    assert (tracker["name"], tracker["matches"][0]["value"]) == ("Pricing", "too expensive")
    ref = tracker["matches"][0]["messageRefs"][0]
    assert (ref["id"], ref["offset"]) == (transcript["message_id"], 8) and ref["startTime"].endswith("Z")
    assert view.render("trackers", {**trackers, "matches": []}) == []  # nothing matched: nothing sent
    assert view.render("entities", entities) == []  # detectEntities was not asked for

    [entity_body] = LiveView(CID, LiveOptions(entities=True)).render("entities", entities)
    assert entity_body["entities"] == [{
        "type": "organization", "subType": "organization", "category": "Managed",
        "matches": [{"detectedValue": "Globex",
                     "messageRefs": [{"id": transcript["message_id"], "text": transcript["text"], "offset": 26}]}],
    }]


def test_topics_are_reranked_as_the_conversation_grows_and_sent_when_they_change() -> None:
    view = LiveView(CID, LiveOptions())
    lines = [
        "We need to talk about the pricing page.",
        "The pricing page still shows last year's prices.",
        "Okay.",
    ]
    sent = []
    for index, text in enumerate(lines):
        transcript = _transcript(index, text)
        phrases = [{"phrase": "pricing page", "root_words": ["page"], "offset": text.find("pricing")}] \
            if "pricing page" in text else []
        sent.append(view.render("topics", text_result(transcript, sentiment=0.0, phrases=phrases)))
    assert sent[0] and sent[0][0]["type"] == "topic_response"
    first = sent[0][0]["topics"][0]
    assert first["phrases"] == "pricing page" and first["rootWords"] == [{"text": "page"}]
    assert len(sent[1][0]["topics"][0]["messageReferences"]) == 2  # grew with the second mention
    assert sent[2] == []  # a message without phrases changes nothing


def test_final_messages_carry_sentiment_only_when_asked() -> None:
    transcript = _transcript(0, "This is great, thank you so much!")
    plain = LiveView(CID, LiveOptions()).render("final", transcript)
    assert [b.get("type") for b in plain] == ["message", "message_response"]
    assert "sentiment" not in plain[1]["messages"][0]
    with_sentiment = LiveView(CID, LiveOptions(sentiment=True)).render("final", transcript)
    assert with_sentiment[1]["messages"][0]["sentiment"]["suggested"] == "positive"


def test_analytics_go_only_to_clients_that_asked_and_only_when_newer() -> None:
    from processors.analytics.state import ConversationSpeech

    state = ConversationSpeech(CID, "app")
    state.apply_final(_transcript(0, "one two three four five six", who="Maria"))
    first = state.to_record(START_MS + 10_000)
    state.apply_final(_transcript(1, "seven eight nine", who="Maria"))
    second = state.to_record(START_MS + 20_000)

    assert LiveView(CID, LiveOptions()).render("analytics", second) == []
    view = LiveView(CID, LiveOptions(analytics=True))
    [body] = view.render("analytics", first)
    assert body["type"] == "analytics_response" and body["conversationId"] == CID
    [member] = body["analytics"]["members"]
    assert member["name"] == "Maria" and member["talkTime"]["seconds"] > 0
    assert view.render("analytics", first) == []  # the same state again (a compacted topic re-read)
    [newer] = view.render("analytics", second)
    assert newer["sequenceNumber"] == 1
    assert newer["analytics"]["members"][0]["talkTime"]["seconds"] > member["talkTime"]["seconds"]
