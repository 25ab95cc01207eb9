"""A live client's subscription: each final and each per-message result goes out once, and a stream counts as
finished only when every final delivered has the results the client waits for."""

from __future__ import annotations

from typing import Any

from sinks.live.hub import Subscription


def _final(message_id: str, stream_id: str = "s1") -> dict[str, Any]:
    return {"message_id": message_id, "stream_id": stream_id}


def _result(message_id: str) -> dict[str, Any]:
    return {"message": {"id": message_id}, "is_final": True}


def _queued(subscription: Subscription) -> list[tuple[str, str]]:
    items = []
    while not subscription.queue.empty():
        kind, record = subscription.queue.get_nowait()
        items.append((kind, record.get("message_id") or record.get("message", {}).get("id")))
    return items


async def test_finals_and_results_are_queued_once_per_message() -> None:
    subscription = Subscription("c1")
    for _ in range(2):  # a re-published copy after a crash carries the same ids
        subscription.offer("final", _final("m1"))
        subscription.offer("insights", _result("m1"))
        subscription.offer("trackers", _result("m1"))
    assert _queued(subscription) == [("final", "m1"), ("insights", "m1"), ("trackers", "m1")]


async def test_a_stream_is_done_when_its_delivered_finals_have_their_results() -> None:
    subscription = Subscription("c1")
    kinds = frozenset({"insights", "trackers"})
    subscription.offer("event", {"type": "STREAM_TRANSCRIBED", "stream_id": "s1", "final_count": 2})
    for message_id in ("m1", "m2"):
        subscription.offer("final", _final(message_id))
        subscription.mark_delivered(_final(message_id))
    subscription.mark_delivered(_final("m2"))  # counted once
    assert subscription.stream_done("s1")
    assert not subscription.results_done("s1", kinds)
    for message_id in ("m1", "m2"):
        subscription.offer("insights", _result(message_id))
    assert not subscription.results_done("s1", kinds), "trackers of m1 and m2 are still missing"
    subscription.offer("trackers", _result("m1"))
    subscription.offer("trackers", _result("m2"))
    assert subscription.results_done("s1", kinds)
    assert not subscription.stream_done("s2") and subscription.results_done("s2", kinds)


async def test_a_stream_is_not_done_before_the_transcriber_says_how_many_finals() -> None:
    subscription = Subscription("c1")
    subscription.offer("final", _final("m1"))
    subscription.mark_delivered(_final("m1"))
    assert not subscription.stream_done("s1")
    subscription.offer("event", {"type": "STREAM_TRANSCRIBED", "stream_id": "s1", "final_count": 1})
    assert subscription.stream_done("s1")
