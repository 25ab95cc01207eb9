"""PostgreSQL over TLS: migrations, the store writer and the REST API on DATABASE_URL=...?ssl=require, every
connection encrypted (pg_stat_ssl); ?ssl=verify-full checks the server's certificate against the CA given in the
URL (sslrootcert) or in PGSSLROOTCERT, and refuses a server signed by another CA.

The local server needs TLS turned on once: scripts/postgres-tls.sh, which scripts/test.sh (CI) runs. Without it
this test fails, on purpose: it is the only one that checks the database connection is encrypted."""

from __future__ import annotations

import ssl
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from convoscope.auth import create_app, load_token_issuer
from convoscope.db import create_engine, migrate, session_factory
from convoscope.settings import Settings
from sinks.store import StoreRecord, write_batch
from tests.api.conftest import build_app
from tests.conftest import POSTGRES_ADMIN_DSN, fresh_postgres_database
from tests.store.test_worker import _meeting

pytestmark = pytest.mark.postgres


def _with(url: str, **query: str) -> str:
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


async def _encrypted(engine: AsyncEngine) -> tuple[bool, str | None]:
    async with engine.connect() as connection:
        row = (await connection.execute(text(
            "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"))).one()
    return bool(row.ssl), row.version


async def test_the_database_layer_over_tls_encrypts_every_connection_and_verifies_the_server(
    tmp_path: Path, self_signed_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with fresh_postgres_database() as url:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            if await admin.fetchval("show ssl") != "on":
                server = make_url(POSTGRES_ADMIN_DSN)
                pytest.fail(f"PostgreSQL at {server.host}:{server.port or 5432} has TLS off: run "
                            "scripts/postgres-tls.sh (as root) to turn it on; scripts/test.sh does")
            # The server's own certificate is its CA (self-signed); superusers may read it.
            server_ca = tmp_path / "server-ca.pem"
            server_ca.write_text(await admin.fetchval("select pg_read_file(current_setting('ssl_cert_file'))"))
        finally:
            await admin.close()

        # The documented form: migrations, writes and the API's reads all over TLS.
        tls_url = _with(url, ssl="require")
        await migrate(tls_url)
        engine = create_engine(tls_url)
        try:
            sessions = session_factory(engine)
            app = await create_app(sessions, "postgres over tls")
            cid, records, _ = _meeting(app.app_id)
            await write_batch(sessions, [StoreRecord(topic.name, value) for topic, value in records])
            settings = Settings(database_url=tls_url, jwt_secret=None)
            tokens = await load_token_issuer(settings, sessions)
            transport = httpx.ASGITransport(app=build_app(settings, sessions, tokens))
            async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
                headers = {"x-api-key": tokens.issue(app.app_id)[0]}
                messages = (await client.get(f"/v1/conversations/{cid}/messages", headers=headers)).json()
            assert [m["text"] for m in messages["messages"]] == ["good morning all", "morning ann", "let us begin"]

            encrypted, version = await _encrypted(engine)
            assert encrypted and version and version.startswith("TLSv1."), version
            async with engine.connect() as connection:  # and no connection to this database is in clear text
                clear = (await connection.execute(text(
                    "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) "
                    "where a.datname = current_database() and not s.ssl"))).scalar_one()
            assert clear == 0
        finally:
            await engine.dispose()

        # verify-full: the CA in the URL (libpq's spelling) or in PGSSLROOTCERT; the host name is checked too.
        for checked_url in (_with(url, sslmode="verify-full", sslrootcert=str(server_ca)),
                            _with(url, ssl="verify-full")):
            monkeypatch.setenv("PGSSLROOTCERT", str(server_ca))
            engine = create_engine(checked_url)
            try:
                assert (await _encrypted(engine))[0], checked_url
            finally:
                await engine.dispose()

        # A server whose certificate another CA signed (here: one the server never saw) is refused.
        other_ca, _ = self_signed_cert
        monkeypatch.setenv("PGSSLROOTCERT", str(other_ca))
        for refusing_url in (_with(url, ssl="verify-full", sslrootcert=str(other_ca)), _with(url, ssl="verify-full")):
            engine = create_engine(refusing_url)
            try:
                with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
                    await _encrypted(engine)
            finally:
                await engine.dispose()
