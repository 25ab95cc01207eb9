"""The Async API on the whole stack: recorded calls in every format go through the same topics and workers as
live audio; jobs move scheduled → completed; webhooks arrive at a real HTTP server; bad input is refused whole."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from aiokafka import TopicPartition

from convoscope.evaluation import word_error_rate
from convoscope.kafka import create_consumer
from convoscope.synth import SynthesisUnavailable, speak
from schemas.topics import TRANSCRIPTS_INTERIM
from tests.e2e.conftest import RunningStack
from tests.recorded.audio_files import write_recording

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RATE = 16_000
ALICE = "Can you finish the payment tests before Friday?"
BOB = "Yes, I will send the test report to everyone on Thursday."
STATUS_ORDER = ["scheduled", "in_progress", "completed"]


@dataclass
class Call:
    """A two-party call: Alice on the left channel, Bob answering on the right."""

    left: np.ndarray
    right: np.ndarray

    @property
    def duration_s(self) -> float:
        return len(self.left) / RATE


@pytest.fixture(scope="module")
def call() -> Call:
    try:
        alice, bob = speak(ALICE, "en-gb+f4"), speak(BOB, "en-us+m3")
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required: {exc}")
    lead, gap, tail = int(0.3 * RATE), int(0.8 * RATE), int(0.6 * RATE)
    total = lead + len(alice) + gap + len(bob) + tail
    left, right = np.zeros(total, np.int16), np.zeros(total, np.int16)
    left[lead : lead + len(alice)] = alice
    start = lead + len(alice) + gap
    right[start : start + len(bob)] = bob
    return Call(left, right)


@dataclass
class LocalServer:
    """A real HTTP server: records webhook POSTs, serves files from ``root`` for URL submissions."""

    root: Path
    url: str = ""
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def received(self, job_id: str) -> list[str]:
        return [hook["status"] for hook in list(self.webhooks) if hook.get("jobId") == job_id]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server_state = LocalServer(tmp_path_factory.mktemp("served"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            server_state.webhooks.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            if self.path.startswith("/redirect?to="):  # an allowed host sending the fetch elsewhere
                self.send_response(302)
                self.send_header("Location", self.path.removeprefix("/redirect?to="))
                self.end_headers()
                return
            path = server_state.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_response(404)
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()


async def wait_job(
    client: httpx.AsyncClient, job_id: str, timeout_s: float = 300.0
) -> tuple[dict[str, Any], list[str]]:
    """Poll the job until it is done; also every distinct status seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/job/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("completed", "failed"):
            return job, seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} not done in {timeout_s} s; statuses {seen}")


def api(stack: RunningStack) -> httpx.AsyncClient:
    """Uploads are answered once decoded and stored in the broker: allow for a busy machine."""
    return httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": stack.token}, timeout=120)


def in_order(statuses: list[str]) -> bool:
    ranks = [STATUS_ORDER.index(s) for s in statuses]
    return ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


async def messages_of(client: httpx.AsyncClient, conversation_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    return response.json()["messages"]  # type: ignore[no-any-return]


async def members_of(client: httpx.AsyncClient, conversation_id: str) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/v1/conversations/{conversation_id}/members")
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["members"]}


def said_by(messages: list[dict[str, Any]], name: str) -> str:
    return " ".join(m["text"] for m in messages if m["from"].get("name") == name)


async def interims_of(stack: RunningStack, conversation_id: str) -> int:
    """Interim transcripts on the topic for the conversation (1 h retention: a small topic to read whole)."""
    consumer = create_consumer(stack.stack.settings, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(TRANSCRIPTS_INTERIM.name, p)
               for p in sorted(consumer.partitions_for_topic(TRANSCRIPTS_INTERIM.name) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, remaining = 0, set(tps)
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=5000)
            count += sum(1 for records in batches.values() for r in records if r.key == conversation_id.encode())
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    remaining.discard(tp)
        assert not remaining, "interim topic not read to its end"
        return count
    finally:
        await consumer.stop()


async def test_wav_upload_is_transcribed_without_interims_and_calls_the_webhook(
    sqlite_stack: RunningStack, call: Call, local_server: LocalServer, tmp_path: Path
) -> None:
    wav = write_recording(tmp_path / "alice.wav", [call.left])
    async with api(sqlite_stack) as client:
        response = await client.post(
            "/v1/process/audio", content=wav.read_bytes(), headers={"Content-Type": "audio/wav"},
            params={"name": "Payment check", "webhookUrl": local_server.url + "/hook"},
        )
        assert response.status_code == 201, response.text
        accepted = response.json()
        assert set(accepted) == {"conversationId", "jobId"} and accepted["conversationId"].isdigit()
        job, seen = await wait_job(client, accepted["jobId"])
        assert job["status"] == "completed", job
        assert seen[0] in STATUS_ORDER and in_order(seen), seen
        assert abs(job["audioDuration"] - call.duration_s) < 0.05 and job["transcribedDuration"] == job["audioDuration"]

        messages = await messages_of(client, accepted["conversationId"])
        assert word_error_rate([ALICE], [" ".join(m["text"] for m in messages)]) <= 0.2, messages
        assert {m["from"]["name"] for m in messages} == {"Speaker 1"}
        deadline = time.monotonic() + 10
        while True:
            conversation = (await client.get(f"/v1/conversations/{accepted['conversationId']}")).json()
            if conversation["endTime"] is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert conversation["name"] == "Payment check"
        assert conversation["endTime"] is not None, "completion is announced once every transcript is stored"

    for _ in range(100):  # the webhook call follows the status change
        if "completed" in local_server.received(accepted["jobId"]):
            break
        await asyncio.sleep(0.1)
    hooks = local_server.received(accepted["jobId"])
    assert hooks[0] == "scheduled" and hooks[-1] == "completed" and in_order(hooks), hooks
    assert await interims_of(sqlite_stack, accepted["conversationId"]) == 0, "recorded audio gets no interims"


async def test_stereo_calls_in_every_format_give_one_member_per_channel(
    sqlite_stack: RunningStack, call: Call, tmp_path: Path
) -> None:
    names = json.dumps([{"channel": 1, "speaker": {"name": "Alice", "email": "alice@example.com"}},
                        {"channel": 2, "speaker": {"name": "Bob"}}])
    files = [write_recording(tmp_path / f"call{ext}", [call.left, call.right])
             for ext in (".mp3", ".flac", ".ogg", ".m4a")]
    uploads = [(path, path.read_bytes()) for path in files]
    async with api(sqlite_stack) as client:

        async def submit(path: Path, data: bytes) -> dict[str, Any]:
            response = await client.post("/v1/process/audio", content=data,
                                         params={"channelMetadata": names, "name": path.name})
            assert response.status_code == 201, f"{path.name}: {response.text}"
            return response.json()  # type: ignore[no-any-return]

        accepted = await asyncio.gather(*[submit(path, data) for path, data in uploads])
        for path, job in zip(files, accepted, strict=True):
            final, _ = await wait_job(client, job["jobId"])
            assert final["status"] == "completed", (path.name, final)
            members = await members_of(client, job["conversationId"])
            assert sorted(m["name"] for m in members.values()) == ["Alice", "Bob"], path.name
            assert [m.get("email") for m in members.values() if m["name"] == "Alice"] == ["alice@example.com"]
            messages = await messages_of(client, job["conversationId"])
            assert word_error_rate([ALICE], [said_by(messages, "Alice")]) <= 0.25, (path.name, messages)
            assert word_error_rate([BOB], [said_by(messages, "Bob")]) <= 0.25, (path.name, messages)
            # Both channels share the call's timeline: Bob answers after Alice.
            first_bob = min(m["timeOffset"] for m in messages if m["from"]["name"] == "Bob")
            assert first_bob > max(m["timeOffset"] for m in messages if m["from"]["name"] == "Alice")


async def test_url_submission_then_appends_extend_the_conversation(
    sqlite_stack: RunningStack, call: Call, local_server: LocalServer, tmp_path: Path
) -> None:
    write_recording(local_server.root / "alice.flac", [call.left])
    bob_wav = write_recording(tmp_path / "bob.wav", [call.right])
    async with api(sqlite_stack) as client:
        response = await client.post("/v1/process/audio/url", json={
            "url": local_server.url + "/alice.flac", "name": "Two parts",
            "channelMetadata": [{"channel": 1, "speaker": {"name": "Alice"}}],
        })
        assert response.status_code == 201, response.text
        first = response.json()
        conversation_id = first["conversationId"]
        response = await client.put(f"/v1/process/audio/{conversation_id}", content=bob_wav.read_bytes(),
                                    params={"channelMetadata": json.dumps([{"channel": 1,
                                                                            "speaker": {"name": "Bob"}}])})
        assert response.status_code == 201, response.text
        second = response.json()
        assert second["conversationId"] == conversation_id and second["jobId"] != first["jobId"]
        response = await client.put(f"/v1/process/audio/url/{conversation_id}",
                                    json={"url": local_server.url + "/alice.flac"})
        assert response.status_code == 201, response.text
        third = response.json()
        for job in (first, second, third):
            final, _ = await wait_job(client, job["jobId"])
            assert final["status"] == "completed", final

        messages = await messages_of(client, conversation_id)
        bob = [m for m in messages if m["from"]["name"] == "Bob"]
        assert bob and word_error_rate([BOB], [" ".join(m["text"] for m in bob)]) <= 0.25, messages
        # Appended audio follows what came before on the conversation's timeline.
        assert min(m["timeOffset"] for m in bob) >= call.duration_s
        third_part = [m for m in messages if m["timeOffset"] >= 2 * call.duration_s]
        assert word_error_rate([ALICE], [" ".join(m["text"] for m in third_part)]) <= 0.25, messages
        assert {m["from"]["name"] for m in third_part} == {"Speaker 1"}


async def test_bad_input_is_refused_whole(sqlite_stack: RunningStack, local_server: LocalServer) -> None:
    async with api(sqlite_stack) as client:
        before = (await client.get("/v1/conversations", params={"limit": 1000})).json()["conversations"]

        refused = [
            await client.post("/v1/process/audio", content=b"meeting notes, not audio " * 100),
            await client.post("/v1/process/audio", content=b""),
            await client.post("/v1/process/audio", content=b"RIFF", params={"confidenceThreshold": "high"}),
            await client.post("/v1/process/audio/url", json={"url": "ftp://example.com/a.wav"}),
            await client.post("/v1/process/audio/url", json={"url": local_server.url + "/missing.wav"}),
            await client.post("/v1/process/audio/url", json={"name": "no url"}),
            await client.post("/v1/process/audio/url", content=b"not json"),
        ]
        for response in refused:
            assert response.status_code == 400, response.text
            assert response.json()["message"], response.text
        assert "not a readable audio file" in refused[0].json()["message"]
        assert "empty" in refused[1].json()["message"]
        assert "confidenceThreshold" in refused[2].json()["message"]
        assert "HTTP 404" in refused[4].json()["message"]

        response = await client.post("/v1/process/audio/url", json={"url": "file:///etc/passwd"})
        assert response.status_code == 403, response.text
        # Cloud metadata is never fetched: named directly, or reached through a redirect from an allowed host.
        metadata = "http://169.254.169.254/latest/meta-data/"
        for media_url in (metadata, f"{local_server.url}/redirect?to={metadata}"):
            response = await client.post("/v1/process/audio/url", json={"url": media_url})
            assert response.status_code == 403, response.text
            assert response.json()["message"] == (
                "the media url may not be fetched: 169.254.169.254 is in 169.254.0.0/16, a network this server does "
                "not send requests to (CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS)"), response.text
        response = await client.post("/v1/process/audio", content=b"RIFF", params={"webhookUrl": metadata})
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("webhookUrl is not allowed: 169.254.169.254 is in "), response.text
        response = await client.put("/v1/process/audio/123456789012345678", content=b"RIFF")
        assert response.status_code == 404
        response = await client.get("/v1/job/00000000-0000-0000-0000-000000000000")
        assert response.status_code == 404 and "jobId" in response.json()["message"]
        async with httpx.AsyncClient(base_url=sqlite_stack.base_url) as anonymous:
            assert (await anonymous.post("/v1/process/audio", content=b"RIFF")).status_code == 401

        after = (await client.get("/v1/conversations", params={"limit": 1000})).json()["conversations"]
        assert len(after) == len(before), "a refused upload leaves no conversation behind"


@pytest_asyncio.fixture(loop_scope="session")
async def media_gateway(sqlite_stack: RunningStack, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A second gateway on the same stack, allowed to read file:// URLs under a media folder, with a small
    upload limit."""
    media = tmp_path / "media"
    media.mkdir()
    async with sqlite_stack.extra_gateway(CONVOSCOPE_MEDIA_DIRS=str(media),
                                          CONVOSCOPE_MAX_UPLOAD_BYTES="400000") as url:
        yield url, media


async def test_file_urls_only_under_media_dirs_and_uploads_within_the_limit(
    sqlite_stack: RunningStack, media_gateway: tuple[str, Path], call: Call, tmp_path: Path
) -> None:
    url, media = media_gateway
    inside = write_recording(media / "alice.ogg", [call.left])
    outside = write_recording(tmp_path / "outside.ogg", [call.left])
    big = write_recording(tmp_path / "big.wav", [np.tile(call.left, 3)])
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": sqlite_stack.token}, timeout=120) as client:
        response = await client.post("/v1/process/audio/url", json={"url": inside.as_uri()})
        assert response.status_code == 201, response.text
        job, _ = await wait_job(client, response.json()["jobId"])
        assert job["status"] == "completed"
        assert word_error_rate([ALICE], [" ".join(m["text"] for m in await messages_of(
            client, job["conversationId"]))]) <= 0.2

        sneaky = f"file://{media}/../{outside.parent.name}/{outside.name}"
        for refused_url in (outside.as_uri(), sneaky):
            response = await client.post("/v1/process/audio/url", json={"url": refused_url})
            assert response.status_code == 403, response.text
        response = await client.post("/v1/process/audio", content=big.read_bytes())
        assert response.status_code == 413, response.text
        assert "limit" in response.json()["message"]
