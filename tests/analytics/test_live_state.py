"""Live analytics state: finals in, records out, and the record is enough to carry on after a restart."""

from __future__ import annotations

import pytest

from processors.analytics.report import record_analytics_response
from processors.analytics.state import ConversationSpeech, final_word_spans
from schemas.topics import ANALYTICS
from tests.store.records import final, speaker

START_MS = 1_700_000_000_000
CID, APP = "5000000000000001", "a" * 64
ANN = speaker(CID, "Ann", "ann@example.com")
BOB = speaker(CID, "Bob")


def test_words_are_placed_on_the_conversation_timeline() -> None:
    # Bob's stream started 2 s into the conversation; his words at 1.0-2.0 s of his stream are at 3-4 s. The
    # message's audio starts 0.2 s before his voice (the transcriber's lead-in), and so does its first word.
    record = final(CID, APP, "bob-stream", BOB, 0, 16_000, 32_000, "hi there", START_MS + 2000, 2000)
    assert final_word_spans(record) == [(3.2, 4.0)]
    record["words"] = []  # no word times: the voiced part of the message, without lead-in and tail
    assert final_word_spans(record) == [(3.2, 3.9)]


def test_finals_accumulate_and_replays_are_ignored() -> None:
    state = ConversationSpeech(CID, APP)
    first = final(CID, APP, "s1", ANN, 0, 0, 80_000, "one two three four five six seven eight nine ten", START_MS)
    assert state.apply_final(first)
    assert not state.apply_final(first)  # the same final again
    assert state.apply_final(final(CID, APP, "s2", BOB, 0, 64_000, 128_000, "a b c d", START_MS))
    later = final(CID, APP, "s1", ANN, 1, 160_000, 192_000, "and more", START_MS)
    assert state.apply_final(later)
    # An earlier fragment of s1 re-read after a crash ends before the stream's last applied final.
    assert not state.apply_final(final(CID, APP, "s1", ANN, 0, 0, 40_000, "one two", START_MS))
    assert state.message_count == 3

    result = state.analytics()
    ann, bob = result.members
    assert ann.speech.word_count == 12 and bob.speech.word_count == 4
    # Speech from 0.2 s into each message: Ann 0.2-5 and 10.2-12, Bob 4.2-8.
    assert ann.talk_s == pytest.approx(6.6) and bob.talk_s == pytest.approx(3.8)
    assert result.overlap_s == pytest.approx(0.8) and result.duration_s == pytest.approx(12.0)
    assert ann.turns == 2 and bob.overlaps[0].interruptions == 1


def test_record_round_trip_restores_the_state() -> None:
    state = ConversationSpeech(CID, APP)
    state.apply_final(final(CID, APP, "s1", ANN, 0, 0, 80_000, "one two three four five", START_MS))
    state.apply_final(final(CID, APP, "s2", BOB, 0, 64_000, 128_000, "a b c d", START_MS, 0))
    record = state.to_record(START_MS + 60_000)
    decoded = ANALYTICS.serde.deserialize(ANALYTICS.serde.serialize(record))
    restored = ConversationSpeech.from_record(decoded)
    assert restored.analytics() == state.analytics()
    assert not restored.apply_final(final(CID, APP, "s2", BOB, 0, 64_000, 128_000, "a b c d", START_MS, 0))
    assert restored.apply_final(final(CID, APP, "s2", BOB, 1, 160_000, 176_000, "e f", START_MS, 0))
    assert restored.to_record(0)["members"][1]["word_count"] == 6

    # Ann speaks 0.2-5 s, Bob 4.2-8 s.
    assert decoded["talk_ms"] == 7800 and decoded["overlap_ms"] == 800 and decoded["silence_ms"] == 200
    bob = decoded["members"][1]
    assert bob["speaker"]["name"] == "Bob" and bob["listen_ms"] == 4000
    assert bob["wpm"] == pytest.approx(4 / 3.8 * 60, abs=1e-3)
    assert bob["overlaps"] == [{"member_id": ANN["id"], "overlap_ms": 800, "interruptions": 1}]

    live = record_analytics_response(decoded, 7)
    assert live["type"] == "analytics_response" and live["conversationId"] == CID and live["sequenceNumber"] == 7
    talk = {m["name"]: m["talkTime"]["seconds"] for m in live["analytics"]["members"]}
    assert talk == {"Ann": 4.8, "Bob": 3.8}
