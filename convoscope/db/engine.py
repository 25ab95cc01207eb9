"""Engines, sessions and migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.dml import Insert

from convoscope.settings import Settings

__all__ = ["MIGRATIONS_DIR", "create_engine", "database_url", "dialect_insert", "migrate", "session_factory"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
DEFAULT_DATABASE_TIMEOUT_S = 5.0
# Any fixed 64-bit number: serialises `migrate` across processes on PostgreSQL.
MIGRATION_LOCK_KEY = 0x636F6E766F73636F


def database_url(settings_or_url: Settings | str) -> str:
    return settings_or_url if isinstance(settings_or_url, str) else settings_or_url.database_url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_engine(settings_or_url: Settings | str, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for the configured database. SQLite gets WAL and a busy timeout, because several
    processes (gateway, store worker) share one file."""
    url = make_url(database_url(settings_or_url))
    if url.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    timeout_s = (settings_or_url.database_timeout_s if isinstance(settings_or_url, Settings)
                 else DEFAULT_DATABASE_TIMEOUT_S)
    kwargs.setdefault("pool_pre_ping", True)
    # asyncpg's own connect timeout is 60 s: a black-holed database would hold every request that long.
    kwargs["connect_args"] = dict(kwargs.get("connect_args", {"timeout": timeout_s}))
    url = _libpq_tls_options(url, kwargs["connect_args"])
    kwargs.setdefault("pool_timeout", timeout_s)
    return create_async_engine(url, **kwargs)


def _libpq_tls_options(url: URL, connect_args: dict[str, Any]) -> URL:
    """Takes libpq's spellings in DATABASE_URL too. SQLAlchemy hands query parameters to ``asyncpg.connect`` as
    keywords, and asyncpg has ``ssl`` (a mode: require, verify-ca, verify-full, ...) but neither ``sslmode`` nor
    ``sslrootcert``: ``sslmode`` is renamed, and ``sslrootcert`` (the CA that signed the server's certificate)
    becomes an SSL context that verifies against it (and the host name too with verify-full). Without
    ``sslrootcert``, verify-ca/verify-full read the CA from PGSSLROOTCERT or ~/.postgresql/root.crt (asyncpg)."""
    query = {key: value for key, value in url.query.items() if isinstance(value, str)}
    if "sslmode" in query:
        query.setdefault("ssl", query["sslmode"])
        del query["sslmode"]
    rootcert = query.pop("sslrootcert", None)
    if rootcert is not None:
        mode = query.pop("ssl", "verify-full")
        if mode not in ("require", "verify-ca", "verify-full"):
            raise ValueError(f"DATABASE_URL: sslrootcert goes with ssl=verify-full, verify-ca or require, "
                             f"not ssl={mode}")
        context = ssl.create_default_context(cafile=rootcert)  # verifies the chain; libpq does so for require too
        context.check_hostname = mode == "verify-full"
        connect_args["ssl"] = context
    return url.set(query=query) if query != dict(url.query) else url


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session_or_conn: AsyncSession | Connection | AsyncEngine, table: Any) -> Insert:
    """An INSERT that supports ``on_conflict_do_nothing``/``on_conflict_do_update`` on both databases."""
    bind = session_or_conn.get_bind() if isinstance(session_or_conn, AsyncSession) else session_or_conn
    name = bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {name!r}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _migrate_locked(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade, _alembic_config(url))
    finally:
        await engine.dispose()


async def migrate(settings_or_url: Settings | str) -> None:
    """Bring the schema to the newest revision. Safe to call from several processes at once."""
    url = database_url(settings_or_url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        lock_path = Path(parsed.database).with_name(Path(parsed.database).name + ".migrate-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # flock blocks, so take it in a thread; the lock file is tiny and left in place.
        lock = _file_lock(lock_path)
        await asyncio.to_thread(lock.__enter__)
        try:
            await _migrate_locked(url)
        finally:
            lock.__exit__(None, None, None)
    else:
        await _migrate_locked(url)
    log.debug("database schema up to date (%s)", parsed.render_as_string(hide_password=True))
