"""Personal data in transcript text: the patterns entity detection and redaction share, and the placeholders
redaction leaves behind. Pure and import-light (no spaCy), so the transcription worker and the gateways can use it.

The patterns find contact and payment details as people write them and as speech recognition spells them:
e-mail addresses (also spoken, "john dot smith at acme dot com"), phone numbers (also runs of spoken digits) and
payment card numbers (``luhn_valid`` tells a real one from a typo). ``processors/insights/entities.py`` reports what
they find as entities; ``processors/transcription/redaction.py`` masks it.

A redacted transcript carries a placeholder such as ``[EMAIL]`` where the personal data was; text processors use
``placeholder_spans`` or ``blank_placeholders`` to leave those alone (no entity, topic or tracker match is made of
a placeholder: spaCy calls "[PHONE_NUMBER]" a person, and a "phone number" tracker would match it).
"""

from __future__ import annotations

import re

__all__ = [
    "CARD",
    "DIGIT_WORDS",
    "EMAIL",
    "EMAIL_TLDS",
    "PHONE",
    "PLACEHOLDER",
    "REDACTION_TYPES",
    "SPOKEN_EMAIL",
    "SPOKEN_PHONE",
    "blank_placeholders",
    "card_brand",
    "luhn_valid",
    "overlaps_placeholder",
    "placeholder",
    "placeholder_spans",
]

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
EMAIL_TLDS = ("com", "org", "net", "io", "co", "edu", "gov", "ai", "dev", "uk", "de")
SPOKEN_EMAIL = re.compile(
    r"\b(?P<local>[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)*)\s+at\s+"
    r"(?P<domain>[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)*\s+dot\s+(?:" + "|".join(EMAIL_TLDS) + r"))\b",
    re.IGNORECASE,
)
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(?\d{1,4}\)?[\s.-]?){2,4}\d{2,4}"
    r"|(?:1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4})(?!\w)"
)
DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
               "seven": "7", "eight": "8", "nine": "9"}
SPOKEN_PHONE = re.compile(r"\b(?:(?:" + "|".join(DIGIT_WORDS) + r")\b[\s-]*){7,}", re.IGNORECASE)
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")

REDACTION_TYPES = ("email", "phone_number", "credit_card", "number", "person")
"""What a stream may ask to have masked, in the order placeholders win when spans overlap (see redaction.py)."""
PLACEHOLDER = re.compile(r"\[(?:" + "|".join(t.upper() for t in REDACTION_TYPES) + r")\]")


def placeholder(kind: str) -> str:
    """``[EMAIL]``, ``[PHONE_NUMBER]``, ``[CREDIT_CARD]``, ``[NUMBER]`` or ``[PERSON]``."""
    return f"[{kind.upper()}]"


def placeholder_spans(text: str) -> list[tuple[int, int]]:
    """Where redaction placeholders are in ``text``, as (start, end) character offsets."""
    return [m.span() for m in PLACEHOLDER.finditer(text)] if "[" in text else []


def blank_placeholders(text: str) -> str:
    """``text`` with each placeholder turned into as many spaces: what a parser should see (offsets unchanged)."""
    return PLACEHOLDER.sub(lambda m: " " * len(m.group()), text) if "[" in text else text


def overlaps_placeholder(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(start < span_end and span_start < end for span_start, span_end in spans)


def luhn_valid(digits: str) -> bool:
    checksum = 0
    for i, char in enumerate(reversed(digits)):
        digit = int(char)
        if i % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


def card_brand(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits[:2] in {"34", "37"}:
        return "amex"
    return "other"
