"""glibc malloc settings for the gateways and the text and sink workers, applied at start-up.

These processes free big buffers all day (audio batches, fetch responses, WebSocket frames). glibc raises
its mmap threshold to the size of each big block freed, so later big blocks come from the heap, and the heap
grows holes that short-lived and long-lived objects share and never hands them back: RSS creeps up under
steady load (bench/live_load.py). A fixed threshold keeps big blocks in mmap, returned on free; two arenas
stop each thread that ever called malloc from keeping a heap of its own. The transcription worker keeps glibc's
defaults: its decoder allocates big tensors for every call, and mapping them afresh each time halves Whisper's
speed (bench/decode_lanes.py). Its decode threads call ``release_free_memory`` after every decode instead (about
1 ms): the tensors just freed go back to the kernel, which bounds the worker's RSS under overload at no measured
cost in speed.

The environment wins: ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_ARENA_MAX`` set by the operator is left alone.
Another libc (musl, macOS) is left as it is.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from typing import Any

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD_BYTES", "release_free_memory", "tune_allocator"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept fixed
ARENA_MAX = 2
# mallopt parameter numbers from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@functools.cache
def _malloc_trim() -> Any | None:
    """glibc's malloc_trim, typed once: the transcription worker calls it after every decode."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Returns free pages of every malloc heap to the kernel (glibc's malloc_trim); False where there is no such
    call. Takes the heaps' locks for a few milliseconds: call it from a thread, not the event loop."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # its result only says whether anything was free this time
    return True


def tune_allocator() -> dict[str, int]:
    """Applies the settings the environment does not set; returns what it applied (empty off glibc)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    wanted = {
        "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        "MALLOC_ARENA_MAX": (_M_ARENA_MAX, ARENA_MAX),
    }
    applied: dict[str, int] = {}
    for variable, (parameter, value) in wanted.items():
        if variable in os.environ:
            continue
        if mallopt(parameter, value) == 1:  # 1 is success
            applied[variable] = value
        else:
            log.debug("mallopt(%d, %d) refused", parameter, value)
    return applied
