"""RTP ports: allocation from the configured range, and draining what the kernel queued before a hang-up."""

from __future__ import annotations

import asyncio
import socket

import pytest

from convoscope.embedded_broker import free_port
from producers.sip.gateway import PortPool

pytestmark = pytest.mark.asyncio(loop_scope="function")


def _free_even_range(width: int) -> int:
    for _ in range(50):
        base = free_port() & ~1
        probes = []
        try:
            for port in range(base, base + width):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free port range")


async def test_ports_come_from_the_range_even_and_distinct_until_it_is_full() -> None:
    low = _free_even_range(6)
    pool = PortPool(low, low + 5)
    sockets = [pool.bind("127.0.0.1", lambda _: None) for _ in range(3)]
    try:
        assert sorted(s.port for s in sockets) == [low, low + 2, low + 4]
        with pytest.raises(OSError, match="no free RTP port"):
            pool.bind("127.0.0.1", lambda _: None)
    finally:
        for rtp_socket in sockets:
            rtp_socket.close()


async def test_drain_reads_every_queued_datagram_at_once() -> None:
    received: list[bytes] = []
    rtp_socket = PortPool(0, 0).bind("127.0.0.1", received.append)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(300):  # queued while the loop does not run
            sender.sendto(i.to_bytes(2, "big"), ("127.0.0.1", rtp_socket.port))
        rtp_socket.drain()
        assert [int.from_bytes(d, "big") for d in received] == list(range(300))
        sender.sendto(b"later", ("127.0.0.1", rtp_socket.port))
        for _ in range(100):
            if received[-1] == b"later":
                break
            await asyncio.sleep(0.01)
        assert received[-1] == b"later"  # and the loop reads new ones as they come
    finally:
        sender.close()
        rtp_socket.close()
