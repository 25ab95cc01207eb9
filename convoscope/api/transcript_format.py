"""Formatted transcripts (``POST /v1/conversations/{id}/transcript``): Markdown and SRT. Pure functions.

Markdown follows Symbl's sample: paragraphs end with ``<br/><br/>``, and with speaker separation each speaker's
turn starts with ``Name: ``. With ``createParagraphs`` a turn is broken into paragraphs at pauses of
``PARAGRAPH_PAUSE_S`` or after ``PARAGRAPH_MAX_SENTENCES`` sentences; without it a turn (or, with no speaker
separation, the whole transcript) is one paragraph. Highlighted phrases are wrapped in ``<mark>``.

SRT has one cue per message, split at word boundaries into cues of at most ``SRT_MAX_CUE_S`` seconds and
``SRT_MAX_CUE_WORDS`` words when word timings are known.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TranscriptLine", "markdown_transcript", "srt_timestamp", "srt_transcript"]

PARAGRAPH_PAUSE_S = 2.0
PARAGRAPH_MAX_SENTENCES = 5
PARAGRAPH_BREAK = "<br/><br/>"
SRT_MAX_CUE_S = 7.0
SRT_MAX_CUE_WORDS = 16


@dataclass(frozen=True)
class TranscriptLine:
    """One message on the conversation timeline."""

    speaker: str
    text: str
    start_s: float
    end_s: float
    words: Sequence[tuple[str, float, float]] = ()
    highlights: Sequence[str] = field(default=())


def _highlight(text: str, phrases: Sequence[str]) -> str:
    for phrase in sorted({p for p in phrases if p}, key=len, reverse=True):
        text = re.sub(re.escape(phrase), lambda m: f"<mark>{m.group(0)}</mark>", text, count=1, flags=re.IGNORECASE)
    return text


def _sentences(text: str) -> int:
    return max(1, len(re.findall(r"[.!?](?:\s|$)", text)))


def markdown_transcript(lines: Sequence[TranscriptLine], *, speakers: bool, paragraphs: bool) -> str:
    chunks: list[tuple[str | None, list[str]]] = []  # (speaker shown at the start or None, texts)
    previous: TranscriptLine | None = None
    sentences = 0
    for line in lines:
        text = _highlight(line.text, line.highlights)
        new_turn = speakers and (previous is None or previous.speaker != line.speaker)
        new_paragraph = paragraphs and previous is not None and (
            line.start_s - previous.end_s >= PARAGRAPH_PAUSE_S or sentences >= PARAGRAPH_MAX_SENTENCES
        )
        if not chunks or new_turn or new_paragraph:
            chunks.append((line.speaker if new_turn else None, []))
            sentences = 0
        chunks[-1][1].append(text)
        sentences += _sentences(line.text)
        previous = line
    out = []
    for speaker, texts in chunks:
        body = " ".join(texts)
        out.append(f"{speaker}: {body}" if speaker is not None else body)
    return "".join(paragraph + PARAGRAPH_BREAK for paragraph in out)


def srt_timestamp(seconds: float) -> str:
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def _cues(line: TranscriptLine) -> list[tuple[float, float, str]]:
    if not line.words:
        return [(line.start_s, line.end_s, line.text)]
    cues: list[tuple[float, float, str]] = []
    current: list[tuple[str, float, float]] = []
    for word in line.words:
        if current and (len(current) >= SRT_MAX_CUE_WORDS or word[2] - current[0][1] > SRT_MAX_CUE_S):
            cues.append((current[0][1], current[-1][2], " ".join(w for w, _, _ in current)))
            current = []
        current.append(word)
    cues.append((current[0][1], current[-1][2], " ".join(w for w, _, _ in current)))
    return cues


def srt_transcript(lines: Sequence[TranscriptLine], *, speakers: bool) -> str:
    blocks = []
    for line in lines:
        for start, end, text in _cues(line):
            shown = f"{line.speaker}: {text}" if speakers else text
            blocks.append(f"{len(blocks) + 1}\n{srt_timestamp(start)} --> {srt_timestamp(max(end, start))}\n{shown}\n")
    return "\n".join(blocks)
