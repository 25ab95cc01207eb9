"""The lost/duplicated count of the crash rounds, alone."""

from __future__ import annotations

from tests.reliability.tally import Tally, tally


def test_every_expected_id_once_is_clean() -> None:
    assert tally(["a", "b"], [("b", 1), ("a", 1)], copies_allowed=False) == Tally(items=2)


def test_missing_ids_are_lost_and_named() -> None:
    result = tally(["a", "b", "c"], [("b", 1)], copies_allowed=True)
    assert (result.items, result.lost, result.lost_ids, result.duplicated) == (3, 2, ["a", "c"], 0)


def test_a_second_copy_is_a_duplicate_where_copies_are_not_allowed() -> None:
    result = tally(["a"], [("a", 1), ("a", 1)], copies_allowed=False)
    assert (result.lost, result.duplicated, result.duplicated_ids, result.redelivered) == (0, 1, ["a"], 0)


def test_an_identical_copy_is_a_redelivery_where_allowed_but_a_different_one_is_a_duplicate() -> None:
    result = tally(["a", "b"], [("a", "x"), ("a", "x"), ("b", "y"), ("b", "z")], copies_allowed=True)
    assert (result.redelivered, result.duplicated, result.duplicated_ids) == (1, 1, ["b"])


def test_ids_nobody_expected_are_ignored() -> None:
    assert tally(["a"], [("a", 1), ("other", 1), ("other", 1)], copies_allowed=False) == Tally(items=1)


def test_tallies_add_up() -> None:
    total = Tally(2, 1, 0, 3, ["a"], []).add(Tally(5, 0, 2, 1, [], ["b"]))
    assert total == Tally(7, 1, 2, 4, ["a"], ["b"])
