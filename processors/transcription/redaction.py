"""PII redaction of transcripts, applied by the transcription worker before anything is published. Pure: no Kafka.

A stream asks for some of ``REDACTION_TYPES`` (``processors/pii.py``); each piece of text of a requested type is
replaced by its placeholder:

- ``email`` → ``[EMAIL]``: written addresses, spoken ones ("ann dot lee at acme dot com"), the mixtures Whisper
  writes ("David at Yahoo.com"), and a bare domain ("merrysmithandoutlook.com", what Whisper makes of a spoken
  address it could not follow) when the message mentions e-mail or an address before it.
- ``credit_card`` → ``[CREDIT_CARD]``, ``phone_number`` → ``[PHONE_NUMBER]``, ``number`` → ``[NUMBER]``: runs of
  digits, however the recogniser wrote them: "4242 4242 4242 4242", "4,111,111,111,111,111", "5-5-5-867-5-3-0-5",
  "5, 5, 5, 1, 2, 3", "zero seven seven zero ..." (three or more digit words). A run of 13 or more digits is a card
  number (no Luhn check: Whisper drops and repeats digits of a card read out, and a misheard card number is still
  one); 7 to 12 digits, or a "+" and up to 15, a phone number; shorter runs, amounts ("$1,200,000", "12%",
  "3 million") and anything of a type the stream did not ask for are numbers. Number words ("twenty five") and
  words with digits ("Q3", "10am") are kept. Everything the entity detector calls a phone or card number is covered.
- ``person`` → ``[PERSON]``: the people entity detection finds (spaCy NER with its fixes), through ``find_people``,
  which the worker loads only for streams that ask for it.

Overlapping finds merge into one placeholder of the strongest type (email, card, phone, person, number), so no
part of a find is left in clear. Interims (``partial=True``) also mask a run of three or more digits at the end of
the text as the phone or card number it may be becoming.

Words keep their times: the words a find touches become one word, the placeholder plus whatever of the first and
last word lay outside the find ("$250." → "$[NUMBER]."), from the start of the first to the end of the last, with
the lowest confidence among them. So a message's words still tile its audio, and ``text`` and ``words`` agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from processors.pii import (
    CARD,
    DIGIT_WORDS,
    EMAIL,
    EMAIL_TLDS,
    PHONE,
    REDACTION_TYPES,
    SPOKEN_EMAIL,
    SPOKEN_PHONE,
    luhn_valid,
    placeholder,
)
from processors.transcription.asr import Transcription, WordTiming

__all__ = [
    "PeopleFinder",
    "PiiSpan",
    "find_pii",
    "redact_text",
    "redact_transcription",
    "redaction_types",
]

PeopleFinder = Callable[[str], Sequence[tuple[int, int]]]
"""Character spans of people's names in a text."""

CARD_MIN_DIGITS = 13
PHONE_MIN_DIGITS = 7
INTERNATIONAL_PHONE_MAX_DIGITS = 15  # E.164
PARTIAL_MIN_DIGITS = 3
MIN_DIGIT_WORDS = 3  # "one two" is speech; "four two four two" is a number read out
# When finds overlap, the merged placeholder is of the first of these types among them.
_STRENGTH = ("email", "credit_card", "phone_number", "person", "number")

_TLD = "(?:" + "|".join(EMAIL_TLDS) + ")"
_DOT = r"(?:\s+dot\s+|\.)"
# "David at Yahoo.com", "ann at acme dot com", "john.smith at example.com": spoken and written parts mixed. Parts
# start at a word's start and their counts are bounded, so a long run of words cannot make matching quadratic.
_MIXED_EMAIL = re.compile(
    rf"(?<![\w.-])[a-z0-9]{{1,64}}(?:{_DOT}[a-z0-9]{{1,64}}){{0,4}}\s+(?:at|@)\s+"
    rf"[a-z0-9-]{{1,63}}(?:{_DOT}[a-z0-9-]{{1,63}}){{0,3}}{_DOT}{_TLD}\b",
    re.IGNORECASE,
)
_DOMAIN = re.compile(
    rf"(?<![\w.-])(?:www\.)?[a-z0-9-]{{1,63}}(?:\.[a-z0-9-]{{1,63}}){{0,3}}(?:\.|\s+dot\s+){_TLD}\b",
    re.IGNORECASE,
)
_EMAIL_CONTEXT = re.compile(r"\b(?:e-?mail|mail|address)\b", re.IGNORECASE)
_DIGIT_UNIT = re.compile(
    r"(?<![A-Za-z\d])\d+(?![A-Za-z\d])|\b(?:" + "|".join(DIGIT_WORDS) + r")\b", re.IGNORECASE
)
# What may stand between two digit groups of one number: spaces, or a hyphen, dash, comma or parenthesis with spaces
# around it, or a dot without ("415.555.0132", "3.5"; a full stop and a space end a sentence).
_JOINER = re.compile(r"\s*[-\u2013,()]?\s*|\s*\)\s*-?\s*|\.")
_YEAR = re.compile(r"(?:19|20)\d\d")
_CURRENCY_BEFORE = re.compile(r"[$€£¥]\s?$")
_AMOUNT_AFTER = re.compile(
    r"\s?(?:%|percent\b|per\s+cent\b|k\b|thousand\b|million\b|billion\b|dollars?\b|euros?\b|pounds?\b|bucks\b|"
    r"cents?\b)",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"[\s.,?!\-]*$")


@dataclass(frozen=True)
class PiiSpan:
    start: int
    end: int
    type: str


@dataclass(frozen=True)
class _DigitRun:
    start: int
    end: int
    digits: int
    international: bool
    amount: bool


def redaction_types(requested: Iterable[str]) -> frozenset[str]:
    """The known types among ``requested`` (a newer producer may name types this worker does not know)."""
    return frozenset(requested) & frozenset(REDACTION_TYPES)


def _digit_runs(text: str) -> list[_DigitRun]:
    """Maximal runs of digit groups and digit words joined as numbers are written or spoken."""
    units = list(_DIGIT_UNIT.finditer(text))
    runs: list[list[re.Match[str]]] = []
    for unit in units:
        if runs:
            previous = runs[-1][-1]
            gap = text[previous.end():unit.start()]
            years = _YEAR.fullmatch(previous.group()) and _YEAR.fullmatch(unit.group())
            # "2019, 2020" is a list of years, not one number.
            if _JOINER.fullmatch(gap) and not (years and "," in gap) and len(gap) <= 3:
                runs[-1].append(unit)
                continue
        runs.append([unit])
    found = []
    for run in runs:
        while run and run[0].group().lower() == "oh":
            run = run[1:]  # "Oh, one more thing": an exclamation before a number is no zero
        digits = sum(1 if unit.group().isalpha() else len(unit.group()) for unit in run)
        words = sum(1 for unit in run if unit.group().isalpha())
        if not run or (words == len(run) and words < MIN_DIGIT_WORDS):
            continue  # "one", "two of them": words, not a number read out
        start, end = run[0].start(), run[-1].end()
        international = text[max(0, start - 1):start] == "+"
        if international or text[max(0, start - 1):start] == "(":
            start -= 1
        if text[end:end + 1] == ")" and "(" in text[start:end]:
            end += 1
        amount = bool(_CURRENCY_BEFORE.search(text[:start]) or _AMOUNT_AFTER.match(text, end))
        found.append(_DigitRun(start, end, digits, international, amount))
    return found


def _run_types(run: _DigitRun, text: str, partial: bool) -> tuple[str, ...]:
    """The types a run of digits may be, most specific first."""
    if run.amount:
        return ("number",)
    if run.international and PHONE_MIN_DIGITS <= run.digits <= INTERNATIONAL_PHONE_MAX_DIGITS:
        return ("phone_number", "number")
    if run.digits >= CARD_MIN_DIGITS:
        return ("credit_card", "number")
    if partial and run.digits >= PARTIAL_MIN_DIGITS and _TRAILING.fullmatch(text, run.end):
        # An interim ends mid-number: the rest of the phone or card number is still being spoken.
        return ("phone_number", "credit_card", "number")
    if run.digits >= PHONE_MIN_DIGITS:
        return ("phone_number", "number")
    return ("number",)


def _candidates(text: str, types: frozenset[str], find_people: PeopleFinder | None,
                partial: bool) -> list[PiiSpan]:
    found: list[PiiSpan] = []
    if "email" in types:
        for pattern in (EMAIL, SPOKEN_EMAIL, _MIXED_EMAIL):
            found += [PiiSpan(m.start(), m.end(), "email") for m in pattern.finditer(text)]
        found += [PiiSpan(m.start(), m.end(), "email") for m in _DOMAIN.finditer(text)
                  if _EMAIL_CONTEXT.search(text, 0, m.end())]
    # The entity detector's own patterns first, so whatever it reports as a phone or card number is masked too.
    if "credit_card" in types:
        for m in CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if len(digits) >= CARD_MIN_DIGITS and luhn_valid(digits):
                found.append(PiiSpan(m.start(), m.end(), "credit_card"))
    if "phone_number" in types:
        found += [PiiSpan(m.start(), m.end(), "phone_number") for m in PHONE.finditer(text)]
        found += [PiiSpan(m.start(), m.start() + len(m.group().rstrip(" -")), "phone_number")
                  for m in SPOKEN_PHONE.finditer(text)]
    if types & {"credit_card", "phone_number", "number"}:
        for run in _digit_runs(text):
            kind = next((t for t in _run_types(run, text, partial) if t in types), None)
            if kind is not None:
                found.append(PiiSpan(run.start, run.end, kind))
    if "person" in types and find_people is not None:
        found += [PiiSpan(start, end, "person") for start, end in find_people(text) if 0 <= start < end <= len(text)]
    return found


def find_pii(text: str, types: Collection[str], *, find_people: PeopleFinder | None = None,
             partial: bool = False) -> list[PiiSpan]:
    """What to mask in ``text``: non-overlapping spans in text order, overlapping finds merged (strongest type)."""
    wanted = redaction_types(types)
    if not wanted or not text:
        return []
    merged: list[PiiSpan] = []
    for span in sorted(_candidates(text, wanted, find_people, partial), key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.type, span.type, key=_STRENGTH.index)
            merged[-1] = PiiSpan(last.start, max(last.end, span.end), kind)
        else:
            merged.append(span)
    return merged


def _replace(text: str, spans: Sequence[PiiSpan], offset: int = 0) -> str:
    """``text`` (which starts at ``offset`` of the text the spans refer to) with the spans replaced."""
    pieces, position = [], 0
    for span in spans:
        pieces += [text[position:span.start - offset], placeholder(span.type)]
        position = span.end - offset
    pieces.append(text[position:])
    return "".join(pieces)


def redact_text(text: str, types: Collection[str], *, find_people: PeopleFinder | None = None,
                partial: bool = False) -> str:
    """``text`` with each find replaced by its placeholder. ``partial``: an interim, which may end mid-number."""
    return _replace(text, find_pii(text, types, find_people=find_people, partial=partial))


def _align(text: str, words: Sequence[WordTiming]) -> list[tuple[int, int]] | None:
    """Each word's span in ``text`` (Whisper's words are pieces of its text, in order); None if one is missing."""
    spans, position = [], 0
    for word in words:
        start = text.find(word.word, position)
        if start < 0 or not word.word:
            return None
        position = start + len(word.word)
        spans.append((start, position))
    return spans


def _redact_words(text: str, words: Sequence[WordTiming], spans: Sequence[PiiSpan],
                  types: Collection[str]) -> tuple[WordTiming, ...]:
    aligned = _align(text, words)
    if aligned is None:
        # Cannot happen with Whisper's output; if it does, mask each word alone rather than keep any in clear.
        return tuple(WordTiming(redact_text(w.word, types), w.start_s, w.end_s, w.probability) for w in words)
    # Groups of word indices [first, last] touched by the same finds, with those finds.
    groups: list[tuple[int, int, list[PiiSpan]]] = []
    for span in spans:
        touched = [i for i, (start, end) in enumerate(aligned) if start < span.end and span.start < end]
        if not touched:
            continue
        if groups and groups[-1][1] >= touched[0]:
            first, _, found = groups[-1]
            groups[-1] = (first, max(touched[-1], groups[-1][1]), [*found, span])
        else:
            groups.append((touched[0], touched[-1], [span]))
    out: list[WordTiming] = []
    index = 0
    for first, last, found in groups:
        out += words[index:first]
        region_start, region_end = aligned[first][0], aligned[last][1]
        inside = [PiiSpan(max(s.start, region_start), min(s.end, region_end), s.type) for s in found]
        out.append(WordTiming(
            word=_replace(text[region_start:region_end], inside, region_start),
            start_s=words[first].start_s,
            end_s=words[last].end_s,
            probability=min(w.probability for w in words[first:last + 1]),
        ))
        index = last + 1
    out += words[index:]
    return tuple(out)


def redact_transcription(result: Transcription, types: Collection[str], *,
                         find_people: PeopleFinder | None = None) -> Transcription:
    """A final's text and words with the requested types masked (see the module doc for the word timing rule)."""
    spans = find_pii(result.text, types, find_people=find_people)
    if not spans:
        return result
    words = _redact_words(result.text, result.words, spans, types)
    return Transcription(_replace(result.text, spans), words, result.confidence)
