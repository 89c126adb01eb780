"""Largest-remainder apportionment: parts always add up to the total, and the
capacity-bounded variant never overfills a part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.apportion import _within, apportion, apportion_within


def test_known_values() -> None:
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(100, [50, 30, 20]) == [50, 30, 20]
    assert apportion(7, [0, 5]) == [0, 7]
    assert apportion(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        apportion(1, [0, 0])


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_parts_sum_to_total_and_stay_within_one_gram_of_exact(
    total: int, weights: list[int]
) -> None:
    if sum(weights) == 0:
        return
    parts = apportion(total, weights)
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        exact = total * w / sum(weights)
        assert exact - 1 < part < exact + 1
        assert w > 0 or part == 0


@given(
    st.lists(st.integers(1, 10**6), min_size=1, max_size=6),
    st.dictionaries(st.sampled_from(["Co", "Li", "Ni", "Mn", "Cu"]), st.integers(0, 10**6)),
)
def test_within_conserves_each_amount_and_respects_capacity(
    capacities: list[int], amounts: dict[str, int]
) -> None:
    if sum(amounts.values()) > sum(capacities):
        with pytest.raises(ValueError):
            apportion_within(amounts, capacities)
        return
    parts = apportion_within(amounts, capacities)
    for name, grams in amounts.items():
        assert sum(p.get(name, 0) for p in parts) == grams
    for part, cap in zip(parts, capacities, strict=True):
        assert sum(part.values()) <= cap
        assert all(v > 0 for v in part.values())


def test_within_the_case_that_broke_split() -> None:
    # Three elements of 1 g each over three 1 g parts: one each, not all three in the first.
    parts = apportion_within({"Co": 1, "Li": 1, "Ni": 1}, [1, 1, 1])
    assert [sum(p.values()) for p in parts] == [1, 1, 1]


@given(
    amounts=st.dictionaries(
        st.sampled_from(["Fe", "Cu", "Li", "Co", "a.b"]), st.integers(0, 10**6)
    ),
    zeros_before=st.integers(0, 3),
    zeros_after=st.integers(0, 3),
    spare=st.integers(0, 10**6),
)
def test_one_part_with_room_takes_all_as_the_general_case_gives(
    amounts: dict[str, int], zeros_before: int, zeros_after: int, spare: int
) -> None:
    """apportion_within's short cut (one part with room) answers as its general case."""
    capacities = [0] * zeros_before + [sum(amounts.values()) + spare] + [0] * zeros_after
    fast = apportion_within(amounts, capacities)
    general = _within(amounts, capacities, [{} for _ in capacities])
    assert fast == general
    assert [list(p) for p in fast] == [list(p) for p in general]  # the same key order too
