"""Text processors on redacted transcripts: a placeholder ("[PHONE_NUMBER]", "[PERSON]") is never made into an entity,
a topic or a tracker match, and the rest of the message is read as before."""

from __future__ import annotations

from processors.insights.entities import detect_entities
from processors.insights.language import load_nlp
from processors.insights.topics import phrase_candidates
from processors.insights.trackers import TrackerMatcher, TrackerSpec
from processors.pii import PLACEHOLDER, blank_placeholders, placeholder_spans

REDACTED = [
    "You can call me at [PHONE_NUMBER].",
    "Can you call [PERSON] at [PHONE_NUMBER] tomorrow?",
    "My card number is [CREDIT_CARD] and my email is [EMAIL].",
    "The order number is [NUMBER] and it costs $[NUMBER].",
    "My name is [PERSON] and I work with [PERSON] at Globex Corporation.",
]


def test_placeholders_are_found_and_blanked_in_place() -> None:
    text = "Call [PERSON] at [PHONE_NUMBER]."
    assert placeholder_spans(text) == [(5, 13), (17, 31)]
    assert blank_placeholders(text) == "Call " + " " * 8 + " at " + " " * 14 + "."
    assert placeholder_spans("A [NOTE] in brackets") == [] and PLACEHOLDER.fullmatch("[CREDIT_CARD]")


def test_entities_leave_placeholders_alone() -> None:
    nlp = load_nlp()
    for text in REDACTED:
        for entity in detect_entities(text, nlp=nlp):
            assert not PLACEHOLDER.search(entity.text) and "_" not in entity.text, (text, entity)
    found = {(e.type, e.text) for e in detect_entities(REDACTED[1] + " " + REDACTED[4], nlp=nlp)}
    assert ("date", "tomorrow") in found and ("organization", "Globex Corporation") in found  # the rest is read


def test_topics_leave_placeholders_alone() -> None:
    nlp = load_nlp()
    found = [(text, c) for text in REDACTED for c in phrase_candidates(text, nlp=nlp)]
    phrases = [c.phrase for _, c in found]
    assert "card number" in phrases and "email" in phrases and "order number" in phrases  # the words said
    for text, candidate in found:
        assert not any(start <= candidate.offset < end for start, end in placeholder_spans(text)), (text, candidate)
        assert not PLACEHOLDER.search(candidate.phrase) and "_" not in candidate.phrase, (text, candidate)


def test_trackers_do_not_match_placeholders() -> None:
    matcher = TrackerMatcher([TrackerSpec("Contact", ("phone number", "credit card", "person", "email"), id="c"),
                              TrackerSpec("Callback", ("call me",), id="b")], nlp=load_nlp())
    hits = [(h.vocabulary, h.matched_text, h.offset) for text in REDACTED[:2] for h in matcher.match(text)]
    assert hits == [("call me", "call me", 8)]
    # a real mention still matches, and its text is the message's own
    spoken = matcher.match("My phone number is [PHONE_NUMBER], and [PERSON] has the email.")
    assert [(h.vocabulary, h.matched_text) for h in spoken] == [("phone number", "phone number"), ("email", "email")]
