"""What ops watch: health, readiness and Prometheus metrics of every process, after real traffic."""

from __future__ import annotations

import re

import httpx
import pytest

from convoscope.kafka import start_partition_reader, trace_id_from
from convoscope.synth import Meeting
from schemas.topics import (
    ANALYTICS,
    AUDIO_FRAMES,
    ENTITIES,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    TRANSCRIPTS_FINAL,
)
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _metric(text: str, name: str) -> float:
    """Sum of every sample of a metric family (all label sets)."""
    values = [float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)]
    assert values, f"{name} not exported"
    return sum(values)


async def test_processes_report_health_and_metrics_after_a_call(sqlite_stack: RunningStack,
                                                                short_meeting: Meeting) -> None:
    results = await sqlite_stack.stream_meeting(short_meeting)
    finals = len(results[0].final_messages())
    await sqlite_stack.stored_messages(str(results[0].conversation_id), finals)
    async with httpx.AsyncClient(timeout=10) as client:
        gateway = (await client.get(sqlite_stack.base_url + "/metrics")).text
        assert _metric(gateway, "convoscope_gateway_results_sent_total") >= finals
        assert _metric(gateway, "convoscope_gateway_final_delivery_seconds_count") >= finals
        assert _metric(gateway, "convoscope_gateway_active_streams") == 0  # every stream of the call ended
        ports = {child.name: child.health_port for child in sqlite_stack.stack.children if child.health_port}
        assert {"transcribe", "insights", "store", "analytics"} <= set(ports)
        for port in ports.values():
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True
        transcriber = (await client.get(f"http://127.0.0.1:{ports['transcribe']}/metrics")).text
        assert _metric(transcriber, "convoscope_transcribe_finals_total") >= finals
        assert _metric(transcriber, "convoscope_transcribe_decode_seconds_count") >= finals
        store = (await client.get(f"http://127.0.0.1:{ports['store']}/metrics")).text
        assert _metric(store, "convoscope_store_records_total") >= finals
        text = (await client.get(f"http://127.0.0.1:{ports['insights']}/metrics")).text
        assert _metric(text, "convoscope_insights_records_total") >= 4 * finals  # four processors, every final

    # Each connection's trace id travels from its audio to everything made from it, whoever made it.
    traces = await _trace_ids_by_topic(sqlite_stack, str(results[0].conversation_id))
    audio_traces = traces[AUDIO_FRAMES.name]
    assert len(audio_traces) == len(short_meeting.speakers) and None not in audio_traces  # one per connection
    for topic in (TRANSCRIPTS_FINAL, INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, ENTITIES, ANALYTICS):
        assert traces.get(topic.name) and traces[topic.name] <= audio_traces, (topic.name, traces)


async def _trace_ids_by_topic(running: RunningStack, conversation_id: str) -> dict[str, set[str | None]]:
    """Per topic, the trace ids on the conversation's records, read from the beginning."""
    topics = [AUDIO_FRAMES, TRANSCRIPTS_FINAL, INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, ENTITIES, ANALYTICS]
    reader, partitions = await start_partition_reader(running.stack.settings, [t.name for t in topics])
    found: dict[str, set[str | None]] = {}
    try:
        await reader.seek_to_beginning(*partitions)
        idle = 0
        while idle < 5:  # until five polls in a row bring nothing
            batches = await reader.getmany(timeout_ms=300, max_records=5000)
            idle = 0 if batches else idle + 1
            for tp, records in batches.items():
                for record in records:
                    if record.key == conversation_id.encode():
                        found.setdefault(tp.topic, set()).add(trace_id_from(record.headers))
    finally:
        await reader.stop()
    return found
