"""How well ``detect_insights`` finds questions, action items and follow-ups on the labelled utterances.

Prints, for the dev split (rules were tuned on it) and the held-out test split (never tuned on): precision, recall
and F1 per insight type, assignee and due-date accuracy on matched items, and throughput of one-by-one calls.

    .venv/bin/python bench/insight_quality.py            # the report
    .venv/bin/python bench/insight_quality.py --errors   # also every dev-split mistake
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processors.insights.detect import DetectedInsight, detect_insights
from processors.insights.language import load_nlp

__all__ = ["DATASET", "Scores", "load_dataset", "quality_report", "score"]

DATASET = Path(__file__).resolve().parent.parent / "tests" / "data" / "insights_dev.jsonl"
TYPES = ("question", "action_item", "follow_up")
DEFAULT_THRESHOLD = 0.5  # Symbl's default confidenceThreshold


@dataclass
class Scores:
    true_positives: Counter[str] = field(default_factory=Counter)
    false_positives: Counter[str] = field(default_factory=Counter)
    false_negatives: Counter[str] = field(default_factory=Counter)
    assignee_right: int = 0
    due_right: int = 0
    owned_matches: int = 0  # matched action items and follow-ups (the ones with an assignee and due date to check)
    mistakes: list[str] = field(default_factory=list)

    def precision(self, kind: str) -> float:
        found = self.true_positives[kind] + self.false_positives[kind]
        return self.true_positives[kind] / found if found else 0.0

    def recall(self, kind: str) -> float:
        expected = self.true_positives[kind] + self.false_negatives[kind]
        return self.true_positives[kind] / expected if expected else 0.0

    def f1(self, kind: str) -> float:
        p, r = self.precision(kind), self.recall(kind)
        return 2 * p * r / (p + r) if p + r else 0.0


def load_dataset(split: str | None = None) -> list[dict]:
    items = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
    return [item for item in items if split is None or item["split"] == split]


def detect_for(item: dict) -> list[DetectedInsight]:
    return detect_insights(
        item["text"], speaker_name=item["speaker"], spoken_at=datetime.fromisoformat(item["spoken_at"]),
        timezone_offset_min=item["timezone_offset_min"],
    )  # fmt: skip


def score(items: list[dict], threshold: float = DEFAULT_THRESHOLD) -> Scores:
    """Per utterance and type, gold labels and detections pair up in order of appearance."""
    scores = Scores()
    for item in items:
        found = [insight for insight in detect_for(item) if insight.confidence >= threshold]
        for kind in TYPES:
            gold = [label for label in item["labels"] if label["type"] == kind]
            predicted = [insight for insight in found if insight.type == kind]
            matched = min(len(gold), len(predicted))
            scores.true_positives[kind] += matched
            scores.false_positives[kind] += len(predicted) - matched
            scores.false_negatives[kind] += len(gold) - matched
            if len(gold) != len(predicted):
                scores.mistakes.append(
                    f"{item['id']}: {kind} expected {len(gold)} found {len(predicted)}: "
                    f"{item['text']!r} -> {[(i.type, i.confidence) for i in found]}"
                )
            if kind != "question":
                _check_details(scores, item, gold[:matched], predicted[:matched])
    return scores


def _check_details(scores: Scores, item: dict, gold: list[dict], predicted: list[DetectedInsight]) -> None:
    for label, insight in zip(gold, predicted, strict=True):
        scores.owned_matches += 1
        name = insight.assignee.name if insight.assignee else None
        due = insight.due_by.date().isoformat() if insight.due_by else None
        scores.assignee_right += name == label["assignee"]
        scores.due_right += due == label["due"]
        if name != label["assignee"] or due != label["due"]:
            scores.mistakes.append(
                f"{item['id']}: details expected {label['assignee']}/{label['due']} "
                f"found {name}/{due} ({insight.due_text!r}): {item['text']!r}"
            )


def _split_table(name: str, items: list[dict], scores: Scores) -> list[str]:
    asr = sum(1 for item in items if item.get("asr_style"))
    labelled, negatives = sum(len(i["labels"]) for i in items), sum(not i["labels"] for i in items)
    lines = [f"{name}: {len(items)} utterances ({asr} ASR-style), {labelled} labelled insights, {negatives} negatives",
             f"  {'type':<12} {'gold':>5} {'prec':>6} {'recall':>7} {'F1':>6}"]  # fmt: skip
    for kind in TYPES:
        gold = scores.true_positives[kind] + scores.false_negatives[kind]
        lines.append(f"  {kind:<12} {gold:>5} {scores.precision(kind):>6.3f} {scores.recall(kind):>7.3f} "
                     f"{scores.f1(kind):>6.3f}")  # fmt: skip
    if scores.owned_matches:
        lines.append(f"  on {scores.owned_matches} matched action items + follow-ups: assignee accuracy "
                     f"{scores.assignee_right / scores.owned_matches:.3f}, due-date accuracy "
                     f"{scores.due_right / scores.owned_matches:.3f}")  # fmt: skip
    return lines


def _throughput(items: list[dict]) -> str:
    for item in items[:5]:
        detect_for(item)  # warm caches
    started, cpu_started = time.perf_counter(), time.process_time()
    for item in items:
        detect_for(item)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # CPU time as well as wall time: on a shared machine the wall-clock rate mostly measures the neighbours.
    return (
        f"throughput: {len(items) / elapsed:.0f} messages/s one-by-one ({len(items)} messages in {elapsed:.2f} s); "
        f"{len(items) / cpu:.0f} messages per CPU-second"
    )


def quality_report(threshold: float = DEFAULT_THRESHOLD) -> str:
    """The whole report as text, for ``bench/insights.py`` and this script."""
    started = time.perf_counter()
    load_nlp()
    lines = [f"insight detection quality (confidence >= {threshold}); model load {time.perf_counter() - started:.2f} s"]
    for split in ("dev", "test"):
        items = load_dataset(split)
        lines += _split_table(split + (" (held out)" if split == "test" else ""), items, score(items, threshold))
    lines.append(_throughput(load_dataset()))
    return "\n".join(lines)


def main() -> None:
    print(quality_report())
    if "--errors" in sys.argv:
        for mistake in score(load_dataset("dev")).mistakes:
            print(mistake)


if __name__ == "__main__":
    main()
