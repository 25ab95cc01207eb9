"""Talk-time analytics on hand-built speech, where every figure can be worked out on paper."""

from __future__ import annotations

import pytest

from processors.analytics.report import analytics_json
from processors.analytics.talk_time import (
    MemberSpeech,
    analyse,
    intersect,
    measure,
    merge,
    message_speech,
    speech_segments,
    subtract,
)


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


def test_interval_algebra() -> None:
    assert merge([(5, 6), (0, 1), (0.5, 2)]) == [(0, 2), (5, 6)]
    assert merge([(0, 1), (1.4, 2)], join_gap_s=0.5) == [(0, 2)]
    assert merge([(0, 1), (1.6, 2)], join_gap_s=0.5) == [(0, 1), (1.6, 2)]
    assert intersect([(0, 4), (6, 10)], [(3, 7), (9, 12)]) == [(3, 4), (6, 7), (9, 10)]
    assert subtract([(0, 10)], [(1, 2), (4, 5), (9, 12)]) == [(0, 1), (2, 4), (5, 9)]
    assert subtract([(0, 1), (3, 4)], [(0.5, 3.5)]) == [(0, 0.5), (3.5, 4)]
    assert measure([(0, 1.5), (2, 3)]) == 2.5


def test_a_message_is_one_span_whose_edges_follow_the_voice() -> None:
    # A message decoded from 10.0 to 13.0 s: voice from 10.2 (0.2 s lead-in) to 12.9 s (0.1 s tail).
    # Whisper starts the first word with the audio and ends the last one early; both are corrected, and the
    # 0.6 s between two words stays speech (the endpointer did not end the utterance there).
    words = [(10.0, 10.6), (10.6, 11.0), (11.6, 12.7)]
    assert message_speech(10.0, 13.0, words) == [(10.2, 12.9)]
    # Edges already inside the voiced part are kept.
    assert message_speech(10.0, 13.0, [(10.3, 11.0), (11.0, 12.95)]) == [(10.3, 12.95)]
    assert message_speech(10.0, 13.0, []) == [(10.2, 12.9)]
    assert message_speech(5.0, 5.1, [(5.0, 5.1)]) == [(5.1, 5.1)]  # shorter than lead-in and tail: no length


def test_words_join_across_short_pauses_only() -> None:
    words = [(0.0, 0.4), (0.45, 0.9), (1.2, 1.6), (3.0, 3.5)]  # pauses 0.05 s, 0.3 s, then 1.4 s
    assert speech_segments(words) == [(0.0, 1.6), (3.0, 3.5)]


def test_two_people_taking_turns_with_an_overlap() -> None:
    # Ann 0-10, Bob 9-15 (talks over Ann's last second), Ann again 20-24; the call is 30 s long.
    ann = MemberSpeech("ann", ((0.0, 10.0), (20.0, 24.0)), word_count=35, name="Ann", user_id="ann@example.com")
    bob = MemberSpeech("bob", ((9.0, 15.0),), word_count=20, name="Bob")
    result = analyse([ann, bob], duration_s=30.0, long_silence_s=3.0)

    assert result.duration_s == 30.0
    assert result.talk_s == approx(19.0)  # 0-15 and 20-24
    assert result.talk_percent == approx(100 * 19 / 30)
    assert result.silence_s == approx(11.0) and result.silence_percent == approx(100 * 11 / 30)
    assert result.silence_gaps == ((15.0, 20.0), (24.0, 30.0))
    assert result.overlap_s == approx(1.0) and result.overlap_percent == approx(100 / 19)

    a, b = result.members
    assert (a.talk_s, b.talk_s) == (approx(14.0), approx(6.0))
    assert a.talk_percent == approx(100 * 14 / 19) and b.talk_percent == approx(100 * 6 / 19)
    # Listening: others talk while this one does not.
    assert a.listen_s == approx(5.0) and b.listen_s == approx(13.0)
    assert a.listen_percent == approx(100 * 5 / 19)
    assert (a.overlap_s, b.overlap_s) == (approx(1.0), approx(1.0))
    # Overlap percent is of both speakers' talk time; Bob started while Ann spoke, not the other way round.
    (a_with_b,) = a.overlaps
    (b_with_a,) = b.overlaps
    assert a_with_b.member_id == "bob" and a_with_b.seconds == approx(1.0)
    assert a_with_b.percent == approx(100 / 20) and b_with_a.percent == approx(100 / 20)
    assert (a_with_b.interruptions, b_with_a.interruptions) == (0, 1)
    assert a.wpm == approx(35 / (14 / 60)) and b.wpm == approx(20 / (6 / 60))
    assert (a.turns, b.turns) == (2, 1)
    assert a.longest_monologue_s == approx(10.0) and b.longest_monologue_s == approx(6.0)


def test_a_backchannel_inside_a_monologue_does_not_split_the_turn() -> None:
    # Ann speaks 0-5 and 6-12 (a 1 s pause); Bob says "mhm" at 2-2.3 while Ann talks; Carl takes over at 13.
    ann = MemberSpeech("ann", ((0.0, 5.0), (6.0, 12.0)), word_count=40)
    bob = MemberSpeech("bob", ((2.0, 2.3),), word_count=1)
    carl = MemberSpeech("carl", ((13.0, 16.0), (18.0, 19.0)), word_count=12)
    result = analyse([ann, bob, carl])
    a, b, c = result.members
    assert a.turns == 1 and a.longest_monologue_s == approx(12.0)
    assert c.turns == 1 and c.longest_monologue_s == approx(6.0)
    assert b.turns == 1 and b.overlaps[0].member_id == "ann" and b.overlaps[0].interruptions == 1
    assert [o.member_id for o in a.overlaps] == ["bob"]  # Ann never overlapped Carl
    assert result.duration_s == 19.0  # no duration given: up to the end of the last speech
    assert result.overlap_s == approx(0.3)


def test_a_pause_filled_by_someone_else_makes_two_turns() -> None:
    ann = MemberSpeech("ann", ((0.0, 4.0), (6.0, 8.0)))
    bob = MemberSpeech("bob", ((4.5, 5.5),))
    a, b = analyse([ann, bob]).members
    assert a.turns == 2 and a.longest_monologue_s == approx(4.0)
    assert a.overlap_s == 0 and a.overlaps == () and b.turns == 1


def test_three_way_overlap_counts_once_for_the_conversation() -> None:
    members = [MemberSpeech(name, ((0.0, 10.0),)) for name in ("a", "b", "c")]
    result = analyse(members)
    assert result.talk_s == approx(10.0) and result.overlap_s == approx(10.0)
    assert result.overlap_percent == approx(100.0)
    for member in result.members:
        assert member.listen_s == approx(0.0) and member.overlap_s == approx(10.0)
        assert [o.percent for o in member.overlaps] == [approx(50.0), approx(50.0)]


def test_silent_conversation() -> None:
    quiet = MemberSpeech("q", ())
    result = analyse([quiet], duration_s=12.0)
    assert result.talk_s == 0 and result.silence_s == 12.0 and result.silence_percent == 100.0
    assert result.members[0].wpm == 0 and result.members[0].turns == 0
    assert analyse([]).duration_s == 0


def test_symbl_shape() -> None:
    ann = MemberSpeech("ann", ((0.0, 10.0), (20.0, 24.0)), word_count=35, name="Ann", user_id="ann@example.com")
    bob = MemberSpeech("bob", ((9.0, 15.0),), word_count=20, name=None)
    body = analytics_json(analyse([ann, bob], duration_s=30.0))
    assert body["metrics"] == [
        {"type": "total_silence", "percent": 36.667, "seconds": 11.0},
        {"type": "total_talk_time", "percent": 63.333, "seconds": 19.0},
        {"type": "total_overlap", "percent": 5.263, "seconds": 1.0},
    ]
    first, second = body["members"]
    assert first["id"] == "ann" and first["name"] == "Ann" and first["userId"] == "ann@example.com"
    assert first["pace"] == {"wpm": 150}
    assert first["talkTime"] == {"percentage": 73.684, "seconds": 14.0}
    assert first["listenTime"] == {"percentage": 26.316, "seconds": 5.0}
    assert first["overlap"] == {
        "overlapDuration": 1.0,
        "overlappingMembers": [{"id": "bob", "name": "unknown", "percent": 5.0, "seconds": 1.0, "interruptions": 0}],
    }
    assert second["name"] == "unknown" and "userId" not in second
    assert body["silences"] == [{"timeOffset": 15.0, "duration": 5.0}, {"timeOffset": 24.0, "duration": 6.0}]
