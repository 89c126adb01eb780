"""EU Regulation 2023/1542 Art. 8 minimum recycled-content shares, and a check against them.

The targets are data (``ledger/data/battery_recycled_content.toml``, sources cited there);
this module parses them into immutable records and compares a battery's or cathode lot's
computed element masses with them. Pure: no I/O beyond reading the packaged data file once,
no floats — shares are :class:`fractions.Fraction` and targets integer basis points.

What "total" and "recovered" mean is the caller's business and must follow the target's
``basis``: for Co, Li and Ni the grams of the element in the active materials and the part of
them recovered from battery manufacturing waste or post-consumer waste; for Pb the grams of
lead in the whole battery and the recovered part.

Decisions (documented because the regulation leaves them to the ledger):
- Before the first tier (2031-08-18) no minimum exists. Asking for a check on such a date
  raises :class:`RecycledContentError` (``recycled_content.no_target``) rather than returning
  an empty list that a caller could show as "compliant". Use :func:`tier_in_force` to ask
  whether any target applies.
- Art. 8 applies to an element only if the battery contains it: an element missing from
  ``element_grams``, or present with ``total_g == 0``, yields no finding. Elements without a
  target (Mn, Cu, …) are ignored.
- Masses must be integers (not bool), 0 <= recovered_g <= total_g; anything else raises
  ``recycled_content.masses``.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from importlib.resources import files
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "Basis",
    "Finding",
    "RecycledContentError",
    "Target",
    "Tier",
    "check_recycled_content",
    "default_tiers",
    "parse_tiers",
    "tier_in_force",
]

Basis: TypeAlias = Literal["active_material", "battery"]
_BASES: Final = frozenset({"active_material", "battery"})
_BP_PER_UNIT: Final = 10_000
_DATA_FILE: Final = "battery_recycled_content.toml"


class RecycledContentError(ValueError):
    """A check could not be made; ``rule`` names why, the message says what to do."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    """One element's minimum share in one tier."""

    element: str
    min_bp: int  # basis points, 1600 = 16 %
    basis: Basis

    @property
    def min_share(self) -> Fraction:
        return Fraction(self.min_bp, _BP_PER_UNIT)


@dataclass(frozen=True, slots=True)
class Tier:
    """The targets that apply from ``start`` until the next tier's start."""

    start: date
    article: str
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """Whether one element's recovered share meets its target in force on the date asked."""

    element: str
    basis: Basis
    total_g: int
    recovered_g: int
    share: Fraction
    required: Fraction
    meets: bool
    article: str
    in_force_from: date

    @property
    def share_bp_floor(self) -> int:
        """The share in whole basis points, rounded down (never overstates recovered content)."""
        return (self.recovered_g * _BP_PER_UNIT) // self.total_g


def _bad(message: str) -> ValueError:
    return ValueError(f"{_DATA_FILE}: {message}")


def parse_tiers(doc: Mapping[str, Any]) -> tuple[Tier, ...]:
    """Validate the parsed TOML document; tiers come back sorted by start date."""
    if set(doc) != {"tiers"} or not isinstance(doc["tiers"], list) or not doc["tiers"]:
        raise _bad("the file holds exactly one non-empty [[tiers]] array")
    tiers: list[Tier] = []
    for i, raw in enumerate(doc["tiers"]):
        if not isinstance(raw, dict) or set(raw) != {"from", "article", "targets"}:
            raise _bad(f"tiers[{i}] needs exactly: from, article, targets")
        start, article, raw_targets = raw["from"], raw["article"], raw["targets"]
        if not isinstance(start, date) or isinstance(start, datetime):
            raise _bad(f"tiers[{i}].from must be a TOML local date (2031-08-18)")
        if not isinstance(article, str) or not article:
            raise _bad(f"tiers[{i}].article must name the article")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise _bad(f"tiers[{i}].targets must be a non-empty array")
        targets: list[Target] = []
        for j, t in enumerate(raw_targets):
            where = f"tiers[{i}].targets[{j}]"
            if not isinstance(t, dict) or set(t) != {"element", "min_bp", "basis"}:
                raise _bad(f"{where} needs exactly: element, min_bp, basis")
            element, min_bp, basis = t["element"], t["min_bp"], t["basis"]
            if not isinstance(element, str) or not element.isalpha():
                raise _bad(f"{where}.element must be an element symbol")
            if type(min_bp) is not int or not 0 < min_bp <= _BP_PER_UNIT:
                raise _bad(f"{where}.min_bp must be an integer 1..10000 (basis points)")
            if basis not in _BASES:
                raise _bad(f"{where}.basis must be one of {sorted(_BASES)}")
            targets.append(Target(element=element, min_bp=min_bp, basis=basis))
        if len({t.element for t in targets}) != len(targets):
            raise _bad(f"tiers[{i}] lists an element twice")
        tiers.append(Tier(start=start, article=article, targets=tuple(targets)))
    tiers.sort(key=lambda tier: tier.start)
    if len({t.start for t in tiers}) != len(tiers):
        raise _bad("two tiers start on the same date")
    return tuple(tiers)


@functools.cache
def default_tiers() -> tuple[Tier, ...]:
    """The packaged Art. 8 tiers."""
    text = files("ledger").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    return parse_tiers(tomllib.loads(text))


def tier_in_force(on: date, tiers: tuple[Tier, ...] | None = None) -> Tier | None:
    """The tier whose targets apply on ``on`` (the latest one started), or None before any."""
    current = None
    for tier in default_tiers() if tiers is None else tiers:
        if tier.start <= on:
            current = tier
    return current


def _masses(element: str, value: object) -> tuple[int, int]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise RecycledContentError(
            "recycled_content.masses",
            f"{element}: give (total_g, recovered_g) as a pair of integers",
        )
    total_g, recovered_g = value
    if type(total_g) is not int or type(recovered_g) is not int:
        raise RecycledContentError(
            "recycled_content.masses",
            f"{element}: masses are integer grams, got {total_g!r} and {recovered_g!r}",
        )
    if not 0 <= recovered_g <= total_g:
        raise RecycledContentError(
            "recycled_content.masses",
            f"{element}: recovered {recovered_g} g must lie between 0 and the total "
            f"{total_g} g; recompute the element masses from the lot's lineage",
        )
    return total_g, recovered_g


def check_recycled_content(
    on: date,
    element_grams: Mapping[str, tuple[int, int]],
    *,
    tiers: tuple[Tier, ...] | None = None,
) -> list[Finding]:
    """For each element with a target in force on ``on``, whether its recovered share meets it.

    ``element_grams`` maps an element symbol to ``(total_g, recovered_g)`` on the target's
    basis (see the module docstring). Comparison is exact: recovered/total >= min_bp/10000.
    Findings come back in the order of the tier's targets.
    """
    all_tiers = default_tiers() if tiers is None else tiers
    tier = tier_in_force(on, all_tiers)
    if tier is None:
        first = min(t.start for t in all_tiers)
        raise RecycledContentError(
            "recycled_content.no_target",
            f"no Reg. (EU) 2023/1542 Art. 8 minimum share applies on {on.isoformat()}; the "
            f"first applies from {first.isoformat()}: report the shares without a verdict",
        )
    checked = {e: _masses(e, v) for e, v in element_grams.items()}
    findings: list[Finding] = []
    for target in tier.targets:
        if target.element not in checked:
            continue
        total_g, recovered_g = checked[target.element]
        if total_g == 0:
            continue
        share = Fraction(recovered_g, total_g)
        findings.append(
            Finding(
                element=target.element,
                basis=target.basis,
                total_g=total_g,
                recovered_g=recovered_g,
                share=share,
                required=target.min_share,
                meets=share >= target.min_share,
                article=tier.article,
                in_force_from=tier.start,
            )
        )
    return findings
