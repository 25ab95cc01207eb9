"""Memory and CPU of each process kind, idle and under N real-time calls: the figures behind deploy/ resources.

Starts the stack (embedded broker, SQLite, gateway, transcription and store workers as separate processes),
reads each child's resident set size once all are ready, then streams N single-speaker calls of synthesized speech
in real time and prints, per process: RSS when ready, peak RSS (VmHWM) and CPU seconds per audio second.

    .venv/bin/python bench/process_memory.py                 # tiny.en, 1 and 8 streams
    .venv/bin/python bench/process_memory.py --streams 1 4 8 --model base
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import SCRIPT, VOICES, cpu_seconds
from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import Meeting, build_meeting
from producers.replay import fetch_token, stream_pcm

MIB = 1024 * 1024


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc/<pid>/status."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def child_pids(stack: Stack) -> dict[str, int]:
    return {child.name: child.process.pid for child in stack.children if child.process is not None}


async def run_level(stack: Stack, token: str, meetings: list[Meeting], streams: int) -> dict[str, dict[str, float]]:
    pids = child_pids(stack)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    base = stack.settings.base_url().replace("http", "ws", 1)
    start = time.monotonic() + 1.0
    await asyncio.gather(*[
        stream_pcm(f"{base}/v1/streaming/{uuid.uuid4()}", token, meetings[i % len(meetings)].track_bytes("Caller"),
                   speaker={"name": f"Caller {i}"}, start_at=start + i * 0.37, stop_timeout_s=120)
        for i in range(streams)
    ])
    audio_s = sum(meetings[i % len(meetings)].duration_s for i in range(streams))
    rows = {}
    for name, pid in pids.items():
        rss, peak = memory_mib(pid)
        rows[name] = {"rss": rss, "peak": peak, "cpu_per_audio_s": (cpu_seconds(pid) - cpu_before[name]) / audio_s}
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    os.environ["CONVOSCOPE_ASR_MODEL"] = args.model
    meetings = [build_meeting(SCRIPT, voices={"Caller": voice}) for voice in VOICES]
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(port=free_port(), state_dir=Path(state), database_url=f"sqlite+aiosqlite:///{state}/b.db",
                            asr_model=args.model)
        async with Stack(settings, quiet_children=True) as stack:
            print(f"model {args.model}; {meetings[0].duration_s:.1f} s of audio per call, real time")
            print(f"{'process':12} {'streams':>7} {'RSS MiB':>8} {'peak MiB':>9} {'CPU s/audio s':>14}")
            for name, pid in child_pids(stack).items():
                rss, peak = memory_mib(pid)
                print(f"{name:12} {'ready':>7} {rss:>8.0f} {peak:>9.0f} {'':>14}", flush=True)
            token = await fetch_token(stack.settings.base_url(), *await stack.app_credentials("bench"))
            for streams in args.streams:
                for name, row in (await run_level(stack, token, meetings, streams)).items():
                    print(f"{name:12} {streams:>7} {row['rss']:>8.0f} {row['peak']:>9.0f} "
                          f"{row['cpu_per_audio_s']:>14.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
