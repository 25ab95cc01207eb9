"""Outbound HTTP to URLs that apps choose (registered webhooks, the Async API's ``webhookUrl`` and media URLs),
kept off the networks the operator blocks: ``CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS``. Its default blocks link-local
v4 and v6 (cloud metadata services answer at 169.254.169.254), Alibaba's and AWS's other metadata addresses
(100.100.100.200, fd00:ec2::254) and "this host" (0.0.0.0/8 and ::; 0.0.0.0 reaches the loopback on Linux).
Loopback and private ranges stay allowed by default, because a self-hosted install usually delivers to receivers on
its own network; docs/webhooks.md gives the list that blocks them as well.

Two checks, because a host name can change what it resolves to between them (DNS rebinding):
- ``check_url``: a URL whose host is an IP address literal is refused up front (the API answers 400);
- ``guarded_transport``: every connection, redirects included, resolves the host once, refuses it if *any* address
  is blocked, and connects to the very addresses it checked. TLS still verifies the certificate against the host
  name, which httpcore hands to the TLS layer separately.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

__all__ = [
    "BlockedDestination",
    "GuardedNetworkBackend",
    "Network",
    "blocked_network",
    "check_url",
    "guarded_transport",
    "parse_networks",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING = "CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS"


class BlockedDestination(Exception):
    """A request would reach a blocked network. Not an ``httpx.HTTPError``: retrying cannot help."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); raises ``ValueError`` naming a bad entry."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{SETTING}: {part!r} is not an IP network (CIDR such as 10.0.0.0/8)") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(text.split("%", 1)[0])
        if address.ipv4_mapped is not None:  # ::ffff:169.254.169.254 reaches 169.254.169.254
            return address.ipv4_mapped
    return address


def blocked_network(address: str | Address, networks: Sequence[Network]) -> Network | None:
    """The first of ``networks`` holding ``address``, or None."""
    parsed = _address(str(address))
    if parsed is None:
        return None
    return next((n for n in networks if n.version == parsed.version and parsed in n), None)


def _numeric_host(host: str) -> str | None:
    """The address a host written as a number stands for (``127.1``, ``0x7f.0.0.1`` and ``2130706433`` included:
    the C resolver accepts them all); None for a name. Never asks DNS."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def check_url(url: str, networks: Sequence[Network]) -> None:
    """Raise ``BlockedDestination`` when the URL's host is an IP address in a blocked network. Host names pass:
    they are checked when connecting, after resolution (``guarded_transport``)."""
    host = urlsplit(url).hostname
    # An IPv6 zone (fe80::1%25eth0) plays no part in which network the address is in.
    address = _numeric_host(unquote(host).split("%", 1)[0]) if host else None
    if address is None:
        return
    network = blocked_network(address, networks)
    if network is not None:
        raise BlockedDestination(f"{address} is in {network}, a network this server does not send requests to "
                                 f"({SETTING})")


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connection layer with a resolve-check-connect step in front of every TCP connection."""

    def __init__(self, networks: Sequence[Network], inner: httpcore.AsyncNetworkBackend) -> None:
        self._networks, self._inner = tuple(networks), inner

    async def _resolve(self, host: str, port: int, limit_s: float | None) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    # httpcore's interface names the parameter ``timeout``.
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:  # any blocked address refuses the name: a resolver may rotate between them
            network = blocked_network(address, self._networks)
            if network is not None:
                shown = host if host == address else f"{host} resolves to {address}, which"
                raise BlockedDestination(f"{shown} is in {network}, a network this server does not send requests to "
                                         f"({SETTING})")
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                # The checked address itself: a second lookup could answer differently (DNS rebinding).
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination("outbound requests never use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(networks: Sequence[Network], **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport (``AsyncHTTPTransport`` keyword arguments, e.g. ``limits``) whose connections go through
    ``GuardedNetworkBackend``. A client built with ``transport=`` ignores HTTP(S)_PROXY: requests go out directly,
    where the check applies."""
    if "proxy" in kwargs or "uds" in kwargs:
        raise ValueError("guarded_transport connects directly: no proxy, no Unix socket")
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    # httpx has no parameter for httpcore's network backend, so it is wrapped on the pool httpx built.
    if type(pool) is not httpcore.AsyncConnectionPool:
        raise TypeError(f"unexpected httpx connection pool {type(pool).__name__}")
    pool._network_backend = GuardedNetworkBackend(networks, pool._network_backend)
    return transport
