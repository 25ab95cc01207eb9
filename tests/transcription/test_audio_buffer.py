"""The growable audio buffer against the plain concatenation it replaced, over random appends, drops and reads."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.transcription.audio_buffer import INITIAL_CAPACITY, AudioBuffer

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
    expected = np.zeros(0, dtype=np.float32)
    expected_start = start
    counter = 0.0
    for operation, amount in steps:
        if operation == "append":
            samples = np.arange(counter, counter + amount, dtype=np.float32)
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
            np.testing.assert_array_equal(buffer.read(begin, end), expected[lo:hi])
        else:
            expected, expected_start = np.zeros(0, dtype=np.float32), expected_start + len(expected) + amount
            buffer.restart(expected_start)
        held = (expected_start, len(expected), expected_start + len(expected))
        assert (buffer.start, len(buffer), buffer.end) == held
    np.testing.assert_array_equal(buffer.read(buffer.start, buffer.end), expected)


def test_a_read_is_a_copy_the_buffer_does_not_change_afterwards() -> None:
    buffer = AudioBuffer(0)
    buffer.append(np.ones(1_000, dtype=np.float32))
    audio = buffer.read(0, 1_000)
    buffer.drop_before(1_000)
    buffer.append(np.zeros(INITIAL_CAPACITY * 3, dtype=np.float32))
    assert audio.sum() == 1_000


def test_memory_follows_what_is_held_not_the_peak() -> None:
    """A 60 s utterance grows the buffer; once it is finalised and dropped, the array shrinks back."""
    buffer = AudioBuffer(0)
    for _ in range(60 * 25):  # 60 s of 40 ms frames
        buffer.append(np.zeros(640, dtype=np.float32))
    assert buffer.capacity >= 60 * 16_000
    assert buffer.capacity <= 2 * 60 * 16_000 + INITIAL_CAPACITY
    buffer.drop_before(buffer.end - 8_000)
    assert buffer.capacity <= INITIAL_CAPACITY * 2
