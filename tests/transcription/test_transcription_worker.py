"""The transcription worker on the real embedded broker: finals, order, timings, commits, crash recovery."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from convoscope.ids import message_id
from convoscope.kafka import create_consumer, ensure_topics
from convoscope.settings import Settings
from processors.transcription.worker import AUDIO_PARTITION_FETCH_BYTES, GROUP_ID
from schemas.topics import ALL_TOPICS, AUDIO_FRAMES

from .kafka_helpers import Collected, collect, collect_while_transcribing, produce_stream
from .speech import MEETING_SCRIPT, build_meeting, wer

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TOLERANCE_S = 0.4
END_TOLERANCE_S = 0.35


def overlaps(final: dict, start: int, end: int) -> bool:
    return final["start_sample"] < end and start < final["end_sample"]


async def committed_and_highwater(settings: Settings) -> list[tuple[int | None, int]]:
    consumer = create_consumer(settings, group_id=GROUP_ID)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(AUDIO_FRAMES.name, p) for p in consumer.partitions_for_topic(AUDIO_FRAMES.name)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for _ in range(50):  # read to learn each partition's highwater (end_offsets is wrong on tansu)
            await consumer.getmany(timeout_ms=50, max_records=100_000)
            if all(consumer.highwater(tp) is not None for tp in tps):
                break
        return [(await consumer.committed(tp), consumer.highwater(tp)) for tp in tps]
    finally:
        await consumer.stop()


async def test_worker_publishes_ordered_finals_and_stream_transcribed(broker, tiny_recognizer):
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    await ensure_topics(settings, ALL_TOPICS)
    audio, truth = build_meeting()
    conversation, stream = "1700000000000000001", uuid.uuid4().hex
    await produce_stream(settings, conversation, stream, audio)

    out = await collect_while_transcribing(settings, lambda c: c.transcribed(stream), timeout_s=120,
                                           recognizer=tiny_recognizer,
                                           settle_s=1.5)  # one periodic commit after the last acknowledgement

    finals = out.finals_of(stream)
    assert [f["utterance_index"] for f in finals] == list(range(len(truth)))
    assert out.transcribed(stream)[0]["final_count"] == len(truth)
    assert wer([t.text for t in truth], [f["text"] for f in finals]) <= 0.15, [f["text"] for f in finals]
    for final, expected in zip(finals, truth, strict=True):
        assert final["message_id"] == message_id(stream, final["start_sample"])
        assert final["conversation_id"] == conversation and final["model"] == "whisper-tiny.en"
        assert final["speaker"]["name"] == "Test Speaker"
        assert abs(final["start_sample"] - expected.start_sample) / 16000 <= START_TOLERANCE_S
        assert abs(final["end_sample"] - expected.end_sample) / 16000 <= END_TOLERANCE_S
        words = final["words"]
        assert words[0]["start_ms"] >= final["start_sample"] / 16 - 1
        assert words[-1]["end_ms"] <= final["end_sample"] / 16 + 1
        assert abs(words[0]["start_ms"] - expected.start_sample / 16) < 500
    for interim in out.interims:
        assert interim["utterance_id"] in {f["message_id"] for f in finals}
    # Everything is final, so every partition is committed up to its end.
    for committed, highwater in await committed_and_highwater(settings):
        assert committed in (None, highwater) if highwater == 0 else committed == highwater


async def test_frames_larger_than_the_read_ahead_are_transcribed(broker, tiny_recognizer):
    """The worker reads ahead only so far per partition; a frame bigger than that (a gateway configured for
    large frames) still arrives and is transcribed, rather than stalling its partition."""
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    await ensure_topics(settings, ALL_TOPICS)
    audio, truth = build_meeting()
    frame_samples = AUDIO_PARTITION_FETCH_BYTES // 2 + 16000  # a second of int16 audio over the read-ahead
    assert len(audio) > 2 * frame_samples
    conversation, stream = "1700000000000000005", uuid.uuid4().hex
    await produce_stream(settings, conversation, stream, audio, frame_samples=frame_samples)

    out = await collect_while_transcribing(settings, lambda c: c.transcribed(stream), timeout_s=120,
                                           recognizer=tiny_recognizer)

    finals = out.finals_of(stream)
    assert out.transcribed(stream)[0]["final_count"] == len(finals) == len(truth)
    assert wer([t.text for t in truth], [f["text"] for f in finals]) <= 0.15, [f["text"] for f in finals]


def read_log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while text not in read_log(path):
        assert process.poll() is None, read_log(path)
        assert asyncio.get_running_loop().time() < deadline, f"worker never logged {text!r}"
        await asyncio.sleep(0.2)


def start_worker(bootstrap: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("worker_process.py")), bootstrap],
        cwd=REPO_ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(broker, tmp_path):
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    await ensure_topics(settings, ALL_TOPICS)
    audio, truth = build_meeting(MEETING_SCRIPT + MEETING_SCRIPT[:4])
    streams = [("1700000000000000002", uuid.uuid4().hex), ("1700000000000000003", uuid.uuid4().hex)]
    log_path = tmp_path / "workers.log"

    first = start_worker(broker.bootstrap, log_path)
    await wait_for_log(log_path, "loaded", first, timeout_s=60)  # assigned, progress loaded
    producers = [
        asyncio.create_task(produce_stream(settings, conversation, stream, audio, realtime_factor=2.0))
        for conversation, stream in streams
    ]
    out = Collected()
    second = None
    try:
        # Kill the first worker once it has published a few finals of each stream, mid-stream.
        await collect(settings, out, lambda c: len(c.finals) >= 3, timeout_s=90)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        finals_before_kill = len(out.finals)
        assert all(len(out.finals_of(s)) < len(truth) for _, s in streams), "killed too late to test anything"
        second = start_worker(broker.bootstrap, log_path)
        await collect(settings, out, lambda c: all(c.transcribed(s) for _, s in streams), timeout_s=150)
        await asyncio.gather(*producers)
    finally:
        for task in producers:
            task.cancel()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)

    assert len(out.finals) > finals_before_kill, "the second worker published nothing"
    for _, stream in streams:
        by_id: dict[str, dict] = {}
        for final in out.finals_of(stream):
            by_id.setdefault(final["message_id"], final)
        distinct = sorted(by_id.values(), key=lambda f: f["start_sample"])
        # A final is re-sent only if it was acknowledged in the instant before the kill, before its progress
        # record (one per final, written after its ack): when a backlog releases two finals of a stream at once,
        # both can be in that window. The progress topic makes the new owner skip everything else. A re-sent
        # final keeps its id and its audio span, so stores and live clients, which key on the id, show it once.
        first_index: dict[str, int] = {}
        resent = 0
        for index, final in enumerate(out.finals):
            if final["stream_id"] != stream:
                continue
            if final["message_id"] not in first_index:
                first_index[final["message_id"]] = index
                continue
            resent += 1
            original = out.finals[first_index[final["message_id"]]]
            assert (final["start_sample"], final["end_sample"]) == (original["start_sample"], original["end_sample"])
        assert resent <= 2
        # No lost utterance and no duplicate: each spoken utterance is covered by exactly one message.
        for expected in truth:
            covering = [f for f in distinct if overlaps(f, expected.start_sample, expected.end_sample)]
            assert len(covering) == 1, (expected.text, [(f["text"], f["start_sample"]) for f in covering])
        for earlier, later in itertools.pairwise(distinct):
            assert earlier["end_sample"] <= later["start_sample"]
        assert len(distinct) == len(truth)
        assert sorted(f["utterance_index"] for f in distinct) == list(range(len(truth)))
        assert out.transcribed(stream)[-1]["final_count"] == len(truth)
        assert wer([t.text for t in truth], [f["text"] for f in distinct]) <= 0.15
