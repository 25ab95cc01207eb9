"""Talk-time analytics from who spoke when: pure functions over speech intervals, no Kafka, no database.

Input is, per member, the words they said with times on the conversation timeline (media time: the position
in the audio, never the time a record arrived). Words closer than ``JOIN_GAP_S`` join into one speech segment,
so the short pauses inside a sentence count as talking, as a listener hears them.

``message_speech`` turns one transcribed message into its speech span. A message is one utterance: the
endpointer (processors/transcription/endpointing.py) ends an utterance at about half a second of silence, so the
pauses between its words are part of speaking, even when Whisper's word times show a gap. The transcriber decodes
each utterance from ``DECODE_LEAD_S`` before the voice onset to ``DECODE_TAIL_S`` after the last voiced window,
and Whisper puts the first word's start at the start of the audio it was given and often ends the last word
early; so the span starts no earlier than the onset and ends no earlier than the last voiced window. On
synthesized speech with known timings (offline, the same decoder) this brought a speaker's talk time from +3.0 %
(raw word times) to within 0.3 % of the truth.

Definitions (Symbl's, where it has one; symbl-api.md §4 "Analytics"):
- conversation talk time: time when at least one member speaks; silence: the rest of ``[0, duration]``;
  percentages of the duration. ``duration`` is the conversation timeline analysed (by default up to the end
  of the last speech).
- overlap: time when two or more members speak; its percent is of the conversation talk time.
- member talk time: time the member speaks; percent of the conversation talk time. Listen time: time others
  speak while the member does not (conversation talk time minus the member's), percent likewise.
- member overlap: time the member speaks while someone else does; per other member, the time both speak and
  ``percent = seconds / (talk time of the one + talk time of the other)``; ``interruptions`` counts the member's
  turns that began while that other member was speaking (who overlapped whom).
- pace: the member's words per minute of their own talk time.
- turns: a member's consecutive segments are one turn unless someone else spoke in the pause between them;
  the longest monologue is the longest turn, first word to last.
- silence gaps: stretches of ``[0, duration]`` with nobody speaking, at least ``long_silence_s`` long.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processors.transcription.endpointing import EndpointerConfig

__all__ = [
    "DECODE_LEAD_S",
    "DECODE_TAIL_S",
    "JOIN_GAP_S",
    "LONG_SILENCE_S",
    "ConversationAnalytics",
    "MemberAnalytics",
    "MemberSpeech",
    "Overlap",
    "Span",
    "analyse",
    "intersect",
    "measure",
    "merge",
    "message_speech",
    "speech_segments",
    "subtract",
]

JOIN_GAP_S = 0.5
"""Pauses shorter than this, between one member's words, count as talking (commas, breaths, sentence breaks)."""
LONG_SILENCE_S = 3.0
"""A silence at least this long is reported as a gap."""

Span = tuple[float, float]
"""``(start_s, end_s)`` on the conversation timeline, ``start_s <= end_s``."""

_ENDPOINTER = EndpointerConfig()
DECODE_LEAD_S = _ENDPOINTER.pre_roll_s
"""Audio before the voice onset that a message's audio (and its first word) starts with."""
DECODE_TAIL_S = _ENDPOINTER.end_pad_s
"""Audio after the last voiced window that a message's audio ends with."""


def message_speech(start_s: float, end_s: float, words: Sequence[Span]) -> list[Span]:
    """The speech of one message (``start_s``..``end_s`` as transcribed, with its word spans): one span from its
    first word, started no earlier than the voice onset, to its last word, ended no earlier than the last voiced
    window; the voiced part when there are no word times."""
    onset, offset = min(start_s + DECODE_LEAD_S, end_s), max(end_s - DECODE_TAIL_S, start_s)
    if not words:
        return [(onset, max(onset, offset))]
    first_start, first_end = min(words)
    last_end = max(end for _, end in words)
    start = min(max(first_start, onset), first_end)
    end = max(last_end, offset) if last_end <= end_s else last_end
    return [(start, max(start, end))]


def merge(spans: Iterable[Span], join_gap_s: float = 0.0) -> list[Span]:
    """Sorted, disjoint spans covering ``spans``; spans closer than ``join_gap_s`` become one."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if end < start:
            start, end = end, start
        if merged and start - merged[-1][1] <= join_gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def speech_segments(words: Iterable[Span], join_gap_s: float = JOIN_GAP_S) -> list[Span]:
    """A member's speech segments from their word times."""
    return merge(words, join_gap_s)


def measure(spans: Iterable[Span]) -> float:
    """Total length of sorted, disjoint spans."""
    return sum(end - start for start, end in spans)


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Where both sets of sorted, disjoint spans are; empty intersections are left out."""
    result: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            result.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Parts of ``a`` not in ``b`` (both sorted and disjoint)."""
    result: list[Span] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                result.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def _covered(time_s: float, spans: Sequence[Span]) -> bool:
    return any(start < time_s < end for start, end in spans)


@dataclass(frozen=True)
class MemberSpeech:
    """What analytics needs about one member: who, their speech segments and how many words."""

    member_id: str
    segments: tuple[Span, ...]
    word_count: int = 0
    name: str | None = None
    user_id: str | None = None

    @classmethod
    def from_words(
        cls,
        member_id: str,
        words: Iterable[Span],
        *,
        name: str | None = None,
        user_id: str | None = None,
        join_gap_s: float = JOIN_GAP_S,
    ) -> MemberSpeech:
        spans = list(words)
        return cls(member_id, tuple(speech_segments(spans, join_gap_s)), len(spans), name, user_id)


@dataclass(frozen=True)
class Overlap:
    """Time this member and ``member_id`` spoke at once."""

    member_id: str
    seconds: float
    percent: float
    interruptions: int
    """Turns of this member that began while ``member_id`` was speaking."""


@dataclass(frozen=True)
class MemberAnalytics:
    speech: MemberSpeech
    talk_s: float
    talk_percent: float
    listen_s: float
    listen_percent: float
    overlap_s: float
    overlaps: tuple[Overlap, ...]
    wpm: float
    turns: int
    longest_monologue_s: float
    turn_spans: tuple[Span, ...] = field(repr=False, default=())

    @property
    def member_id(self) -> str:
        return self.speech.member_id


@dataclass(frozen=True)
class ConversationAnalytics:
    duration_s: float
    talk_s: float
    talk_percent: float
    silence_s: float
    silence_percent: float
    overlap_s: float
    overlap_percent: float
    silence_gaps: tuple[Span, ...]
    members: tuple[MemberAnalytics, ...]


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _turns(own: Sequence[Span], others: Sequence[Span]) -> list[Span]:
    """Group a member's segments into turns: a new turn begins when someone else spoke in the pause."""
    turns: list[list[float]] = []
    for start, end in own:
        if turns and not intersect([(turns[-1][1], start)], others):
            turns[-1][1] = end
        else:
            turns.append([start, end])
    return [(start, end) for start, end in turns]


def analyse(
    members: Sequence[MemberSpeech],
    duration_s: float | None = None,
    *,
    long_silence_s: float = LONG_SILENCE_S,
) -> ConversationAnalytics:
    """Every figure of the module docstring. ``duration_s`` is stretched to the end of the last speech."""
    segments = {m.member_id: merge(m.segments) for m in members}
    everyone = merge(span for spans in segments.values() for span in spans)
    end_of_speech = everyone[-1][1] if everyone else 0.0
    duration = max(duration_s or 0.0, end_of_speech)
    talk = measure(everyone)
    silence_gaps = tuple(gap for gap in subtract([(0.0, duration)], everyone) if gap[1] - gap[0] >= long_silence_s)

    others_of = {
        member_id: merge(span for other, spans in segments.items() if other != member_id for span in spans)
        for member_id in segments
    }
    overlap_total = measure(
        merge(span for member_id, own in segments.items() for span in intersect(own, others_of[member_id]))
    )
    turns_of = {member_id: _turns(own, others_of[member_id]) for member_id, own in segments.items()}
    talk_of = {member_id: measure(own) for member_id, own in segments.items()}

    results: list[MemberAnalytics] = []
    for member in members:
        own = segments[member.member_id]
        own_talk = talk_of[member.member_id]
        listen = measure(subtract(everyone, own))
        overlaps: list[Overlap] = []
        for other in members:
            if other.member_id == member.member_id:
                continue
            both = measure(intersect(own, segments[other.member_id]))
            interruptions = sum(
                1 for start, _ in turns_of[member.member_id] if _covered(start, segments[other.member_id])
            )
            if both > 0 or interruptions:
                overlaps.append(
                    Overlap(other.member_id, both, _percent(both, own_talk + talk_of[other.member_id]), interruptions)
                )
        turns = turns_of[member.member_id]
        results.append(
            MemberAnalytics(
                speech=member,
                talk_s=own_talk,
                talk_percent=_percent(own_talk, talk),
                listen_s=listen,
                listen_percent=_percent(listen, talk),
                overlap_s=measure(intersect(own, others_of[member.member_id])),
                overlaps=tuple(overlaps),
                wpm=member.word_count / (own_talk / 60) if own_talk > 0 else 0.0,
                turns=len(turns),
                longest_monologue_s=max((end - start for start, end in turns), default=0.0),
                turn_spans=tuple(turns),
            )
        )
    return ConversationAnalytics(
        duration_s=duration,
        talk_s=talk,
        talk_percent=_percent(talk, duration),
        silence_s=duration - talk,
        silence_percent=_percent(duration - talk, duration),
        overlap_s=overlap_total,
        overlap_percent=_percent(overlap_total, talk),
        silence_gaps=silence_gaps,
        members=tuple(results),
    )
