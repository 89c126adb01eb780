"""National plan targets for recovered materials, and progress towards them from the
recorded flows.

The targets are data (``ledger/data/plan_targets.toml``, each citing its source): for now
China's 14th Five-Year Plan for Circular Economy Development (NDRC, July 2021), whose 2025
targets are annual amounts — 320 Mt scrap steel utilised, 60 Mt waste paper utilised, 20 Mt
of recycled non-ferrous metals produced.

Progress for a region and a calendar year (UTC; ``from`` 1 January inclusive, ``to`` the
next 1 January exclusive), for each target of the region's country:

* ``recycling_input`` ("utilised" scrap): grams of lots of the target's materials that
  went into recycling transforms in the region in the year — the links into the
  ``recycled`` stage of :func:`ledger.flows.material_flows` — except from the classes
  ``virgin`` (primary material melted with the scrap) and ``recycled`` (a recycling output
  recycled again, e.g. a re-melted ingot: its grams were counted when they were scrap). The
  region is the recycler's (the transform's signer). A part split off a recycling output
  has no class of its own in ledger/flows.py (it is ``processed``) and would count again if
  recycled again: a known limit;
* ``recycled_output`` ("output of recycled" metal): the recovered grams, when made, of the
  outputs of recycling transforms of the target's materials, made in the region in the
  year (:func:`ledger.emissions.recycled_output`), not counting outputs made from an
  earlier recycling output (a re-melted ingot is counted once).

``share_bp`` = recorded grams × 10,000 ÷ target grams, floored: a region's recorded
contribution to the national annual target in basis points. The year need not be the
target year: a 2024 figure set against the 2025 target shows the way still to go.

Only regulators and the operator read the national view (the schema returns null to anyone
else): a participant's own flows set against a national target would mean nothing and
would read as a regional figure.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Final, Literal

from sqlalchemy.engine import Connection

from ledger.access import Ground, ReadScope
from ledger.emissions import recycled_output
from ledger.envelope import REGION_RE
from ledger.flows import FlowFilter, material_flows
from ledger.materials import Taxonomy, default_taxonomy
from ledger.queries import QueryRefused
from ledger.stages import Stage

BP: Final = 10_000
G_PER_T: Final = 1_000_000
MEASURES: Final = ("recycling_input", "recycled_output")
FIRST_YEAR, LAST_YEAR = 2000, 2100
_DATA_FILE: Final = "plan_targets.toml"
# Classes of lot whose recycling is not scrap utilised: primary material, and material a
# recycling process already made (counted when it was scrap, not again when re-melted).
_NOT_SCRAP = frozenset({Stage.VIRGIN, Stage.RECYCLED})
_EVERYTHING = ReadScope("plan_targets", True, frozenset(Ground))

Measure = Literal["recycling_input", "recycled_output"]


class PlanTargetError(ValueError):
    """The targets file is malformed; the message names the entry and what to fix."""


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    country: str  # ISO 3166-1 alpha-2
    year: int
    name: str
    measure: Measure
    materials: tuple[str, ...]
    mass_t: int
    plan: str
    source: str
    url: str

    @property
    def target_g(self) -> int:
        return self.mass_t * G_PER_T


@dataclass(frozen=True, slots=True)
class Progress:
    target: Target
    region: str
    year: int
    recorded_g: int
    share_bp: int


def parse_targets(doc: Mapping[str, Any], tax: Taxonomy | None = None) -> tuple[Target, ...]:
    tax = tax or default_taxonomy()
    found: list[Target] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc.get("targets", [])):
        tid = raw.get("id")
        if not isinstance(tid, str) or not tid or tid in seen:
            raise PlanTargetError(f"targets[{i}]: give each target a unique string id")
        seen.add(tid)
        country = raw.get("country")
        if not isinstance(country, str) or len(country) != 2 or not country.isupper():
            raise PlanTargetError(f"{tid}: country must be an ISO 3166-1 alpha-2 code like CN")
        measure = raw.get("measure")
        if measure not in MEASURES:
            raise PlanTargetError(f"{tid}: measure must be one of {', '.join(MEASURES)}")
        materials = raw.get("materials")
        if (
            not isinstance(materials, list)
            or not materials
            or not all(isinstance(m, str) and _known_prefix(tax, m) for m in materials)
        ):
            raise PlanTargetError(
                f"{tid}: materials must list material codes or family/grade prefixes of "
                "ledger/data/materials.toml"
            )
        for a in materials:
            for b in materials:
                if b.startswith(a + "."):
                    raise PlanTargetError(f"{tid}: {b} lies within {a}; list each material once")
        year, mass_t = _positive(raw, "year", tid), _positive(raw, "mass_t", tid)
        texts = {k: raw.get(k) for k in ("name", "plan", "source", "url")}
        for k, v in texts.items():
            if not isinstance(v, str) or not v.strip():
                raise PlanTargetError(f"{tid}: {k} must be a non-empty string")
        found.append(
            Target(
                tid,
                country,
                year,
                str(texts["name"]),
                measure,
                tuple(materials),
                mass_t,
                str(texts["plan"]),
                str(texts["source"]),
                str(texts["url"]),
            )
        )
    return tuple(found)


def _positive(raw: Mapping[str, Any], key: str, tid: str) -> int:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise PlanTargetError(f"{tid}: {key} must be a positive integer")
    return v


def _known_prefix(tax: Taxonomy, prefix: str) -> bool:
    return any(c == prefix or c.startswith(prefix + ".") for c in tax.materials)


@functools.cache
def default_targets() -> tuple[Target, ...]:
    text = files("ledger").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    return parse_targets(tomllib.loads(text))


def recorded_g(conn: Connection, target: Target, where: FlowFilter) -> int:
    """The recorded grams of ``target``'s measure in ``where`` (module docstring)."""
    total = 0
    for material in target.materials:
        w = FlowFilter(where.start, where.end, material, where.region)
        if target.measure == "recycling_input":
            flows = material_flows(conn, _EVERYTHING, w)
            total += sum(
                x.mass_g
                for x in flows.links
                if x.target == Stage.RECYCLED and x.source not in _NOT_SCRAP
            )
        else:
            total += sum(row[4] for row in recycled_output(conn, _EVERYTHING, w))
    return total


def plan_progress(
    conn: Connection, region: str, year: int, targets: tuple[Target, ...] | None = None
) -> list[Progress]:
    """Progress of ``region`` in calendar ``year`` towards its country's plan targets."""
    if not REGION_RE.fullmatch(region):
        raise QueryRefused(
            "region",
            f"region {region[:16]!r} is not an ISO 3166-2 code or country prefix; "
            "give e.g. CN or CN-GD",
        )
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise QueryRefused(
            "year", f"year must be a calendar year from {FIRST_YEAR} to {LAST_YEAR}, e.g. 2025"
        )
    country = region.split("-", 1)[0]
    where = FlowFilter(
        start=datetime(year, 1, 1, tzinfo=UTC),
        end=datetime(year + 1, 1, 1, tzinfo=UTC),
        region=region,
    )
    found: list[Progress] = []
    for t in default_targets() if targets is None else targets:
        if t.country != country:
            continue
        got = recorded_g(conn, t, where)
        found.append(Progress(t, region, year, got, got * BP // t.target_g))
    return found


__all__ = [
    "MEASURES",
    "PlanTargetError",
    "Progress",
    "Target",
    "default_targets",
    "parse_targets",
    "plan_progress",
    "recorded_g",
]
