"""Conversation topics: candidate phrases per message, ranked over the whole conversation.

``phrase_candidates`` runs once per message (stateless: the processor stores its output). ``rank_topics`` is
recomputed from every message's candidates whenever topics are asked for or pushed, so it is plain counting
(1000 messages take a few milliseconds).

Candidates are spaCy noun chunks cut down to their content words: articles, pronouns, numbers, fillers, vague
adjectives ("good", "other") and words inside person, date, time and quantity entities go; a chunk needs a noun that
is not a conversational filler noun ("thing", "time", "guys"). Root words are the lemmas of the words kept, so
"contracts" and "contract" count as one topic.

Ranking, per topic (root-word set): messages mentioning it, times how far apart in the conversation they are, times
how specific the phrase is (more words, more specific). A one-word topic also gains half a mention from each message
that names it inside a longer phrase ("pricing" from "enterprise pricing"), and becomes that phrase's ``parent``
when both are ranked (Symbl's parentRefs). Scores are divided by the best, so the top topic scores 1.0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.insights.sentiment import Sentiment, label_for
from processors.pii import blank_placeholders

if TYPE_CHECKING:  # only annotations: ranking stored phrases (the API, the email sink) must not load spaCy
    from spacy.language import Language
    from spacy.tokens import Doc, Token

__all__ = ["MessagePhrases", "PhraseCandidate", "RankedTopic", "phrase_candidates", "rank_topics"]


@dataclass(frozen=True)
class PhraseCandidate:
    phrase: str
    root_words: tuple[str, ...]
    offset: int


@dataclass(frozen=True)
class MessagePhrases:
    message_id: str
    candidates: tuple[PhraseCandidate, ...]
    sentiment: float


@dataclass(frozen=True)
class RankedTopic:
    phrase: str
    root_words: tuple[str, ...]
    score: float
    message_ids: tuple[str, ...]
    sentiment: Sentiment
    parent: str | None


_CONTENT_POS = frozenset({"NOUN", "PROPN", "ADJ"})
_EXCLUDED_ENTITIES = frozenset({"PERSON", "DATE", "TIME", "CARDINAL", "ORDINAL", "MONEY", "PERCENT", "QUANTITY"})
_FILLERS = frozenset("um umm uh uhh uhm erm er ah hmm mm mhm eh yeah yep okay ok".split())
# Nouns that carry no subject in conversation.
_GENERIC_NOUNS = frozenset(
    "thing things stuff lot lots bit way ways kind sort sorts guy guys folks people person everyone everybody someone "
    "somebody anyone anybody time times today tomorrow yesterday week weeks day days month months year years minute "
    "minutes hour hours second seconds moment question questions idea ideas point points part parts something "
    "anything everything nothing one ones fact case end side number numbers percent place sense word words couple "
    "matter issue issues problem problems example chance look call calls meeting meetings morning afternoon evening "
    "night team teams hi hello thanks thank bye mute screen slide slides agenda item items today's".split()
)
# Adjectives too vague to make a phrase more specific.
_VAGUE_ADJECTIVES = frozenset(
    "good great bad big small little new old other same few many much whole certain different real nice quick main "
    "whole sure important interesting own only right wrong best better worse worst able ready happy glad sorry "
    "possible current overall general specific particular entire huge awesome".split()
)
_KEEP_STOP_WORDS = frozenset({"next", "call", "name", "side", "top", "back", "front", "bottom", "amount", "part"})
_MAX_PHRASE_WORDS = 3
_HEAD_CREDIT = 0.5
_SPREAD_WEIGHT = 0.5
_SPECIFICITY_PER_WORD = 0.25
_MAX_SPECIFICITY = 1.5


def _is_content(token: Token, excluded: set[int]) -> bool:
    lower = token.lower_
    if token.i in excluded or lower in _FILLERS or token.like_num or not token.is_alpha:
        return False
    if token.pos_ not in _CONTENT_POS and not (token.tag_ in {"VBG", "VBN"} and token.dep_ in {"amod", "compound"}):
        return False  # gerund and participle modifiers stay: "hiring plan", "signed contract"
    if token.is_stop and lower not in _KEEP_STOP_WORDS:
        return False
    return not (token.pos_ == "ADJ" and (lower in _VAGUE_ADJECTIVES or token.lemma_.lower() in _VAGUE_ADJECTIVES))


def phrase_candidates(text: str, *, nlp: Language | None = None, doc: Doc | None = None) -> list[PhraseCandidate]:
    """Topic phrase candidates of one message, in text order, one per distinct root-word set."""
    masked = blank_placeholders(text)
    if masked != text:
        doc = None  # a redacted message: parse it without its placeholders ("[CREDIT_CARD]" is no topic)
    if doc is None:
        if nlp is None:
            from processors.insights.language import load_nlp

            nlp = load_nlp()
        doc = nlp(masked)
    excluded = {t.i for ent in doc.ents if ent.label_ in _EXCLUDED_ENTITIES for t in ent}
    found: dict[tuple[str, ...], PhraseCandidate] = {}
    for chunk in doc.noun_chunks:
        tokens = [t for t in chunk if _is_content(t, excluded)]
        # keep the contiguous run that ends at the chunk's head (or its last content word)
        run: list[Token] = []
        for token in tokens:
            if run and token.i != run[-1].i + 1:
                run = []
            run.append(token)
        run = run[-_MAX_PHRASE_WORDS:]
        if not run or not any(t.pos_ in {"NOUN", "PROPN"} for t in run):
            continue
        nouns = [t for t in run if t.pos_ in {"NOUN", "PROPN"}]
        if len(run) == 1 and (nouns[0].lower_ in _GENERIC_NOUNS or nouns[0].lemma_.lower() in _GENERIC_NOUNS):
            continue
        if all(t.lower_ in _GENERIC_NOUNS or t.lemma_.lower() in _GENERIC_NOUNS for t in nouns):
            continue
        root_words = tuple(_lemma(t) for t in run)
        if root_words in found:
            continue
        start, end = run[0].idx, run[-1].idx + len(run[-1])
        found[root_words] = PhraseCandidate(text[start:end].lower(), root_words, start)
    return sorted(found.values(), key=lambda c: c.offset)


def _lemma(token: Token) -> str:
    """The lemma when it is the word minus an inflection ("contracts" -> "contract"); the word itself when the
    lemma would read oddly to a user ("data" -> "datum")."""
    lemma, lower = token.lemma_.lower(), token.lower_
    if lemma.isalpha() and (lower.startswith(lemma[:-1]) or token.pos_ == "VERB"):
        return lemma
    return lower


@dataclass
class _Tally:
    messages: list[int]
    credited: list[int]  # messages naming it only inside a longer phrase (one-word topics)
    surfaces: Counter[str]


def rank_topics(messages: Sequence[MessagePhrases], *, limit: int = 10) -> list[RankedTopic]:
    """The conversation's top topics, best first; deterministic for the same input."""
    tallies: dict[tuple[str, ...], _Tally] = defaultdict(lambda: _Tally([], [], Counter()))
    for index, message in enumerate(messages):
        seen: set[tuple[str, ...]] = set()
        for candidate in message.candidates:
            key = candidate.root_words
            if not key or key in seen:
                continue
            seen.add(key)
            tally = tallies[key]
            tally.messages.append(index)
            tally.surfaces[candidate.phrase] += 1
        for head in {(c.root_words[-1],) for c in message.candidates if len(c.root_words) > 1} - seen:
            tallies[head].credited.append(index)
    total = max(1, len(messages) - 1)
    raw: list[tuple[float, tuple[str, ...], _Tally]] = []
    for key, tally in tallies.items():
        if not tally.messages:
            continue  # a head never named alone is not a topic of its own
        positions = sorted(set(tally.messages) | set(tally.credited))
        mentions = len(tally.messages) + _HEAD_CREDIT * len(set(tally.credited) - set(tally.messages))
        spread = (positions[-1] - positions[0]) / total
        specificity = min(_MAX_SPECIFICITY, 1 + _SPECIFICITY_PER_WORD * (len(key) - 1))
        raw.append((mentions * (1 + _SPREAD_WEIGHT * spread) * specificity, key, tally))
    if not raw:
        return []
    raw.sort(key=lambda item: (-item[0], -len(item[2].messages), _display(item[2]), item[1]))
    best = raw[0][0]
    top = raw[:limit]
    phrases = {key: _display(tally) for _, key, tally in top}
    scores = {key: value for value, key, _ in top}
    ranked = []
    for value, key, tally in top:
        indices = sorted(set(tally.messages))
        polarity = sum(messages[i].sentiment for i in indices) / len(indices)
        parents = [k for k in phrases if len(k) < len(key) and set(k) <= set(key)]
        parent = max(parents, key=lambda k: (scores[k], phrases[k])) if parents else None
        ranked.append(RankedTopic(
            phrase=phrases[key],
            root_words=key,
            score=round(value / best, 4),
            message_ids=tuple(dict.fromkeys(messages[i].message_id for i in indices)),
            sentiment=Sentiment(round(polarity, 3), label_for(polarity)),
            parent=phrases[parent] if parent is not None else None,
        ))
    return ranked


def _display(tally: _Tally) -> str:
    """The most used wording of a topic (ties: alphabetical)."""
    return min(tally.surfaces.items(), key=lambda item: (-item[1], item[0]))[0] if tally.surfaces else ""

