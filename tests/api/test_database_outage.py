"""While PostgreSQL is unreachable the API answers quickly with 503 and a clear body, never hangs, and serves
again as soon as the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from convoscope.auth import create_app, load_token_issuer
from convoscope.db import create_engine, migrate, session_factory
from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from tests.api.conftest import build_app

pytestmark = pytest.mark.postgres

TIMEOUT_S = 2.0


@contextlib.asynccontextmanager
async def _black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never answers, like a database host that stopped mid-way."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        for writer in held:
            writer.close()


async def _timed_get(client: httpx.AsyncClient, path: str, token: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path, headers={"x-api-key": token})
    return response, time.monotonic() - started


async def test_api_answers_503_while_the_database_refuses_connections(postgres_url: str) -> None:
    admin_url = make_url(postgres_url)
    name = f"{admin_url.database}_outage_{uuid.uuid4().hex[:6]}"
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_url.set(drivername="postgresql").render_as_string(hide_password=False))
    await admin.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(database_url=url, database_timeout_s=TIMEOUT_S)
    engine = create_engine(settings)
    try:
        await migrate(settings)
        sessions = session_factory(engine)
        tokens = await load_token_issuer(settings, sessions)
        token = tokens.issue((await create_app(sessions, "outage")).app_id)[0]
        transport = httpx.ASGITransport(app=build_app(settings, sessions, tokens))
        async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
            assert (await _timed_get(client, "/v1/conversations", token))[0].status_code == 200

            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            for path in ("/v1/conversations", "/v1/manage/trackers", "/v1/conversations/123/messages"):
                response, took_s = await _timed_get(client, path, token)
                assert response.status_code == 503, (path, response.text)
                assert "database is unavailable" in response.json()["message"]
                assert response.headers["retry-after"] == "5"
                assert took_s < 3 * TIMEOUT_S

            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
            assert (await _timed_get(client, "/v1/conversations", token))[0].status_code == 200
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_api_gives_up_on_a_database_that_never_answers(postgres_url: str) -> None:
    async with _black_hole() as port:
        url = make_url(postgres_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        settings = Settings(database_url=url, database_timeout_s=TIMEOUT_S, jwt_secret="k" * 32)
        engine = create_engine(settings)
        try:
            tokens = await load_token_issuer(settings, session_factory(engine))
            transport = httpx.ASGITransport(app=build_app(settings, session_factory(engine), tokens))
            async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
                response, took_s = await _timed_get(client, "/v1/conversations", tokens.issue("some-app")[0])
        finally:
            await engine.dispose()
    assert response.status_code == 503 and "database is unavailable" in response.json()["message"]
    assert took_s < 3 * TIMEOUT_S
