"""Insight quality and text-processor throughput, printed as figures.

    .venv/bin/python bench/insights.py                 # quality (dev/test splits) + throughput through Kafka
    .venv/bin/python bench/insights.py --quality-only
    .venv/bin/python bench/insights.py --messages 1500 --calls 50

Quality: precision/recall/F1 per insight type, per tracker mode and per entity type on the labelled sets in
tests/data (see bench/insight_quality.py and bench/tracker_entity_quality.py).

Throughput: each text processor runs alone, as `convoscope worker insights --processor NAME` would, against the
embedded broker: ``--messages`` final transcripts (sentences from the labelled sets, spread over ``--calls``
conversations with two trackers each) are produced first, then the processor consumes them with a fresh consumer
group; the figure is messages per second from its first to its last output record. The load of N concurrent
calls is taken as N x 2 speakers x one final every 4 s of speech (each speaker talks about half the time in
2 s-to-8 s utterances), i.e. N / 2 messages per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convoscope.embedded_broker import EmbeddedBroker  # noqa: E402
from convoscope.kafka import create_consumer, create_producer, ensure_topics  # noqa: E402
from convoscope.settings import Settings  # noqa: E402
from processors.insights.worker import TEXT_PROCESSORS, run_text_processors  # noqa: E402
from producers.conversation_settings import InlineTracker, conversation_settings_record  # noqa: E402
from schemas.topics import ALL_TOPICS, CONVERSATION_SETTINGS, TRANSCRIPTS_FINAL  # noqa: E402

MESSAGES_PER_CALL_PER_S = 0.5
TRACKERS = (
    InlineTracker("Pricing", ("too expensive", "what is the price", "discount")),
    InlineTracker("Next steps", ("send the contract", "schedule a follow up")),
)


def _sentences() -> list[str]:
    texts: list[str] = []
    for name in ("insights_dev.jsonl", "trackers_dev.jsonl", "entities_dev.jsonl"):
        path = ROOT / "tests" / "data" / name
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row.get("text"), str):
                        texts.append(row["text"])
    return texts or ["I'll send the contract to Acme by Friday."]


def _final(conversation_id: str, index: int, text: str, started_ms: int) -> dict[str, Any]:
    start = index * 64_000
    return {
        "message_id": str(uuid.uuid4()), "conversation_id": conversation_id, "app_id": "bench",
        "stream_id": f"{conversation_id}-s", "speaker": {"id": "m1", "name": "Alex", "user_id": None},
        "utterance_index": index, "start_sample": start, "end_sample": start + 48_000,
        "stream_started_at_ms": started_ms, "stream_offset_ms": 0, "text": text, "confidence": 0.9,
        "words": [], "language": "en-US", "model": "bench", "produced_at_ms": started_ms,
    }


async def _produce(settings: Settings, count: int, calls: int) -> None:
    texts = _sentences()
    producer = create_producer(settings, linger_ms=20)
    await producer.start()
    started_ms = int(time.time() * 1000)
    conversations = [uuid.uuid4().hex[:16] for _ in range(calls)]
    try:
        for cid in conversations:
            record = conversation_settings_record(cid, "bench", started_ms, inline_trackers=TRACKERS)
            await producer.send(CONVERSATION_SETTINGS.name, CONVERSATION_SETTINGS.serde(record), key=cid.encode())
        for i in range(count):
            cid = conversations[i % calls]
            value = _final(cid, i // calls, texts[i % len(texts)], started_ms)
            await producer.send(TRANSCRIPTS_FINAL.name, TRANSCRIPTS_FINAL.serde(value), key=cid.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _throughput(settings: Settings, name: str, count: int) -> tuple[float, float]:
    """(messages/s, seconds to first output) for one processor over ``count`` finals."""
    processor = TEXT_PROCESSORS[name]
    consumer = create_consumer(settings)
    await consumer.start()
    await consumer.topics()
    tps = [TopicPartition(processor.output.name, p) for p in consumer.partitions_for_topic(processor.output.name)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    stop = asyncio.Event()
    launched = time.perf_counter()
    task = asyncio.create_task(run_text_processors(settings, stop, [name], group_prefix=f"bench-{uuid.uuid4().hex}"))
    seen, first_at, last_at = 0, 0.0, 0.0
    try:
        while seen < count:
            if task.done():
                task.result()
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                if messages and not first_at:
                    first_at = time.perf_counter()
                seen += len(messages)
                last_at = time.perf_counter()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
    return (count - 1) / max(last_at - first_at, 1e-9), first_at - launched


async def _run_throughput(count: int, calls: int) -> list[str]:
    broker = EmbeddedBroker()
    broker.start()
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        await ensure_topics(settings, ALL_TOPICS)
        await _produce(settings, count, calls)
        needed = calls * MESSAGES_PER_CALL_PER_S
        lines = [f"text processors, {count} finals over {calls} conversations (load of {calls} calls "
                 f"= {needed:.0f} msg/s), each processor alone on the embedded broker:"]
        for name in TEXT_PROCESSORS:
            rate, startup = await _throughput(settings, name, count)
            lines.append(f"  {name:9s} {rate:8.0f} msg/s   headroom x{rate / needed:5.1f} over {calls} calls   "
                         f"(start-up incl. model load {startup:.1f} s)")
        return lines
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    args = parser.parse_args()
    if not args.throughput_only:
        from bench.insight_quality import quality_report as insight_quality
        from bench.tracker_entity_quality import quality_report as tracker_entity_quality

        print(insight_quality())
        print(tracker_entity_quality())
    if not args.quality_only:
        for line in asyncio.run(_run_throughput(args.messages, args.calls)):
            print(line)


if __name__ == "__main__":
    main()
