"""The growable audio buffer against the plain concatenation it replaced, over random appends, drops and reads: it
holds int16 and reads float32 in [-1, 1), as the decoder and VAD take it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.transcription.audio_buffer import INITIAL_CAPACITY, AudioBuffer


def as_float(pcm: np.ndarray) -> np.ndarray:
    """The expected reading, computed here rather than by the code under test."""
    return pcm.astype(np.float32) / 32768.0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 40_000)),
        st.tuples(st.just("drop"), st.integers(-1_000, 60_000)),
        st.tuples(st.just("read"), st.integers(-1_000, 60_000)),
        st.tuples(st.just("restart"), st.integers(0, 5_000)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 10_000), steps=operations)
def test_holds_exactly_the_samples_a_concatenated_array_would(start: int, steps: list[tuple[str, int]]) -> None:
    buffer = AudioBuffer(start)
    expected = np.zeros(0, dtype=np.int16)
    expected_start = start
    counter = 0
    for operation, amount in steps:
        if operation == "append":
            # Distinct consecutive values covering the whole int16 range, so a misplaced sample shows.
            samples = (np.arange(counter, counter + amount) % 65_536 - 32_768).astype(np.int16)
            counter += amount
            buffer.append(samples)
            expected = np.concatenate([expected, samples])
        elif operation == "drop":
            sample = expected_start + amount
            drop = min(max(0, sample - expected_start), len(expected))
            expected, expected_start = expected[drop:], expected_start + drop
            buffer.drop_before(sample)
        elif operation == "read":
            begin = expected_start + amount // 2
            end = begin + amount
            lo = min(max(0, begin - expected_start), len(expected))
            hi = min(max(lo, end - expected_start), len(expected))
            read = buffer.read(begin, end)
            assert read.dtype == np.float32
            np.testing.assert_array_equal(read, as_float(expected[lo:hi]))
        else:
            expected, expected_start = np.zeros(0, dtype=np.int16), expected_start + len(expected) + amount
            buffer.restart(expected_start)
        held = (expected_start, len(expected), expected_start + len(expected))
        assert (buffer.start, len(buffer), buffer.end) == held
    np.testing.assert_array_equal(buffer.read(buffer.start, buffer.end), as_float(expected))


def test_a_read_is_a_copy_the_buffer_does_not_change_afterwards() -> None:
    buffer = AudioBuffer(0)
    buffer.append(np.full(1_000, 16_384, dtype=np.int16))
    audio = buffer.read(0, 1_000)
    buffer.drop_before(1_000)
    buffer.append(np.zeros(INITIAL_CAPACITY * 3, dtype=np.int16))
    assert audio.sum() == 500


def test_memory_follows_what_is_held_not_the_peak() -> None:
    """A 60 s utterance grows the buffer; once it is finalised and dropped, the array shrinks back."""
    buffer = AudioBuffer(0)
    for _ in range(60 * 25):  # 60 s of 40 ms frames
        buffer.append(np.zeros(640, dtype=np.int16))
    assert buffer.capacity >= 60 * 16_000
    assert buffer.capacity <= 2 * 60 * 16_000 + INITIAL_CAPACITY
    buffer.drop_before(buffer.end - 8_000)
    assert buffer.capacity <= INITIAL_CAPACITY * 2
