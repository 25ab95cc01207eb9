"""A TCP relay between a client and a server whose connections a test can cut, like a network drop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from convoscope.embedded_broker import free_port

__all__ = ["TcpRelay"]

CHUNK_BYTES = 65_536


class TcpRelay:
    """Listens on 127.0.0.1:``port`` and relays every connection to ``upstream_host:upstream_port``.
    ``cut()`` aborts every relayed connection on both sides at once (the client and the server each see their
    socket die) and can keep refusing new ones for a while, as a network outage would. With ``tls`` (a server
    context) clients must speak TLS to the relay, which passes the plain bytes on: a TLS-terminating proxy."""

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.tls = tls
        self.cuts = 0
        self.refused = 0
        self.accepted = 0
        self._down_until = 0.0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self.tls)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next loop turn: before we return

    def cut(self, refuse_for_s: float = 0.0) -> int:
        """Abort every open relayed connection, and reset new ones for ``refuse_for_s``; returns how many were
        cut."""
        self._down_until = time.monotonic() + refuse_for_s
        pairs = list(self._pairs)
        for client, server in pairs:
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()
        self.cuts += 1
        return len(pairs)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, server_writer)
        self._pairs.add(pair)
        self.accepted += 1
        try:
            opened = await self._opening(client_reader, client_writer, server_reader, server_writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            opened = False
        if not opened:
            self._pairs.discard(pair)
            for writer in pair:
                writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(client_reader, server_writer)),
            asyncio.create_task(self._pump(server_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            self._pairs.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _opening(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                       server_reader: asyncio.StreamReader, server_writer: asyncio.StreamWriter) -> bool:
        """Runs before bytes are relayed as they come (a subclass may speak part of the protocol itself);
        False drops the connection."""
        return True

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
