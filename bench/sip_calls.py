"""Concurrent calls the SIP gateway sustains: frames delivered, RTP → Kafka latency, CPU; with and without Whisper.

Starts an embedded broker and `convoscope gateway sip` as a separate process (plus `convoscope worker transcribe`
with --transcribe), then places N simultaneous inbound calls from this process: a SIP UAC (aiosipua) and an RTP
sender pacing 20 ms G.711 packets of synthesized speech in real time. A consumer of the audio topic checks that
every frame arrived (seq without gaps, every sample of every call) and measures, per frame, the time from sending
the RTP packet that carried its last sample to the frame reaching a Kafka consumer.

    .venv/bin/python bench/sip_calls.py                                # 10, 25, 50 calls, 12 s each
    .venv/bin/python bench/sip_calls.py --calls 2 4 --transcribe       # and transcribed: finals and their delay
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from aiosipua import SipUAC, SipUAS

from convoscope.embedded_broker import EmbeddedBroker, free_port
from convoscope.kafka import create_consumer, ensure_topics
from convoscope.settings import Settings
from convoscope.synth import speak
from producers.sip.codecs import PCMU
from producers.sip.gateway import _SipTransport
from producers.sip.sdp import build_offer
from schemas.topics import ALL_TOPICS, AUDIO_FRAMES, CONVERSATION_EVENTS, TRANSCRIPTS_FINAL
from tests.sip.packets import rtp

PACKET_S = 0.02
PACKET_SAMPLES = 160
LINES = (
    "Hi, I am calling about the bill we received last week.",
    "Could you check if the support plan was added two times?",
    "Please send a new bill before Friday.",
)


@dataclass
class CallRun:
    name: str
    send_times: list[float] = field(default_factory=list)  # wall clock of each RTP packet sent
    send_lag_ms: list[float] = field(default_factory=list)  # how late each packet left against its schedule
    answered: bool = False
    error: str = ""


def speech_ulaw(seconds: float) -> bytes:
    clips = [np.concatenate([speak(line, "en-us+m3"), np.zeros(8000, np.int16)]) for line in LINES]
    audio = np.concatenate(clips * (int(seconds / (sum(len(c) for c in clips) / 16000)) + 1))[: int(seconds * 16000)]
    return subprocess.run(
        ["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-", "-t", "raw", "-r", "8000",
         "-e", "u-law", "-"], input=audio.astype("<i2").tobytes(), capture_output=True, check=True).stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise TimeoutError(f"process on health port {port} not ready")


async def place_call(uac: SipUAC, gateway: tuple[str, int], run: CallRun, payload: bytes, local_port: int,
                     start_at: float) -> None:
    loop = asyncio.get_running_loop()
    sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", local_port))
    try:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        # The caller's URI becomes the member's user id on the frames: that is how frames find their call.
        call = uac.send_invite(f"sip:{run.name}@127.0.0.1:{uac.transport.local_addr[1]}",
                               f"sip:convoscope@{gateway[0]}:{gateway[1]}", gateway,
                               sdp_offer=build_offer("127.0.0.1", local_port, (PCMU,)))
        await call.wait_answered(15)
        run.answered = True
        assert call.sdp_answer is not None and call.sdp_answer.rtp_address is not None
        target = call.sdp_answer.rtp_address
        ssrc = hash(run.name) & 0xFFFFFFFF
        begin = time.monotonic()
        for index, offset in enumerate(range(0, len(payload), PACKET_SAMPLES)):
            await asyncio.sleep(max(0.0, begin + index * PACKET_S - time.monotonic()))
            run.send_lag_ms.append((time.monotonic() - begin - index * PACKET_S) * 1000)
            sender.sendto(rtp(index, index * PACKET_SAMPLES, payload[offset : offset + PACKET_SAMPLES], ssrc=ssrc),
                          target)
            run.send_times.append(time.time())
        await asyncio.sleep(0.3)
        call.hangup(uac)
    except (TimeoutError, RuntimeError, AssertionError) as exc:
        run.error = str(exc) or type(exc).__name__
    finally:
        sender.close()


async def collect(settings: Settings, stop: asyncio.Event, frames: dict[str, list[tuple[dict[str, Any], float]]],
                  finals: list[tuple[dict[str, Any], float]], transcribed: set[str],
                  ended: dict[str, dict[str, str]]) -> None:
    consumer = create_consumer(settings, AUDIO_FRAMES.name, TRANSCRIPTS_FINAL.name, CONVERSATION_EVENTS.name,
                               group_id=None, fetch_max_wait_ms=5, auto_offset_reset="latest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.time()
            for tp, records in batch.items():
                for record in records:
                    if tp.topic == AUDIO_FRAMES.name:
                        frame = AUDIO_FRAMES.serde.deserialize(record.value)
                        caller = (frame["speaker"]["user_id"] or "").split(":", 1)[-1].split("@", 1)[0]
                        frames.setdefault(caller, []).append((frame, now))
                    elif tp.topic == TRANSCRIPTS_FINAL.name:
                        finals.append((TRANSCRIPTS_FINAL.serde.deserialize(record.value), now))
                    else:
                        event = CONVERSATION_EVENTS.serde.deserialize(record.value)
                        if event["type"] == "STREAM_TRANSCRIBED":
                            transcribed.add(event["stream_id"])
                        elif event["type"] == "STREAM_ENDED":
                            ended[event["stream_id"]] = event["attributes"]
    finally:
        await consumer.stop()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run_level(settings: Settings, gateway: tuple[str, int], gateway_pid: int, worker_pid: int | None,
                    calls: int, seconds: float, payload: bytes, transcribe: bool) -> None:
    transport = _SipTransport(local_addr=("127.0.0.1", 0))
    uac = SipUAC(transport)
    uas = SipUAS(transport, uac=uac)
    await uas.start()
    frames: dict[str, list[tuple[dict[str, Any], float]]] = {}
    finals: list[tuple[dict[str, Any], float]] = []
    transcribed: set[str] = set()
    ended: dict[str, dict[str, str]] = {}
    stop = asyncio.Event()
    collector = asyncio.create_task(collect(settings, stop, frames, finals, transcribed, ended))
    await asyncio.sleep(2.0)  # the consumer has its partitions
    runs = [CallRun(f"bench{calls}x{i}") for i in range(calls)]
    cpu_before = cpu_seconds(gateway_pid)
    worker_before = cpu_seconds(worker_pid) if worker_pid else 0.0
    started = time.monotonic()
    await asyncio.gather(*[
        place_call(uac, gateway, run, payload, free_port(), started + i * 1.0 / max(1, calls))
        for i, run in enumerate(runs)
    ])
    wall = time.monotonic() - started
    deadline = time.monotonic() + (90 if transcribe else 20)
    while time.monotonic() < deadline:  # until every call's END frame (and, transcribing, its last final)
        ends = sum(1 for run in runs if any(f["kind"] == "END" for f, _ in frames.get(run.name, [])))
        streams = {f["stream_id"] for run in runs for f, _ in frames.get(run.name, [])}
        if ends == sum(r.answered for r in runs) and (not transcribe or streams <= transcribed):
            break
        await asyncio.sleep(0.2)
    gateway_cpu = cpu_seconds(gateway_pid) - cpu_before
    worker_cpu = (cpu_seconds(worker_pid) - worker_before) if worker_pid else 0.0
    stop.set()
    await collector
    await uas.stop()

    expected_samples = (len(payload) // PACKET_SAMPLES) * 2 * PACKET_SAMPLES
    complete, latencies, gaps = 0, [], 0
    for run in runs:
        got = sorted(frames.get(run.name, []), key=lambda item: item[0]["seq"])
        seqs = [f["seq"] for f, _ in got]
        gaps += sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        audio = sum(len(f["pcm"]) // 2 for f, _ in got)
        if audio == expected_samples and got and got[-1][0]["kind"] == "END":
            complete += 1
        for frame, received in got:
            if frame["kind"] == "AUDIO" and run.send_times:
                packet = min(len(run.send_times) - 1, (frame["start_sample"] + len(frame["pcm"]) // 2) // 320 - 1)
                latencies.append((received - run.send_times[packet]) * 1000)
    call_seconds = calls * seconds
    print(f"\n{calls} concurrent calls of {seconds:g} s (transcription {'on' if transcribe else 'off'}), "
          f"placed within {wall:.1f} s")
    print(f"  answered {sum(r.answered for r in runs)}/{calls}, all audio + END delivered for {complete}/{calls}, "
          f"seq gaps {gaps}" + (f", errors: {[r.error for r in runs if r.error][:3]}" if any(r.error for r in runs)
                               else ""))
    print(f"  RTP packet sent -> frame at a Kafka consumer: p50 {percentile(latencies, 50):.0f} ms, "
          f"p95 {percentile(latencies, 95):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, "
          f"max {max(latencies, default=float('nan')):.0f} ms ({len(latencies)} frames)")
    streams = {f["stream_id"] for run in runs for f, _ in frames.get(run.name, [])}
    totals = {key: sum(int(ended[s].get(key, 0)) for s in streams if s in ended)
              for key in ("rtp_packets", "rtp_lost", "rtp_late", "concealed_ms", "timestamp_gaps")}
    lags = [lag for run in runs for lag in run.send_lag_ms]
    print(f"  gateway saw {totals} over {len(ended.keys() & streams)} ended streams; this process sent packets "
          f"late by p50 {percentile(lags, 50):.0f} ms, p99 {percentile(lags, 99):.0f} ms")
    print(f"  SIP gateway CPU: {gateway_cpu:.2f} s = {100 * gateway_cpu / wall:.0f} % of a core, "
          f"{1000 * gateway_cpu / call_seconds:.1f} ms per call-second")
    if transcribe:
        delays = [received - (final["stream_started_at_ms"] + final["end_sample"] / 16) / 1000
                  for final, received in finals]
        print(f"  finals: {len(finals)}, streams fully transcribed {len(streams & transcribed)}/{len(streams)}; "
              f"end of utterance -> final p50 {percentile(delays, 50):.2f} s, p95 {percentile(delays, 95):.2f} s; "
              f"transcription worker CPU {worker_cpu / call_seconds:.2f} s per audio second")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--transcribe", action="store_true")
    args = parser.parse_args()
    payload = speech_ulaw(args.seconds)
    with tempfile.TemporaryDirectory() as state:
        broker = EmbeddedBroker(log_path=Path(state) / "broker.log")
        broker.start()
        sip_port, health_port, worker_health = free_port(), free_port(), free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap, "DATABASE_URL": f"sqlite+aiosqlite:///{state}/b.db",
               "CONVOSCOPE_SIP_PORT": str(sip_port), "CONVOSCOPE_SIP_RTP_PORT_MIN": "0",
               "CONVOSCOPE_SIP_INBOUND_APP_ID": "bench", "CONVOSCOPE_HEALTH_PORT": str(health_port),
               "CONVOSCOPE_SIP_RTP_TIMEOUT_S": "5"}
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        await ensure_topics(settings, ALL_TOPICS)
        log = (Path(state) / "sip.log").open("ab")
        gateway = await asyncio.create_subprocess_exec(sys.executable, "-m", "convoscope", "gateway", "sip", env=env,
                                                       stdout=log, stderr=log)
        worker = None
        if args.transcribe:
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "convoscope", "worker", "transcribe", stdout=log, stderr=log,
                env={**env, "CONVOSCOPE_HEALTH_PORT": str(worker_health)})
        try:
            await wait_ready(health_port)
            if worker is not None:
                await wait_ready(worker_health)
            for calls in args.calls:
                await run_level(settings, ("127.0.0.1", sip_port), gateway.pid, worker.pid if worker else None,
                                calls, args.seconds, payload, args.transcribe)
        finally:
            for process in (gateway, worker):
                if process is not None and process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), 20)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
            log.close()
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
