"""A whole convoscope stack (embedded broker, workers and gateway as real processes) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import sys
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import DEMO_SCRIPT, Meeting, SynthesisUnavailable, build_meeting
from producers.replay import StreamResult, fetch_token, stream_pcm
from tests.conftest import fresh_postgres_database
from tests.email.smtp_server import SmtpServer, start_smtp_server

MEETING_TITLE = "Launch planning"
# The stack runs the SIP gateway (tests/e2e/test_sip.py) on a free port, with timeouts short enough for tests.
SIP_TEST_SETTINGS: dict[str, Any] = {
    "sip_enabled": True, "sip_rtp_port_min": 0, "sip_answer_timeout_s": 3.0, "sip_rtp_timeout_s": 2.5,
}


@dataclass
class RunningStack:
    stack: Stack
    app_id: str
    app_secret: str
    token: str
    gateway_processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    """Extra gateways by base URL, while their block runs (a test may kill one)."""

    @property
    def base_url(self) -> str:
        return self.stack.settings.base_url()

    def ws_url(self, connection_id: str, path: str = "/v1/streaming/") -> str:
        return self.base_url.replace("http", "ws", 1) + path + connection_id

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers={"x-api-key": token or self.token}, timeout=15)

    async def stream_meeting(self, meeting: Meeting, connection_id: str | None = None,
                             config: dict[str, Any] | None = None, *, insight_types: list[str] | None = None,
                             actions: dict[str, list[dict[str, Any]]] | None = None,
                             **kwargs: Any) -> list[StreamResult]:
        """One WebSocket connection per speaker, all on one clock, in real time; ``config`` adds to the
        start_request's config, ``insight_types`` sets its insightTypes, ``actions`` each speaker's actions."""
        connection_id = connection_id or str(uuid.uuid4())
        start_at = time.monotonic() + 0.5

        def start_request(name: str) -> dict[str, Any]:
            request: dict[str, Any] = {"config": {
                "meetingTitle": MEETING_TITLE, "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000},
                **(config or {})}}
            if insight_types is not None:
                request["insightTypes"] = insight_types
            if actions and name in actions:
                request["actions"] = actions[name]
            return request

        return list(await asyncio.gather(*[
            stream_pcm(
                self.ws_url(connection_id), self.token, meeting.track_bytes(name),
                speaker={"name": name, "userId": f"{name.lower()}@example.com"},
                start_request=start_request(name), start_at=start_at, **kwargs,
            )
            for name in meeting.speakers
        ]))

    @contextlib.asynccontextmanager
    async def extra_gateway(self, tls: tuple[Path, Path] | None = None, **env: str) -> AsyncIterator[str]:
        """Another gateway process on this stack's broker and database, with extra environment (settings such as
        limits) and optionally serving TLS with ``tls`` (certificate, key), until the block ends; yields its base
        URL once it answers health checks."""
        port = free_port()
        if tls is not None:
            env = {**env, "CONVOSCOPE_TLS_CERTFILE": str(tls[0]), "CONVOSCOPE_TLS_KEYFILE": str(tls[1])}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "convoscope", "gateway", env={**self.stack.env, **env, "CONVOSCOPE_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        try:
            trust = ssl.create_default_context(cafile=str(tls[0])) if tls else True
            async with httpx.AsyncClient(verify=trust) as client:
                for _ in range(600):
                    try:
                        if (await client.get(url + "/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)
                else:
                    pytest.fail("the extra gateway did not start within 120 s")
            self.gateway_processes[url] = process
            yield url
        finally:
            self.gateway_processes.pop(url, None)
            with contextlib.suppress(ProcessLookupError):  # the test may have killed it
                process.terminate()
            await process.wait()

    async def recorded_conversation(self, seconds: float = 1.0) -> tuple[str, str]:
        """(conversation id, job id) of a short silent recording sent to the Async API, once its job has completed
        and the store has the conversation's end: a cheap, finished conversation of this app."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16_000)
            wav.writeframes(b"\0\0" * int(16_000 * seconds))
        async with self.api() as client:
            response = await client.post("/v1/process/audio", content=buffer.getvalue(),
                                         headers={"content-type": "audio/wav"})
            assert response.status_code in (200, 201, 202), response.text
            conversation_id, job_id = str(response.json()["conversationId"]), str(response.json()["jobId"])
            for _ in range(120):
                job = (await client.get(f"/v1/job/{job_id}")).json()
                stored = await client.get(f"/v1/conversations/{conversation_id}")
                if (job.get("status") == "completed" and stored.status_code == 200
                        and stored.json().get("endTime") is not None):
                    return conversation_id, job_id
                await asyncio.sleep(0.5)
        raise AssertionError(f"conversation {conversation_id} never completed in the store")

    async def stored_messages(self, conversation_id: str, expected: int, timeout_s: float = 30.0,
                              verbose: bool = False) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        messages: list[dict[str, Any]] = []
        async with self.api() as client:
            while time.monotonic() < deadline:
                response = await client.get(f"/v1/conversations/{conversation_id}/messages",
                                            params={"verbose": "true"} if verbose else None)
                if response.status_code == 200:
                    messages = response.json()["messages"]
                    if len(messages) >= expected:
                        return messages
                await asyncio.sleep(0.5)
        return messages


@pytest.fixture(scope="session")
def short_meeting() -> Meeting:
    """The demo meeting without its last line (about 20 s instead of 26; both speakers, a request due Friday, Bob's
    action item due Thursday): for tests about delivery rather than about the whole conversation."""
    try:
        return build_meeting(DEMO_SCRIPT[:4])
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required for the end-to-end tests: {exc}")


@pytest.fixture(scope="session")
def meeting() -> Meeting:
    try:
        return build_meeting(DEMO_SCRIPT)
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required for the end-to-end tests: {exc}")


async def start_stack(state_dir: Path, database_url: str, **extra_settings: Any) -> RunningStack:
    settings = Settings(port=free_port(), state_dir=state_dir, database_url=database_url, **SIP_TEST_SETTINGS,
                        sip_port=free_port(), **extra_settings)
    stack = Stack(settings, quiet_children=True)
    try:
        await stack.start()
        # The PostgreSQL database is shared with other test folders and may already hold apps.
        app_id, app_secret = await stack.app_credentials("e2e")
        token = await fetch_token(stack.settings.base_url(), app_id, app_secret)
    except BaseException:
        await stack.stop()  # a stack that never became ready must not leave its broker and children running
        raise
    return RunningStack(stack, app_id, app_secret, token)


@pytest.fixture(scope="session")
def stack_smtp_server() -> Iterator[SmtpServer]:
    """The SMTP server the SQLite stack's email worker sends summary emails to (tests/e2e/test_summary_email.py)."""
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sqlite_stack(tmp_path_factory: pytest.TempPathFactory, stack_smtp_server: SmtpServer
                       ) -> AsyncIterator[RunningStack]:
    state_dir = tmp_path_factory.mktemp("stack-sqlite")
    running = await start_stack(state_dir, f"sqlite+aiosqlite:///{state_dir}/convoscope.db",
                                smtp_url=stack_smtp_server.url)
    try:
        yield running
    finally:
        await running.stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def postgres_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningStack]:
    """A stack on its own PostgreSQL database, for the module that uses it: its workers (the webhook sender claims
    due deliveries of any app) must not reach into the database other tests share, nor outlive the module."""
    async with fresh_postgres_database() as url:
        running = await start_stack(tmp_path_factory.mktemp("stack-postgres"), url)
        try:
            yield running
        finally:
            await running.stack.stop()
