"""Integer apportionment by the largest-remainder (Hamilton) method.

Used wherever a whole number of grams is shared out in proportion to
weights: a split's element content, the share of each input in each output
of a transform. The parts always add up to exactly the total, so rounding
can neither create nor destroy a gram.
"""

from __future__ import annotations

from collections.abc import Sequence


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Share ``total`` out in proportion to ``weights`` (all ≥ 0, sum > 0).

    Each part is ``floor(total * w / sum)``; the grams left over go, one each,
    to the largest fractional remainders, ties to the earliest weight.
    """
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("apportion takes non-negative integers")
    whole = sum(weights)
    if whole == 0:
        if total:
            raise ValueError("cannot apportion a positive total over zero weights")
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    left = total - sum(parts)
    if left:
        order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
        for i in order[:left]:
            parts[i] += 1
    return parts


def apportion_within(amounts: dict[str, int], capacities: Sequence[int]) -> list[dict[str, int]]:
    """Share several amounts (an element → grams map) over parts of the given capacities.

    Each amount is apportioned by largest remainder; then, where a part holds
    more grams in all than its capacity, grams move one at a time (largest
    holding first, names breaking ties) to the part with the most room. Needs
    ``sum(amounts) <= sum(capacities)``; every amount is conserved exactly.
    """
    if sum(amounts.values()) > sum(capacities):
        raise ValueError("the amounts exceed the parts' capacity")
    parts: list[dict[str, int]] = [{} for _ in capacities]
    with_room = [i for i, cap in enumerate(capacities) if cap]
    if len(with_room) == 1:
        # One part takes all (a whole lot drawn, received without loss, disposed of):
        # what the general case below gives, without apportioning over zero weights.
        parts[with_room[0]] = {name: amounts[name] for name in sorted(amounts) if amounts[name]}
        return parts
    return _within(amounts, capacities, parts)


def _within(
    amounts: dict[str, int], capacities: Sequence[int], parts: list[dict[str, int]]
) -> list[dict[str, int]]:
    """:func:`apportion_within`'s general case (``parts``: one empty dict a capacity)."""
    for name in sorted(amounts):
        for i, grams in enumerate(apportion(amounts[name], capacities)):
            if grams:
                parts[i][name] = grams
    room = [cap - sum(part.values()) for part, cap in zip(parts, capacities, strict=True)]
    for i, part in enumerate(parts):
        while room[i] < 0:
            name = max(part, key=lambda n: (part[n], n))
            j = max(range(len(parts)), key=lambda x: (room[x], -x))
            part[name] -= 1
            if not part[name]:
                del part[name]
            parts[j][name] = parts[j].get(name, 0) + 1
            room[i] += 1
            room[j] -= 1
    return parts
