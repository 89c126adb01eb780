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
