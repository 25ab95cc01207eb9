"""Live load: N WebSocket clients streaming speech in real time for D seconds against the whole stack.

Starts the stack like `convoscope up` does (embedded broker in memory, SQLite, and the gateway, transcription,
insights, store, analytics, email and webhook workers as separate processes), then N clients, each a Symbl-style
streaming connection (start_request, binary LINEAR16 frames paced in real time, stop_request) carrying looped
espeak-ng speech (a few synthesized tracks, cached on disk, each client starting at its own pause in one of them),
frames of 20-100 ms (client i uses the i-th of ``--frame-ms``), starts staggered by ``--stagger-s``.

Modes:
- ``asr`` (default): the transcription worker runs Whisper (``--model``, tiny.en by default);
- ``no-asr``: the worker runs with ``CONVOSCOPE_ASR_MODEL=none``: VAD and endpointing cut utterances as usual,
  but nothing is recognized and every final reads ``[speech]``, so the figures are those of the gateway and the
  pipeline alone (topics, store, text processors on a one-word text, live push).

Prints:
- errors: error messages the clients received, unexpected closes (anything but the server's normal close after
  conversation_completed), streams that never started or never completed, child processes restarted;
- frames the clients sent (and how late the load generator sent them), dropped audio: bytes the gateway accepted
  (``convoscope_gateway_audio_bytes_total`` on its /metrics) and audio seconds the transcription worker consumed
  (``convoscope_transcribe_audio_seconds_total``) against what the clients sent, as deltas over the run (the
  bench waits up to ``--drain-timeout-s`` after the last client for the worker to catch up);
- utterances spoken (synthesis truth) against those that got a final before conversation_completed, finals
  received and published by the worker; final decodes and their mean time;
- end of utterance → arrival of its last final ``message_response`` at the client: p50 / p95 / p99 / max, the
  worker's and the gateway's own histograms of it (bucket bounds), and p50 / p95 in five spans of the run;
- per process (each child, the broker and this load generator): RSS sampled every ``--sample-s`` seconds, idle
  (before the first client), the average over the first and the last minute of full load (from the start of the
  last client to the end of the audio; shorter windows, a third of that span, on short runs), growth between them
  (target: under 10 %), the trend (growth over full load of a least-squares line through every sample in it, which
  a swing with the work in hand does not move the way it moves the two windows), peak, and CPU seconds over the
  run; then RSS over time.

``--json PATH`` also writes every figure and every RSS sample as JSON.

    .venv/bin/python bench/live_load.py                                  # 50 clients, 600 s, tiny.en
    .venv/bin/python bench/live_load.py --mode no-asr                    # the same without speech recognition
    .venv/bin/python bench/live_load.py --clients 5 --duration-s 60      # a quick check

The embedded broker keeps every topic in memory (the audio topic's retention is a day), so its RSS grows with
the audio streamed, all run long (about 0.1 MB per client-second measured): that is the test broker's storage,
not a leak in convoscope; a real Kafka keeps the log on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import cpu_seconds
from bench.process_memory import memory_mib
from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import SAMPLE_RATE_HZ, Line, build_meeting
from producers.replay import fetch_token

BYTES_PER_SAMPLE = 2
NO_ASR_MODEL = "none"  # CONVOSCOPE_ASR_MODEL of the no-asr mode (processors/transcription/asr.py)
DEFAULT_MODEL: str = Settings.model_fields["asr_model"].default
INSIGHT_TYPES = ["question", "action_item", "follow_up"]
START_TIMEOUT_S = 30.0
COMPLETE_TIMEOUT_S = 120.0
"""After stop_request: the gateway itself waits up to stop_timeout_s (30 s) for the stream's finals."""
LATE_FRAME_S = 0.1
"""A frame sent this much after its audio was "spoken" counts as late (the load generator itself lagging)."""
MATCH_TOLERANCE_S = 2.0
"""A final whose middle is farther than this from every utterance's middle matches none."""
IDLE_WORKER_S = 10.0
STACK_START_TIMEOUT_S = 180.0
GROWTH_WINDOW_S = 60.0
TIMELINE_COLUMNS = 10

# One caller's side of a support call: plain sentences (few commas, so each is one utterance), varied pauses.
SCRIPT = (
    Line("Caller", "Hello, I am calling about the invoice for our office in Leeds.", pause_before_s=1.0),
    Line("Caller", "The amount is three hundred pounds more than last month.", pause_before_s=1.2),
    Line("Caller", "We did not order any new equipment in that period.", pause_before_s=0.9),
    Line("Caller", "Can you tell me which items were added to the account?", pause_before_s=1.6),
    Line("Caller", "I would like a corrected invoice by the end of the week.", pause_before_s=2.2),
    Line("Caller", "Please send it to the finance team and copy me.", pause_before_s=1.1),
    Line("Caller", "Our purchase order number should be printed at the top.", pause_before_s=1.4),
    Line("Caller", "Thank you for your help with this today.", pause_before_s=1.8),
)
VOICES = ("en-us+m3", "en-gb+f4", "en-us+m7", "en-gb")


# --- audio -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """A speech track that is played in a loop: samples and the (start, end) seconds of each utterance in it."""

    pcm: bytes
    utterances: tuple[tuple[float, float], ...]

    @property
    def samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE_HZ

    def pause_middles_s(self) -> list[float]:
        """The middle of every pause, the one across the loop point included: places a client may start at."""
        spans = self.utterances
        middles = [(spans[i][1] + spans[i + 1][0]) / 2 for i in range(len(spans) - 1)]
        wrap = (spans[-1][1] + self.duration_s + spans[0][0]) / 2
        middles.append(wrap % self.duration_s)
        return middles

    def read(self, sample: int, count: int) -> bytes:
        """``count`` samples from ``sample`` on, wrapping around the end."""
        begin = (sample % self.samples) * BYTES_PER_SAMPLE
        end = begin + count * BYTES_PER_SAMPLE
        if end <= len(self.pcm):
            return self.pcm[begin:end]
        return self.pcm[begin:] + self.read(0, (end - len(self.pcm)) // BYTES_PER_SAMPLE)


def build_tracks() -> list[Track]:
    tracks = []
    for voice in VOICES:
        meeting = build_meeting(SCRIPT, voices={"Caller": voice}, lead_in_s=0.6, tail_s=0.8)
        pcm = meeting.track_bytes("Caller")
        tracks.append(Track(pcm, tuple((u.start_s, u.end_s) for u in meeting.utterances)))
    return tracks


@dataclass(frozen=True)
class Plan:
    """What one client streams: ``samples`` of ``track`` from ``offset_sample`` on, and the utterances in it."""

    track: Track
    offset_sample: int
    samples: int
    utterances: list[tuple[float, float]]  # seconds from the client's first sample


def plan_client(track: Track, duration_s: float, rng: random.Random) -> Plan:
    """Start in a pause of the track; stop after ``duration_s``, or just after the utterance running then."""
    offset_s = rng.choice(track.pause_middles_s())
    utterances: list[tuple[float, float]] = []
    loop = 0
    while True:
        for start, end in track.utterances:
            start_s, end_s = start + loop * track.duration_s - offset_s, end + loop * track.duration_s - offset_s
            if start_s < 0:
                continue
            if start_s >= duration_s:
                length_s = max(duration_s, utterances[-1][1] + 0.8 if utterances else duration_s)
                return Plan(track, round(offset_s * SAMPLE_RATE_HZ), round(length_s * SAMPLE_RATE_HZ), utterances)
            utterances.append((start_s, end_s))
        loop += 1


# --- one client ------------------------------------------------------------------------------------------------


def _epoch_s(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class ClientReport:
    index: int
    frame_ms: int
    planned_frames: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    late_frames: int = 0
    max_send_lag_s: float = 0.0
    started: bool = False
    completed: bool = False
    close_code: int | None = None
    errors: list[str] = field(default_factory=list)
    """Error messages from the server, unexpected closes, timeouts: one line each."""
    received: Counter[str] = field(default_factory=Counter)
    finals: list[tuple[float, float]] = field(default_factory=list)
    """(arrival s, middle of the message s), both from the client's first audio sample."""
    utterances: list[tuple[float, float]] = field(default_factory=list)
    audio_origin_s: float = 0.0
    """When its first sample was "spoken", in seconds since the bench began."""
    started_at_s: float = 0.0
    audio_done_at_s: float = 0.0

    def latencies(self) -> tuple[list[tuple[float, float]], int]:
        """Per utterance with a final: (its true end in seconds since the bench began, arrival of its last final
        minus that end); and the number of finals matching no utterance."""
        middles = [(start + end) / 2 for start, end in self.utterances]
        last_arrival: dict[int, float] = {}
        unmatched = 0
        for arrival, middle in self.finals:
            at = bisect.bisect_left(middles, middle)
            candidates = [i for i in (at - 1, at) if 0 <= i < len(middles)]
            if not candidates:
                unmatched += 1
                continue
            best = min(candidates, key=lambda i: abs(middles[i] - middle))
            if abs(middles[best] - middle) > MATCH_TOLERANCE_S:
                unmatched += 1
                continue
            last_arrival[best] = max(last_arrival.get(best, 0.0), arrival)
        return [(self.audio_origin_s + self.utterances[i][1], arrival - self.utterances[i][1])
                for i, arrival in last_arrival.items()], unmatched


def _kind(body: dict[str, Any]) -> str:
    if body.get("type") == "message":
        inner = body.get("message", {})
        kind = str(inner.get("type"))
        if kind == "recognition_result":
            return "final_result" if inner.get("isFinal") else "interim_result"
        return kind
    return str(body.get("type"))


async def run_client(ws_url: str, token: str, plan: Plan, report: ClientReport, start_at: float,
                     bench_origin: float) -> None:
    """Streams ``plan`` from ``start_at`` (monotonic) on, recording into ``report``; never raises."""
    request = {
        "type": "start_request",
        "insightTypes": INSIGHT_TYPES,
        "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": SAMPLE_RATE_HZ}},
        "speaker": {"name": f"Caller {report.index}", "userId": f"caller{report.index}@example.com"},
    }
    frame_samples = SAMPLE_RATE_HZ * report.frame_ms // 1000
    report.planned_frames = -(-plan.samples // frame_samples)
    report.utterances = plan.utterances
    report.audio_origin_s = start_at - bench_origin
    started, completed = asyncio.Event(), asyncio.Event()
    audio_origin_epoch = 0.0

    async def receive(ws: Any) -> None:
        async for message in ws:
            if not isinstance(message, str) or message == "__PONG__":
                continue
            arrival = time.monotonic() - start_at
            body = json.loads(message)
            kind = _kind(body)
            report.received[kind] += 1
            if kind == "error":
                report.errors.append(f"error message: {body.get('message')}: {body.get('details')}")
            elif kind == "recognition_started":
                started.set()
            elif kind == "conversation_completed":
                completed.set()
            elif kind == "message_response":
                for item in body["messages"]:
                    duration = item["duration"]
                    middle = (_epoch_s(duration["startTime"]) + _epoch_s(duration["endTime"])) / 2
                    report.finals.append((arrival, middle - audio_origin_epoch))

    try:
        await asyncio.sleep(max(0.0, start_at - START_TIMEOUT_S / 6 - time.monotonic()))  # connect a bit early
        async with websockets.connect(ws_url, additional_headers={"x-api-key": token}, max_size=2**22) as ws:
            receiver = asyncio.create_task(receive(ws))
            try:
                await ws.send(json.dumps(request))
                waiter = asyncio.create_task(started.wait())
                await asyncio.wait({waiter, receiver}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not started.is_set():
                    report.errors.append(f"no recognition_started within {START_TIMEOUT_S:.0f} s")
                    return
                report.started = True
                await asyncio.sleep(max(0.0, start_at - time.monotonic()))
                report.started_at_s = time.monotonic() - bench_origin
                # The first sample was "spoken" at start_at; each frame leaves once its audio has been.
                audio_origin_epoch = time.time() - (time.monotonic() - start_at)
                sent = 0
                while sent < plan.samples:
                    count = min(frame_samples, plan.samples - sent)
                    due = start_at + (sent + count) / SAMPLE_RATE_HZ
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    lag = time.monotonic() - due
                    report.max_send_lag_s = max(report.max_send_lag_s, lag)
                    report.late_frames += lag > LATE_FRAME_S
                    if receiver.done():
                        break  # the server closed the connection
                    frame = plan.track.read(plan.offset_sample + sent, count)
                    await ws.send(frame)
                    report.frames_sent += 1
                    report.bytes_sent += len(frame)
                    sent += count
                report.audio_done_at_s = time.monotonic() - bench_origin
                if not receiver.done():
                    await ws.send(json.dumps({"type": "stop_request"}))
                    waiter = asyncio.create_task(completed.wait())
                    await asyncio.wait({waiter, receiver}, timeout=COMPLETE_TIMEOUT_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if completed.is_set():
                        report.completed = True
                    elif not receiver.done():
                        report.errors.append(f"no conversation_completed within {COMPLETE_TIMEOUT_S:.0f} s of stop")
                if report.completed:
                    with contextlib.suppress(TimeoutError):  # the gateway closes after stop (disconnectOnStop)
                        await asyncio.wait_for(asyncio.shield(receiver), 5)
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await receiver
            report.close_code = ws.close_code
            if not report.completed and ws.close_code is not None:
                report.errors.append(f"closed {ws.close_code} ({ws.close_reason or 'no reason'}) before completion")
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        report.errors.append(f"{type(exc).__name__}: {exc}")


# --- server side -----------------------------------------------------------------------------------------------


def metric_total(text: str, sample_name: str, **labels: str) -> float:
    """Sum of one metric's samples (those with ``labels``, of any others) in Prometheus text exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


FINAL_DELAY_BUCKETS_S = ("0.25", "0.5", "0.75", "1.0", "1.5", "2.0", "3.0", "5.0", "10.0", "30.0", "+Inf")
"""The buckets of the worker's and the gateway's end-of-utterance histograms (processors/transcription/worker.py,
producers/websocket/session.py)."""
SERVER_COUNTERS: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "gateway": (
        ("convoscope_gateway_audio_bytes_total", {}),
        ("convoscope_gateway_client_errors_total", {}),
        *(("convoscope_gateway_final_delivery_seconds_bucket", {"le": le}) for le in FINAL_DELAY_BUCKETS_S),
    ),
    "transcribe": (
        *(("convoscope_transcribe_final_delay_seconds_bucket", {"le": le}) for le in FINAL_DELAY_BUCKETS_S),
        ("convoscope_transcribe_audio_seconds_total", {}),
        ("convoscope_transcribe_finals_total", {}),
        ("convoscope_transcribe_interims_total", {}),
        ("convoscope_transcribe_decode_seconds_sum", {"kind": "final"}),
        ("convoscope_transcribe_decode_seconds_count", {"kind": "final"}),
        ("convoscope_transcribe_decode_seconds_sum", {"kind": "interim"}),
    ),
}


async def server_counters(stack: Stack, client: httpx.AsyncClient) -> dict[str, float]:
    urls = {"gateway": f"{stack.settings.base_url()}/metrics"}
    for child in stack.children:
        if child.name == "transcribe" and child.health_port:
            urls["transcribe"] = f"http://127.0.0.1:{child.health_port}/metrics"
    values: dict[str, float] = {}
    for process, url in urls.items():
        text = (await client.get(url)).text
        for name, labels in SERVER_COUNTERS[process]:
            values[name + "".join(f"_{v}" for v in labels.values())] = metric_total(text, name, **labels)
    return values


def process_pids(stack: Stack) -> dict[str, int]:
    pids = {child.name: child.process.pid for child in stack.children if child.process is not None}
    if stack.broker is not None and stack.broker.process is not None:
        pids["broker"] = stack.broker.process.pid
    pids["load generator"] = os.getpid()
    return pids


@dataclass
class ProcessSamples:
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (s since the bench began, MiB)
    peak_mib: float = 0.0
    pids: list[int] = field(default_factory=list)


async def sample_memory(stack: Stack, into: dict[str, ProcessSamples], every_s: float, origin: float) -> None:
    while True:
        at = time.monotonic() - origin
        for name, pid in process_pids(stack).items():
            samples = into.setdefault(name, ProcessSamples())
            if pid not in samples.pids:
                samples.pids.append(pid)  # more than one: the child was restarted
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                rss, peak = memory_mib(pid)
                samples.rss_mib.append((at, rss))
                samples.peak_mib = max(samples.peak_mib, peak)
        await asyncio.sleep(every_s)


# --- the run ---------------------------------------------------------------------------------------------------


def cpu_since(pids: dict[str, int], before: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used since ``before`` (a process that exited, e.g. restarted, is left out)."""
    used = {}
    for name, pid in pids.items():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            used[name] = cpu_seconds(pid) - before[name]
    return used


def histogram_quantiles(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, str]:
    """p50 and p95 of a histogram over the run, as the upper bound of the bucket they fall in."""
    cumulative = [(le, after[f"{name}_bucket_{le}"] - before[f"{name}_bucket_{le}"]) for le in FINAL_DELAY_BUCKETS_S]
    total = cumulative[-1][1]
    quantiles = {}
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        le = next((le for le, count in cumulative if total and count >= q * total), None)
        quantiles[label] = ("n/a" if le is None else f"> {FINAL_DELAY_BUCKETS_S[-2]} s" if le == "+Inf"
                            else f"<= {le} s")
    return quantiles


def latency_over_time(timed: list[tuple[float, float]], wall_s: float, slices: int = 5) -> list[dict[str, float]]:
    """Latency percentiles of the utterances ending in each of ``slices`` equal spans of the run."""
    if not timed:
        return []
    begin = min(at for at, _ in timed)
    width = (max(at for at, _ in timed) - begin) / slices or wall_s
    rows = []
    for k in range(slices):
        inside = [lat for at, lat in timed if begin + k * width <= at < begin + (k + 1) * width
                  or (k == slices - 1 and at == begin + slices * width)]
        if inside:
            rows.append({"from_s": begin + k * width, "to_s": begin + (k + 1) * width, "n": len(inside),
                         "p50": percentile(inside, 0.5), "p95": percentile(inside, 0.95)})
    return rows


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def window_mean(samples: list[tuple[float, float]], begin_s: float, end_s: float) -> float:
    inside = [rss for at, rss in samples if begin_s <= at <= end_s]
    return statistics.mean(inside) if inside else float("nan")


def trend_growth(samples: list[tuple[float, float]], begin_s: float, end_s: float) -> float:
    """Growth over [begin_s, end_s] of the least-squares line through the RSS samples taken in it: a process whose
    memory swings with its work but does not climb reads near 0 here, whichever minute the swing peaks in."""
    inside = [(at, rss) for at, rss in samples if begin_s <= at <= end_s]
    if len(inside) < 3:
        return float("nan")
    slope, intercept = statistics.linear_regression([at for at, _ in inside], [rss for _, rss in inside])
    at_begin = slope * begin_s + intercept
    return slope * (end_s - begin_s) / at_begin if at_begin > 0 else float("nan")


async def wait_for_worker(stack: Stack, client: httpx.AsyncClient, audio_s: float,
                          timeout_s: float) -> tuple[dict[str, float], float]:
    """Server counters once the transcription worker consumed all audio sent, made no progress (neither audio nor
    finals) for ``IDLE_WORKER_S``, or ``timeout_s`` passed; and how long that took."""
    began = time.monotonic()
    last: tuple[float, float] | None = None
    unchanged_since = began
    while True:
        counters = await server_counters(stack, client)
        progress = (counters["convoscope_transcribe_audio_seconds_total"],
                    counters["convoscope_transcribe_finals_total"])
        now = time.monotonic()
        if progress[0] >= audio_s - 0.01 or now - began > timeout_s or now - unchanged_since > IDLE_WORKER_S:
            return counters, now - began
        if progress != last:
            last, unchanged_since = progress, now
        await asyncio.sleep(1.0)


def print_log_tails(state_dir: Path, lines: int = 15) -> None:
    for log in sorted(state_dir.glob("*.log")):
        tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
        print(f"--- {log.name} (last lines)", *tail, sep="\n", file=sys.stderr)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    model = NO_ASR_MODEL if args.mode == "no-asr" else args.model
    os.environ["CONVOSCOPE_ASR_MODEL"] = model  # the children read their settings from the environment
    tracks = build_tracks()
    rng = random.Random(args.seed)
    plans = [plan_client(tracks[i % len(tracks)], args.duration_s, rng) for i in range(args.clients)]
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(port=free_port(), state_dir=Path(state), database_url=f"sqlite+aiosqlite:///{state}/b.db",
                            asr_model=model)
        stack = Stack(settings, quiet_children=True)
        try:
            await asyncio.wait_for(stack.start(), STACK_START_TIMEOUT_S)
        except TimeoutError:
            print_log_tails(Path(state))
            raise SystemExit(f"the stack was not ready within {STACK_START_TIMEOUT_S:.0f} s") from None
        try:
            return await measure(args, model, stack, plans)
        finally:
            await stack.stop()


async def measure(args: argparse.Namespace, model: str, stack: Stack, plans: list[Plan]) -> dict[str, Any]:
    reports = [ClientReport(i, args.frame_ms[i % len(args.frame_ms)]) for i in range(args.clients)]
    memory: dict[str, ProcessSamples] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        token = await fetch_token(stack.settings.base_url(), *await stack.app_credentials("bench"))
        base = stack.settings.base_url().replace("http", "ws", 1)
        origin = time.monotonic()
        sampler = asyncio.create_task(sample_memory(stack, memory, args.sample_s, origin))
        await asyncio.sleep(0.5)  # one idle sample first
        before = await server_counters(stack, http)
        pids = process_pids(stack)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load_before = os.getloadavg()
        first_start = time.monotonic() + START_TIMEOUT_S / 6 + 1.0
        await asyncio.gather(*[
            run_client(f"{base}/v1/streaming/{uuid.uuid4()}", token, plan, report,
                       first_start + i * args.stagger_s, origin)
            for i, (plan, report) in enumerate(zip(plans, reports, strict=True))
        ])
        clients_done_s = time.monotonic() - origin
        audio_sent_s = sum(r.bytes_sent for r in reports) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
        after, drain_s = await wait_for_worker(stack, http, audio_sent_s, args.drain_timeout_s)
    wall_s = time.monotonic() - origin
    cpu = cpu_since(pids, cpu_before)
    restarts = {child.name: child.restarts for child in stack.children if child.restarts}
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    for name, pid in process_pids(stack).items():  # the last word on peaks
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            memory[name].peak_mib = max(memory[name].peak_mib, memory_mib(pid)[1])
    return summarize(args, model, reports, memory, before, after, cpu, restarts, clients_done_s, drain_s, wall_s,
                     (load_before, os.getloadavg()))


async def run_until_terminated(args: argparse.Namespace) -> dict[str, Any]:
    """``run``, cancelled on SIGTERM as on Ctrl-C, so the stack (and its broker, in a session of its own) stops."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def summarize(args: argparse.Namespace, model: str, reports: list[ClientReport], memory: dict[str, ProcessSamples],
              before: dict[str, float], after: dict[str, float], cpu: dict[str, float], restarts: dict[str, int],
              clients_done_s: float, drain_s: float, wall_s: float,
              loads: tuple[tuple[float, float, float], tuple[float, float, float]]) -> dict[str, Any]:
    delta = {name: after[name] - before[name] for name in after}
    timed: list[tuple[float, float]] = []
    unmatched = 0
    for report in reports:
        lat, extra = report.latencies()
        timed += lat
        unmatched += extra
    latencies = [latency for _, latency in timed]
    started = [r for r in reports if r.started]
    full_load_from = max((r.started_at_s for r in started), default=0.0)
    full_load_to = min((r.audio_done_at_s for r in started if r.audio_done_at_s), default=full_load_from)
    window_s = min(GROWTH_WINDOW_S, max(0.0, full_load_to - full_load_from) / 3)
    processes = {}
    for name, samples in memory.items():
        idle = samples.rss_mib[0][1] if samples.rss_mib else float("nan")
        first = window_mean(samples.rss_mib, full_load_from, full_load_from + window_s)
        last = window_mean(samples.rss_mib, full_load_to - window_s, full_load_to)
        processes[name] = {
            "idle_rss_mib": idle, "first_window_rss_mib": first, "last_window_rss_mib": last,
            "growth": last / first - 1 if first else float("nan"),
            "trend_growth": trend_growth(samples.rss_mib, full_load_from, full_load_to),
            "peak_rss_mib": samples.peak_mib,
            "cpu_s": cpu.get(name, float("nan")), "restarted": len(samples.pids) > 1 or name in restarts,
            "rss_samples": samples.rss_mib,
        }
    error_lines = Counter(line for r in reports for line in r.errors)
    received: Counter[str] = Counter()
    for report in reports:
        received.update(report.received)
    spoken = sum(len(r.utterances) for r in reports)
    audio_sent_s = sum(r.bytes_sent for r in reports) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
    return {
        "clients": args.clients, "duration_s": args.duration_s, "mode": args.mode, "model": model,
        "frame_ms": args.frame_ms, "stagger_s": args.stagger_s, "seed": args.seed,
        "load_average_before_after": loads,
        "wall_s": wall_s, "clients_done_s": clients_done_s, "drain_s": drain_s,
        "full_load_s": [full_load_from, full_load_to], "growth_window_s": window_s,
        "errors": sum(error_lines.values()) + sum(restarts.values()),
        "error_lines": dict(error_lines.most_common()), "restarts": restarts,
        "clients_started": len(started), "clients_completed": sum(r.completed for r in reports),
        "frames_planned": sum(r.planned_frames for r in reports), "frames_sent": sum(r.frames_sent for r in reports),
        "late_frames": sum(r.late_frames for r in reports),
        "max_send_lag_s": max((r.max_send_lag_s for r in reports), default=0.0),
        "bytes_sent": sum(r.bytes_sent for r in reports),
        "gateway_bytes_accepted": delta["convoscope_gateway_audio_bytes_total"],
        "gateway_error_messages": delta["convoscope_gateway_client_errors_total"],
        "audio_sent_s": audio_sent_s,
        "worker_audio_s": delta["convoscope_transcribe_audio_seconds_total"],
        "worker_finals": delta["convoscope_transcribe_finals_total"],
        "worker_interims": delta["convoscope_transcribe_interims_total"],
        "worker_final_decodes": delta["convoscope_transcribe_decode_seconds_count_final"],
        "worker_final_decode_mean_s": (delta["convoscope_transcribe_decode_seconds_sum_final"]
                                       / max(1.0, delta["convoscope_transcribe_decode_seconds_count_final"])),
        "worker_decoding_s": (delta["convoscope_transcribe_decode_seconds_sum_final"]
                              + delta["convoscope_transcribe_decode_seconds_sum_interim"]),
        "utterances_spoken": spoken, "utterances_with_final": len(latencies),
        "finals_received": sum(len(r.finals) for r in reports), "finals_matching_no_utterance": unmatched,
        "received": dict(received.most_common()),
        "latency_s": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                      "p99": percentile(latencies, 0.99), "max": max(latencies, default=float("nan")),
                      "n": len(latencies)},
        "latency_over_time": latency_over_time(timed, wall_s),
        "worker_final_delay_s": histogram_quantiles(before, after, "convoscope_transcribe_final_delay_seconds"),
        "gateway_final_delivery_s": histogram_quantiles(before, after, "convoscope_gateway_final_delivery_seconds"),
        "processes": processes,
        "per_client": [
            {**{k: v for k, v in asdict(r).items() if k not in ("finals", "utterances", "received")},
             "received": dict(r.received), "utterances": len(r.utterances), "finals": len(r.finals)}
            for r in reports
        ],
    }


def print_report(result: dict[str, Any]) -> None:
    r = result
    mode = f"{r['mode']} (model {r['model']})"
    print(f"\nlive load: {r['clients']} clients x {r['duration_s']:.0f} s, {mode}, frames {r['frame_ms']} ms, "
          f"starts {r['stagger_s']} s apart; load average {r['load_average_before_after'][0][0]:.2f} before, "
          f"{r['load_average_before_after'][1][0]:.2f} after")
    print(f"errors            {r['errors']} ({r['clients_started']}/{r['clients']} streams started, "
          f"{r['clients_completed']} completed; restarts {r['restarts'] or 'none'}; "
          f"gateway error messages {r['gateway_error_messages']:.0f})")
    for line, count in r["error_lines"].items():
        print(f"  {count:>4} x {line}")
    dropped_bytes = r["bytes_sent"] - r["gateway_bytes_accepted"]
    print(f"frames            {r['frames_sent']:,} sent of {r['frames_planned']:,} planned; "
          f"{r['late_frames']:,} sent >{LATE_FRAME_S:.1f} s late (max lag {r['max_send_lag_s']:.2f} s)")
    print(f"dropped           gateway accepted {r['gateway_bytes_accepted']:,.0f} of {r['bytes_sent']:,} bytes "
          f"({dropped_bytes:,.0f} dropped); transcriber consumed {r['worker_audio_s']:.1f} of "
          f"{r['audio_sent_s']:.1f} audio s ({max(0.0, r['audio_sent_s'] - r['worker_audio_s']):.1f} s not consumed "
          f"{r['drain_s']:.0f} s after the last client finished)")
    print(f"utterances        {r['utterances_spoken']:,} spoken, {r['utterances_with_final']:,} got a final "
          f"({r['utterances_spoken'] - r['utterances_with_final']:,} missed); finals received "
          f"{r['finals_received']:,} (published by the worker {r['worker_finals']:.0f}, "
          f"{r['finals_matching_no_utterance']} matching no utterance); interims published {r['worker_interims']:.0f}")
    print(f"decoder           {r['worker_final_decodes']:.0f} final decodes (speculative ones included), "
          f"mean {r['worker_final_decode_mean_s']:.3f} s; decode threads busy {r['worker_decoding_s']:.0f} s "
          f"in {r['wall_s']:.0f} s")
    lat = r["latency_s"]
    print(f"end of utterance → final at the client: p50 {lat['p50']:.2f} s  p95 {lat['p95']:.2f} s  "
          f"p99 {lat['p99']:.2f} s  max {lat['max']:.2f} s  (n={lat['n']})")
    worker, gateway = r["worker_final_delay_s"], r["gateway_final_delivery_s"]
    print(f"  server side (histogram buckets): final acked by the broker p50 {worker['p50']}, "
          f"p95 {worker['p95']}; final leaving the gateway p50 {gateway['p50']}, p95 {gateway['p95']}")
    print("  by utterance end time:  " + "  ".join(
        f"{row['from_s']:.0f}-{row['to_s']:.0f} s p50 {row['p50']:.2f} p95 {row['p95']:.2f} (n={row['n']})"
        for row in r["latency_over_time"]))
    begin, end = r["full_load_s"]
    window = r["growth_window_s"]
    print(f"\nmemory: full load from {begin:.0f} s to {end:.0f} s; first and last {window:.0f} s of it compared; "
          f"CPU over {r['wall_s']:.0f} s")
    print(f"{'process':15} {'idle MiB':>9} {'first MiB':>10} {'last MiB':>9} {'growth':>7} {'trend':>7} "
          f"{'peak MiB':>9} {'CPU s':>7} {'CPU %':>6}")
    for name, p in r["processes"].items():
        flag = " restarted" if p["restarted"] else ""
        print(f"{name:15} {p['idle_rss_mib']:>9.0f} {p['first_window_rss_mib']:>10.1f} "
              f"{p['last_window_rss_mib']:>9.1f} {p['growth']:>7.1%} {p['trend_growth']:>7.1%} "
              f"{p['peak_rss_mib']:>9.0f} {p['cpu_s']:>7.1f} "
              f"{p['cpu_s'] / r['wall_s']:>6.0%}{flag}")
    any_samples = next(iter(r["processes"].values()))["rss_samples"]
    if any_samples:
        step = max(1, len(any_samples) // TIMELINE_COLUMNS)
        picks = list(range(0, len(any_samples), step))
        print("\nRSS MiB over time (s since start)")
        print(f"{'':15} " + " ".join(f"{any_samples[i][0]:>6.0f}" for i in picks))
        for name, p in r["processes"].items():
            samples = p["rss_samples"]
            print(f"{name:15} " + " ".join(f"{samples[i][1]:>6.0f}" if i < len(samples) else f"{'':>6}"
                                           for i in picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=600.0, help="audio each client streams")
    parser.add_argument("--mode", choices=["asr", "no-asr"], default="asr",
                        help="no-asr: CONVOSCOPE_ASR_MODEL=none, the gateway and pipeline without Whisper")
    parser.add_argument("--model", choices=["tiny.en", "base"], default=DEFAULT_MODEL, help="Whisper model (asr)")
    parser.add_argument("--frame-ms", type=int, nargs="+", default=[20, 40, 60, 80, 100],
                        help="audio per binary frame; client i uses the i-th (cycling)")
    parser.add_argument("--stagger-s", type=float, default=0.4, help="between two clients' starts")
    parser.add_argument("--sample-s", type=float, default=2.0,
                        help="RSS sampling interval; short, so the window means average over many decodes")
    parser.add_argument("--drain-timeout-s", type=float, default=120.0,
                        help="after the last client: how long to wait for the transcriber to consume all audio")
    parser.add_argument("--seed", type=int, default=1, help="which pause of its track each client starts at")
    parser.add_argument("--json", type=Path, help="also write every figure and RSS sample here")
    args = parser.parse_args()
    if any(not 20 <= ms <= 100 for ms in args.frame_ms):
        parser.error("--frame-ms values must be within 20-100")
    try:
        result = asyncio.run(run_until_terminated(args))
    except asyncio.CancelledError:
        raise SystemExit("terminated; the stack was stopped") from None
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
