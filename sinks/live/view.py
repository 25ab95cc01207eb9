"""What one live client is shown: the pipeline's records rendered as Symbl messages, filtered by what it asked for.

Pure state, no sockets: a streaming session or a listen-only subscriber feeds records in order and sends what
``render`` returns. Topics are re-ranked over the conversation so far whenever a message adds phrases, and sent
only when the ranking changed.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any

from sinks.live.symbl_format import (
    entity_response,
    insight_response,
    result_messages,
    topic_response,
    tracker_response,
)

__all__ = ["ALL_INSIGHT_TYPES", "LiveOptions", "LiveView"]

ALL_INSIGHT_TYPES = frozenset({"question", "action_item", "follow_up"})
TOPICS_SHOWN = 10


@functools.cache
def _no_phrases() -> Any:
    from processors.insights.topics import MessagePhrases

    return MessagePhrases(message_id="", candidates=(), sentiment=0.0)


@dataclass(frozen=True)
class LiveOptions:
    insight_types: frozenset[str] = frozenset()
    topics: bool = True
    trackers: bool = True
    entities: bool = False
    sentiment: bool = False
    analytics: bool = False

    @classmethod
    def everything(cls) -> LiveOptions:
        """Listen-only subscribers did not send a start_request: they get every kind of result."""
        return cls(insight_types=ALL_INSIGHT_TYPES, entities=True)

    def result_kinds(self) -> frozenset[str]:
        """Record kinds this client waits for before a stream counts as finished."""
        kinds = {"trackers"}
        if self.insight_types:
            kinds.add("insights")
        if self.topics:
            kinds.add("topics")
        if self.entities:
            kinds.add("entities")
        return frozenset(kinds)


@dataclass
class LiveView:
    conversation_id: str
    options: LiveOptions
    messages_sent: int = 0
    _sequence: dict[str, int] = field(default_factory=dict)
    _phrases: dict[str, Any] = field(default_factory=dict)  # message id → MessagePhrases
    _message_index: dict[str, int] = field(default_factory=dict)
    _last_topics: tuple[Any, ...] = ()
    _analytics_messages: int = 0

    def _next(self, kind: str) -> int:
        number = self._sequence.get(kind, 0)
        self._sequence[kind] = number + 1
        return number

    def render(self, kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if kind in ("interim", "final", "event"):
            return self._transcript(kind, record)
        if kind == "insights":
            body = insight_response(record, self.options.insight_types, self._sequence.get(kind, 0))
        elif kind == "trackers":
            body = tracker_response(record, self._sequence.get(kind, 0)) if self.options.trackers else None
        elif kind == "entities":
            body = entity_response(record, self._sequence.get(kind, 0)) if self.options.entities else None
        elif kind == "topics":
            body = self._topics(record) if self.options.topics else None
        elif kind == "analytics":
            body = self._analytics(record) if self.options.analytics else None
        else:
            body = None
        if body is None:
            return []
        self._next(kind)
        return [body]

    def _transcript(self, kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if kind != "final":
            return result_messages(kind, record, self.messages_sent)
        # Interned: the subscription keeps the same id, one copy for the conversation's lifetime.
        self._message_index.setdefault(sys.intern(record["message_id"]), len(self._message_index))
        bodies = result_messages(kind, record, self.messages_sent)
        if self.options.sentiment:
            from processors.insights.sentiment import message_sentiment

            for body in bodies:
                if body["type"] == "message_response":
                    body["messages"][0]["sentiment"] = message_sentiment(record["text"]).as_json()
        self.messages_sent += 1
        return bodies

    def _analytics(self, record: dict[str, Any]) -> dict[str, Any] | None:
        from processors.analytics.report import record_analytics_response

        # The analytics topic is compacted and rewritten after every final: only a newer state is news.
        if record["message_count"] <= self._analytics_messages:
            return None
        self._analytics_messages = record["message_count"]
        return record_analytics_response(record, self._sequence.get("analytics", 0))

    def _topics(self, record: dict[str, Any]) -> dict[str, Any] | None:
        from processors.insights.topics import MessagePhrases, PhraseCandidate, rank_topics

        message = record["message"]
        message_id = sys.intern(message["id"])
        self._message_index.setdefault(message_id, len(self._message_index))
        if not record["phrases"]:
            # Ranking reads a phrase-less message only as a position, never its id or sentiment: one shared
            # placeholder instead of an object per message, for state kept as long as the call.
            self._phrases[message_id] = _no_phrases()
            return None
        self._phrases[message_id] = MessagePhrases(
            message_id=message_id,
            candidates=tuple(
                PhraseCandidate(p["phrase"], tuple(p["root_words"]), p["offset"]) for p in record["phrases"]
            ),
            sentiment=record["sentiment"],
        )
        ranked = rank_topics(list(self._phrases.values()), limit=TOPICS_SHOWN)
        signature = tuple((t.phrase, round(t.score, 3), t.message_ids) for t in ranked)
        if not ranked or signature == self._last_topics:
            return None
        self._last_topics = signature
        return topic_response(self.conversation_id, ranked, self._message_index)
