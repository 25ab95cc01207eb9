"""End-of-utterance → final `message_response` at the client, through the whole stack, in real time.

For each model and each concurrency level it starts the stack (embedded broker, SQLite, the
transcription/store workers and the gateway as separate processes), streams N independent
single-speaker calls of synthesized speech in real time, and prints the latency percentiles over
all utterances, plus the transcription worker's CPU seconds per audio second.

    .venv/bin/python bench/latency.py                      # tiny.en, 1 and 8 streams
    .venv/bin/python bench/latency.py --models tiny.en base --streams 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convoscope.embedded_broker import free_port
from convoscope.evaluation import word_error_rate
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import Line, Meeting, build_meeting
from producers.replay import StreamResult, fetch_token, stream_pcm

SCRIPT = (
    Line("Caller", "Hi, I am calling about the bill we received last week."),
    Line("Caller", "The total looks higher than the quote your team sent in March."),
    Line("Caller", "Could you check if the support plan was added two times?"),
    Line("Caller", "We only signed up for the standard plan with five seats."),
    Line("Caller", "If that is the case, please send a new bill before Friday."),
    Line("Caller", "Thanks, I will wait for your email before paying."),
)
VOICES = ("en-us+m3", "en-gb+f4", "en-us+m7", "en-gb")


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def utterance_latencies(meeting: Meeting, result: StreamResult) -> tuple[list[float], float]:
    """Per utterance: arrival of its last final message minus the true end of speech."""
    latencies = []
    heard: dict[int, list[str]] = {}
    arrivals: dict[int, float] = {}
    for received in result.of_type("message_response"):
        for message in received.body["messages"]:
            middle = (_epoch(message["duration"]["startTime"]) + _epoch(message["duration"]["endTime"])) / 2
            middle -= result.audio_origin_epoch_s
            index = min(range(len(meeting.utterances)),
                        key=lambda i: abs((meeting.utterances[i].start_s + meeting.utterances[i].end_s) / 2 - middle))
            heard.setdefault(index, []).append(message["payload"]["content"])
            arrivals[index] = max(arrivals.get(index, 0.0), received.at_s)
    for index, arrival in arrivals.items():
        latencies.append(arrival - meeting.utterances[index].end_s)
    wer = word_error_rate([u.text for u in meeting.utterances],
                          [" ".join(heard.get(i, [])) for i in range(len(meeting.utterances))])
    return latencies, wer


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_level(stack: Stack, token: str, meetings: list[Meeting], streams: int) -> dict[str, float]:
    base = stack.settings.base_url().replace("http", "ws", 1)
    worker = next(c for c in stack.children if c.name == "transcribe")
    assert worker.process is not None
    cpu_before = cpu_seconds(worker.process.pid)
    start = time.monotonic() + 1.0
    # Staggered starts, as real calls do not begin in lockstep.
    results = await asyncio.gather(*[
        stream_pcm(f"{base}/v1/streaming/{uuid.uuid4()}", token, meetings[i % len(meetings)].track_bytes("Caller"),
                   speaker={"name": f"Caller {i}"}, start_at=start + i * 0.37, stop_timeout_s=120)
        for i in range(streams)
    ])
    cpu = cpu_seconds(worker.process.pid) - cpu_before
    latencies: list[float] = []
    wers = []
    for i, result in enumerate(results):
        lat, wer = utterance_latencies(meetings[i % len(meetings)], result)
        latencies += lat
        wers.append(wer)
    audio_s = sum(meetings[i % len(meetings)].duration_s for i in range(streams))
    return {
        "utterances": len(latencies),
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies),
        "wer": statistics.mean(wers),
        "cpu_per_audio_s": cpu / audio_s,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en"])
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    meetings = [build_meeting(SCRIPT, voices={"Caller": voice}) for voice in VOICES]
    print(f"{len(SCRIPT)} utterances per call, {meetings[0].duration_s:.1f} s of audio, real time")
    print(f"{'model':8} {'streams':>7} {'utts':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'WER':>6} "
          f"{'CPU s/audio s':>14}")
    for model in args.models:
        os.environ["CONVOSCOPE_ASR_MODEL"] = model
        with tempfile.TemporaryDirectory() as state:
            settings = Settings(port=free_port(), state_dir=Path(state), database_url=f"sqlite+aiosqlite:///{state}/b.db",
                                asr_model=model)
            async with Stack(settings, quiet_children=True) as stack:
                token = await fetch_token(stack.settings.base_url(), *await stack.app_credentials("bench"))
                for streams in args.streams:
                    row = await run_level(stack, token, meetings, streams)
                    print(f"{model:8} {streams:>7} {row['utterances']:>5.0f} {row['p50']:>7.2f} {row['p95']:>7.2f} "
                          f"{row['max']:>7.2f} {row['wer']:>6.1%} {row['cpu_per_audio_s']:>14.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
