"""Kafka clients built from Settings: the one place connection options are turned into aiokafka kwargs."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from convoscope.logs import current_log_context
from convoscope.settings import Settings
from schemas.topics import Topic

__all__ = [
    "TRACE_HEADER",
    "RebalanceCallbacks",
    "TracingProducer",
    "client_options",
    "create_consumer",
    "create_producer",
    "ensure_topics",
    "new_trace_id",
    "read_to_highwater",
    "security_problem",
    "start_partition_reader",
    "trace_headers",
    "trace_id_from",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
TRACE_HEADER = "convoscope-trace-id"
"""Kafka record header carrying the correlation id of the call a record belongs to (32 hex chars)."""

Headers = Sequence[tuple[str, bytes]]


def new_trace_id() -> str:
    return uuid.uuid4().hex


def trace_headers(trace_id: str | None, headers: Headers | None = None) -> list[tuple[str, bytes]]:
    """``headers`` plus the trace header, unless it is already there or there is no trace id."""
    merged = list(headers or ())
    if trace_id and not any(name == TRACE_HEADER for name, _ in merged):
        merged.append((TRACE_HEADER, trace_id.encode()))
    return merged


def trace_id_from(headers: Headers | None) -> str | None:
    """The trace id of a consumed record (``record.headers``), if it carries one."""
    for name, value in headers or ():
        if name == TRACE_HEADER and value:
            return value.decode("ascii", errors="replace")
    return None


class TracingProducer(AIOKafkaProducer):
    """Adds the trace id bound in the current logging context (``convoscope.logs``) to every record sent; a failure
    to connect names the TLS or SASL problem, if that is what it is (``security_problem``)."""

    _convoscope_settings: Settings | None = None

    async def start(self) -> None:
        try:
            await super().start()
        except KafkaConnectionError as exc:
            if self._convoscope_settings is None:
                raise
            raise await _explained(exc, self._convoscope_settings) from exc

    async def send(  # type: ignore[override]
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]:
        trace_id = current_log_context().get("trace_id")
        if trace_id:
            headers = trace_headers(trace_id, headers)
        return await super().send(topic, value, key, partition, timestamp_ms, headers)


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the brokers' certificates and host names against CONVOSCOPE_KAFKA_SSL_CAFILE (else the system
    CAs); presents a client certificate for mutual TLS when one is set."""
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile or "") or None)
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_bootstrap:
        raise RuntimeError("KAFKA_BOOTSTRAP is not set (only `convoscope up` and `demo` start a broker themselves)")
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if _uses_tls(settings):
        options["ssl_context"] = _ssl_context(settings)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options


async def security_problem(settings: Settings, timeout_s: float = 5.0) -> str | None:
    """Why connecting to the bootstrap servers fails when TLS or SASL is what fails (an untrusted certificate, a
    host name the certificate does not name, a plain listener, a refused login), or None: security off, a server
    accepts us, or none answers at all. aiokafka only says "Unable to bootstrap" and logs the reason apart; this
    puts the reason into the error that a process logs or stops with."""
    if settings.kafka_security_protocol == "PLAINTEXT" or not settings.kafka_bootstrap:
        return None
    options = client_options(settings)
    options.pop("bootstrap_servers")
    cafile = f"CONVOSCOPE_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}" if settings.kafka_ssl_cafile else (
        "CONVOSCOPE_KAFKA_SSL_CAFILE unset: the system CAs")
    for server in (s.strip() for s in settings.kafka_bootstrap.split(",")):
        host, _, port = server.rpartition(":")
        try:
            async with asyncio.timeout(timeout_s):
                connection = await create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000),
                                               **options)
            connection.close()
            return None
        except ssl.SSLCertVerificationError as exc:
            return f"TLS to Kafka at {server} failed: certificate verify failed: {exc.verify_message} ({cafile})"
        except ssl.SSLError as exc:
            return f"TLS to Kafka at {server} failed: {exc.reason or exc} (is it a TLS listener?)"
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            return (f"SASL {settings.kafka_sasl_mechanism} login to Kafka at {server} as "
                    f"{settings.kafka_sasl_username!r} failed: {exc} (CONVOSCOPE_KAFKA_SASL_USERNAME, _PASSWORD)")
        except (KafkaError, OSError, TimeoutError, ValueError):
            continue  # not reachable, or not for a reason of security
    return None


async def _explained(exc: KafkaConnectionError, settings: Settings) -> KafkaConnectionError:
    problem = await security_problem(settings)
    if problem is None:
        return exc
    return KafkaConnectionError(f"{exc.args[0] if exc.args else 'cannot connect'}: {problem}")


class _ExplainingConsumer(AIOKafkaConsumer):
    """A consumer whose failure to connect names the TLS or SASL problem, if that is what it is."""

    def __init__(self, settings: Settings, *topics: str, **options: Any) -> None:
        super().__init__(*topics, **options)
        self._convoscope_settings = settings

    async def start(self) -> None:
        try:
            await super().start()
        except KafkaConnectionError as exc:
            raise await _explained(exc, self._convoscope_settings) from exc


def create_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    # Idempotence stays off: the embedded broker (tansu) cannot do InitProducerId, and our
    # records carry deterministic ids so consumers deduplicate instead.
    options: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 2,
        "enable_idempotence": False,
        "max_request_size": MAX_MESSAGE_BYTES,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    producer = TracingProducer(**client_options(settings), **options)
    producer._convoscope_settings = settings
    return producer


def create_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # The broker answers a fetch as soon as data arrives (measured on the embedded broker: 6-15 ms from
        # produce to consume at 50-200 ms), so a long wait costs no latency; a short one makes every idle
        # consumer poll all its partitions. At 10 ms an idle stack kept the embedded broker at 113 % CPU;
        # at 200 ms, 11 %.
        "fetch_max_wait_ms": 200,
        "fetch_max_bytes": 8 * MAX_MESSAGE_BYTES,
        "max_partition_fetch_bytes": MAX_MESSAGE_BYTES,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": min(1_000, settings.kafka_session_timeout_ms // 3),
    }
    options.update(overrides)
    return _ExplainingConsumer(settings, *topics, **client_options(settings), **options)


class RebalanceCallbacks(ConsumerRebalanceListener):
    """Hands a consumer group's revocations and assignments (as sets of partitions) to two coroutines."""

    def __init__(self, on_revoked: Callable[[set[TopicPartition]], Awaitable[None]],
                 on_assigned: Callable[[set[TopicPartition]], Awaitable[None]]) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._on_assigned(set(assigned))


async def read_to_highwater(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], *, what: str, timeout_s: float,
    poll_ms: int = 100, max_records: int = 5000,
) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]:
    """Every record of ``partitions`` (assigned to ``consumer`` here) from the beginning up to the highwater the
    fetch responses report: ListOffsets/``end_offsets`` is wrong on the embedded broker, the fetch highwater is
    right. Raises ``TimeoutError`` naming ``what`` when a partition is not read through in ``timeout_s``."""
    if not partitions:
        return
    consumer.assign(list(partitions))
    await consumer.seek_to_beginning(*partitions)
    remaining = set(partitions)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while remaining:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} partitions {sorted(tp.partition for tp in remaining)} did not load "
                               f"within {timeout_s:.0f} s")
        batches = await consumer.getmany(*remaining, timeout_ms=poll_ms, max_records=max_records)
        for tp, records in batches.items():
            yield tp, records
        for tp in list(remaining):
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                remaining.discard(tp)


async def start_partition_reader(settings: Settings, topic_names: Iterable[str], **overrides: Any
                                 ) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer outside any group, assigned every partition of ``topic_names``: for readers that
    need a whole topic (tables, fan-out to live clients). The caller chooses where to start reading."""
    consumer = create_consumer(settings, group_id=None, **overrides)
    await consumer.start()
    await consumer.topics()  # loads metadata so partitions are known
    partitions = [
        TopicPartition(name, p) for name in topic_names for p in sorted(consumer.partitions_for_topic(name) or ())
    ]
    consumer.assign(partitions)
    return consumer, partitions


async def ensure_topics(settings: Settings, topics: Iterable[Topic], attempts: int = 30) -> None:
    """Create missing topics with their declared partitions and configs. Waits for the broker."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError as exc:
            explained = await _explained(exc, settings)
            if explained is not exc:
                raise explained from exc  # waiting fixes neither a certificate nor a password
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t.name, t.partitions, settings.kafka_topic_replication, topic_configs=t.config())
            for t in topics
            if t.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
