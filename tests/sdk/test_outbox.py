"""The outgoing buffer that keeps audio across reconnects: ordered, bounded, and a frame leaves it only when the
sender says it was written."""

from __future__ import annotations

import asyncio

import pytest
from convoscope_sdk.streaming import _Outbox


async def test_head_stays_until_popped_so_a_failed_send_is_retried() -> None:
    outbox = _Outbox(max_bytes=100)
    await outbox.put(b"first")
    await outbox.put("control")
    assert await outbox.head() == b"first"
    assert await outbox.head() == b"first"  # the send failed: the same frame is next again
    await outbox.pop_head()
    assert await outbox.head() == "control"
    assert outbox.pending_bytes == len("control")


async def test_put_waits_while_full_and_resumes_when_room_is_made() -> None:
    outbox = _Outbox(max_bytes=10)
    await outbox.put(b"12345678")
    blocked = asyncio.create_task(outbox.put(b"abcd"))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "a put beyond the byte budget must wait (backpressure)"
    await outbox.pop_head()
    await asyncio.wait_for(blocked, 1)
    assert await outbox.head() == b"abcd"


async def test_an_item_larger_than_the_budget_still_goes_through_an_empty_buffer() -> None:
    outbox = _Outbox(max_bytes=4)
    await asyncio.wait_for(outbox.put(b"0123456789"), 1)
    assert outbox.pending_bytes == 10


async def test_head_waits_for_something_to_send() -> None:
    outbox = _Outbox(max_bytes=10)
    waiting = asyncio.create_task(outbox.head())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await outbox.put(b"x")
    assert await asyncio.wait_for(waiting, 1) == b"x"


@pytest.mark.parametrize("count", [1, 50])
async def test_order_is_kept(count: int) -> None:
    outbox = _Outbox(max_bytes=10_000)
    for index in range(count):
        await outbox.put(bytes([index]))
    sent = []
    for _ in range(count):
        sent.append(await outbox.head())
        await outbox.pop_head()
    assert sent == [bytes([index]) for index in range(count)]
