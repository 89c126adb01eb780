"""What a lot is made of: recovered mass, pre- and post-consumer, overall and per element.

A lot's composition is three things, all integer grams of the lot's *remaining* mass:

- ``remaining_g``;
- ``elements``: grams of each tracked element (``{"Co": 1200}``);
- ``recovered``: grams of recovered origin, by bucket — ``"pre"`` and ``"post"`` for the
  mass, ``"Co.pre"`` and ``"Co.post"`` for an element (zero buckets are left out).

What is not recovered is virgin: ``remaining_g - pre - post`` and ``Co - Co.pre - Co.post``.

Where recovered mass comes from (ISO 22095:2020 chain of custody, the proportional —
"mass balance at the level of each lot" — model; ISO 14021 §7.8 for pre-/post-consumer):

- ``create`` with origin ``pre_consumer`` or ``post_consumer``: the whole lot, and each
  element in it, is recovered; ``virgin`` is 0 %.
- ``status`` ``retired`` (a product's end of life): the product has become post-consumer
  waste, so its whole mass, and each element, becomes post-consumer recovered.
- Everything else only moves recovered mass: a split, a draw by a transform, a transit loss
  or a disposal divides a lot's buckets in proportion to mass; a merge adds them; a
  transform pools what its inputs gave and shares the pool over its outputs and ``loss_g``
  in proportion to mass (each element: in proportion to the element mass declared on each
  output, the rest to the loss).

Rounding: every division is the largest-remainder method (:func:`ledger.apportion.apportion`)
applied to each bucket, with the buckets' parts then fitted into the part masses
(:func:`ledger.apportion.apportion_within`). The parts of a bucket always add up to the
bucket exactly, so rounding can never create (nor destroy) a gram of recovered mass, and no
part holds more recovered grams, or more element grams, than it weighs.

Pure: no I/O. Used by ``ledger.rules`` at write time and by anyone who must predict what the
ledger will compute (the demo, the producers' tools).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.apportion import apportion_within

PRE = "pre"
POST = "post"
_VIRGIN = "virgin"
# The statuses that make a product post-consumer waste (its end of life).
END_OF_LIFE = frozenset({"retired"})


@dataclass(slots=True)  # not frozen: built for every record (ledger/state.py, Lot)
class Part:
    """One share of a divided lot: its element and recovered buckets."""

    elements: dict[str, int]
    recovered: dict[str, int]


def at_origin(origin: str, mass_g: int, elements: Mapping[str, int]) -> dict[str, int]:
    """The recovered buckets of a new lot of ``origin`` (collected waste is 100 % recovered)."""
    if origin == "pre_consumer":
        kind = PRE
    elif origin == "post_consumer":
        kind = POST
    else:
        return {}
    out = {kind: mass_g} if mass_g else {}
    out.update({f"{symbol}.{kind}": grams for symbol, grams in elements.items() if grams})
    return out


def recovered_g(recovered: Mapping[str, int]) -> int:
    """Recovered mass, pre- plus post-consumer."""
    return recovered.get(PRE, 0) + recovered.get(POST, 0)


def element_recovered_g(recovered: Mapping[str, int], symbol: str) -> int:
    return recovered.get(f"{symbol}.{PRE}", 0) + recovered.get(f"{symbol}.{POST}", 0)


def measures(elements: Mapping[str, int], recovered: Mapping[str, int]) -> dict[str, int]:
    """Recovered grams by measure: ``"mass"`` and each element symbol (zeros left out)."""
    out = {"mass": recovered_g(recovered)}
    out.update({symbol: element_recovered_g(recovered, symbol) for symbol in elements})
    return {k: v for k, v in out.items() if v}


def composition(
    mass_g: int, elements: Mapping[str, int], recovered: Mapping[str, int]
) -> dict[str, int]:
    """A lot's composition as one map: ``pre``/``post``, each element and its ``E.pre``/``E.post``.

    Stored as the lot's ``content`` when the lot is made (what ``recoveredContent`` reports,
    for the lot's ``mass_g``, however much of it has since been used).
    """
    out = {k: v for k, v in recovered.items() if v}
    out.update({k: v for k, v in elements.items() if v})
    return out


def _mass_rows(mass_g: int, recovered: Mapping[str, int]) -> dict[str, int]:
    pre, post = recovered.get(PRE, 0), recovered.get(POST, 0)
    return {PRE: pre, POST: post, _VIRGIN: mass_g - pre - post}


def _element_rows(elements: Mapping[str, int], recovered: Mapping[str, int]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for symbol, grams in elements.items():
        pre = recovered.get(f"{symbol}.{PRE}", 0)
        post = recovered.get(f"{symbol}.{POST}", 0)
        rows[f"{symbol}.{PRE}"] = pre
        rows[f"{symbol}.{POST}"] = post
        rows[f"{symbol}.{_VIRGIN}"] = grams - pre - post
    return rows


def _part(mass_rows: Mapping[str, int], element_rows: Mapping[str, int]) -> Part:
    elements: dict[str, int] = {}
    recovered: dict[str, int] = {}
    for kind in (PRE, POST):
        if mass_rows.get(kind):
            recovered[kind] = mass_rows[kind]
    for name, grams in element_rows.items():
        if not grams:
            continue
        symbol, kind = name.rsplit(".", 1)
        elements[symbol] = elements.get(symbol, 0) + grams
        if kind != _VIRGIN:
            recovered[name] = grams
    return Part(elements, recovered)


def divide(
    mass_g: int, elements: Mapping[str, int], recovered: Mapping[str, int], masses: Sequence[int]
) -> list[Part]:
    """Divide a lot's remaining composition into parts of ``masses`` (which sum to ``mass_g``).

    Used for a split's parts, a transform's draw (drawn, left), a receive's (kept, lost in
    transit) and a disposal's (kept, disposed).
    """
    if sum(masses) != mass_g:
        raise ValueError("the parts must add up to the lot's mass")
    by_mass = apportion_within(_mass_rows(mass_g, recovered), masses)
    by_element = apportion_within(_element_rows(elements, recovered), masses)
    return [_part(m, e) for m, e in zip(by_mass, by_element, strict=True)]


def add(parts: Sequence[Part]) -> Part:
    """The composition of lots merged into one."""
    elements: dict[str, int] = {}
    recovered: dict[str, int] = {}
    for part in parts:
        for k, v in part.elements.items():
            elements[k] = elements.get(k, 0) + v
        for k, v in part.recovered.items():
            recovered[k] = recovered.get(k, 0) + v
    return Part(elements, recovered)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """An output declares more of an element than the inputs gave (``element.exceeds_inputs``)."""

    symbol: str
    declared_g: int
    available_g: int


def transform(
    pool_mass_g: int,
    pool: Part,
    out_masses: Sequence[int],
    out_elements: Sequence[Mapping[str, int]],
    loss_g: int,
) -> list[Part] | Shortfall:
    """Share a transform's pooled inputs over its outputs (and ``loss_g``).

    ``pool`` is what the inputs gave (their drawn parts, added). The recovered mass goes to
    each output and to the loss in proportion to mass. Each element goes to the outputs that
    declare it, in the declared amounts, with the pool's recovered share of that element; what
    no output declares is lost. Returns the outputs' parts, or a :class:`Shortfall` if an
    output holds more of an element than went in.
    """
    if sum(out_masses) + loss_g != pool_mass_g:
        raise ValueError("outputs + loss must equal the inputs")
    declared: dict[str, list[int]] = {}
    for j, elements in enumerate(out_elements):
        for symbol, grams in elements.items():
            declared.setdefault(symbol, [0] * len(out_masses))[j] = grams
    for symbol in sorted(declared):
        wanted = sum(declared[symbol])
        available = pool.elements.get(symbol, 0)
        if wanted > available:
            return Shortfall(symbol, wanted, available)
    by_mass = apportion_within(_mass_rows(pool_mass_g, pool.recovered), [*out_masses, loss_g])
    element_rows: list[dict[str, int]] = [{} for _ in out_masses]
    rows = _element_rows(pool.elements, pool.recovered)
    for symbol, amounts in declared.items():
        mine = {k: v for k, v in rows.items() if k.rsplit(".", 1)[0] == symbol}
        lost = pool.elements.get(symbol, 0) - sum(amounts)
        for j, share in enumerate(apportion_within(mine, [*amounts, lost])[: len(out_masses)]):
            element_rows[j].update(share)
    return [_part(by_mass[j], element_rows[j]) for j in range(len(out_masses))]


def end_of_life(mass_g: int, elements: Mapping[str, int]) -> dict[str, int]:
    """The recovered buckets of a product that has become post-consumer waste."""
    return at_origin("post_consumer", mass_g, elements)
