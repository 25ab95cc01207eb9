"""Extractive summaries: the conversation's most central, most informative sentences, attributed to their
speakers. Pure Python, no model, no service: it always works, and every word of it was said.

Sentences are scored by
- centrality: TextRank over TF-IDF cosine similarity between sentences (a sentence that shares its content
  words with many others is about what the conversation is about), scaled to 0..1;
- insight density: cues of questions, commitments and requests, dates and figures, and whether the message was
  found to hold an insight (question, action item, follow-up), 0..1;
and chosen best first, skipping near-repeats of a sentence already chosen, then put back in spoken order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = [
    "SummaryItem",
    "SummarySource",
    "content_tokens",
    "extractive_summary",
    "split_sentences",
    "summary_length",
]

CENTRALITY_WEIGHT = 0.6
INSIGHT_WEIGHT = 0.4
MIN_SENTENCE_WORDS = 4
MAX_ITEMS = 8
REPEAT_SIMILARITY = 0.6
DAMPING = 0.85
ITERATIONS = 40

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not now
    of off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves yes yeah okay ok oh uh
    um well also really going get got go like know think right thanks thank sure great good one""".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_WORD = re.compile(r"[a-z0-9][a-z0-9'$%.-]*[a-z0-9%]|[a-z0-9]")
_SUFFIXES = ("ing", "edly", "ed", "ies", "es", "s", "ly")

_COMMITMENT = re.compile(
    r"\b(i|we|you|they|he|she)('ll| will| shall| need to| have to| must| should| are going to| am going to|'re going"
    r" to|'m going to)\b|\b(let's|let us|please|make sure|can you|could you|would you|action item|follow up|"
    r"next step|deadline|decided|agree[ds]?|plan)\b",
    re.IGNORECASE,
)
_TIME_OR_FIGURE = re.compile(
    r"\b(today|tomorrow|tonight|yesterday|monday|tuesday|wednesday|thursday|friday|saturday|sunday|next (week|month|"
    r"quarter|year)|this (week|month|quarter)|january|february|march|april|may|june|july|august|september|october|"
    r"november|december|end of (the )?(day|week|month|quarter))\b|\$?\d[\d,.]*%?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SummarySource:
    """One stored message, as the summarizer sees it."""

    message_id: str
    speaker: str
    text: str


@dataclass(frozen=True)
class SummaryItem:
    text: str
    message_ids: tuple[str, ...]
    speaker: str
    score: float


@dataclass(frozen=True)
class _Sentence:
    index: int
    text: str
    source: SummarySource
    tokens: tuple[str, ...]


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words that carry content (no stop words)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def summary_length(sentence_count: int) -> int:
    """About one sentence in four, at least one and at most ``MAX_ITEMS``."""
    return max(1, min(MAX_ITEMS, math.ceil(sentence_count / 4)))


def _tfidf(sentences: Sequence[_Sentence]) -> list[dict[str, float]]:
    document_frequency = Counter(token for s in sentences for token in set(s.tokens))
    count = len(sentences)
    vectors = []
    for sentence in sentences:
        frequency = Counter(sentence.tokens)
        vector = {t: n * math.log(1 + count / document_frequency[t]) for t, n in frequency.items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        vectors.append({t: v / norm for t, v in vector.items()})
    return vectors


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(value * b.get(token, 0.0) for token, value in a.items())


def _textrank(similarity: list[list[float]]) -> list[float]:
    count = len(similarity)
    out_weight = [sum(row) for row in similarity]
    rank = [1.0 / count] * count
    for _ in range(ITERATIONS):
        rank = [
            (1 - DAMPING) / count
            + DAMPING * sum(similarity[j][i] / out_weight[j] * rank[j] for j in range(count) if out_weight[j] > 0)
            for i in range(count)
        ]
    return rank


def _insight_density(sentence: _Sentence, insight_message_ids: Collection[str]) -> float:
    cues = 0.0
    if sentence.text.rstrip().endswith("?"):
        cues += 1
    cues += min(2, len(_COMMITMENT.findall(sentence.text)))
    cues += min(1, len(_TIME_OR_FIGURE.findall(sentence.text)))
    if sentence.source.message_id in insight_message_ids:
        cues += 1
    return min(1.0, cues / 3)


def extractive_summary(
    sources: Sequence[SummarySource],
    insight_message_ids: Collection[str] = (),
    max_items: int | None = None,
) -> list[SummaryItem]:
    """The summary sentences in spoken order, each as ``"Speaker: sentence"``."""
    sentences: list[_Sentence] = []
    for source in sources:
        for text in split_sentences(source.text):
            tokens = tuple(content_tokens(text))
            if len(text.split()) >= MIN_SENTENCE_WORDS and tokens:
                sentences.append(_Sentence(len(sentences), text, source, tokens))
    if not sentences:
        return []
    vectors = _tfidf(sentences)
    similarity = [
        [0.0 if i == j else _cosine(vectors[i], vectors[j]) for j in range(len(sentences))]
        for i in range(len(sentences))
    ]
    rank = _textrank(similarity)
    top = max(rank)
    scores = [
        CENTRALITY_WEIGHT * rank[s.index] / top + INSIGHT_WEIGHT * _insight_density(s, insight_message_ids)
        for s in sentences
    ]
    wanted = max_items if max_items is not None else summary_length(len(sentences))
    chosen: list[_Sentence] = []
    for sentence in sorted(sentences, key=lambda s: (-scores[s.index], s.index)):
        if len(chosen) >= wanted:
            break
        if any(similarity[sentence.index][c.index] >= REPEAT_SIMILARITY for c in chosen):
            continue
        chosen.append(sentence)
    return [
        SummaryItem(
            f"{c.source.speaker}: {c.text}", (c.source.message_id,), c.source.speaker, round(scores[c.index], 4)
        )
        for c in sorted(chosen, key=lambda c: c.index)
    ]
