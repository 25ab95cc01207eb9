"""Kafka over TLS (CONVOSCOPE_KAFKA_SECURITY_PROTOCOL=SSL, CONVOSCOPE_KAFKA_SSL_CAFILE) and SASL PLAIN over TLS
(SASL_SSL), with the real clients and the store worker against the embedded broker.

tansu 0.6 cannot serve TLS itself (its --cert and --key options exclude each other), and its SASL (SCRAM) users
cannot be created while authentication is on with in-memory storage. So a relay terminates TLS in front of it, and
tansu advertises the relay's address: every connection, bootstrap and per broker (metadata, group coordinator,
fetches), goes through TLS. For SASL_SSL the relay also answers SaslHandshake and SaslAuthenticate for PLAIN, as a
broker with a PLAIN listener does, before relaying."""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import create_app
from convoscope.embedded_broker import EmbeddedBroker, free_port
from convoscope.kafka import create_producer, ensure_topics, start_partition_reader
from convoscope.settings import Settings
from schemas.topics import ALL_TOPICS, CONVERSATION_EVENTS, Topic
from sinks.store import run_store_worker
from tests.e2e.tcp_proxy import TcpRelay
from tests.store.test_worker import _eventually, _meeting, _texts

pytestmark = pytest.mark.slow

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class SaslPlainRelay(TcpRelay):
    """A TLS relay that authenticates each connection with SASL PLAIN against ``users`` before relaying it.
    ApiVersions goes to the broker; anything else before authentication drops the connection."""

    def __init__(self, upstream_host: str, upstream_port: int, *, users: dict[str, str], **kwargs: Any) -> None:
        super().__init__(upstream_host, upstream_port, **kwargs)
        self.users = users
        self.authenticated: list[str] = []
        self.refused: list[str] = []

    async def _opening(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                       server_reader: asyncio.StreamReader, server_writer: asyncio.StreamWriter) -> bool:
        while True:
            (size,) = struct.unpack(">i", await client_reader.readexactly(4))
            frame = await client_reader.readexactly(size)
            api_key, api_version, correlation_id = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                server_writer.write(struct.pack(">i", size) + frame)
                (answer,) = struct.unpack(">i", await server_reader.readexactly(4))
                client_writer.write(struct.pack(">i", answer) + await server_reader.readexactly(answer))
                continue
            if api_key not in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
                return False
            (client_id_length,) = struct.unpack(">h", frame[8:10])
            body = frame[10 + max(client_id_length, 0):]  # request header v1: SASL requests are not flexible
            if api_key == SASL_HANDSHAKE:
                (length,) = struct.unpack(">h", body[:2])
                error = 0 if body[2:2 + length] == b"PLAIN" else UNSUPPORTED_SASL_MECHANISM
                answer_body = struct.pack(">hi", error, 1) + _string("PLAIN")
            else:
                (length,) = struct.unpack(">i", body[:4])
                _authzid, user, password = body[4:4 + length].split(b"\0")  # RFC 4616
                ok = self.users.get(user.decode()) == password.decode()
                (self.authenticated if ok else self.refused).append(user.decode())
                answer_body = (struct.pack(">h", 0 if ok else SASL_AUTHENTICATION_FAILED)
                               + _string(None if ok else "Authentication failed: invalid username or password")
                               + struct.pack(">i", 0) + (struct.pack(">q", 0) if api_version >= 1 else b""))
            answer = struct.pack(">i", correlation_id) + answer_body
            client_writer.write(struct.pack(">i", len(answer)) + answer)
            await client_writer.drain()
            if api_key == SASL_AUTHENTICATE:
                if not ok:
                    client_writer.close()  # after the answer, as a broker does
                return ok


@asynccontextmanager
async def tls_broker(tmp_path: Path, cert: tuple[Path, Path],
                     relay: Callable[..., TcpRelay] = TcpRelay) -> AsyncIterator[TcpRelay]:
    """tansu on a private port, advertising a TLS relay in front of it: clients only ever reach the relay."""
    relay_port = free_port()
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised=f"127.0.0.1:{relay_port}")
    broker.start()
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(*cert)
    try:
        async with relay("127.0.0.1", broker.port, port=relay_port, tls=server_side) as running:
            yield running
    finally:
        broker.stop()


def other_ca(tmp_path: Path) -> Path:
    """A certificate that did not sign the broker's: trusting only it must fail."""
    cert = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "other.key"),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return cert


async def produce(settings: Settings, key: str, records: list[tuple[Topic, dict[str, Any]]]) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(topic.name, topic.serde.serialize(value), key=key.encode())
    finally:
        await producer.stop()


async def read_back(settings: Settings, topic: Topic, key: str, want: int) -> list[dict[str, Any]]:
    """The values with ``key`` on ``topic``, read from the beginning outside any group."""
    consumer, partitions = await start_partition_reader(settings, [topic.name])
    found: list[dict[str, Any]] = []
    try:
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(30):
            while len(found) < want:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += [topic.serde.deserialize(r.value) for r in records if r.key == key.encode()]
    finally:
        await consumer.stop()
    return found


@pytest.mark.parametrize("database_kind", ["sqlite"])  # the database side is covered by tests/store
async def test_clients_and_the_store_worker_work_over_tls_and_an_untrusted_certificate_fails_clearly(
    tmp_path: Path, self_signed_cert: tuple[Path, Path], database_url: str,
    db_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture,
) -> None:
    cert, _ = self_signed_cert
    async with tls_broker(tmp_path, self_signed_cert) as relay:
        bootstrap = f"127.0.0.1:{relay.port}"
        # A 3 s session: the embedded broker holds a new group's first join for about the session timeout.
        settings = Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=cert,
                            database_url=database_url, jwt_secret=None, kafka_session_timeout_ms=3_000)
        await ensure_topics(settings, ALL_TOPICS)
        app = await create_app(db_sessions, "kafka over tls")
        cid, records, _ = _meeting(app.app_id)
        await produce(settings, cid, records)
        events = await read_back(settings, CONVERSATION_EVENTS, cid, want=4)
        assert [e["type"] for e in events] == ["CONVERSATION_STARTED", "MEMBER_JOINED", "MEMBER_JOINED",
                                               "CONVERSATION_COMPLETED"]

        # The store worker: consumer group (coordinator, join, commits) and its writes, all through TLS.
        stop = asyncio.Event()
        worker = asyncio.create_task(run_store_worker(settings, stop, group_id=f"store-tls-{uuid.uuid4().hex[:8]}"))
        try:
            async def stored() -> bool:
                return await _texts(db_sessions, cid) == ["good morning all", "morning ann", "let us begin"]

            await _eventually(stored, worker)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
        # Every client spoke TLS, which tansu's own port cannot: all their connections went through the relay.
        assert relay.accepted >= 3, "bootstrap, broker and coordinator connections"

        # Plain Kafka on the TLS port gets nowhere.
        plain = create_producer(Settings(kafka_bootstrap=bootstrap), request_timeout_ms=3_000)
        with pytest.raises((KafkaConnectionError, TimeoutError)):
            async with asyncio.timeout(15):
                await plain.start()
        await plain.stop()

        # A client that trusts another CA: the error says why, for a process's log to show.
        untrusting = Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SSL",
                              kafka_ssl_cafile=other_ca(tmp_path), database_url=database_url)
        producer = create_producer(untrusting)
        with pytest.raises(KafkaConnectionError) as refused:
            await producer.start()
        await producer.stop()
        assert (f"TLS to Kafka at {bootstrap} failed: certificate verify failed: self-signed certificate "
                f"(CONVOSCOPE_KAFKA_SSL_CAFILE={untrusting.kafka_ssl_cafile})") in str(refused.value)
        with pytest.raises(KafkaConnectionError, match="certificate verify failed"):
            await ensure_topics(untrusting, ALL_TOPICS)  # at once, not after its 30 connection attempts

        caplog.set_level(logging.WARNING, logger="sinks.store")
        stop = asyncio.Event()
        worker = asyncio.create_task(run_store_worker(untrusting, stop, group_id="store-untrusting"))
        try:
            async def explained() -> bool:
                return any("certificate verify failed" in r.getMessage() for r in caplog.records
                           if r.name.startswith("sinks.store"))

            await _eventually(explained, worker, timeout_s=30)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
        warning = next(r.getMessage() for r in caplog.records if "certificate verify failed" in r.getMessage()
                       and r.name.startswith("sinks.store"))
        assert warning.startswith("cannot reach Kafka, retrying in "), warning


async def test_sasl_plain_over_tls_authenticates_every_connection_and_a_wrong_password_is_refused(
    tmp_path: Path, self_signed_cert: tuple[Path, Path],
) -> None:
    cert, _ = self_signed_cert
    users = {"convoscope-store": "s3cret-of-the-store"}

    def relay(*args: Any, **kwargs: Any) -> SaslPlainRelay:
        return SaslPlainRelay(*args, users=users, **kwargs)

    async with tls_broker(tmp_path, self_signed_cert, relay) as running:
        assert isinstance(running, SaslPlainRelay)
        bootstrap = f"127.0.0.1:{running.port}"
        settings = Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SASL_SSL",
                            kafka_sasl_mechanism="PLAIN", kafka_sasl_username="convoscope-store",
                            kafka_sasl_password="s3cret-of-the-store", kafka_ssl_cafile=cert)
        await ensure_topics(settings, [CONVERSATION_EVENTS])
        cid, records, _ = _meeting(uuid.uuid4().hex)
        await produce(settings, cid, records[:2])
        assert len(await read_back(settings, CONVERSATION_EVENTS, cid, want=2)) == 2
        assert running.accepted >= 2 and running.accepted == len(running.authenticated)
        assert set(running.authenticated) == {"convoscope-store"} and not running.refused

        wrong = settings.model_copy(update={"kafka_sasl_password": SecretStr("guessed")})
        producer = create_producer(wrong)
        with pytest.raises(KafkaConnectionError) as refused:
            await producer.start()
        await producer.stop()
        assert (f"SASL PLAIN login to Kafka at {bootstrap} as 'convoscope-store' failed: [Error 58] "
                "SaslAuthenticationFailed: Authentication failed: invalid username or password "
                "(CONVOSCOPE_KAFKA_SASL_USERNAME, _PASSWORD)") in str(refused.value)
        assert set(running.refused) == {"convoscope-store"}

        # TLS without SASL on the SASL listener: dropped before any data is relayed.
        unauthenticated = create_producer(settings.model_copy(update={"kafka_security_protocol": "SSL"}),
                                          request_timeout_ms=1_000)
        with pytest.raises((KafkaConnectionError, TimeoutError)):
            async with asyncio.timeout(15):
                await unauthenticated.start()
        await unauthenticated.stop()
        assert running.authenticated == ["convoscope-store"] * len(running.authenticated)
