"""Shared fixtures on real parts: a throwaway PostgreSQL database, the embedded Kafka broker, and a migrated
database (SQLite file or PostgreSQL) with a session factory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db import create_engine, migrate, session_factory
from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import ensure_topics
from convoscope.settings import Settings
from schemas.topics import ALL_TOPICS

POSTGRES_ADMIN_DSN = os.environ.get("CONVOSCOPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """SQLAlchemy URL of a new, empty database on the local server (CONVOSCOPE_TEST_POSTGRES overrides the admin
    DSN), dropped afterwards. Skips when the server is unreachable."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {exc}")
    name = f"convoscope_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the session's tests, dropped after the session."""
    async with fresh_postgres_database() as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    """A started embedded broker (tansu) with every topic of schemas.topics created; ``broker.bootstrap``."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    embedded.start()
    try:
        await ensure_topics(Settings(kafka_bootstrap=embedded.bootstrap), ALL_TOPICS)
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file of its own for the test (not yet migrated)."""
    yield f"sqlite+aiosqlite:///{tmp_path}/convoscope.db"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, database_kind: str) -> str:
    """A database per kind: a fresh SQLite file per test, or the session's PostgreSQL database (shared by the
    tests of a session: keep test data apart with fresh app ids). ``db_sessions`` migrates it."""
    fixture = "postgres_url" if database_kind == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest_asyncio.fixture
async def db_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on ``database_url``, migrated to the newest schema; the engine is disposed after."""
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, valid one day, made by the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key
