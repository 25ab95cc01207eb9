"""Which topics and consumer groups each process uses, and the Strimzi resources that follow from it.

``KafkaTopic``s come from ``schemas.topics.ALL_TOPICS`` and ``KafkaUser`` ACLs from ``process_access()``, so the
Kubernetes resources never become a second place where topics are declared. ``deploy/generate.py`` writes them into
``deploy/components/strimzi/``; a test fails when the committed files are stale. Reads, writes and groups are taken
from the constants each process module exports where it has them, so a process that starts reading a new topic
changes its ACL on the next generate.

Everything here returns plain dicts (the YAML/JSON shape); nothing talks to Kafka or Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.topics import ALL_TOPICS, Topic

__all__ = [
    "API_VERSION",
    "DEFAULT_CLUSTER",
    "DEFAULT_REPLICAS",
    "TOPIC_PREFIX",
    "KafkaAccess",
    "all_kafka_topics",
    "all_kafka_users",
    "kafka_topic",
    "kafka_user",
    "process_access",
]

API_VERSION = "kafka.strimzi.io/v1beta2"
DEFAULT_CLUSTER = "kafka"
"""The Strimzi ``Kafka`` resource's name; overlays patch the ``strimzi.io/cluster`` label for another one."""
DEFAULT_REPLICAS = 3
MIN_IN_SYNC_REPLICAS = 2
"""With acks=all (every producer here), a write survives the loss of one broker."""
TOPIC_PREFIX = "convoscope."
PART_OF = {"app.kubernetes.io/part-of": "convoscope"}


@dataclass(frozen=True)
class KafkaAccess:
    """One Kafka identity: the processes of one kind (one or more Deployments running the same code)."""

    user: str
    """KafkaUser name = SASL username; Strimzi writes its password into a Secret of the same name."""
    commands: tuple[str, ...]
    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    groups: tuple[str, ...] = ()


def _unique(topics: Any) -> tuple[Topic, ...]:
    seen: dict[str, Topic] = {}
    for topic in topics:
        seen.setdefault(topic.name, topic)
    return tuple(sorted(seen.values(), key=lambda t: t.name))


def process_access() -> tuple[KafkaAccess, ...]:
    """Every process kind's topics and groups, from the constants the process modules export."""
    from convoscope.api.conversations import compacted_topic_names
    from processors.analytics.worker import ANALYTICS_GROUP
    from processors.insights.worker import TEXT_PROCESSORS, group_id
    from processors.transcription.worker import GROUP_ID as TRANSCRIBE_GROUP
    from producers.sip.gateway import SIP_GROUP
    from schemas.topics import (
        ANALYTICS,
        AUDIO_FRAMES,
        CONVERSATION_EVENTS,
        CONVERSATION_SETTINGS,
        TELEPHONY_COMMANDS,
        TRANSCRIPTION_PROGRESS,
        TRANSCRIPTS_FINAL,
        TRANSCRIPTS_INTERIM,
        WEBHOOK_DEADLETTER,
    )
    from sinks.email.worker import EMAIL_GROUP
    from sinks.live.hub import RESULT_TOPICS
    from sinks.store.worker import STORE_GROUP, STORE_TOPICS
    from sinks.webhooks.worker import WEBHOOK_TOPICS, WEBHOOKS_GROUP

    by_name = {topic.name: topic for topic in ALL_TOPICS}
    ingest = (AUDIO_FRAMES, CONVERSATION_EVENTS, CONVERSATION_SETTINGS)  # what a gateway publishes per stream
    live_results = tuple(topic for topic, _ in RESULT_TOPICS.values())
    tombstoned = tuple(by_name[name] for name in compacted_topic_names())  # DELETE /v1/conversations/{id}
    processors = TEXT_PROCESSORS.values()
    return (
        # The WebSocket gateway and the API Deployment run the same process. Live push reads results without a
        # group; reprocessing reads stored audio back; the Telephony API queues commands for the SIP gateways.
        KafkaAccess(
            "convoscope-gateway",
            ("gateway",),
            reads=_unique((*live_results, AUDIO_FRAMES)),
            writes=_unique((*ingest, TELEPHONY_COMMANDS, *tombstoned)),
        ),
        # START commands through the group (one gateway places the call), STOP read by every gateway (no group).
        KafkaAccess("convoscope-sip", ("gateway sip",), reads=(TELEPHONY_COMMANDS,), writes=ingest,
                    groups=(SIP_GROUP,)),
        KafkaAccess(
            "convoscope-transcribe",
            ("worker transcribe",),
            # The progress topic is read back (no group) on partition assignment to resume streams.
            reads=(AUDIO_FRAMES, TRANSCRIPTION_PROGRESS),
            writes=_unique((TRANSCRIPTS_INTERIM, TRANSCRIPTS_FINAL, TRANSCRIPTION_PROGRESS, CONVERSATION_EVENTS)),
            groups=(TRANSCRIBE_GROUP,),
        ),
        KafkaAccess(
            "convoscope-insights",
            ("worker insights",),
            # Conversation settings are read as a table, without a group.
            reads=_unique([*(t for p in processors for t in p.inputs), CONVERSATION_SETTINGS]),
            writes=_unique(p.output for p in processors),
            groups=tuple(sorted(group_id(p) for p in processors)),
        ),
        KafkaAccess(
            "convoscope-analytics",
            ("worker analytics",),
            reads=(TRANSCRIPTS_FINAL, ANALYTICS),  # its own output is read back to restore state
            writes=(ANALYTICS,),
            groups=(ANALYTICS_GROUP,),
        ),
        KafkaAccess("convoscope-store", ("worker store",), reads=_unique(STORE_TOPICS), groups=(STORE_GROUP,)),
        # Summary emails: reads CONVERSATION_COMPLETED, everything else comes from the database.
        KafkaAccess("convoscope-email", ("worker email",), reads=(CONVERSATION_EVENTS,), groups=(EMAIL_GROUP,)),
        KafkaAccess("convoscope-webhooks", ("worker webhooks",), reads=_unique(WEBHOOK_TOPICS),
                    writes=(WEBHOOK_DEADLETTER,), groups=(WEBHOOKS_GROUP,)),
        # No convoscope process reads the webhook dead letters: they are for people and tools outside it (inspect,
        # alert, re-send), who get this read-only identity rather than a process's.
        KafkaAccess("convoscope-deadletter-reader", (), reads=(WEBHOOK_DEADLETTER,)),
    )


def _labels(cluster: str) -> dict[str, str]:
    return {"strimzi.io/cluster": cluster, **PART_OF}


def kafka_topic(topic: Topic, cluster: str = DEFAULT_CLUSTER, replicas: int = DEFAULT_REPLICAS) -> dict[str, Any]:
    """A ``KafkaTopic``: partitions, retention and compaction exactly as declared in ``schemas.topics``."""
    config: dict[str, str] = {**topic.config(), "min.insync.replicas": str(min(MIN_IN_SYNC_REPLICAS, replicas))}
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaTopic",
        "metadata": {"name": topic.name, "labels": _labels(cluster)},
        "spec": {"topicName": topic.name, "partitions": topic.partitions, "replicas": replicas, "config": config},
    }


def _acl(resource_type: str, name: str, operations: list[str], pattern: str = "literal") -> dict[str, Any]:
    return {
        "resource": {"type": resource_type, "name": name, "patternType": pattern},
        "operations": operations,
        "host": "*",
    }


def kafka_user(access: KafkaAccess, cluster: str = DEFAULT_CLUSTER) -> dict[str, Any]:
    """A ``KafkaUser`` with SCRAM-SHA-512 credentials and least-privilege ACLs.

    Every user may Describe all convoscope topics: processes check at start that their topics exist
    (``ensure_topics``), and KEDA reads offsets with the same identity."""
    acls = [_acl("topic", TOPIC_PREFIX, ["Describe"], "prefix")]
    read = {t.name for t in access.reads}
    write = {t.name for t in access.writes}
    for name in sorted(read | write):
        operations = (["Read"] if name in read else []) + (["Write"] if name in write else []) + ["Describe"]
        acls.append(_acl("topic", name, operations))
    acls += [_acl("group", group, ["Read", "Describe"]) for group in access.groups]
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaUser",
        "metadata": {
            "name": access.user,
            "labels": _labels(cluster),
            "annotations": {"convoscope.io/commands": ", ".join(f"convoscope {c}" for c in access.commands)},
        },
        "spec": {"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "simple", "acls": acls}},
    }


def all_kafka_topics(cluster: str = DEFAULT_CLUSTER) -> list[dict[str, Any]]:
    return [kafka_topic(topic, cluster) for topic in ALL_TOPICS]


def all_kafka_users(cluster: str = DEFAULT_CLUSTER) -> list[dict[str, Any]]:
    return [kafka_user(access, cluster) for access in process_access()]

