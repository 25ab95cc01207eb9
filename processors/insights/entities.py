"""Entities in one message: people, organisations, places, dates and times, numbers, money, percentages, products,
and PII-style patterns (email addresses, phone numbers, payment card numbers).

spaCy's NER does the bulk; around it:

- patterns that win over NER: emails (also spoken, "john dot smith at acme dot com"), phone numbers (also spoken
  digit runs), card numbers (Luhn-checked), fiscal quarters ("Q3", "the third quarter"; the 3.8 model calls "Q3" a
  PERSON) and company names ending in a legal or sector suffix ("Globex Corporation", which 3.8 calls a PERSON);
- lowercase ASR text: NER leans on capitals, so when a message has none, the words the tagger reads as proper nouns
  are capitalised (offsets do not move) and NER runs again on that copy. Measured F1 on ASR-style text: dev 0.888 ->
  0.924, held-out 0.879 -> 0.845 (bench/tracker_entity_quality.py prints both); capitalising words missing from the
  lemmatizer's word lists as well was worse on both splits;
- values: dates resolved against ``reference_time`` with dateparser (past-tense sentences prefer past dates), money
  as "<amount> <ISO currency>", numbers and percentages as digits.

Types are Symbl's lowercase names; ``category`` is "PII" for person, email, phone_number and credit_card, otherwise
"Managed". The email, phone and card patterns live in ``processors/pii.py``, shared with redaction; a redacted
transcript's placeholders (``[EMAIL]``, ``[PERSON]``...) yield no entity.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import dateparser
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span

from processors.insights.due_dates import find_due_phrases
from processors.pii import (
    CARD,
    DIGIT_WORDS,
    EMAIL,
    PHONE,
    SPOKEN_EMAIL,
    SPOKEN_PHONE,
    card_brand,
    luhn_valid,
    overlaps_placeholder,
    placeholder_spans,
)

__all__ = ["DetectedEntity", "EntityDetector", "detect_entities", "parse_number"]


@dataclass(frozen=True)
class DetectedEntity:
    type: str
    sub_type: str | None
    category: str
    value: str
    text: str
    offset: int


_PII_TYPES = frozenset({"person", "email", "phone_number", "credit_card"})
_NER_TYPES = {
    "PERSON": ("person", None),
    "ORG": ("organization", None),
    "GPE": ("location", "gpe"),
    "LOC": ("location", "loc"),
    "FAC": ("location", "facility"),
    "DATE": ("date", None),
    "TIME": ("datetime", None),
    "CARDINAL": ("number", "cardinal"),
    "QUANTITY": ("number", "quantity"),
    "MONEY": ("money", None),
    "PERCENT": ("percent", None),
    "PRODUCT": ("product", None),
}
# Priorities when spans overlap: patterns beat company-suffix rules, which beat NER.
_PATTERN, _RULE, _NER = 3, 2, 1

_ORG_SUFFIXES = (
    "corp corporation inc incorporated llc ltd limited gmbh plc company group holdings industries enterprises "
    "technologies systems solutions labs bank partners dynamics health hospital university traders worldwide "
    "science analytics airlines insurance consulting software"
).split()
_STRONG_ORG_SUFFIXES = (
    "corp corporation inc incorporated llc ltd limited gmbh plc industries enterprises holdings technologies worldwide"
).split()
_FILLERS = frozenset("um umm uh uhh uhm erm er ah hmm mm mhm eh".split())
# Software and devices that come up in business calls; the small model rarely tags PRODUCT. Extend per deployment
# with ``EntityDetector(products=...)``.
COMMON_PRODUCTS = (
    "Zoom", "Slack", "Microsoft Teams", "Teams", "Outlook", "Excel", "PowerPoint", "Word", "SharePoint", "OneDrive",
    "Gmail", "Google Docs", "Google Sheets", "Google Meet", "Google Drive", "Chrome", "Firefox", "Safari", "Android",
    "iOS", "iPhone", "iPad", "MacBook", "macOS", "Windows", "Linux", "Jira", "Confluence", "Trello", "Asana",
    "Notion", "Dropbox", "Zendesk", "Tableau", "Power BI", "Webex", "WhatsApp", "Salesforce", "HubSpot", "GitHub",
)
# A single-word NER entity that says, asks or tells something is a person, whatever label NER gave it
# ("Olivia said...", the model calls Olivia an ORG).
_SPEECH_VERBS = frozenset(
    "say ask tell email call mention explain reply write text think feel agree promise present suggest".split()
)
_FREQUENCY_WORDS = frozenset("annual annually daily weekly monthly quarterly yearly biweekly hourly".split())

_PERCENT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:%|percent\b|per\s+cent\b)", re.IGNORECASE)
_MONEY = re.compile(
    r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|mm|bn|thousand|million|billion)\b)?", re.IGNORECASE
)
_QUARTER = re.compile(
    r"\b(?:q(?P<q>[1-4])(?:\s+(?:of\s+)?(?P<qyear>(?:19|20)\d{2}))?"
    r"|(?:the\s+)?(?P<which>first|second|third|fourth|1st|2nd|3rd|4th|last|next|this)\s+quarter"
    r"(?:\s+of\s+(?P<wyear>(?:19|20)\d{2}))?)\b",
    re.IGNORECASE,
)
_ORDINAL_QUARTERS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}

_NUMBER_WORDS = {
    **{w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split())},
    **{w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())},
    "a": 1, "an": 1, "oh": 0,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "k": 1_000, "grand": 1_000, "million": 1_000_000, "m": 1_000_000,
           "mm": 1_000_000, "billion": 1_000_000_000, "bn": 1_000_000_000, "b": 1_000_000_000}
_CURRENCIES = {"$": "USD", "dollar": "USD", "dollars": "USD", "bucks": "USD", "usd": "USD", "€": "EUR", "euro": "EUR",
               "euros": "EUR", "eur": "EUR", "£": "GBP", "pound": "GBP", "pounds": "GBP", "gbp": "GBP", "¥": "JPY",
               "yen": "JPY", "cents": "USD"}
_DURATION = re.compile(
    r"^(?:about\s+|around\s+|roughly\s+|almost\s+|over\s+|under\s+)?(?:the\s+)?"
    r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|few|a\s+few|"
    r"several|couple\s+of|a\s+couple\s+of|\d+(?:\.\d+)?)\s*(?:-\s*)?(?:more\s+)?"
    r"(?:second|minute|hour|day|week|month|year|quarter)s?(?:\s+long)?$",
    re.IGNORECASE,
)
_END_OF = re.compile(r"^(?:by\s+)?(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|next\s+)?(?P<unit>week|month|year)$",
                     re.IGNORECASE)
_MONTH_ONLY = re.compile(
    r"^(?:in\s+)?(?:(?P<rel>next|last|this)\s+)?(?P<month>" + "|".join(calendar.month_name[1:]) + r")"
    r"(?:\s+(?P<year>(?:19|20)\d{2}))?$",
    re.IGNORECASE,
)
_MONTH_NAME = re.compile(r"\b(?:" + "|".join(calendar.month_name[1:]) + r")\b", re.IGNORECASE)
_YEAR_ONLY = re.compile(r"^(?:in\s+)?(?P<year>(?:19|20)\d{2})$")
_REL_YEAR = re.compile(r"^(?P<rel>next|last|this)\s+year$", re.IGNORECASE)
_REL_MONTH = re.compile(r"^(?P<rel>next|last|this)\s+month$", re.IGNORECASE)
_ORDINAL_DAYS = {
    w: f"{i + 1}" for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
        "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())
}
_ORDINAL_DAYS.update({"twenty-first": "21", "twenty first": "21", "twenty-second": "22", "twenty second": "22",
                      "twenty-third": "23", "twenty third": "23", "thirtieth": "30", "thirty-first": "31",
                      "thirty first": "31"})
_BARE_HOUR = re.compile(r"^(?:at\s+)?(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?$")


def parse_number(text: str) -> float | None:
    """A number written with digits ("1,200", "3.2 million", "40k") or words ("twenty five", "two hundred thousand")."""
    cleaned = text.lower().replace(",", "").replace("-", " ").strip()
    cleaned = re.sub(r"(\d)([a-z])", r"\1 \2", cleaned)
    if not cleaned:
        return None
    total, current, seen = 0.0, 0.0, False
    for word in cleaned.split():
        if word == "and":
            continue
        if re.fullmatch(r"\d+(?:\.\d+)?", word):
            current += float(word)
        elif word in _NUMBER_WORDS:
            current += _NUMBER_WORDS[word]
        elif word in _SCALES:
            scale = _SCALES[word]
            if scale == 100:
                current = (current or 1) * scale
            else:
                total += (current or 1) * scale
                current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _format_number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{round(number, 4):g}"


@dataclass(frozen=True)
class _Candidate:
    start: int
    end: int
    type: str
    sub_type: str | None
    value: str | None  # None: resolve later from the text
    priority: int
    span: Span | None = None


def _pattern_candidates(text: str, reference: datetime) -> list[_Candidate]:
    found: list[_Candidate] = []
    for m in EMAIL.finditer(text):
        found.append(_Candidate(m.start(), m.end(), "email", None, m.group().lower(), _PATTERN))
    for m in SPOKEN_EMAIL.finditer(text):
        local = re.sub(r"\s+dot\s+", ".", m.group("local").lower())
        domain = re.sub(r"\s+dot\s+", ".", m.group("domain").lower())
        found.append(_Candidate(m.start(), m.end(), "email", "spoken", f"{local}@{domain}", _PATTERN))
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append(_Candidate(m.start(), m.end(), "credit_card", card_brand(digits), digits, _PATTERN + 1))
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        value = ("+" if m.group().startswith("+") else "") + digits
        found.append(_Candidate(m.start(), m.end(), "phone_number", None, value, _PATTERN))
    for m in SPOKEN_PHONE.finditer(text):
        words = re.findall(r"[a-z]+", m.group().lower())
        end = m.start() + len(m.group().rstrip(" -"))
        found.append(_Candidate(m.start(), end, "phone_number", "spoken",
                                "".join(DIGIT_WORDS[w] for w in words), _PATTERN))
    for m in _PERCENT.finditer(text):
        number = parse_number(re.sub(r"%|percent|per\s+cent", " ", m.group().lower()))
        found.append(_Candidate(m.start(), m.end(), "percent", None, f"{_format_number(number or 0)}%", _PATTERN))
    for m in _MONEY.finditer(text):
        found.append(_Candidate(m.start(), m.end(), "money", None, _money_value(m.group()), _PATTERN - 1))
    for m in _QUARTER.finditer(text):
        found.append(_Candidate(m.start(), m.end(), "date", "quarter", _quarter_value(m, reference), _PATTERN))
    return found


def _quarter_value(m: re.Match[str], reference: datetime) -> str:
    current = (reference.month - 1) // 3 + 1
    year = int(m.group("qyear") or m.group("wyear") or reference.year)
    if m.group("q"):
        return f"{year}-Q{m.group('q')}"
    which = m.group("which").lower()
    if which in _ORDINAL_QUARTERS:
        return f"{year}-Q{_ORDINAL_QUARTERS[which]}"
    index = reference.year * 4 + current - 1 + {"last": -1, "next": 1, "this": 0}[which]
    return f"{index // 4}-Q{index % 4 + 1}"


def _select(candidates: Iterable[_Candidate]) -> list[_Candidate]:
    """Non-overlapping candidates, higher priority first, then longer."""
    chosen: list[_Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (-c.priority, -(c.end - c.start), c.start)):
        if all(candidate.end <= c.start or candidate.start >= c.end for c in chosen):
            chosen.append(candidate)
    return sorted(chosen, key=lambda c: c.start)


class EntityDetector:
    """Entity detection bound to one spaCy pipeline (builds its token patterns once)."""

    def __init__(
        self, nlp: Language, *, recase_lowercase: bool = True, products: Sequence[str] = COMMON_PRODUCTS
    ) -> None:
        self._nlp = nlp
        self.recase_lowercase = recase_lowercase
        self._product_matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._product_matcher.add("PRODUCT", [nlp.make_doc(name) for name in products])
        self._product_names = {name.lower(): name for name in products}
        self._org_matcher = Matcher(nlp.vocab)
        self._org_matcher.add("ORG_SUFFIX", [[
            {"IS_TITLE": True, "IS_SENT_START": False, "OP": "+"},
            {"LOWER": {"IN": _ORG_SUFFIXES}, "IS_TITLE": True},
        ], [
            {"IS_TITLE": True, "IS_SENT_START": True},
            {"IS_TITLE": True, "OP": "*"},
            {"LOWER": {"IN": _ORG_SUFFIXES}, "IS_TITLE": True},
        ]])
        # Lowercase text: any one or two content words before an unmistakable company suffix ("globex corporation").
        self._lowercase_org_matcher = Matcher(nlp.vocab)
        self._lowercase_org_matcher.add("ORG_SUFFIX", [[
            {"IS_ALPHA": True, "IS_STOP": False, "POS": {"IN": ["PROPN", "NOUN", "ADJ", "X", "VERB"]}, "OP": "{1,2}"},
            {"LOWER": {"IN": _STRONG_ORG_SUFFIXES}},
        ]])

    def detect(self, text: str, *, reference_time: datetime | None = None, doc: Doc | None = None
               ) -> list[DetectedEntity]:
        reference = _naive_reference(reference_time)
        if doc is None:
            doc = self._nlp(text)
        ner_doc = doc
        lowercase = not any(c.isupper() for c in text)
        if self.recase_lowercase and lowercase:
            recased = self._recase(doc)
            if recased != text:
                ner_doc = self._nlp(recased)
        candidates = _pattern_candidates(text, reference)
        if lowercase:
            for _, start, end in self._lowercase_org_matcher(doc):
                span = doc[start:end]
                candidates.append(_Candidate(span.start_char, span.end_char, "organization", None, None, _RULE))
        for _, start, end in self._org_matcher(ner_doc):
            span = ner_doc[start:end]
            if span[0].lower_ == "the":
                span = span[1:]
            candidates.append(_Candidate(span.start_char, span.end_char, "organization", None, None, _RULE))
        for _, start, end in self._product_matcher(ner_doc):
            span = ner_doc[start:end]
            name = self._product_names.get(span.text.lower(), span.text)
            candidates.append(_Candidate(span.start_char, span.end_char, "product", None, name, _RULE))
        for ent in ner_doc.ents:
            for part in _split_range(ent):
                candidate = _ner_candidate(text, part)
                if candidate is not None:
                    candidates.append(candidate)
        masked = placeholder_spans(text)
        if masked:
            # A redacted transcript's "[PHONE_NUMBER]" is no entity (NER calls it a PERSON): nothing may touch one.
            candidates = [c for c in candidates if not overlaps_placeholder(masked, c.start, c.end)]
        chosen = _select(candidates)
        return self._finish(text, chosen, reference, ner_doc)

    def _recase(self, doc: Doc) -> str:
        """Capitalise likely proper nouns of a lowercase message; the length (so every offset) is unchanged."""
        chars = list(doc.text)
        for token in doc:
            word = token.text
            if not word.isalpha() or token.is_stop or word in _FILLERS:
                if word == "i":
                    chars[token.idx] = "I"
                continue
            if token.pos_ == "PROPN":
                chars[token.idx] = chars[token.idx].upper()
        if chars:
            chars[0] = chars[0].upper()
        return "".join(chars)

    def _finish(self, text: str, chosen: Sequence[_Candidate], reference: datetime, doc: Doc) -> list[DetectedEntity]:
        entities: list[DetectedEntity] = []
        dates = {
            id(c): _resolve_date(text[c.start:c.end], reference, _past_context(c.span))
            for c in chosen if c.type == "date" and c.value is None
        }
        # A time of day belongs to the first day the message names ("3 pm on Thursday"), else to the reference day.
        day_context = next((day for _, _, day in dates.values() if day is not None), None)
        for candidate in chosen:
            surface = text[candidate.start:candidate.end]
            kind, sub_type, value = candidate.type, candidate.sub_type, candidate.value
            if value is None:
                if kind == "date":
                    sub_type, value, _ = dates[id(candidate)]
                elif kind == "datetime":
                    sub_type, value = _resolve_time(surface, day_context or reference)
                elif kind == "money":
                    value = _money_value(surface)
                elif kind == "percent":
                    number = parse_number(re.sub(r"%|\bper\s*cent\b|\bpercent(?:age)?\b", " ", surface.lower()))
                    value = f"{_format_number(number)}%" if number is not None else surface
                elif kind == "number":
                    if surface.lower() in {"one", "a", "an"}:
                        continue  # "one of", "the one": pronoun-like, not a quantity
                    number = parse_number(surface)
                    value = _format_number(number) if number is not None else surface
                else:
                    value = surface
            category = "PII" if kind in _PII_TYPES else "Managed"
            entities.append(DetectedEntity(kind, sub_type, category, value, surface, candidate.start))
        return entities


def _trim(ent: Span) -> Span | None:
    """Drop leading articles and fillers, and entities that are nothing but stop words."""
    start = ent.start
    while start < ent.end and (ent.doc[start].lower_ in {"the", "a", "an"} | _FILLERS):
        start += 1
    end = ent.end
    while end > start and ent.doc[end - 1].lower_ in {"to", "and", "from", "of", "or"} | _FILLERS:
        end -= 1
    if start == end:
        return None
    span = Span(ent.doc, start, end, label=ent.label_)
    if ent.label_ not in {"CARDINAL", "DATE", "TIME"} and all(t.is_stop or t.is_punct for t in span):
        return None
    return span


def _split_range(ent: Span) -> list[Span]:
    """"Monday to Wednesday", "12% to 18%": two entities, as a listener would name them."""
    if ent.label_ not in {"DATE", "PERCENT", "MONEY", "TIME"} or len(ent) < 3:
        return [ent]
    for i, token in enumerate(ent):
        if not 0 < i < len(ent) - 1:
            continue
        right_label = ent.label_
        if token.lower_ == "on" and ent.label_ == "TIME":
            right_label = "DATE"  # "10 am on June 18": a time, then a date
        elif token.lower_ not in {"to", "through", "until", "till", "-"}:
            continue
        left, right = ent.doc[ent.start:ent.start + i], ent.doc[ent.start + i + 1:ent.end]
        if ent.label_ == "DATE" and left[0].lower_ in {"from", "between"}:
            left = left[1:]
        if len(left) and len(right):
            return [Span(ent.doc, left.start, left.end, label=ent.label_),
                    Span(ent.doc, right.start, right.end, label=right_label)]
    return [ent]


def _ner_candidate(text: str, ent: Span) -> _Candidate | None:
    trimmed = _trim(ent)
    if trimmed is None:
        return None
    label = trimmed.label_
    following = trimmed.doc[trimmed.end] if trimmed.end < len(trimmed.doc) else None
    if label in {"CARDINAL", "QUANTITY"} and following is not None and following.lower_ in _CURRENCIES:
        trimmed = Span(trimmed.doc, trimmed.start, trimmed.end + 1, label="MONEY")  # "fifty thousand | euros"
        label = "MONEY"
    lower = trimmed.text.lower()
    if label == "DATE" and re.fullmatch(r"\d{3,}", lower) and not re.fullmatch(r"(?:19|20)\d{2}", lower):
        label = "CARDINAL"  # "ending in 4242" is not a year
    if label in {"CARDINAL", "QUANTITY"} and any(
            re.search(rf"\b{re.escape(word)}\b", lower) for word in _CURRENCIES if word.isalpha()):
        label = "MONEY"  # "about two hundred thousand dollars" read as a cardinal in lowercase text
    if label == "DATE" and (lower in _FREQUENCY_WORDS or lower.endswith(" old")):
        return None  # "pay annually", "five years old": not a point in time
    if label in {"ORG", "GPE", "LOC", "PRODUCT"} and len(trimmed) == 1 and _says_something(trimmed):
        label = "PERSON"
    mapped = _NER_TYPES.get(label)
    if mapped is None:
        return None
    start, end = trimmed.start_char, trimmed.end_char
    if label == "MONEY":
        # The model leaves a leading currency symbol outside the entity ("€50,000" -> "50,000").
        while start > 0 and text[start - 1] in "$€£¥":
            start -= 1
    return _Candidate(start, end, mapped[0], mapped[1], None, _NER, trimmed)


def _says_something(span: Span) -> bool:
    token = span.root
    return token.dep_ in {"nsubj", "nsubjpass"} and token.head.lemma_.lower() in _SPEECH_VERBS


def _past_context(span: Span | None) -> bool:
    """Whether the clause around a date is in the past tense ("we signed on Tuesday")."""
    if span is None:
        return False
    head = span.root
    for token in [head, *head.ancestors]:
        if token.pos_ in {"VERB", "AUX"}:
            return token.tag_ in {"VBD", "VBN"}
    return False


def _naive_reference(reference_time: datetime | None) -> datetime:
    """Wall-clock time in the reference's own timezone (dates are resolved as its speakers see them)."""
    if reference_time is None:
        return datetime.now(UTC).replace(tzinfo=None)
    return reference_time.replace(tzinfo=None)


@lru_cache(maxsize=4096)
def _dateparser(text: str, reference: datetime, prefer: str) -> datetime | None:
    return dateparser.parse(text, languages=["en"], settings={
        "RELATIVE_BASE": reference, "PREFER_DATES_FROM": prefer, "RETURN_AS_TIMEZONE_AWARE": False,
    })


def _resolve_date(surface: str, reference: datetime, past: bool) -> tuple[str | None, str, datetime | None]:
    """(sub_type, value, the day it names if one) of a date phrase; the value is the phrase itself if unresolved."""
    text = re.sub(r"\s+", " ", surface.strip().lower())
    text = re.sub(r"^(?:by|on|until|till|before|after|from|since)\s+", "", text)
    if _DURATION.match(text):
        return "duration", surface, None
    if m := _END_OF.match(text):
        unit = m.group("unit")
        if unit == "week":
            day = reference + timedelta(days=(4 - reference.weekday()) % 7)
        elif unit == "month":
            day = reference.replace(day=calendar.monthrange(reference.year, reference.month)[1])
        else:
            day = reference.replace(month=12, day=31)
        return "day", day.date().isoformat(), day
    if m := _YEAR_ONLY.match(text):
        return "year", m.group("year"), None
    if m := _REL_YEAR.match(text):
        return "year", str(reference.year + {"next": 1, "last": -1, "this": 0}[m.group("rel")]), None
    if m := _REL_MONTH.match(text):
        month_index = reference.year * 12 + reference.month - 1 + {"next": 1, "last": -1, "this": 0}[m.group("rel")]
        return "month", f"{month_index // 12}-{month_index % 12 + 1:02d}", None
    if m := _MONTH_ONLY.match(text):
        month, rel = list(calendar.month_name).index(m.group("month").capitalize()), m.group("rel")
        if m.group("year"):
            year = int(m.group("year"))
        elif rel == "next":
            year = reference.year + (month <= reference.month)
        elif rel == "last":
            year = reference.year - (month >= reference.month)
        elif rel == "this":
            year = reference.year
        elif past:
            year = reference.year - (month > reference.month)
        else:
            year = reference.year + (month < reference.month)
        return "month", f"{year}-{month:02d}", None
    if not past:
        # Day-level phrases follow the due-date conventions, so an entity and an action item's dueBy agree.
        for phrase in find_due_phrases(text, reference.replace(tzinfo=UTC)):
            if phrase.start == 0 and phrase.end >= len(text):
                day = phrase.value.replace(tzinfo=None)
                return "day", day.date().isoformat(), day
    text = re.sub(r"^(?:the|this coming|coming)\s+", "", text)
    for word, digits in sorted(_ORDINAL_DAYS.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"\b{word}\b", digits, text)
    parsed = _dateparser(text, reference, "past" if past else "future")
    if parsed is not None and _MONTH_NAME.search(text) and not re.search(r"(?:19|20)\d{2}", text):
        # "August 4th": tense says little ("we moved it to August 4th"); take the occurrence nearest to now.
        other = _dateparser(text, reference, "future" if past else "past")
        if other is not None and abs(other - reference) < abs(parsed - reference):
            parsed = other
    if parsed is None:
        return None, surface, None
    sub_type = "week" if "week" in text else "day"
    return sub_type, parsed.date().isoformat(), parsed


def _resolve_time(surface: str, day: datetime) -> tuple[str | None, str]:
    text = surface.strip().lower()
    if _DURATION.match(text):
        return "duration", surface
    text = re.sub(r"^(?:at|around|about|by)\s+", "", text)
    base = day.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := _BARE_HOUR.match(text):
        hour, minute = int(m.group("hour")), int(m.group("minute") or 0)
        if 1 <= hour <= 6:
            hour += 12  # "at 4:30" in a business conversation is the afternoon
        if hour < 24 and minute < 60:
            return "time", base.replace(hour=hour, minute=minute).isoformat(timespec="seconds")
    parsed = _dateparser(text, base, "future")
    if parsed is None:
        return None, surface
    return "time", parsed.isoformat(timespec="seconds")


def _money_value(surface: str) -> str:
    text = surface.lower()
    currency = "USD"
    for token, code in _CURRENCIES.items():
        found = token in text if not token.isalpha() else re.search(rf"\b{token}\b", text) is not None
        if found:
            currency = code
            break
    amount_text = re.sub(r"[$€£¥]|\b(?:" + "|".join(k for k in _CURRENCIES if k.isalpha()) + r")\b", " ", text)
    amount_text = re.sub(r"\b(?:about|around|roughly|over|under|almost|nearly|some)\b", " ", amount_text)
    amount = parse_number(amount_text)
    if amount is None:
        return surface
    if re.search(r"\bcents\b", text) and not re.search(r"\bdollars?\b", text):
        amount /= 100
    return f"{_format_number(amount)} {currency}"


@lru_cache(maxsize=8)
def _detector_for(nlp: Language) -> EntityDetector:
    return EntityDetector(nlp)


def detect_entities(
    text: str, *, nlp: Language | None = None, reference_time: datetime | None = None, doc: Doc | None = None
) -> list[DetectedEntity]:
    """Entities of one message, in text order. ``reference_time`` (default: now) anchors relative dates;
    ``doc`` may be passed if ``text`` is parsed already."""
    if nlp is None:
        from processors.insights.language import load_nlp

        nlp = load_nlp()
    return _detector_for(nlp).detect(text, reference_time=reference_time, doc=doc)
