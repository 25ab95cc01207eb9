"""Word error rate with the normalisation the platform notes used, for tests and benchmarks."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["normalize_text", "word_error_rate"]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PUNCTUATION = re.compile(r"[^\w\s']")
_SPELLING = {"mr": "mister", "mrs": "missus", "ok": "okay", "dr": "doctor"}
# Whisper writes contractions where a script may not (and vice versa): compare the long forms.
_CONTRACTIONS = {
    "i'm": "i am", "let's": "let us", "we'll": "we will", "i'll": "i will", "it's": "it is", "that's": "that is",
    "don't": "do not", "can't": "cannot", "won't": "will not", "you're": "you are", "we're": "we are",
    "i've": "i have", "we've": "we have", "there's": "there is", "what's": "what is", "isn't": "is not",
}


def _number_words(match: re.Match[str]) -> str:
    try:
        from num2words import num2words
    except ImportError:  # digits stay digits without num2words; both sides are treated alike
        return match.group(0)
    return str(num2words(float(match.group(0)) if "." in match.group(0) else int(match.group(0))))


def normalize_text(text: str) -> list[str]:
    """Lowercase, hyphens to spaces, % to "percent", digits to words, punctuation dropped (apostrophes kept)."""
    text = text.lower().replace("-", " ").replace("%", " percent")
    text = _NUMBER.sub(_number_words, text)
    text = _PUNCTUATION.sub(" ", text)
    words = " ".join(_CONTRACTIONS.get(word, word) for word in text.split()).split()
    return [_SPELLING.get(word, word) for word in words]


def word_error_rate(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Corpus WER: total edits over total reference words."""
    edits = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        words += len(ref)
        edits += _edit_distance(ref, hyp)
    return edits / words if words else 0.0


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]
