"""The gateway's pure limits: the shared byte budget that turns a stalled broker into backpressure."""

from __future__ import annotations

import asyncio

import pytest

from producers.websocket.limits import ByteBudget, TokenBucket


async def test_budget_holds_a_writer_back_until_bytes_are_acknowledged() -> None:
    budget = ByteBudget(1_000)
    await budget.acquire(600, timeout_s=1)
    waiting = asyncio.create_task(budget.acquire(600, timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the second record must wait while the budget is spent"
    budget.release(600)
    await asyncio.wait_for(waiting, 1)
    assert budget.used == 600


async def test_budget_gives_up_after_the_timeout() -> None:
    budget = ByteBudget(1_000)
    await budget.acquire(900, timeout_s=1)
    with pytest.raises(TimeoutError):
        await budget.acquire(200, timeout_s=0.1)
    assert budget.used == 900, "a record that gave up holds nothing"


async def test_a_record_larger_than_the_budget_waits_for_an_empty_one() -> None:
    budget = ByteBudget(1_000)
    await budget.acquire(5_000, timeout_s=1)
    assert budget.used == 1_000
    budget.release(5_000)
    assert budget.used == 0


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
