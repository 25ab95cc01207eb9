"""Getting the media of ``POST /v1/process/audio/url``: an http(s) download, or a local file the operator allowed.

Downloads are streamed to disk with a size limit (checked against Content-Length first, then while reading) and
one deadline for the whole transfer. ``file://`` URLs are read in place, only below ``CONVOSCOPE_MEDIA_DIRS``
(after resolving symbolic links and ``..``), so a client cannot make the server read anything else. Downloads
never connect to an address in CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS, redirects included (``convoscope.egress``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from convoscope.egress import BlockedDestination, Network, guarded_transport
from producers.recorded.exceptions import InvalidOptions, MediaFetchFailed, MediaNotAllowed, RecordingTooLarge

__all__ = ["MAX_REDIRECTS", "allowed_media_file", "download", "media_source"]

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0


def allowed_media_file(url: str, media_dirs: Sequence[Path], max_bytes: int) -> Path:
    """The local file a ``file://`` URL names, if it lies under one of ``media_dirs``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidOptions("file:// URLs must name a local file (file:///path)")
    if not media_dirs:
        raise MediaNotAllowed("file:// URLs are not enabled on this server (CONVOSCOPE_MEDIA_DIRS is empty)")
    path = Path(unquote(parts.path)).resolve()
    if not any(path.is_relative_to(directory.resolve()) for directory in media_dirs):
        raise MediaNotAllowed("file:// URLs may only name files under the server's media directories")
    if not path.is_file():
        raise MediaFetchFailed(f"no such file: {parts.path}")
    if path.stat().st_size > max_bytes:
        raise RecordingTooLarge(f"the file is larger than the {max_bytes}-byte limit")
    return path


async def download(url: str, destination: Path, *, max_bytes: int, timeout_s: float,
                   blocked_networks: Sequence[Network] = ()) -> None:
    """Stream ``url`` into ``destination``: at most ``max_bytes``, within ``timeout_s`` in all. Every connection
    (redirects included) is refused if its host resolves into ``blocked_networks`` (``MediaNotAllowed``)."""
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    transport = guarded_transport(blocked_networks)
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                              transport=transport) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise MediaFetchFailed(f"fetching the url answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise RecordingTooLarge(f"the media is larger than the {max_bytes}-byte limit")
            received = 0
            with destination.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > max_bytes:
                        raise RecordingTooLarge(f"the media is larger than the {max_bytes}-byte limit")
                    out.write(chunk)
    except TimeoutError:
        raise MediaFetchFailed(f"fetching the url took longer than {timeout_s:.0f} s") from None
    except httpx.HTTPError as exc:
        raise MediaFetchFailed(f"could not fetch the url ({type(exc).__name__}: {exc})") from exc
    except BlockedDestination as exc:
        raise MediaNotAllowed(f"the media url may not be fetched: {exc}") from None


async def media_source(
    url: str, workdir: Path, *, media_dirs: Sequence[Path], max_bytes: int, timeout_s: float,
    blocked_networks: Sequence[Network] = (),
) -> Path:
    """A local path holding the media ``url`` names (downloaded into ``workdir`` when remote)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return allowed_media_file(url, media_dirs, max_bytes)
    if scheme in ("http", "https"):
        destination = workdir / "download"
        await download(url, destination, max_bytes=max_bytes, timeout_s=timeout_s, blocked_networks=blocked_networks)
        return destination
    raise InvalidOptions("url must be an http, https or file URL")
