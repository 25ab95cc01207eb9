"""PII redaction as a pure function, on what Whisper tiny.en really writes for synthesized speech of card numbers,
phone numbers and e-mail addresses (the left column of the tables is its output, recorded with espeak-ng voices)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processors.insights.entities import detect_entities
from processors.insights.language import load_nlp
from processors.pii import REDACTION_TYPES
from processors.transcription.asr import Transcription, WordTiming
from processors.transcription.people import LazyPeopleFinder
from processors.transcription.redaction import find_pii, redact_text, redact_transcription

ALL = REDACTION_TYPES

ASR_OUTPUT: list[tuple[str, str]] = [
    # card numbers read out in groups: Whisper groups the digits as it likes, and drops or repeats some
    ("My current number is 4,111,111,111,111,111", "My current number is [CREDIT_CARD]"),
    ("My card number is 4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-", "My card number is [CREDIT_CARD]-"),
    ("My card number is 4242, 4242, 4242, 4242, 4242.", "My card number is [CREDIT_CARD]."),
    ("My card number is 42424242424242", "My card number is [CREDIT_CARD]"),
    ("The card is 4242 4242 4242 4242.", "The card is [CREDIT_CARD]."),
    # phone numbers, digits said in groups or one by one
    ("You can call me at 555-867-5300.", "You can call me at [PHONE_NUMBER]."),
    ("You can call me at 555 867-5300 miles.", "You can call me at [PHONE_NUMBER] miles."),
    ("Call me at 5-5-5-867-5-3-0-5.", "Call me at [PHONE_NUMBER]."),
    ("My phone number is 5, 5, 5, 1, 2, 3, 4, 5, 6, 7", "My phone number is [PHONE_NUMBER]"),
    ("My number is zero seven seven zero zero nine zero zero one two three.", "My number is [PHONE_NUMBER]."),
    # 11 digits said, 13 heard: masked all the same, as a card number by its length
    ("My number is 077-0-0-0-0-0-0-0-1-2-3", "My number is [CREDIT_CARD]"),
    ("Call +1 (415) 555-0132 or 415.555.0132 today.", "Call [PHONE_NUMBER] or [PHONE_NUMBER] today."),
    # e-mail addresses: written, spoken, and the mixtures and remains Whisper makes of spoken ones
    ("Write to ann.lee@example.co.uk please.", "Write to [EMAIL] please."),
    ("Email john dot smith at acme dot com today.", "Email [EMAIL] today."),
    ("You can reach me at David at Yahoo.com.", "You can reach me at [EMAIL]."),
    ("My phone number is 415-955-0132 and my email in at acme.com.",
     "My phone number is [PHONE_NUMBER] and my email [EMAIL]."),
    ("My email is merrysmithandoutlook.com", "My email is [EMAIL]"),
    ("My email address is www.beadahredegmental.com", "My email address is [EMAIL]"),
    # other numbers: amounts, identifiers, times
    ("The order number is 48,213 and it costs $250.", "The order number is [NUMBER] and it costs $[NUMBER]."),
    ("Revenue was $1,200,000, up 12%.", "Revenue was $[NUMBER], up [NUMBER]%."),
    ("In 2019, 2020 and 2021 we grew.", "In [NUMBER], [NUMBER] and [NUMBER] we grew."),
    # kept: no digits, number words, words with digits, a website nobody called an e-mail address
    ("I have one or two questions about Q3 at 10am.", "I have one or two questions about Q3 at 10am."),
    ("Oh, oh, oh, one more thing.", "Oh, oh, oh, one more thing."),
    ("Twenty five people visited acme.com last week.", "Twenty five people visited acme.com last week."),
]


@pytest.mark.parametrize(("heard", "redacted"), ASR_OUTPUT)
def test_every_type_is_masked_in_realistic_asr_output(heard: str, redacted: str) -> None:
    assert redact_text(heard, ALL) == redacted


ONLY_SOME: list[tuple[str, tuple[str, ...], str]] = [
    # a type the stream did not ask for stays, unless it is a number and numbers were asked for
    ("Card 4242 4242 4242 4242, phone 555-867-5300.", ("phone_number",),
     "Card 4242 4242 4242 4242, phone [PHONE_NUMBER]."),
    ("Card 4242 4242 4242 4242, phone 555-867-5300.", ("credit_card",), "Card [CREDIT_CARD], phone 555-867-5300."),
    ("Card 4242 4242 4242 4242, phone 555-867-5300.", ("number",), "Card [NUMBER], phone [NUMBER]."),
    ("Mail ann@example.com about order 48213.", ("email",), "Mail [EMAIL] about order 48213."),
    ("Mail ann@example.com about order 48213.", ("phone_number", "credit_card"),
     "Mail ann@example.com about order 48213."),
    # an amount is never a phone or card number
    ("We paid $1,200,000 for it.", ("phone_number", "credit_card"), "We paid $1,200,000 for it."),
    ("Nothing asked for 555-867-5300.", (), "Nothing asked for 555-867-5300."),
    ("A type from a newer producer: 555-867-5300.", ("address",), "A type from a newer producer: 555-867-5300."),
]


@pytest.mark.parametrize(("heard", "types", "redacted"), ONLY_SOME)
def test_only_the_types_asked_for_are_masked(heard: str, types: tuple[str, ...], redacted: str) -> None:
    assert redact_text(heard, types) == redacted


def test_an_interim_that_ends_mid_number_masks_the_digits_so_far() -> None:
    assert redact_text("My number is 555 86", ("phone_number",), partial=True) == "My number is [PHONE_NUMBER]"
    assert redact_text("My number is 555 86", ("credit_card",), partial=True) == "My number is [CREDIT_CARD]"
    assert redact_text("My number is 555 86", ("phone_number",)) == "My number is 555 86"  # a final: 5 digits
    assert redact_text("It costs $250", ("phone_number",), partial=True) == "It costs $250"  # an amount
    assert redact_text("Only 12 of them", ("phone_number",), partial=True) == "Only 12 of them"  # not at the end


def test_overlapping_finds_merge_into_the_strongest_type() -> None:
    # Person "John Smith" and the e-mail "smith at example.com" overlap: one [EMAIL], no "John" left.
    people = lambda text: [(text.index("John"), text.index("Smith") + len("Smith"))]  # noqa: E731
    spans = find_pii("Write to John Smith at example.com now", ALL, find_people=people)
    assert [(s.type, s.start) for s in spans] == [("email", 9)]
    assert redact_text("Write to John Smith at example.com now", ALL, find_people=people) == "Write to [EMAIL] now"


def _words(spec: Sequence[tuple[str, float, float]]) -> tuple[WordTiming, ...]:
    return tuple(WordTiming(word, start, end, 0.9 - 0.1 * i) for i, (word, start, end) in enumerate(spec))


def test_words_touched_by_a_find_become_one_placeholder_word_spanning_their_time() -> None:
    # Whisper's words of "The order number is 48,213, and it costs $250." (punctuation glued to words).
    result = Transcription("The order number is 48,213, and it costs $250.", _words([
        ("The", 0.0, 0.24), ("order", 0.24, 0.52), ("number", 0.52, 0.92), ("is", 0.92, 1.46), ("48", 1.46, 2.5),
        (",213,", 2.5, 3.26), ("and", 3.84, 3.84), ("it", 3.84, 4.08), ("costs", 4.08, 4.5), ("$250.", 4.5, 5.36),
    ]), 0.8)
    redacted = redact_transcription(result, ("number",))
    assert redacted.text == "The order number is [NUMBER], and it costs $[NUMBER]."
    assert [(w.word, w.start_s, w.end_s) for w in redacted.words] == [
        ("The", 0.0, 0.24), ("order", 0.24, 0.52), ("number", 0.52, 0.92), ("is", 0.92, 1.46),
        ("[NUMBER],", 1.46, 3.26), ("and", 3.84, 3.84), ("it", 3.84, 4.08), ("costs", 4.08, 4.5),
        ("$[NUMBER].", 4.5, 5.36),
    ]
    merged = redacted.words[4]
    assert merged.probability == pytest.approx(min(w.probability for w in result.words[4:6]))
    assert " ".join(w.word for w in redacted.words) == redacted.text  # text and words agree
    assert redacted.confidence == result.confidence


def test_a_multi_word_find_in_the_middle_keeps_the_words_around_it() -> None:
    result = Transcription("Call me at 555-867-5300 today.", _words([
        ("Call", 0.0, 0.3), ("me", 0.3, 0.5), ("at", 0.5, 0.7), ("555", 0.7, 1.4), ("-867", 1.4, 2.0),
        ("-5300", 2.0, 2.9), ("today.", 2.9, 3.3),
    ]), 0.9)
    redacted = redact_transcription(result, ALL)
    assert [(w.word, w.start_s, w.end_s) for w in redacted.words] == [
        ("Call", 0.0, 0.3), ("me", 0.3, 0.5), ("at", 0.5, 0.7), ("[PHONE_NUMBER]", 0.7, 2.9), ("today.", 2.9, 3.3)]
    assert redact_transcription(result, ("email",)) is result  # nothing to mask: the same object back


def test_words_not_found_in_the_text_are_masked_one_by_one() -> None:
    result = Transcription("Call 555-867-5300", _words([("Call", 0.0, 0.3), ("5558675300", 0.3, 2.0)]), 0.9)
    redacted = redact_transcription(result, ("phone_number",))
    assert redacted.text == "Call [PHONE_NUMBER]"
    assert [w.word for w in redacted.words] == ["Call", "[PHONE_NUMBER]"]


@pytest.fixture(scope="module")
def people() -> LazyPeopleFinder:
    finder = LazyPeopleFinder()
    finder.load()
    return finder


def test_names_are_found_by_the_entity_detector(people: LazyPeopleFinder) -> None:
    heard = "My name is Sarah Johnson and I work with Peter."
    assert redact_text(heard, ("person",), find_people=people) == "My name is [PERSON] and I work with [PERSON]."
    assert redact_text(heard, ("number",), find_people=people) == heard  # names only when asked for
    assert redact_text(heard, ("person",)) == heard  # and only with a finder


@pytest.mark.parametrize("text", [
    "Call me on 0207 946 0958 or (415) 555-0132.",
    "The card is 4111 1111 1111 1111, expiry next May.",
    "Send it to ana dot silva at globex dot com and to bob@initech.io",
    "my number is five five five one two three four five six seven",
    "Olivia said the invoice number is 8812 and Mark Chen agreed.",
])
def test_whatever_entity_detection_calls_personal_is_masked(text: str, people: LazyPeopleFinder) -> None:
    redacted = redact_text(text, ALL, find_people=people)
    for entity in detect_entities(text, nlp=load_nlp()):
        if entity.category == "PII":
            assert entity.text not in redacted, (entity, redacted)
