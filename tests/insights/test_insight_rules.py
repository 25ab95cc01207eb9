"""Questions, action items and follow-ups found in transcript text, on the real spaCy model.

Behaviour first (who owns an action, when it is due in the speaker's time zone, speech-recognition text, sentences
that must not fire), then the held-out split of the labelled utterances in ``tests/data/insights_dev.jsonl`` against
the quality targets, so a rule change that loses accuracy fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bench.insight_quality import DATASET, load_dataset, score
from processors.insights.detect import Assignee, DetectedInsight, detect_insights
from processors.insights.due_dates import find_due_phrases, local_zone
from processors.insights.language import clean_asr_text, clean_asr_text_with_offsets

MONDAY_3PM_UTC = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def detect(text: str, speaker: str | None = "Alice", at: datetime = MONDAY_3PM_UTC, offset_min: int = 0):
    return detect_insights(text, speaker_name=speaker, spoken_at=at, timezone_offset_min=offset_min)


def only(text: str, **kwargs) -> DetectedInsight:
    found = detect(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


# --- cleaning speech-recognition text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "cleaned"),
    [
        ("um so I'll uh send it over", "so I'll send it over"),
        ("I I'll send it", "I'll send it"),
        ("Um, so, uh, we need the the report by Friday.", "So, we need the report by Friday."),
        ("is the uh the staging deploy still broken", "is the staging deploy still broken"),
        ("um i can uh i can see your account now", "i can see your account now"),
        ("so you know we should talk", "so we should talk"),
        ("It's, you know, fine", "It's fine"),
        ("w- we can do it", "we can do it"),
    ],
)
def test_fillers_and_stutters_are_removed(said: str, cleaned: str) -> None:
    assert clean_asr_text(said) == cleaned


@pytest.mark.parametrize(
    "meaningful",
    ["Do you know the price?", "you know the answer", "I know that that is true", "the error rate is high"],
)
def test_words_that_carry_meaning_stay(meaningful: str) -> None:
    assert clean_asr_text(meaningful) == meaningful


def test_cleaned_characters_point_back_into_the_original() -> None:
    original = "um so I'll uh send it"
    cleaned, origin = clean_asr_text_with_offsets(original)
    assert [original[i] for i in origin] == list(cleaned)


# --- owners -----------------------------------------------------------------------------------------------------


def test_a_first_person_promise_falls_on_the_speaker() -> None:
    insight = only("I'll send you the proposal by Friday.", speaker="Alice")
    assert insight.type == "action_item"
    assert insight.assignee == Assignee(name="Alice", is_speaker=True)


def test_a_request_to_a_named_person_falls_on_them() -> None:
    assert only("Maria, can you send me the integration list?").assignee == Assignee("Maria", False)
    assert only("uh lisa can you pull the case studies").assignee == Assignee("Lisa", False)
    assert only("Raj will prepare the ROI model.").assignee == Assignee("Raj", False)


def test_we_and_unnamed_you_have_no_assignee() -> None:
    assert only("We need to finalize the budget by the end of the month.").assignee is None
    assert only("Could you share the usage numbers from last quarter?").assignee is None
    assert only("Sofia, Ravi, please review the draft plan.").assignee is None  # two people: no single owner


def test_an_unknown_speaker_still_owns_their_promise() -> None:
    assert only("I'll update the ticket.", speaker=None).assignee == Assignee("", True)


# --- due dates --------------------------------------------------------------------------------------------------


def test_due_dates_resolve_in_the_speakers_time_zone() -> None:
    # 02:30 UTC on Tuesday is 18:30 on Monday in UTC-08:00 (getTimezoneOffset 480): "tomorrow" is Tuesday there.
    insight = only("I'll send you the workaround tomorrow.", at=datetime(2026, 3, 3, 2, 30, tzinfo=UTC), offset_min=480)
    assert insight.due_by == datetime(2026, 3, 3, 0, 0, tzinfo=timezone(timedelta(hours=-8)))
    assert insight.due_by.utcoffset() == timedelta(hours=-8)
    assert insight.due_text == "tomorrow"
    # The same instant in UTC+10:00 (offset -600) is already Tuesday noon, so "tomorrow" is Wednesday.
    east = only("I'll send you the workaround tomorrow.", at=datetime(2026, 3, 3, 2, 30, tzinfo=UTC), offset_min=-600)
    assert east.due_by == datetime(2026, 3, 4, tzinfo=timezone(timedelta(hours=10)))


@pytest.mark.parametrize(
    ("phrase", "due"),
    [  # said on Monday 2026-03-02
        ("by Friday", "2026-03-06"),
        ("by next Friday", "2026-03-13"),  # "next <weekday>" is the one in the following week
        ("this Friday", "2026-03-06"),
        ("by the end of the week", "2026-03-06"),
        ("by EOD", "2026-03-02"),
        ("tonight", "2026-03-02"),
        ("in two days", "2026-03-04"),
        ("by the 15th", "2026-03-15"),
        ("next week", "2026-03-09"),
        ("end of next week", "2026-03-13"),
        ("by the end of the month", "2026-03-31"),
        ("by April 2nd", "2026-04-02"),
    ],
)
def test_spoken_due_dates(phrase: str, due: str) -> None:
    insight = only(f"I'll send the report {phrase}.")
    assert insight.due_by is not None and insight.due_by.date().isoformat() == due
    assert insight.due_by.time().isoformat() == "00:00:00"  # a day without a time is its local midnight
    assert insight.due_text == phrase


def test_a_plan_in_the_present_tense_needs_a_date() -> None:
    assert only("I'm sending the invoice tomorrow.").type == "action_item"
    assert detect("I'm working on the report.") == []


def test_a_clock_time_keeps_its_time() -> None:
    [phrase] = find_due_phrases("send it by 4pm", datetime(2026, 3, 2, 10, 0, tzinfo=local_zone(300)))
    assert phrase.value == datetime(2026, 3, 2, 16, 0, tzinfo=timezone(timedelta(hours=-5)))


def test_words_that_only_look_like_dates_are_not_due_dates() -> None:
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert find_due_phrases("hold on a second", now) == []
    assert find_due_phrases("the first round went well", now) == []
    assert find_due_phrases("the import took two days", now) == []


def test_the_date_of_the_follow_up_wins_over_an_earlier_one() -> None:
    insight = only("I'll talk to finance tomorrow and get back to you on Monday.")
    assert (insight.type, insight.due_text) == ("follow_up", "on Monday")


# --- speech-recognition text ----------------------------------------------------------------------------------------


def test_unpunctuated_lowercase_speech() -> None:
    action = only("um so i'll uh send it over by friday")
    assert (action.type, action.text, action.due_text) == (
        "action_item",
        "So I'll send it over by friday.",
        "by friday",
    )
    question = only("uh what's your timeline for making a decision")
    assert (question.type, question.text) == ("question", "What's your timeline for making a decision?")
    assert only("so did you uh did you try the the other browser").text == "So did you try the other browser?"


def test_each_sentence_of_a_message_is_judged_with_its_offset() -> None:
    text = "I sent the deck last week. Did you get a chance to review it? I'll follow up on Thursday."
    found = detect(text)
    assert [(i.type, i.char_offset) for i in found] == [("question", 27), ("follow_up", 62)]
    assert text[found[1].char_offset :].startswith("I'll follow up")


def test_offsets_count_in_the_original_text_with_its_fillers() -> None:
    text = "uh okay thanks. um can you uh send me the logs"
    [request] = detect(text)
    assert text[request.char_offset :].startswith("um can you")


# --- follow-ups versus action items -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "said",
    [
        "I'll get back to you on pricing.",
        "let's follow up next week",
        "Can we set up a call on Tuesday?",
        "I'll circle back with you after I talk to our engineer.",
        "We should reconnect after your board meeting.",
        "Jordan, can you touch base with QA before the release?",
        "I'll send a calendar invite for a follow-up meeting.",
        "I'll look into it and let you know.",
        "Why don't we take this offline?",
        "How about we meet on Friday?",
        "Could we push the meeting to next Wednesday?",
    ],
)
def test_getting_back_in_touch_is_a_follow_up(said: str) -> None:
    assert only(said).type == "follow_up"


@pytest.mark.parametrize(
    "said",
    [
        "I'll send over the pricing sheet today.",
        "Please sign the NDA before Thursday.",
        "we gotta finalize the pilot scope by monday",
        "Omar, please book a room for the onsite interviews.",  # booking a room is not a meeting with the customer
        "Can you send me your portfolio link after the call?",
        "I'd be happy to send over some references.",
        "Do you think you could get me the numbers by Monday?",
        "I was wondering if you could send me the report.",
        "Don't forget to submit your timesheet by Friday.",
    ],
)
def test_other_commitments_are_action_items(said: str) -> None:
    assert only(said).type == "action_item"


def test_requests_for_information_are_questions() -> None:
    assert only("Can you walk me through your most recent project?").type == "question"
    assert only("Tell me a little bit about yourself.").type == "question"
    assert only("I was wondering whether you support single sign-on.").type == "question"


# --- what must not fire -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "said",
    [
        "who knows right",  # rhetorical
        "Isn't that something.",
        "Who doesn't love a good debugging session, right?",
        "I sent the contract yesterday.",  # done already
        "I've already escalated it to tier two.",
        "if we had budget we would hire",  # hypothetical
        "we'd need at least three more engineers to do that",
        "We should do a joint webinar someday.",  # vague
        "we could probably redesign the settings page at some point",
        "She said she'd send the purchase order.",  # reported
        "he said he'll follow up next week",
        "I can see your screen now.",  # ability
        "i can reproduce it on my machine",
        "Let me know if you have any other questions.",  # courtesy
        "Feel free to reach out if anything comes up.",
        "Take care and have a good evening.",
        "Let's not worry about the renewal terms for now.",
        "I'll be out on Friday.",
        "I have to leave early today.",
        "I should have sent it earlier.",  # regret, not a plan
        "You'll get an email from our billing team.",
        "I'll tell you what, this quarter has been crazy.",
        "can you believe it",
    ],
)
def test_hard_negatives_do_not_fire(said: str) -> None:
    assert [i for i in detect(said) if i.confidence >= 0.5] == []


def test_an_offer_with_can_is_reported_below_the_default_threshold() -> None:
    offer = only("Sure, I can do that by Friday.")
    assert offer.type == "action_item" and offer.confidence < 0.5
    assert only("I'll do that by Friday.").confidence > 0.8


# --- the labelled utterances ----------------------------------------------------------------------------------------


def test_the_dataset_is_large_varied_and_split() -> None:
    items = load_dataset()
    assert len(items) >= 450
    assert sum(item["asr_style"] for item in items) / len(items) >= 0.30
    assert 0.25 <= sum(item["split"] == "test" for item in items) / len(items) <= 0.35
    assert {item["domain"] for item in items} == {"sales", "support", "standup", "planning", "interview"}
    assert sum(not item["labels"] for item in items) / len(items) >= 0.3  # plenty of negatives
    assert len({item["id"] for item in items}) == len(items), DATASET


@pytest.mark.slow
def test_held_out_split_meets_the_quality_targets() -> None:
    scores = score(load_dataset("test"))
    assert scores.f1("question") >= 0.90, scores.mistakes
    assert scores.f1("action_item") >= 0.80, scores.mistakes
    assert scores.f1("follow_up") >= 0.75, scores.mistakes
    assert scores.assignee_right / scores.owned_matches >= 0.85
    assert scores.due_right / scores.owned_matches >= 0.80
