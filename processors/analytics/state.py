"""One conversation's live analytics state: final transcripts in, ``ConversationAnalytics`` records out. Pure.

The state is exactly what the output record carries (each member's merged speech segments, word counts and the
end sample of the latest final per stream), so a worker rebuilds it from the latest record after a restart and
a final re-read after the restart is recognised and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.analytics.talk_time import (
    JOIN_GAP_S,
    LONG_SILENCE_S,
    ConversationAnalytics,
    MemberSpeech,
    analyse,
    merge,
    message_speech,
)

__all__ = ["SAMPLE_RATE_HZ", "ConversationSpeech", "final_word_spans"]

SAMPLE_RATE_HZ = 16_000


def final_word_spans(final: dict[str, Any]) -> list[tuple[float, float]]:
    """A FinalTranscript's speech as word spans ``(start_s, end_s)`` on the conversation timeline
    (``talk_time.message_speech``)."""
    offset_ms = int(final["stream_offset_ms"])
    words = [((offset_ms + int(w["start_ms"])) / 1000, (offset_ms + int(w["end_ms"])) / 1000)
             for w in final.get("words") or []]
    start = offset_ms / 1000 + int(final["start_sample"]) / SAMPLE_RATE_HZ
    end = offset_ms / 1000 + int(final["end_sample"]) / SAMPLE_RATE_HZ
    return message_speech(start, end, words)


@dataclass
class _Member:
    name: str | None
    user_id: str | None
    segments: list[tuple[float, float]] = field(default_factory=list)
    word_count: int = 0


@dataclass
class ConversationSpeech:
    conversation_id: str
    app_id: str
    members: dict[str, _Member] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=dict)
    message_count: int = 0
    long_silence_s: float = LONG_SILENCE_S

    def apply_final(self, final: dict[str, Any]) -> bool:
        """Add one final transcript; False (and no change) for a final its stream already went past."""
        stream_id, end_sample = final["stream_id"], int(final["end_sample"])
        if end_sample <= self.streams.get(stream_id, -1):
            return False
        self.streams[stream_id] = end_sample
        speaker = final["speaker"]
        member = self.members.get(speaker["id"])
        if member is None:
            member = self.members[speaker["id"]] = _Member(speaker.get("name"), speaker.get("user_id"))
        else:
            member.name = speaker.get("name") or member.name
            member.user_id = speaker.get("user_id") or member.user_id
        spans = final_word_spans(final)
        member.segments = merge([*member.segments, *spans], JOIN_GAP_S)
        member.word_count += len(final.get("words") or []) or len(str(final.get("text", "")).split())
        self.message_count += 1
        return True

    def analytics(self) -> ConversationAnalytics:
        speech = [
            MemberSpeech(member_id, tuple(m.segments), m.word_count, m.name, m.user_id)
            for member_id, m in sorted(self.members.items(), key=lambda item: (item[1].name or "", item[0]))
        ]
        return analyse(speech, long_silence_s=self.long_silence_s)

    def to_record(self, now_ms: int) -> dict[str, Any]:
        """The ``convoscope.analytics.v1`` value (schemas/analytics.avsc)."""
        result = self.analytics()

        def ms(seconds: float) -> int:
            return round(seconds * 1000)

        return {
            "conversation_id": self.conversation_id,
            "app_id": self.app_id,
            "message_count": self.message_count,
            "duration_ms": ms(result.duration_s),
            "talk_ms": ms(result.talk_s),
            "silence_ms": ms(result.silence_s),
            "overlap_ms": ms(result.overlap_s),
            "silence_gaps": [{"start_ms": ms(start), "end_ms": ms(end)} for start, end in result.silence_gaps],
            "long_silence_ms": ms(self.long_silence_s),
            "members": [
                {
                    "speaker": {"id": m.member_id, "name": m.speech.name, "user_id": m.speech.user_id},
                    "talk_ms": ms(m.talk_s),
                    "listen_ms": ms(m.listen_s),
                    "overlap_ms": ms(m.overlap_s),
                    "word_count": m.speech.word_count,
                    "wpm": round(m.wpm, 3),
                    "turns": m.turns,
                    "longest_monologue_ms": ms(m.longest_monologue_s),
                    "overlaps": [
                        {"member_id": o.member_id, "overlap_ms": ms(o.seconds), "interruptions": o.interruptions}
                        for o in m.overlaps
                    ],
                    # Word times are whole milliseconds, so segments survive the round trip exactly.
                    "segments": [{"start_ms": ms(start), "end_ms": ms(end)} for start, end in m.speech.segments],
                }
                for m in result.members
            ],
            "streams": dict(self.streams),
            "updated_at_ms": now_ms,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ConversationSpeech:
        """The state an earlier ``to_record`` describes."""
        state = cls(
            record["conversation_id"],
            record["app_id"],
            streams={k: int(v) for k, v in record["streams"].items()},
            message_count=int(record["message_count"]),
            long_silence_s=int(record["long_silence_ms"]) / 1000,
        )
        for member in record["members"]:
            speaker = member["speaker"]
            state.members[speaker["id"]] = _Member(
                speaker.get("name"),
                speaker.get("user_id"),
                [(s["start_ms"] / 1000, s["end_ms"] / 1000) for s in member["segments"]],
                int(member["word_count"]),
            )
        return state
