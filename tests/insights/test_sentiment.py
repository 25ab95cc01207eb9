"""Message sentiment (VADER plus business words): labels users see in /messages?sentiment=true and on topics."""

from __future__ import annotations

import pytest

from processors.insights.quality import DATA_DIR, load_jsonl, score_sentiment
from processors.insights.sentiment import (
    NEGATIVE_THRESHOLD,
    POSITIVE_THRESHOLD,
    Sentiment,
    message_sentiment,
    sentiment_analyzer,
)

SENTIMENT_ROWS = load_jsonl(DATA_DIR / "sentiment_dev.jsonl")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thank you all, and have a great day.", "positive"),
        ("Revenue grew by twelve percent last quarter.", "positive"),
        ("The migration went smoothly and the new flow is intuitive.", "positive"),
        ("This is terrible, the demo crashed again!", "negative"),
        ("We had an outage on Monday and two customers churned.", "negative"),
        ("the app keeps crashing and support never called back", "negative"),
        ("Let's move to the next item on the agenda.", "neutral"),
        ("the meeting is at three on thursday", "neutral"),
    ],
)
def test_suggested_label(text: str, label: str) -> None:
    assert message_sentiment(text).suggested == label


def test_score_is_vader_compound_in_range_and_matches_its_label() -> None:
    for row in SENTIMENT_ROWS:
        sentiment = message_sentiment(row["text"])
        assert isinstance(sentiment, Sentiment)
        assert -1.0 <= sentiment.score <= 1.0
        if sentiment.score > POSITIVE_THRESHOLD:
            assert sentiment.suggested == "positive"
        elif sentiment.score < NEGATIVE_THRESHOLD:
            assert sentiment.suggested == "negative"
        else:
            assert sentiment.suggested == "neutral"


def test_business_words_change_scores_vader_misses() -> None:
    plain = sentiment_analyzer(business_lexicon=False)
    assert plain.polarity_scores("Revenue grew by twelve percent.")["compound"] == 0.0
    assert message_sentiment("Revenue grew by twelve percent.").score > 0.3
    assert plain.polarity_scores("We had two outages and a lot of downtime.")["compound"] == 0.0
    assert message_sentiment("We had two outages and a lot of downtime.").score < -0.3


def test_package_lexicon_is_left_alone() -> None:
    fresh = type(sentiment_analyzer())()  # a new SentimentIntensityAnalyzer reads the packaged lexicon again
    assert "outage" not in fresh.lexicon
    assert "outage" in sentiment_analyzer().lexicon


def test_held_out_accuracy() -> None:
    rows = [r for r in SENTIMENT_ROWS if r["split"] == "test"]
    accuracy, _ = score_sentiment(rows, lambda t: message_sentiment(t).score, threshold=POSITIVE_THRESHOLD)
    baseline, _ = score_sentiment(
        rows, lambda t: sentiment_analyzer(business_lexicon=False).polarity_scores(t)["compound"],
        threshold=POSITIVE_THRESHOLD,
    )
    assert accuracy >= 0.80
    assert accuracy > baseline
