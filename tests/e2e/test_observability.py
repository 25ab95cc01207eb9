"""What ops watch: health, readiness and Prometheus metrics of every process, after real traffic."""

from __future__ import annotations

import re

import httpx
import pytest

from convoscope.synth import Meeting
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _metric(text: str, name: str) -> float:
    """Sum of every sample of a metric family (all label sets)."""
    values = [float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)]
    assert values, f"{name} not exported"
    return sum(values)


async def test_processes_report_health_and_metrics_after_a_call(sqlite_stack: RunningStack, meeting: Meeting) -> None:
    results = await sqlite_stack.stream_meeting(meeting)
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
