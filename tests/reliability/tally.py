"""Counting what a worker lost or duplicated across a crash: plain functions over ids, no Kafka, no database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

__all__ = ["Tally", "tally"]

SHOWN_IDS = 5
"""How many lost or duplicated ids a tally keeps, to show in a failing assertion."""


@dataclass
class Tally:
    """``items`` expected; ``lost``: expected ids never seen; ``duplicated``: extra copies that break the rule
    of the sink (a second row, or a second record whose content differs); ``redelivered``: extra copies the
    rule allows (at-least-once delivery with the same id, or a re-published record identical to the first)."""

    items: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    lost_ids: list[str] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> Tally:
        return Tally(
            self.items + other.items, self.lost + other.lost, self.duplicated + other.duplicated,
            self.redelivered + other.redelivered, (self.lost_ids + other.lost_ids)[:SHOWN_IDS],
            (self.duplicated_ids + other.duplicated_ids)[:SHOWN_IDS],
        )


def tally(expected: Iterable[str], observed: Iterable[tuple[str, Hashable]], *, copies_allowed: bool) -> Tally:
    """``observed``: (id, content) per copy seen. Every expected id must be seen; an id seen again counts as
    ``redelivered`` when ``copies_allowed`` and its content is the same as the first copy's, else as
    ``duplicated``. Ids nobody expected are ignored (records of other tests on a shared topic)."""
    wanted = set(expected)
    first: dict[str, Hashable] = {}
    copies: Counter[str] = Counter()
    result = Tally(items=len(wanted))
    for item_id, content in observed:
        if item_id not in wanted:
            continue
        copies[item_id] += 1
        if item_id not in first:
            first[item_id] = content
        elif copies_allowed and content == first[item_id]:
            result.redelivered += 1
        else:
            result.duplicated += 1
            if len(result.duplicated_ids) < SHOWN_IDS:
                result.duplicated_ids.append(item_id)
    missing = sorted(wanted - first.keys())
    result.lost = len(missing)
    result.lost_ids = missing[:SHOWN_IDS]
    return result
