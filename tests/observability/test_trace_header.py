"""The trace id bound to a call's context travels in the Kafka headers of every record produced for it."""

from __future__ import annotations

import uuid

from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import TRACE_HEADER, create_consumer, create_producer, new_trace_id, trace_id_from
from convoscope.logs import log_context
from convoscope.settings import Settings
from schemas.topics import CONVERSATION_EVENTS


async def test_records_carry_the_trace_id_of_their_call(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    key = f"trace-test-{uuid.uuid4().hex}".encode()
    trace_id = new_trace_id()
    producer = create_producer(settings)
    await producer.start()
    try:
        with log_context(trace_id=trace_id):
            await producer.send_and_wait(CONVERSATION_EVENTS.name, b"in the call", key=key)
            await producer.send_and_wait(CONVERSATION_EVENTS.name, b"own header kept", key=key,
                                         headers=[(TRACE_HEADER, b"upstream")])
        await producer.send_and_wait(CONVERSATION_EVENTS.name, b"outside", key=key)
    finally:
        await producer.stop()
    consumer = create_consumer(settings, CONVERSATION_EVENTS.name, group_id=None)
    await consumer.start()
    try:
        found: dict[bytes, str | None] = {}
        while len(found) < 3:
            batches = await consumer.getmany(timeout_ms=2000)
            assert batches, "records not read back"
            for records in batches.values():
                for record in records:
                    if record.key == key:
                        found[record.value] = trace_id_from(record.headers)
    finally:
        await consumer.stop()
    assert found == {b"in the call": trace_id, b"own header kept": "upstream", b"outside": None}
