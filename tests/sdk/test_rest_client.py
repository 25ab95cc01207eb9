"""The SDK's REST client against the real Conversation API app (SQLite, in process): token reuse and refresh,
and every failure surfacing as a typed exception."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from convoscope_sdk import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    Backoff,
    NetworkError,
    NotFoundError,
    TimeoutError,
    Timeouts,
)
from starlette.applications import Starlette

from convoscope.api import api_exception_handlers, api_routes
from convoscope.auth import AppCredentials, TokenIssuer, create_app
from convoscope.db import create_engine, migrate, session_factory
from convoscope.embedded_broker import free_port

TOKEN_TTL_S = 120
BASE_URL = "http://convoscope.test"
QUICK = Backoff(initial_s=0.01, max_s=0.02, give_up_after_s=1)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


@dataclass
class Server:
    app: Starlette
    credentials: AppCredentials
    token_requests: list[float] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts token requests on their way to the real app."""
        if scope["type"] == "http" and scope["path"] == "/oauth2/token:generate":
            self.token_requests.append(asyncio.get_running_loop().time())
        await self.app(scope, receive, send)

    def client(self, clock: Callable[[], float] | None = None, credentials: Any = None) -> AsyncClient:
        return AsyncClient(
            BASE_URL, credentials or (self.credentials.app_id, self.credentials.app_secret),
            transport=httpx.ASGITransport(app=self), backoff=QUICK, **({"clock": clock} if clock else {}),
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sdk-rest')}/convoscope.db"
    await migrate(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    app = Starlette(routes=api_routes(), exception_handlers=api_exception_handlers())
    app.state.sessions = sessions
    app.state.tokens = TokenIssuer(secrets.token_bytes(32), ttl_s=TOKEN_TTL_S)
    credentials = await create_app(sessions, "sdk test")
    try:
        yield Server(app, credentials)
    finally:
        await engine.dispose()


async def test_token_is_reused_until_due_then_refreshed_before_expiry(server: Server) -> None:
    now = [1_000_000.0]
    before = len(server.token_requests)
    async with server.client(clock=lambda: now[0]) as client:
        assert (await client.list_conversations())["conversations"] == []
        await client.list_conversations()
        assert len(server.token_requests) - before == 1
        now[0] += TOKEN_TTL_S / 2 - 1  # a 2-minute token is due halfway through its life
        await client.list_conversations()
        assert len(server.token_requests) - before == 1
        now[0] += 2
        await client.list_conversations()
        assert len(server.token_requests) - before == 2


async def test_a_refused_token_is_replaced_once(server: Server) -> None:
    before = len(server.token_requests)
    async with server.client() as client:
        await client.list_conversations()
        server.app.state.tokens = TokenIssuer(secrets.token_bytes(32), ttl_s=TOKEN_TTL_S)  # the key was rotated
        assert (await client.list_conversations())["conversations"] == []
        assert len(server.token_requests) - before == 2


async def test_wrong_secret_raises_authentication_error(server: Server) -> None:
    async with server.client(credentials=(server.credentials.app_id, "0" * 128)) as client:
        with pytest.raises(AuthenticationError, match="Combination of appId and appSecret is not valid") as raised:
            await client.list_conversations()
    assert raised.value.status == 401


async def test_unknown_conversation_raises_not_found_with_the_server_message(server: Server) -> None:
    async with server.client() as client:
        with pytest.raises(NotFoundError) as raised:
            await client.conversation("1234567890123456").get_messages({"verbose": True})
    assert raised.value.status == 404
    assert raised.value.message == "The conversationId is either invalid or does not exist."
    assert isinstance(raised.value, ApiError) and not raised.value.retriable


async def test_bad_request_raises_api_error(server: Server) -> None:
    async with server.client() as client:
        with pytest.raises(ApiError) as raised:
            await client.list_conversations({"order": "sideways"})
    assert raised.value.status == 400 and "order" in raised.value.message


async def test_unreachable_server_raises_network_error() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", ("a" * 64, "b" * 128), backoff=QUICK) as client:
        with pytest.raises(NetworkError) as raised:
            await client.list_conversations()
    assert raised.value.retriable


async def test_silent_server_raises_timeout_error() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reader.read(-1)
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        timeouts = Timeouts(request_s=0.3, connect_s=0.3)
        async with AsyncClient(f"http://127.0.0.1:{port}", ("a" * 64, "b" * 128), timeouts=timeouts) as client:
            with pytest.raises(TimeoutError, match="timed out"):
                await client.list_conversations()
    finally:
        silent.close()
