"""Final transcripts in, result records out: the four text stages as pure functions over plain dicts.

Each stage turns one FinalTranscript value (and the conversation's settings) into exactly one record of its
output topic, possibly with nothing found, so consumers can tell a message was looked at. Ids are derived from
the message id, so a replayed transcript yields the same record. Nothing here knows about Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from convoscope.ids import result_id
from convoscope.timestamps import now_ms

__all__ = [
    "ConversationConfig",
    "Stage",
    "entities_record",
    "insights_record",
    "message_ref",
    "topic_phrases_record",
    "tracker_matches_record",
    "use_semantic_trackers",
]

SAMPLE_RATE_HZ = 16_000
SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000


@dataclass(frozen=True)
class TrackerDefinition:
    id: str
    name: str
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class ConversationConfig:
    """The parts of a ConversationSettings record the stages use; defaults when none was published."""

    conversation_started_at_ms: int | None = None
    timezone_offset_min: int = 0
    confidence_threshold: float = 0.5
    trackers: tuple[TrackerDefinition, ...] = ()
    tracker_interim_results: bool = False
    detect_entities: bool = True

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> ConversationConfig:
        if record is None:
            return cls()
        return cls(
            conversation_started_at_ms=int(record["conversation_started_at_ms"]),
            timezone_offset_min=int(record.get("timezone_offset_min") or 0),
            confidence_threshold=float(record.get("confidence_threshold", 0.5)),
            trackers=tuple(
                TrackerDefinition(t["id"], t["name"], tuple(t["vocabulary"])) for t in record.get("trackers") or ()
            ),
            tracker_interim_results=bool(record.get("tracker_interim_results")),
            detect_entities=bool(record.get("detect_entities", True)),
        )


Stage = Callable[[dict[str, Any], ConversationConfig], "dict[str, Any] | None"]


def message_ref(transcript: dict[str, Any]) -> dict[str, Any]:
    """A final or interim transcript as a MessageRef (interims are identified by their utterance id)."""
    started = int(transcript["stream_started_at_ms"])
    return {
        "id": transcript.get("message_id") or transcript["utterance_id"],
        "text": transcript["text"],
        "speaker": transcript["speaker"],
        "start_ms": started + int(transcript["start_sample"]) // SAMPLES_PER_MS,
        "end_ms": started + int(transcript["end_sample"]) // SAMPLES_PER_MS,
        "time_offset_ms": int(transcript["stream_offset_ms"]) + int(transcript["start_sample"]) // SAMPLES_PER_MS,
    }


def _envelope(transcript: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": message_ref(transcript),
        "conversation_id": transcript["conversation_id"],
        "app_id": transcript["app_id"],
        "produced_at_ms": now_ms(),
    }


def _spoken_at(transcript: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(message_ref(transcript)["start_ms"] / 1000, tz=UTC)


def insights_record(transcript: dict[str, Any], config: ConversationConfig) -> dict[str, Any]:
    from processors.insights.detect import detect_insights
    from processors.insights.language import load_nlp

    found = detect_insights(
        transcript["text"],
        speaker_name=transcript["speaker"].get("name"),
        spoken_at=_spoken_at(transcript),
        timezone_offset_min=config.timezone_offset_min,
        nlp=load_nlp(),
    )
    message_id = transcript["message_id"]
    insights = [
        {
            "insight_id": result_id("insight", message_id, insight.type, insight.char_offset),
            "type": insight.type.upper(),
            "text": insight.text,
            "confidence": float(insight.confidence),
            "char_offset": int(insight.char_offset),
            "assignee_name": insight.assignee.name if insight.assignee else None,
            "assignee_is_speaker": bool(insight.assignee and insight.assignee.is_speaker),
            "due_by": insight.due_by.isoformat() if insight.due_by else None,
            "due_text": insight.due_text,
        }
        for insight in found
        if insight.confidence >= config.confidence_threshold
    ]
    return {**_envelope(transcript), "insights": insights}


def topic_phrases_record(transcript: dict[str, Any], config: ConversationConfig) -> dict[str, Any]:
    from processors.insights.language import load_nlp
    from processors.insights.sentiment import message_sentiment
    from processors.insights.topics import phrase_candidates

    text = transcript["text"]
    phrases = [
        {"phrase": c.phrase, "root_words": list(c.root_words), "offset": int(c.offset)}
        for c in phrase_candidates(text, nlp=load_nlp())
    ]
    return {**_envelope(transcript), "sentiment": float(message_sentiment(text).score), "phrases": phrases}


@lru_cache(maxsize=256)
def _matcher(trackers: tuple[TrackerDefinition, ...]) -> Any:
    """Matchers are reused across messages of conversations with the same trackers (vocabulary embeddings are
    computed once per matcher)."""
    from processors.insights.language import load_nlp
    from processors.insights.trackers import TrackerMatcher, TrackerSpec

    specs = [TrackerSpec(name=t.name, vocabulary=t.vocabulary, id=t.id) for t in trackers]
    return TrackerMatcher(specs, nlp=load_nlp(), embedder=_embedder())


_semantic_trackers = False


def use_semantic_trackers(enabled: bool) -> None:
    """Process-wide switch (CONVOSCOPE_SEMANTIC_TRACKERS), set once by the worker before the first message."""
    global _semantic_trackers
    _semantic_trackers = enabled
    _embedder.cache_clear()
    _matcher.cache_clear()


@lru_cache(maxsize=1)
def _embedder() -> Any:
    if not _semantic_trackers:
        return None
    from processors.insights.embeddings import load_sentence_embedder

    return load_sentence_embedder()


def tracker_matches_record(transcript: dict[str, Any], config: ConversationConfig) -> dict[str, Any] | None:
    """Finals always get a record; interims only when asked for and something matched."""
    is_final = "message_id" in transcript
    if not is_final and not config.tracker_interim_results:
        return None
    matches: list[dict[str, Any]] = []
    if config.trackers:
        ref_id = transcript.get("message_id") or transcript["utterance_id"]
        by_name = {t.name: t for t in config.trackers}
        for hit in _matcher(config.trackers).match(transcript["text"]):
            tracker = by_name.get(hit.tracker_name)
            tracker_id = hit.tracker_id or (tracker.id if tracker else hit.tracker_name)
            matches.append(
                {
                    "match_id": result_id("tracker", ref_id, tracker_id, hit.vocabulary),
                    "tracker_id": tracker_id,
                    "tracker_name": hit.tracker_name,
                    "vocabulary": hit.vocabulary,
                    "mode": hit.mode.upper(),
                    "matched_text": hit.matched_text,
                    "offset": int(hit.offset),
                    "score": float(hit.score),
                }
            )
    if not is_final and not matches:
        return None
    return {**_envelope(transcript), "is_final": is_final, "matches": matches}


def entities_record(transcript: dict[str, Any], config: ConversationConfig) -> dict[str, Any]:
    from processors.insights.due_dates import local_zone
    from processors.insights.entities import detect_entities
    from processors.insights.language import load_nlp

    entities: list[dict[str, Any]] = []
    if config.detect_entities:
        message_id = transcript["message_id"]
        # Dates and times are resolved as the speakers see them: on the conversation's clock (config.timezoneOffset).
        local_time = _spoken_at(transcript).astimezone(local_zone(config.timezone_offset_min))
        for entity in detect_entities(transcript["text"], nlp=load_nlp(), reference_time=local_time):
            entities.append(
                {
                    "entity_id": result_id("entity", message_id, entity.type, entity.offset, entity.text),
                    "type": entity.type,
                    "sub_type": entity.sub_type,
                    "category": entity.category,
                    "value": entity.value,
                    "text": entity.text,
                    "offset": int(entity.offset),
                }
            )
    return {**_envelope(transcript), "entities": entities}
