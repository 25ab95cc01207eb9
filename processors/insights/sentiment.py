"""Message sentiment: VADER's compound polarity (-1..1) with a label, tuned for business conversation.

VADER's lexicon is built from social-media text and scores much business talk as neutral ("Revenue grew by twelve
percent" is 0.0), so a few dozen business words are added to a per-analyser copy of the lexicon (the package's own
table is left alone). Labels use VADER's own bands, positive above +0.05 and negative below -0.05, which labelled the
dev split of tests/data/sentiment_dev.jsonl best (84% against 78% for ±0.3); bench/tracker_entity_quality.py prints
the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = [
    "BUSINESS_LEXICON",
    "NEGATIVE_THRESHOLD",
    "POSITIVE_THRESHOLD",
    "Sentiment",
    "SentimentLabel",
    "label_for",
    "message_sentiment",
    "sentiment_analyzer",
]

SentimentLabel = Literal["positive", "negative", "neutral"]

# Dev-split accuracy with the business words: ±0.05 0.843, ±0.1 0.831, ±0.2 0.820, ±0.3 0.775, ±0.35 0.753.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05

# Valences on VADER's -4..+4 scale for business words its lexicon lacks (words it has keep VADER's own value).
BUSINESS_LEXICON: dict[str, float] = {
    # growth and wins
    "grew": 1.8,
    "grow": 1.2,
    "exceeded": 2.0,
    "exceed": 1.6,
    "outperformed": 2.0,
    "ahead": 1.0,
    "momentum": 1.2,
    "upsell": 1.0,
    "renewed": 1.2,
    "shipped": 1.0,
    "fixed": 1.3,
    "smooth": 1.6,
    "smoothly": 1.6,
    "seamless": 2.0,
    "seamlessly": 2.0,
    "intuitive": 1.8,
    "reliable": 1.8,
    "faster": 1.2,
    "saves": 1.2,
    # losses and trouble
    "churn": -1.8,
    "churned": -2.0,
    "churning": -1.8,
    "declined": -1.5,
    "decline": -1.5,
    "shrank": -1.8,
    "dropped": -1.3,
    "behind": -1.0,
    "delays": -1.5,
    "overdue": -1.6,
    "outage": -2.2,
    "outages": -2.2,
    "downtime": -1.8,
    "crashed": -2.2,
    "crashes": -2.0,
    "crashing": -2.2,
    "bug": -1.4,
    "bugs": -1.5,
    "buggy": -2.0,
    "glitch": -1.5,
    "laggy": -1.8,
    "slow": -1.2,
    "slower": -1.2,
    "blocker": -1.5,
    "escalation": -1.4,
    "overcharged": -2.2,
    "refund": -0.8,
    "canceled": -1.0,
    "layoffs": -2.0,
    "backlog": -0.8,
    "unresolved": -1.6,
    "clunky": -1.8,
    "expensive": -1.2,
    "pricey": -1.0,
    "shortfall": -1.8,
}


@dataclass(frozen=True)
class Sentiment:
    score: float
    suggested: SentimentLabel

    def as_json(self) -> dict[str, Any]:
        """Symbl's shape, on messages and topics alike."""
        return {"polarity": {"score": round(self.score, 3)}, "suggested": self.suggested}


def label_for(
    score: float, *, positive_threshold: float = POSITIVE_THRESHOLD, negative_threshold: float = NEGATIVE_THRESHOLD
) -> SentimentLabel:
    if score > positive_threshold:
        return "positive"
    if score < negative_threshold:
        return "negative"
    return "neutral"


@cache
def sentiment_analyzer(*, business_lexicon: bool = True) -> SentimentIntensityAnalyzer:
    """A VADER analyser (loads its lexicon once, ~30 ms), with the business words added unless told not to."""
    analyzer = SentimentIntensityAnalyzer()
    if business_lexicon:
        analyzer.lexicon = {**analyzer.lexicon, **BUSINESS_LEXICON}
    return analyzer


def message_sentiment(text: str) -> Sentiment:
    """Polarity of one message, rounded to 3 decimals, with its suggested label."""
    score = round(float(sentiment_analyzer().polarity_scores(text)["compound"]), 3)
    return Sentiment(score, label_for(score))
