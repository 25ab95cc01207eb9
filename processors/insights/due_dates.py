"""Find spoken due dates ("by next Friday", "end of the week", "in two days") and resolve them to local dates.

Conventions (documented for API users in the insight docs):
- Everything is resolved in the conversation's local time, ``spoken_at`` shifted by ``timezone_offset_min``
  (JavaScript ``getTimezoneOffset`` sign: minutes to add to local time to get UTC, so 480 is UTC-08:00).
- A due date without a time of day is **local midnight at the start of that day** (Symbl's ``dueBy`` for "today"
  is ``...T00:00:00-07:00``); "by 3pm" keeps its time.
- A bare weekday ("by Friday") is its next occurrence after today; "this Friday" is the one in the current
  Monday-to-Sunday week (today counts); "next Friday" is the one in the following week.
- "end of (the) week" is Friday of this week, "end of next week" Friday of next week, "next week" its Monday,
  "end of the month" its last day, "next month" its first day, "today"/"tonight"/"EOD"/"close of business" today.
- Anything else that looks like a date ("the 15th", "April 2nd") goes to ``dateparser`` with future dates preferred.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache

import dateparser

__all__ = ["DuePhrase", "find_due_phrases", "local_zone", "mentions_due_date"]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "couple of": 2, "a couple of": 2, "few": 3, "a few": 3,
}  # fmt: skip
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_ORDINAL = (
    r"\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|fifteenth|twentieth"
    r"|thirtieth"
)
_PART_OF_DAY = r"(?:\s+(?:morning|afternoon|evening|night))?"
_LEAD = r"(?:(?:by|before|on|until|till|for|no later than|at|in|within|around)\s+)?(?:the\s+)?"

_PHRASE = re.compile(
    r"\b"
    + _LEAD
    + r"(?P<phrase>"
    + r"(?P<end>(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|next\s+)?(?P<end_unit>day|week|month|quarter)"
    + r"|eod|eow|eom|cob|close\s+of\s+business|end\s+of\s+business)"
    + r"|(?P<day>(?:first\s+thing\s+)?(?:(?:the\s+day\s+after\s+)?tomorrow|today|tonight|later\s+today"
    + r"|this\s+(?:morning|afternoon|evening))"
    + _PART_OF_DAY
    + r")"
    + r"|(?P<weekday>(?:(?:this\s+)?coming\s+|this\s+|next\s+)?(?:"
    + "|".join(_WEEKDAYS)
    + r")(?:'s)?"
    + _PART_OF_DAY
    + r")"
    + r"|(?P<span>(?:early\s+|later\s+)?(?:next|this)\s+(?:week|month))"
    + r"|(?P<count>(?:a\s+)?(?:couple\s+of|few|\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten)"
    + r"\s+(?:day|week|month|hour)s?)"
    + r"|(?P<calendar>(?:"
    + _MONTHS
    + r")\.?\s+(?:\d{1,2}(?:st|nd|rd|th)?|"
    + _ORDINAL
    + r")|(?:"
    + _ORDINAL
    + r")(?:\s+of\s+(?:"
    + _MONTHS
    + r"))?)"
    + r"|(?P<clock>\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.)|noon)"
    + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DuePhrase:
    """A due-date phrase found in a sentence: ``text`` (with its preposition) at ``start``..``end``."""

    text: str
    start: int
    end: int
    value: datetime  # timezone-aware, local


def local_zone(timezone_offset_min: int) -> timezone:
    """The fixed offset for a JavaScript-style ``getTimezoneOffset`` (480 means UTC-08:00)."""
    return timezone(timedelta(minutes=-timezone_offset_min))


def find_due_phrases(sentence: str, local_now: datetime) -> list[DuePhrase]:
    """Every resolvable future date phrase in ``sentence``, in order; ``local_now`` must be timezone-aware."""
    found = []
    for match in _PHRASE.finditer(sentence):
        if _is_count_without_in(match):
            continue
        value = _resolve(match, local_now)
        if value is not None:
            text = match.group(0).strip()
            found.append(DuePhrase(text=text, start=match.start(), end=match.start() + len(text), value=value))
    return found


def mentions_due_date(sentence: str) -> bool:
    """Whether ``sentence`` has something that looks like a due date (cheap: no resolving)."""
    return any(not _is_count_without_in(match) for match in _PHRASE.finditer(sentence))


def _is_count_without_in(match: re.Match[str]) -> bool:
    # "two days" is a due date only as "in/within two days", not "it took two days".
    return match.group("count") is not None and not re.match(r"(?:in|within)\s", match.group(0), re.IGNORECASE)


def _resolve(match: re.Match[str], now: datetime) -> datetime | None:
    today = now.date()
    phrase = " ".join(match.group("phrase").lower().split())
    if match.group("end"):
        day = _end_of(match.group("end_unit") or "day", phrase, today)
    elif match.group("day"):
        day = today + timedelta(days=2 if "day after" in phrase else 1 if "tomorrow" in phrase else 0)
    elif match.group("weekday"):
        day = _weekday(phrase, today)
    elif match.group("span"):
        day = _span(phrase, today)
    elif match.group("count"):
        return _after_count(phrase, now)
    elif match.group("clock"):
        return _at_clock(phrase, now)
    elif _names_month(phrase):
        return _with_dateparser(phrase, now)
    elif re.match(r"(?:\w+\s+)?the\s", match.group(0), re.IGNORECASE) and phrase[:1].isdigit():
        day = _day_of_month(int(re.sub(r"\D", "", phrase)), today)  # "by the 15th"
        if day is None:
            return None
    else:
        return None  # a bare ordinal ("a second", "the first round") is not a date
    return _midnight(day, now.tzinfo)


def _day_of_month(number: int, today: date) -> date | None:
    """The next ``number``th of a month, this month's if it is still to come."""
    year, month = today.year, today.month
    for _ in range(3):
        if number <= calendar.monthrange(year, month)[1] and date(year, month, number) >= today:
            return date(year, month, number)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _names_month(phrase: str) -> bool:
    return re.search(rf"\b(?:{_MONTHS})\b", phrase) is not None


def _midnight(day: date, zone: object) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone)  # type: ignore[arg-type]


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _end_of(unit: str, phrase: str, today: date) -> date:
    if unit == "week" or phrase == "eow":
        friday = _monday(today) + timedelta(days=4)
        if "next" in phrase:
            return friday + timedelta(days=7)
        return friday if friday >= today else friday + timedelta(days=7)
    if unit == "month" or phrase == "eom":
        year, month = today.year, today.month
        if "next" in phrase:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return date(year, month, calendar.monthrange(year, month)[1])
    if unit == "quarter":
        last_month = ((today.month - 1) // 3 + 1) * 3
        return date(today.year, last_month, calendar.monthrange(today.year, last_month)[1])
    return today


def _weekday(phrase: str, today: date) -> date:
    target = next(i for i, name in enumerate(_WEEKDAYS) if name in phrase)
    if phrase.startswith("next"):
        return _monday(today) + timedelta(days=7 + target)
    if phrase.startswith("this") and "coming" not in phrase:
        this_week = _monday(today) + timedelta(days=target)
        if this_week >= today:
            return this_week
    ahead = (target - today.weekday()) % 7
    return today + timedelta(days=ahead or 7)


def _span(phrase: str, today: date) -> date:
    if phrase.endswith("week"):
        if "next" in phrase:
            return _monday(today) + timedelta(days=7)
        return _end_of("week", phrase, today)
    if "next" in phrase:
        return date(today.year + 1, 1, 1) if today.month == 12 else date(today.year, today.month + 1, 1)
    return _end_of("month", phrase, today)


def _after_count(phrase: str, now: datetime) -> datetime:
    amount_text, unit = phrase.rsplit(" ", 1)
    amount = int(amount_text) if amount_text.isdigit() else _NUMBER_WORDS.get(amount_text, 1)
    if unit.startswith("hour"):
        return now + timedelta(hours=amount)
    days = {"day": 1, "week": 7, "month": 30}[unit.rstrip("s")] * amount
    return _midnight(now.date() + timedelta(days=days), now.tzinfo)


def _at_clock(phrase: str, now: datetime) -> datetime:
    if phrase == "noon":
        hour, minute = 12, 0
    else:
        clock = re.match(r"(\d{1,2})(?::(\d\d))?\s*([ap])", phrase)
        assert clock is not None  # the phrase pattern guarantees the shape
        hour, minute = int(clock.group(1)) % 12 + (12 if clock.group(3) == "p" else 0), int(clock.group(2) or 0)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def _with_dateparser(phrase: str, now: datetime) -> datetime | None:
    naive_now = now.replace(tzinfo=None)
    parsed = _parse_cached(phrase, naive_now.isoformat())
    if parsed is None:
        return None
    if parsed.time() == naive_now.time():  # dateparser copies the base's time when the phrase has none
        parsed = datetime.combine(parsed.date(), time(0, 0))
    return parsed.replace(tzinfo=now.tzinfo)


@cache
def _parse_cached(phrase: str, base_iso: str) -> datetime | None:
    settings = {"RELATIVE_BASE": datetime.fromisoformat(base_iso), "PREFER_DATES_FROM": "future"}
    return dateparser.parse(phrase, languages=["en"], settings=settings)  # type: ignore[arg-type]
