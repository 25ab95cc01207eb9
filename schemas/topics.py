"""Every topic convoscope reads or writes, declared once.

Producers, processors, sinks, the topic catalogue (docs/topics.md) and the Kubernetes
KafkaTopic resources all come from this list. Keys are UTF-8 conversation ids, so one
conversation stays ordered on one partition; all topics share one partition count so that
co-partitioned topics line up (the transcriber reads progress for exactly its audio partitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from schemas.serde import AvroSerde

__all__ = [
    "ALL_TOPICS",
    "ANALYTICS",
    "AUDIO_FRAMES",
    "CONVERSATION_EVENTS",
    "CONVERSATION_SETTINGS",
    "ENTITIES",
    "INSIGHTS",
    "TELEPHONY_COMMANDS",
    "TOPIC_PHRASES",
    "TRACKER_MATCHES",
    "TRANSCRIPTION_PROGRESS",
    "TRANSCRIPTS_FINAL",
    "TRANSCRIPTS_INTERIM",
    "WEBHOOK_DEADLETTER",
    "Topic",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEFAULT_PARTITIONS = 12


@dataclass(frozen=True)
class Topic:
    name: str
    schema_file: str
    doc: str
    key: str = "conversation id (UTF-8)"
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    delivery: str = "at least once; deduplicate by the id field"
    # Not part of the hash: topics go into sets, and a dict is unhashable.
    extra_config: dict[str, str] = field(default_factory=dict, hash=False)

    @cached_property
    def serde(self) -> AvroSerde:
        return AvroSerde(self.schema_file)

    def config(self) -> dict[str, str]:
        """Broker-side topic configuration."""
        config = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
        }
        config.update(self.extra_config)
        return config


AUDIO_FRAMES = Topic(
    name="convoscope.audio.frames.v1",
    schema_file="audio_frame.avsc",
    doc=(
        "Speaker audio, 16 kHz s16le mono, one record per client chunk (≤ 8192 input bytes), "
        "then an END marker per stream."
    ),
    retention_ms=DAY_MS,
    delivery="at least once; (stream_id, seq) identifies a frame",
)
CONVERSATION_EVENTS = Topic(
    name="convoscope.conversation.events.v1",
    schema_file="conversation_event.avsc",
    doc="Conversation, member and stream lifecycle.",
    retention_ms=30 * DAY_MS,
    delivery="at least once; deduplicate by event_id",
)
TRANSCRIPTS_INTERIM = Topic(
    name="convoscope.transcripts.interim.v1",
    schema_file="interim_transcript.avsc",
    doc="Provisional text of utterances still being spoken (may be skipped under load).",
    retention_ms=HOUR_MS,
    delivery="at most once, best effort; superseded by the final transcript",
)
TRANSCRIPTS_FINAL = Topic(
    name="convoscope.transcripts.final.v1",
    schema_file="final_transcript.avsc",
    doc="One record per finished utterance: text, words with times, speaker.",
    retention_ms=30 * DAY_MS,
    delivery="at least once; deduplicate by message_id (deterministic)",
)
TRANSCRIPTION_PROGRESS = Topic(
    name="convoscope.transcription.progress.v1",
    schema_file="transcription_progress.avsc",
    doc="Per conversation, how far each stream is finalised. Internal to the transcription workers.",
    compacted=True,
    retention_ms=7 * DAY_MS,
    delivery="latest value per key",
)

CONVERSATION_SETTINGS = Topic(
    name="convoscope.conversation.settings.v1",
    schema_file="conversation_settings.avsc",
    doc=(
        "What the text processors should do for a conversation (insight types, trackers, time zone), "
        "written when a stream starts. Processors read the whole topic as a table."
    ),
    compacted=True,
    retention_ms=7 * DAY_MS,
    delivery="latest value per key",
)
INSIGHTS = Topic(
    name="convoscope.insights.v1",
    schema_file="message_insights.avsc",
    doc="Questions, action items and follow-ups: one record per final transcript (possibly none found).",
    retention_ms=30 * DAY_MS,
    delivery="at least once; one record per message_id, insights deduplicate by insight_id (deterministic)",
)
TOPIC_PHRASES = Topic(
    name="convoscope.topics.phrases.v1",
    schema_file="message_topic_phrases.avsc",
    doc="Candidate topic phrases and sentiment of each final transcript; conversation topics are ranked from them.",
    retention_ms=30 * DAY_MS,
    delivery="at least once; one record per message_id",
)
TRACKER_MATCHES = Topic(
    name="convoscope.trackers.matches.v1",
    schema_file="message_tracker_matches.avsc",
    doc="Tracker matches (exact, inflected, semantic) per final transcript; interim matches when asked for.",
    retention_ms=30 * DAY_MS,
    delivery="at least once; one final record per message_id, matches deduplicate by match_id",
)
ENTITIES = Topic(
    name="convoscope.entities.v1",
    schema_file="message_entities.avsc",
    doc="Named entities (people, organisations, dates, amounts, contact details) per final transcript.",
    retention_ms=30 * DAY_MS,
    delivery="at least once; one record per message_id, entities deduplicate by entity_id",
)
ANALYTICS = Topic(
    name="convoscope.analytics.v1",
    schema_file="analytics.avsc",
    doc=(
        "Talk-time analytics per conversation (talk, listen, silence, overlap, pace, turns), updated after each "
        "final transcript; the latest record per conversation is its current state."
    ),
    compacted=True,
    retention_ms=30 * DAY_MS,
    delivery="latest value per key; a key's null value (tombstone) means the conversation was deleted",
)
TELEPHONY_COMMANDS = Topic(
    name="convoscope.telephony.commands.v1",
    schema_file="telephony_command.avsc",
    doc=(
        "Telephony API requests for the SIP gateways: START places a call into a conversation (consumer group "
        "convoscope-sip), STOP hangs it up (read by every SIP gateway). Call progress comes back as CALL_STATUS "
        "conversation events."
    ),
    retention_ms=DAY_MS,
    delivery="at least once; deduplicate by command_id",
)
WEBHOOK_DEADLETTER = Topic(
    name="convoscope.webhooks.deadletter.v1",
    schema_file="webhook_deadletter.avsc",
    doc=(
        "Webhook deliveries given up on (refused with a 4xx other than 408/429, or attempts exhausted), with the "
        "exact body sent; written by the webhook sink (`convoscope worker webhooks`)."
    ),
    key="webhook id (UTF-8)",
    retention_ms=30 * DAY_MS,
    delivery="at least once; deduplicate by delivery_id",
)

ALL_TOPICS: tuple[Topic, ...] = (
    AUDIO_FRAMES,
    CONVERSATION_EVENTS,
    TRANSCRIPTS_INTERIM,
    TRANSCRIPTS_FINAL,
    TRANSCRIPTION_PROGRESS,
    CONVERSATION_SETTINGS,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    ENTITIES,
    ANALYTICS,
    TELEPHONY_COMMANDS,
    WEBHOOK_DEADLETTER,
)
