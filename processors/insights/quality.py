"""Scoring the tracker, entity, sentiment and topic logic against the labeled sets in tests/data/.

Shared by the tests (held-out targets) and bench/tracker_entity_quality.py (full report). Formats are described in
tests/data/README.md.

Tracker scoring is per (utterance, tracker) pair. A gold pair has the mode a person expects to be needed (exact,
inflected or semantic); ``optional`` pairs are acceptable but not required (neither counted as misses nor as false
positives). For a mode m:

- recall(m): of the gold pairs labeled m, the share detected in any mode;
- precision(m): of the predicted pairs whose strongest hit has mode m, the share that are gold (or optional).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from processors.insights.entities import DetectedEntity
from processors.insights.sentiment import label_for
from processors.insights.topics import MessagePhrases, PhraseCandidate, RankedTopic, rank_topics
from processors.insights.trackers import TrackerHit, TrackerMatcher, TrackerSpec

__all__ = [
    "DATA_DIR",
    "EntityScores",
    "ModeScore",
    "PrecisionRecall",
    "SemanticRanking",
    "TrackerDataset",
    "TrackerPredictions",
    "TrackerUtterance",
    "load_jsonl",
    "load_tracker_dataset",
    "predict_trackers",
    "score_entities",
    "score_sentiment",
    "score_topics",
    "score_trackers",
    "semantic_ranking",
]

DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
MODES = ("exact", "inflected", "semantic")
_MODE_RANK = {mode: i for i, mode in enumerate(MODES)}


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class PrecisionRecall:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __str__(self) -> str:
        return (f"P {self.precision:.3f}  R {self.recall:.3f}  F1 {self.f1:.3f}  "
                f"(tp {self.true_positives}, fp {self.false_positives}, fn {self.false_negatives})")


# ---------------------------------------------------------------- trackers


@dataclass(frozen=True)
class TrackerUtterance:
    id: str
    text: str
    gold: dict[str, str]  # tracker name -> mode a person expects
    optional: frozenset[str]
    tag: str | None
    style: str
    split: str


@dataclass(frozen=True)
class TrackerDataset:
    trackers: tuple[TrackerSpec, ...]
    utterances: tuple[TrackerUtterance, ...]

    def split(self, name: str | None) -> list[TrackerUtterance]:
        return [u for u in self.utterances if name is None or u.split == name]


def load_tracker_dataset(path: Path = DATA_DIR / "trackers_dev.jsonl") -> TrackerDataset:
    trackers, utterances = [], []
    for row in load_jsonl(path):
        if row["kind"] == "tracker":
            trackers.append(TrackerSpec(row["name"], tuple(row["vocabulary"]), row["id"]))
        else:
            utterances.append(TrackerUtterance(
                row["id"], row["text"], {label["tracker"]: label["mode"] for label in row["labels"]},
                frozenset(label["tracker"] for label in row["optional"]), row["tag"], row["style"], row["split"],
            ))
    return TrackerDataset(tuple(trackers), tuple(utterances))


@dataclass(frozen=True)
class TrackerPredictions:
    """Lexical hits and every semantic candidate (threshold -1) per utterance, so thresholds can be swept without
    embedding again."""

    lexical: dict[str, list[TrackerHit]]
    semantic: dict[str, list[TrackerHit]]

    def hits(self, utterance_id: str, threshold: float | None) -> list[TrackerHit]:
        lexical = self.lexical[utterance_id]
        if threshold is None:
            return lexical
        return lexical + [h for h in self.semantic[utterance_id] if h.score >= threshold]


def predict_trackers(matcher: TrackerMatcher, utterances: Iterable[TrackerUtterance]) -> TrackerPredictions:
    lexical, semantic = {}, {}
    for utterance in utterances:
        hits = matcher.lexical_matches(utterance.text)
        lexical[utterance.id] = hits
        semantic[utterance.id] = matcher.semantic_matches(
            utterance.text, skip={h.tracker_name for h in hits}, threshold=-1.0
        )
    return TrackerPredictions(lexical, semantic)


@dataclass(frozen=True)
class ModeScore:
    """One tracker mode: recall over the gold pairs labeled with it, precision over the predictions made in it."""

    detected: int
    gold: int
    correct: int
    predicted: int

    @property
    def recall(self) -> float:
        return self.detected / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __str__(self) -> str:
        return (f"P {self.precision:.3f}  R {self.recall:.3f}  F1 {self.f1:.3f}  "
                f"(found {self.detected}/{self.gold} labeled, {self.correct}/{self.predicted} predictions right)")


@dataclass
class TrackerScores:
    by_mode: dict[str, ModeScore]
    overall: PrecisionRecall
    by_tracker: dict[str, PrecisionRecall]
    errors: list[str] = field(default_factory=list)


def score_trackers(
    utterances: Sequence[TrackerUtterance], hits_of: Callable[[TrackerUtterance], Sequence[TrackerHit]]
) -> TrackerScores:
    recall_counts = {m: [0, 0] for m in MODES}  # detected, gold
    precision_counts = {m: [0, 0] for m in MODES}  # correct, predicted
    tp = fp = fn = 0
    per_tracker: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    errors = []
    for utterance in utterances:
        strongest: dict[str, str] = {}
        for hit in hits_of(utterance):
            if hit.tracker_name not in strongest or _MODE_RANK[hit.mode] < _MODE_RANK[strongest[hit.tracker_name]]:
                strongest[hit.tracker_name] = hit.mode
        for name, mode in utterance.gold.items():
            recall_counts[mode][1] += 1
            if name in strongest:
                recall_counts[mode][0] += 1
                tp += 1
                per_tracker[name][0] += 1
            else:
                fn += 1
                per_tracker[name][2] += 1
                errors.append(f"miss {mode:9} {name}: {utterance.text}")
        for name, mode in strongest.items():
            if name in utterance.optional and name not in utterance.gold:
                continue
            precision_counts[mode][1] += 1
            if name in utterance.gold:
                precision_counts[mode][0] += 1
            else:
                fp += 1
                per_tracker[name][1] += 1
                errors.append(f"false {mode:9} {name}: {utterance.text} [{utterance.tag}]")
    return TrackerScores(
        by_mode={m: ModeScore(*recall_counts[m], *precision_counts[m]) for m in MODES},
        overall=PrecisionRecall(tp, fp, fn),
        by_tracker={name: PrecisionRecall(*counts) for name, counts in sorted(per_tracker.items())},
        errors=errors,
    )


@dataclass(frozen=True)
class SemanticRanking:
    """How well semantic scores separate the right tracker from the others, whatever the threshold.

    Over the (utterance, tracker) pairs left to the semantic mode (no lexical hit, not optional): ``auc`` is the chance
    that a gold pair scores above a non-gold one; ``top1`` the share of semantic gold pairs whose tracker scores
    highest in its utterance. When each message is taken to be about one thing, ``top1`` bounds the recall any
    threshold can reach; at precision 0.90 and recall 0.70 a scorer must leave at most one non-gold pair in ~500
    above the threshold, which needs an AUC near 0.99.
    """

    auc: float
    top1: float
    gold: int
    non_gold: int

    def __str__(self) -> str:
        return (f"ranking AUC {self.auc:.3f}; right tracker ranked first for {self.top1:.3f} of the semantic gold "
                f"pairs ({self.gold} gold, {self.non_gold} non-gold pairs)")


def semantic_ranking(
    utterances: Sequence[TrackerUtterance], tracker_names: Sequence[str], predictions: TrackerPredictions
) -> SemanticRanking:
    """``SemanticRanking`` of the semantic candidates in ``predictions`` (made with threshold -1); a tracker with no
    candidate in an utterance scores -1 there."""
    gold_scores: list[float] = []
    other_scores: list[float] = []
    first = labeled = 0
    for utterance in utterances:
        lexical = {h.tracker_name for h in predictions.lexical[utterance.id]}
        scores = {name: -1.0 for name in tracker_names if name not in lexical}
        for hit in predictions.semantic[utterance.id]:
            if hit.tracker_name in scores:
                scores[hit.tracker_name] = max(scores[hit.tracker_name], hit.score)
        for name, score in scores.items():
            if name in utterance.gold:
                gold_scores.append(score)
            elif name not in utterance.optional:
                other_scores.append(score)
            if utterance.gold.get(name) == "semantic":
                labeled += 1
                first += all(score > other for rival, other in scores.items() if rival != name)
    if not gold_scores or not other_scores:
        return SemanticRanking(float("nan"), float("nan"), len(gold_scores), len(other_scores))
    # Mann-Whitney: the share of (gold, non-gold) pairs ordered right, ties counting half.
    others = sorted(other_scores)
    wins = 0.0
    for score in gold_scores:
        below, not_above = bisect_left(others, score), bisect_right(others, score)
        wins += below + (not_above - below) / 2
    return SemanticRanking(wins / (len(gold_scores) * len(others)), first / labeled if labeled else float("nan"),
                           len(gold_scores), len(others))


# ---------------------------------------------------------------- entities


@dataclass
class EntityScores:
    lenient: dict[str, PrecisionRecall]  # by type; same type and overlapping span
    strict: dict[str, PrecisionRecall]  # by type; same type and exact span
    values_correct: int
    values_labeled: int
    errors: list[str]

    @staticmethod
    def total(by_type: dict[str, PrecisionRecall]) -> PrecisionRecall:
        return PrecisionRecall(*(sum(getattr(s, f) for s in by_type.values())
                                 for f in ("true_positives", "false_positives", "false_negatives")))


def score_entities(
    rows: Sequence[dict[str, Any]], detect: Callable[[str, datetime], Sequence[DetectedEntity]]
) -> EntityScores:
    counts: dict[str, dict[str, list[int]]] = {"lenient": defaultdict(lambda: [0, 0, 0]),
                                               "strict": defaultdict(lambda: [0, 0, 0])}
    values_correct = values_labeled = 0
    errors: list[str] = []
    for row in rows:
        predicted = detect(row["text"], datetime.fromisoformat(row["reference_time"]))
        gold = row["entities"]
        for kind in ("lenient", "strict"):
            used: set[int] = set()
            for entity in predicted:
                match = None
                for i, expected in enumerate(gold):
                    if i in used or entity.type not in {expected["type"], *expected.get("also", [])}:
                        continue
                    start, end = expected["offset"], expected["offset"] + len(expected["text"])
                    same = entity.offset == start and entity.offset + len(entity.text) == end
                    overlaps = entity.offset < end and start < entity.offset + len(entity.text)
                    if same or (kind == "lenient" and overlaps):
                        match = i
                        break
                if match is None:
                    counts[kind][entity.type][1] += 1
                    if kind == "lenient":
                        errors.append(f"false {entity.type:12} {entity.text!r}: {row['text']}")
                    continue
                used.add(match)
                counts[kind][gold[match]["type"]][0] += 1
                if kind == "lenient" and "value" in gold[match]:
                    values_labeled += 1
                    if entity.value == gold[match]["value"]:
                        values_correct += 1
                    else:
                        errors.append(f"value {entity.type:12} {entity.value!r} != {gold[match]['value']!r}: "
                                      f"{row['text']}")
            for i, expected in enumerate(gold):
                if i not in used:
                    counts[kind][expected["type"]][2] += 1
                    if kind == "lenient":
                        errors.append(f"miss  {expected['type']:12} {expected['text']!r}: {row['text']}")
    return EntityScores(
        lenient={t: PrecisionRecall(*c) for t, c in sorted(counts["lenient"].items())},
        strict={t: PrecisionRecall(*c) for t, c in sorted(counts["strict"].items())},
        values_correct=values_correct,
        values_labeled=values_labeled,
        errors=errors,
    )


# ---------------------------------------------------------------- sentiment


def score_sentiment(
    rows: Sequence[dict[str, Any]], score_of: Callable[[str], float], *, threshold: float
) -> tuple[float, dict[str, PrecisionRecall]]:
    """Accuracy of the suggested label with symmetric bands ±``threshold``, and P/R per label."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    correct = 0
    for row in rows:
        predicted = label_for(score_of(row["text"]), positive_threshold=threshold, negative_threshold=-threshold)
        if predicted == row["label"]:
            correct += 1
            counts[predicted][0] += 1
        else:
            counts[predicted][1] += 1
            counts[row["label"]][2] += 1
    return correct / len(rows), {label: PrecisionRecall(*c) for label, c in sorted(counts.items())}


# ---------------------------------------------------------------- topics


@dataclass(frozen=True)
class TopicCheck:
    conversation: str
    ranked: tuple[RankedTopic, ...]
    expected: tuple[tuple[str, ...], ...]
    found: tuple[bool, ...]


def score_topics(
    conversations: Sequence[dict[str, Any]],
    candidates_of: Callable[[str], Sequence[PhraseCandidate]],
    sentiment_of: Callable[[str], float],
    *,
    limit: int = 10,
) -> list[TopicCheck]:
    """Per conversation: the ranked topics and, per expected topic (any of its words), whether a ranked topic's
    root words or phrase contain it."""
    checks = []
    for conversation in conversations:
        messages = [
            MessagePhrases(m["id"], tuple(candidates_of(m["text"])), sentiment_of(m["text"]))
            for m in conversation["messages"]
        ]
        ranked = rank_topics(messages, limit=limit)
        expected = tuple(tuple(words) for words in conversation["expected_topics"])
        found = tuple(
            any(any(w in t.root_words or w in t.phrase.split() for w in words) for t in ranked) for words in expected
        )
        checks.append(TopicCheck(conversation["id"], tuple(ranked), expected, found))
    return checks
