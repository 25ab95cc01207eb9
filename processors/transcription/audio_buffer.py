"""A stream's recent samples: appended a frame at a time, read by sample range, dropped from the front.

Appending copies only the new frame (the array grows by doubling), where concatenating the whole buffer for each
frame copied up to the backlog's length 25 times a second per stream, and with big arrays in mmap it also
mapped and faulted in fresh pages for every copy (bench/live_load.py). Samples are kept as the int16 they arrive
as, half the memory of float32 (an overloaded worker holds minutes of audio per stream), and converted when read.
"""

from __future__ import annotations

import numpy as np

from processors.transcription.vad import int16_to_float32

__all__ = ["AudioBuffer"]

INITIAL_CAPACITY = 16_000 * 4  # 4 s at 16 kHz


class AudioBuffer:
    """int16 samples of one stream, from sample ``start`` (a stream position) to ``end``, read as float32."""

    def __init__(self, start: int = 0) -> None:
        self._data = np.zeros(0, dtype=np.int16)
        self._begin = 0  # index in _data of sample ``start``
        self._length = 0
        self.start = start

    def __len__(self) -> int:
        return self._length

    @property
    def end(self) -> int:
        return self.start + self._length

    @property
    def capacity(self) -> int:
        return len(self._data)

    def append(self, samples: np.ndarray) -> None:
        """``samples``: int16."""
        count = len(samples)
        if self._begin + self._length + count > len(self._data):
            self._make_room(count)
        tail = self._begin + self._length
        self._data[tail : tail + count] = samples
        self._length += count

    def _make_room(self, count: int) -> None:
        needed = self._length + count
        # Plenty of space once what was dropped from the front is reclaimed: slide down in place. Else grow.
        self._move_to(len(self._data) if needed <= len(self._data) // 2 else max(INITIAL_CAPACITY, 2 * needed))

    def _move_to(self, capacity: int) -> None:
        """Put the held samples at the start of an array of ``capacity`` (the same one if its size matches)."""
        data = self._data if capacity == len(self._data) else np.empty(capacity, dtype=np.int16)
        data[: self._length] = self._data[self._begin : self._begin + self._length]
        self._data, self._begin = data, 0

    def read(self, start_sample: int, end_sample: int) -> np.ndarray:
        """Samples [start_sample, end_sample) as float32 in [-1, 1), clipped to what is held."""
        begin = min(max(0, start_sample - self.start), self._length)
        end = min(max(begin, end_sample - self.start), self._length)
        return int16_to_float32(self._data[self._begin + begin : self._begin + end])

    def drop_before(self, sample: int) -> None:
        """Forget samples before ``sample``. Shrinks the array once it is mostly empty, so one long utterance
        does not pin its peak size for the rest of the call."""
        drop = min(max(0, sample - self.start), self._length)
        if not drop:
            return
        self._begin += drop
        self._length -= drop
        self.start += drop
        if len(self._data) > INITIAL_CAPACITY and self._length < len(self._data) // 4:
            self._move_to(max(INITIAL_CAPACITY, 2 * self._length))

    def restart(self, start: int) -> None:
        """Drop everything; the next sample appended is ``start``."""
        self._begin = self._length = 0
        self.start = start
