"""Entities as users see them in entity_response and /entities: types, values, offsets, on cased and ASR text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from spacy.language import Language

from processors.insights.entities import DetectedEntity, EntityDetector, detect_entities, parse_number
from processors.insights.language import load_nlp
from processors.insights.quality import DATA_DIR, EntityScores, load_jsonl, score_entities

WEDNESDAY = datetime(2025, 6, 11, 10, 0, tzinfo=UTC)
ENTITY_ROWS = load_jsonl(DATA_DIR / "entities_dev.jsonl")


@pytest.fixture(scope="module")
def nlp() -> Language:
    return load_nlp()


def entities(text: str, nlp: Language) -> list[tuple[str, str, str]]:
    return [(e.type, e.text, e.value) for e in detect_entities(text, nlp=nlp, reference_time=WEDNESDAY)]


def test_spacy_quirks_are_fixed(nlp: Language) -> None:
    found = detect_entities("Send the Q3 report to Maria Lopez at Acme Corp by Friday.", nlp=nlp,
                            reference_time=WEDNESDAY)
    assert [(e.type, e.text, e.value) for e in found] == [
        ("date", "Q3", "2025-Q3"),
        ("person", "Maria Lopez", "Maria Lopez"),
        ("organization", "Acme Corp", "Acme Corp"),
        ("date", "Friday", "2025-06-13"),
    ]
    assert [e.offset for e in found] == [9, 22, 37, 50]
    assert found[0].sub_type == "quarter"
    assert found[1].category == "PII"
    assert found[2].category == "Managed"
    assert ("organization", "Globex Corporation", "Globex Corporation") in entities(
        "We signed with Globex Corporation last year.", nlp)


def test_lowercase_asr_text(nlp: Language) -> None:
    found = entities("um so we signed with globex corporation for forty thousand dollars for the q3 rollout", nlp)
    assert found == [
        ("organization", "globex corporation", "globex corporation"),
        ("money", "forty thousand dollars", "40000 USD"),
        ("date", "q3", "2025-Q3"),
    ]
    found = entities("i talked to john smith from microsoft yesterday", nlp)
    assert found == [("person", "john smith", "john smith"), ("organization", "microsoft", "microsoft"),
                     ("date", "yesterday", "2025-06-10")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My email is jane.doe@example.com, thanks.", ("email", "jane.doe@example.com", "jane.doe@example.com")),
        ("my email is john dot smith at acme dot com", ("email", "john dot smith at acme dot com",
                                                        "john.smith@acme.com")),
        ("Call me at (212) 555-0188 after lunch.", ("phone_number", "(212) 555-0188", "2125550188")),
        ("Text me at +44 20 7946 0958.", ("phone_number", "+44 20 7946 0958", "+442079460958")),
        ("call me back at five five five zero one nine nine", ("phone_number", "five five five zero one nine nine",
                                                               "5550199")),
        ("The card is 4111 1111 1111 1111.", ("credit_card", "4111 1111 1111 1111", "4111111111111111")),
    ],
)
def test_pii_patterns(nlp: Language, text: str, expected: tuple[str, str, str]) -> None:
    found = detect_entities(text, nlp=nlp, reference_time=WEDNESDAY)
    assert expected in [(e.type, e.text, e.value) for e in found]
    assert all(e.category == "PII" for e in found if e.type == expected[0])


def test_a_number_failing_the_card_checksum_is_not_a_card(nlp: Language) -> None:
    assert "credit_card" not in [t for t, _, _ in entities("The order id is 4111 1111 1111 1112.", nlp)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The renewal is worth $120,000 a year.", ("money", "$120,000", "120000 USD")),
        ("the budget is €50,000", ("money", "€50,000", "50000 EUR")),
        ("Revenue reached $3.2 million.", ("money", "$3.2 million", "3200000 USD")),
        ("Churn fell to 2.5 percent.", ("percent", "2.5 percent", "2.5%")),
        ("Conversion improved from 12% to 18%.", ("percent", "18%", "18%")),
        ("We have twenty five people in Denver.", ("number", "twenty five", "25")),
        ("We processed 1,200 calls.", ("number", "1,200", "1200")),
    ],
)
def test_amount_values(nlp: Language, text: str, expected: tuple[str, str, str]) -> None:
    assert expected in entities(text, nlp)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Let's regroup tomorrow.", ("date", "tomorrow", "2025-06-12")),
        ("I talked to him yesterday.", ("date", "yesterday", "2025-06-10")),
        ("Our users reported the bug on Tuesday.", ("date", "Tuesday", "2025-06-10")),
        ("Please send it by Tuesday.", ("date", "Tuesday", "2025-06-17")),
        ("We moved the kickoff to August 4th.", ("date", "August 4th", "2025-08-04")),
        ("Please wire it by the end of the month.", ("date", "end of the month", "2025-06-30")),
        ("We should revisit this next quarter.", ("date", "next quarter", "2025-Q3")),
        ("The budget for 2026 is set.", ("date", "2026", "2026")),
        ("Can we do 3 pm on Thursday?", ("datetime", "3 pm", "2025-06-12T15:00:00")),
        ("Onboarding takes about two weeks.", ("date", "about two weeks", "about two weeks")),
    ],
)
def test_dates_resolve_against_the_reference_time(nlp: Language, text: str, expected: tuple[str, str, str]) -> None:
    assert expected in entities(text, nlp)


def test_duration_is_not_resolved_to_a_day(nlp: Language) -> None:
    found = detect_entities("Onboarding takes about two weeks.", nlp=nlp, reference_time=WEDNESDAY)
    assert [(e.type, e.sub_type) for e in found] == [("date", "duration")]


def test_products_from_the_gazetteer_and_custom_terms(nlp: Language) -> None:
    assert ("product", "Microsoft Teams", "Microsoft Teams") in entities("Zoom and Microsoft Teams both work.", nlp)
    detector = EntityDetector(nlp, products=("Convoscope Live",))
    found = detector.detect("we rolled out convoscope live last week", reference_time=WEDNESDAY)
    assert ("product", "convoscope live") in [(e.type, e.text) for e in found]


@pytest.mark.parametrize("text", ["Let's get started with the agenda.", "can everyone see my screen",
                                  "That makes sense, thanks."])
def test_small_talk_has_no_entities(nlp: Language, text: str) -> None:
    assert entities(text, nlp) == []


def test_offsets_point_at_the_text_everywhere(nlp: Language) -> None:
    for row in ENTITY_ROWS[:80]:
        for entity in detect_entities(row["text"], nlp=nlp, reference_time=WEDNESDAY):
            assert isinstance(entity, DetectedEntity)
            assert row["text"][entity.offset:entity.offset + len(entity.text)] == entity.text
            assert entity.value


def test_parse_number() -> None:
    assert parse_number("two hundred thousand") == 200_000
    assert parse_number("twenty-five") == 25
    assert parse_number("3.2 million") == 3_200_000
    assert parse_number("40k") == 40_000
    assert parse_number("a lot") is None


@pytest.mark.parametrize("variant", ["cased", "asr"])
def test_held_out_f1(nlp: Language, variant: str) -> None:
    rows = [r for r in ENTITY_ROWS if r["split"] == "test" and r["variant"] == variant]
    detector = EntityDetector(nlp)
    scores = score_entities(rows, lambda text, reference: detector.detect(text, reference_time=reference))
    total = EntityScores.total(scores.lenient)
    assert total.true_positives + total.false_negatives >= 75
    assert total.f1 >= 0.80, "\n".join(scores.errors)
    assert scores.values_correct / scores.values_labeled >= 0.9


def test_a_message_resolves_dates_on_the_conversation_clock() -> None:
    """Said at 23:30 UTC in a conversation at UTC+02:00 (timezoneOffset -120), "tomorrow" is two UTC days later."""
    from processors.insights.records import ConversationConfig, entities_record
    from tests.store.records import final, speaker

    spoken_at_ms = int(datetime(2025, 6, 10, 23, 30, tzinfo=UTC).timestamp() * 1000)
    transcript = final("1700000000000009", "app", "s", speaker("1700000000000009", "Ann"), 0, 0, 32_000,
                       "Let's regroup tomorrow.", spoken_at_ms)

    def tomorrow(offset_min: int) -> str:
        record = entities_record(transcript, ConversationConfig(timezone_offset_min=offset_min))
        return next(e["value"] for e in record["entities"] if e["text"] == "tomorrow")

    assert tomorrow(0) == "2025-06-11"
    assert tomorrow(-120) == "2025-06-12"  # already June 11th there
    assert tomorrow(480) == "2025-06-11"  # UTC-08:00: still the afternoon of June 10th
