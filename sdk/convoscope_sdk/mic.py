"""Microphone capture for ``send_audio_from_mic``: 16-bit mono blocks from ``sounddevice`` (the ``mic`` extra)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from convoscope_sdk.exceptions import ConfigurationError

__all__ = ["BLOCK_FRAMES", "capture_blocks", "read_blocks"]

BLOCK_FRAMES = 4096  # what the official SDK read per chunk: 8192 bytes, one frame on the wire


def _input_stream(sample_rate_hz: int, device: int | str | None) -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise ConfigurationError(
            "send_audio_from_mic needs sounddevice and PortAudio: pip install 'convoscope-sdk[mic]'"
        ) from exc
    return sounddevice.RawInputStream(
        samplerate=sample_rate_hz, channels=1, dtype="int16", blocksize=BLOCK_FRAMES, device=device
    )


def read_blocks(sample_rate_hz: int, device: int | str | None = None, duration_s: float | None = None
                ) -> Iterator[bytes]:
    """Blocks of LINEAR16 audio from the input device until ``duration_s`` (forever when None)."""
    stream = _input_stream(sample_rate_hz, device)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with stream:
        while deadline is None or time.monotonic() < deadline:
            data, _overflowed = stream.read(BLOCK_FRAMES)
            yield bytes(data)


async def capture_blocks(sample_rate_hz: int, device: int | str | None = None, duration_s: float | None = None
                         ) -> AsyncIterator[bytes]:
    """``read_blocks`` without blocking the event loop (each blocking read runs in a worker thread)."""
    blocks = read_blocks(sample_rate_hz, device, duration_s)
    done = object()
    try:
        while (block := await asyncio.to_thread(next, blocks, done)) is not done:
            yield block  # type: ignore[misc]
    finally:
        await asyncio.to_thread(blocks.close)
