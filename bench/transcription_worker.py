"""Transcription worker benchmark on the embedded broker and espeak-ng speech (~2 minutes).

Prints, per model: decode cost (final / interim, mean and p95), the worker's realtime factor with
8 streams sent as fast as possible (audio seconds per wall second), and end-of-utterance → final
latency with 1 and 8 streams sent in real time. Latency is measured from the true end of speech
(synthesis truth) to (a) the final's produced_at_ms and (b) when a consumer received it.

    .venv/bin/python bench/transcription_worker.py [--models tiny.en base] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convoscope.embedded_broker import EmbeddedBroker  # noqa: E402
from convoscope.kafka import ensure_topics  # noqa: E402
from convoscope.settings import Settings  # noqa: E402
from processors.transcription.asr import WhisperRecognizer  # noqa: E402
from processors.transcription.exceptions import TranscriptionError  # noqa: E402
from processors.transcription.worker import TranscriptionWorker, WorkerStats  # noqa: E402
from schemas.topics import ALL_TOPICS  # noqa: E402
from tests.transcription.kafka_helpers import Collected, collect, produce_stream  # noqa: E402
from tests.transcription.speech import build_meeting, wer  # noqa: E402

STAGGER_S = 0.4


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)] if values else float("nan")


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"mean {statistics.mean(values):.3f} p50 {statistics.median(values):.3f} p95 {p95(values):.3f} "
        f"max {max(values):.3f} (n={len(values)})"
    )


async def scenario(settings: Settings, worker: TranscriptionWorker, streams: int, realtime: bool) -> dict:
    """``streams`` copies of the meeting; in real time each starts 0.4 s after the previous one."""
    audio, truth = build_meeting()
    worker.stats = WorkerStats()
    ids = [(str(1_800_000_000_000_000_000 + uuid.uuid4().int % 10**17), uuid.uuid4().hex) for _ in range(streams)]
    started_at_ms: dict[str, int] = {}

    async def send(index: int, conversation: str, stream: str) -> None:
        if realtime:
            await asyncio.sleep(index * STAGGER_S)
        started_at_ms[stream] = int(time.time() * 1000)
        await produce_stream(
            settings,
            conversation,
            stream,
            audio,
            realtime_factor=1.0 if realtime else None,
            started_at_ms=started_at_ms[stream],
        )

    out = Collected()
    begin = time.monotonic()
    producers = [asyncio.create_task(send(i, c, s)) for i, (c, s) in enumerate(ids)]
    await collect(settings, out, lambda c: all(c.transcribed(s) for _, s in ids), timeout_s=300)
    wall = time.monotonic() - begin
    await asyncio.gather(*producers)
    produced_latency, received_latency, texts = [], [], []
    for _, stream in ids:
        finals = out.finals_of(stream)
        texts.append(" ".join(f["text"] for f in finals))
        for expected in truth:
            true_end_ms = started_at_ms[stream] + expected.end_sample / 16
            for final, seen_at in zip(out.finals, out.final_seen_at, strict=True):
                if (
                    final["stream_id"] == stream
                    and final["start_sample"] < expected.end_sample
                    and expected.start_sample < final["end_sample"]
                ):
                    produced_latency.append((final["produced_at_ms"] - true_end_ms) / 1000)
                    received_latency.append(seen_at - true_end_ms / 1000)
                    break
    reference = " ".join(t.text for t in truth)
    return {
        "audio_s": streams * len(audio) / 16000,
        "wall_s": wall,
        "produced": produced_latency,
        "received": received_latency,
        "wer": wer([reference] * streams, texts),
        "stats": worker.stats,
    }


async def bench_model(settings: Settings, model: str, quick: bool) -> None:
    load_started = time.monotonic()
    recognizer = WhisperRecognizer(model, settings.model_cache_dir, settings.asr_threads)
    recognizer.warm_up()
    print(f"\n== whisper-{model}: loaded in {time.monotonic() - load_started:.1f} s")
    worker = TranscriptionWorker(settings, recognizer)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.assigned.wait(), 60)
    try:
        plans = [("1 stream, real time", 1, True)]
        if model == "tiny.en" and not quick:
            staggered = ("8 streams, real time, starts 0.4 s apart", 8, True)
            plans = [("8 streams, as fast as possible", 8, False), *plans, staggered]
        for label, streams, realtime in plans:
            result = await scenario(settings, worker, streams, realtime)
            stats: WorkerStats = result["stats"]
            print(
                f"-- {label}: {result['audio_s']:.0f} s of audio in {result['wall_s']:.1f} s wall "
                f"(realtime factor {result['audio_s'] / result['wall_s']:.1f}x), WER {result['wer']:.1%}"
            )
            print(
                f"   final decode s:   {summary(stats.final_decode_s)}; "
                f"audio/utterance {statistics.mean(stats.final_audio_s or [0]):.2f} s"
            )
            print(
                f"   interim decode s: {summary(stats.interim_decode_s)}; "
                f"speculative finals discarded: {stats.speculative_discarded}"
            )
            decode_busy = sum(stats.final_decode_s) + sum(stats.interim_decode_s)
            print(
                f"   decoder busy {decode_busy / result['wall_s']:.0%} of wall time; "
                f"audio per decode-second {result['audio_s'] / max(decode_busy, 1e-9):.1f}x"
            )
            if realtime:
                print(f"   true end → final produced s: {summary(result['produced'])}")
                print(f"   true end → final received s: {summary(result['received'])}")
                print(f"   hangover confirm → final sent s: {summary(stats.confirm_to_publish_s)}")
    finally:
        stop.set()
        await task


async def main(models: list[str], quick: bool) -> None:
    with EmbeddedBroker() as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        await ensure_topics(settings, ALL_TOPICS)
        for model in models:
            try:
                await bench_model(settings, model, quick)
            except TranscriptionError as exc:
                print(f"\n== whisper-{model}: skipped ({exc})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"])
    parser.add_argument("--quick", action="store_true", help="one real-time stream per model only")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(arguments.models, arguments.quick))
