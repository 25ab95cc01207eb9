"""The malloc settings every gateway and worker process starts with, and the operator's environment winning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convoscope.allocator import ARENA_MAX, MMAP_THRESHOLD_BYTES

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = "import json; from convoscope.allocator import tune_allocator; print(json.dumps(tune_allocator()))"


def applied(**environment: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | environment
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_fixed_mmap_threshold_and_two_arenas_by_default() -> None:
    assert applied() == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES, "MALLOC_ARENA_MAX": ARENA_MAX}


def test_what_the_operator_set_is_left_alone() -> None:
    assert applied(MALLOC_ARENA_MAX="8") == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES}
    assert applied(MALLOC_ARENA_MAX="8", MALLOC_MMAP_THRESHOLD_="65536") == {}


def test_released_memory_goes_back_to_the_kernel() -> None:
    """Freed small blocks stay in glibc's heap, counted in RSS, until they are released."""
    script = """
import ctypes, json
from convoscope.allocator import release_free_memory
def rss_kib():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 1024  # below the mmap threshold: heap memory
blocks = [libc.malloc(size) for _ in range(3_000)]
for block in blocks:
    ctypes.memset(block, 1, size)
for block in blocks[::2]:  # every other one: the live ones between keep the heap from shrinking at its top
    libc.free(block)
before = rss_kib()
available = release_free_memory()
print(json.dumps([available, before, rss_kib()]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    available, before, after = json.loads(out.stdout)
    assert available
    assert before - after > 60 * 1024, (before, after)  # of the 94 MiB freed
