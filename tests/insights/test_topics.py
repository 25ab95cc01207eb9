"""Topics as users see them in topic_response and /topics: phrases, root words, scores, parents, sentiment."""

from __future__ import annotations

import pytest
from spacy.language import Language

from processors.insights.language import load_nlp
from processors.insights.quality import DATA_DIR, load_jsonl, score_topics
from processors.insights.sentiment import message_sentiment
from processors.insights.topics import MessagePhrases, PhraseCandidate, phrase_candidates, rank_topics


@pytest.fixture(scope="module")
def nlp() -> Language:
    return load_nlp()


def conversation(texts: list[str], nlp: Language) -> list[MessagePhrases]:
    return [
        MessagePhrases(f"m{i}", tuple(phrase_candidates(text, nlp=nlp)), message_sentiment(text).score)
        for i, text in enumerate(texts)
    ]


def test_candidates_keep_content_words_with_offsets_and_lemmas(nlp: Language) -> None:
    text = "um so what are the next steps for the Salesforce integration contracts"
    candidates = phrase_candidates(text, nlp=nlp)
    assert [c.phrase for c in candidates] == ["next steps", "salesforce integration contracts"]
    for candidate in candidates:
        assert text[candidate.offset:candidate.offset + len(candidate.phrase)].lower() == candidate.phrase
    assert candidates[0].root_words == ("next", "step")
    assert candidates[1].root_words[-1] == "contract"


@pytest.mark.parametrize(
    "text",
    [
        "Yeah, I think we covered everything today, thanks guys.",  # pronouns, filler nouns, dates
        "Maria and Tom said it was fine last Friday.",  # people and dates are not topics
        "um uh okay so yeah",
    ],
)
def test_no_candidates_from_small_talk(nlp: Language, text: str) -> None:
    assert phrase_candidates(text, nlp=nlp) == []


def test_ranking_counts_messages_spread_and_specificity(nlp: Language) -> None:
    messages = conversation([
        "Let's start with the pricing page.",
        "The enterprise pricing is confusing for our buyers.",
        "I love the new dashboard design.",
        "Can we simplify the pricing page before the launch?",
        "Pricing is the main blocker for the launch, honestly.",
    ], nlp)
    topics = rank_topics(messages, limit=5)
    assert topics[0].phrase == "pricing page"
    assert topics[0].score == 1.0
    assert topics[0].message_ids == ("m0", "m3")
    assert all(0.0 < t.score <= 1.0 for t in topics)
    assert [t.score for t in topics] == sorted((t.score for t in topics), reverse=True)
    by_phrase = {t.phrase: t for t in topics}
    assert by_phrase["pricing page"].parent == "pricing"
    assert by_phrase["enterprise pricing"].parent == "pricing"
    assert by_phrase["pricing"].parent is None


def test_topic_sentiment_is_the_mean_of_its_messages() -> None:
    def message(message_id: str, sentiment: float) -> MessagePhrases:
        return MessagePhrases(message_id, (PhraseCandidate("onboarding", ("onboarding",), 0),), sentiment)

    topic, = rank_topics([message("a", 0.8), message("b", 0.4), message("c", -0.9)])
    assert topic.sentiment.score == pytest.approx(0.1)
    assert topic.sentiment.suggested == "positive"
    topic, = rank_topics([message("a", -0.8), message("b", 0.2)])
    assert topic.sentiment.suggested == "negative"


def test_ranking_is_deterministic_and_limited() -> None:
    messages = [
        MessagePhrases(f"m{i}", (PhraseCandidate(f"topic {i % 7}", (f"topic{i % 7}",), 0),), 0.0) for i in range(40)
    ]
    first = rank_topics(messages, limit=5)
    assert len(first) == 5
    assert first == rank_topics(list(messages), limit=5)
    assert rank_topics([]) == []


def test_expected_topics_of_the_sample_conversations(nlp: Language) -> None:
    checks = score_topics(
        load_jsonl(DATA_DIR / "topics_dev.jsonl"),
        lambda text: phrase_candidates(text, nlp=nlp),
        lambda text: message_sentiment(text).score,
    )
    found = sum(sum(check.found) for check in checks)
    expected = sum(len(check.found) for check in checks)
    assert expected >= 20
    assert found / expected >= 0.85, [(c.conversation, [t.phrase for t in c.ranked]) for c in checks]
    for check in checks:
        assert check.ranked[0].score == 1.0
        assert len(check.ranked[0].message_ids) >= 2
