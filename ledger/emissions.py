"""Avoided emissions of recycled output: an ESTIMATE, by the avoided-burden method with the
cut-off (recycled-content) approach.

Method. Scrap enters recycling burden-free (cut-off); each tonne of recovered material in a
recycling transform's output is credited with a factor: the cradle-to-gate emissions of the
primary route it displaces less those of the secondary route that made it, one-for-one
substitution, no quality or market correction. Factors are data
(``ledger/data/emission_factors.toml``), each naming its published source; they are
published averages, not the recorded plants' own figures, so every result is an estimate.
Outputs no confirmed factor covers are reported with no factor and 0 g avoided, never given
a guessed one.

What is multiplied. For each output lot of a transform whose process has ``recycling =
true`` (ledger/data/materials.toml) — the ``recycled`` stage of :mod:`ledger.flows`, seen from
its outputs — made in the period (``epr_outputs.at``; ``from`` inclusive, ``to`` exclusive)
and not voided: its **recovered grams when made** (``epr_outputs.recovered["mass"]``, the
recovered content the ledger computed, ISO 22095 proportional), not its whole mass, since
virgin input mixed into a melt displaces nothing. ``output_g`` (the lots' whole mass) is
reported beside it. An output made with any input that was itself the output of a recycling
process (a re-melted ingot; ``lot_edges`` parent in ``epr_outputs`` with a recycling
process) is **not credited**: its recovered grams displaced primary material once already.
Its recovered grams are reported as ``rerecycled_g`` (conservative: a melt mixing fresh
scrap with a re-melted ingot is credited nothing). Integer arithmetic only:

    avoided_g = recycled_g * g_per_t // 1_000_000     (floored, per row)

summed in SQL per (output material, organisation, process); Python adds up those grouped
rows. Totals are sums of the rows.

Per producer. A producer's share is the recovered grams its **retired** EPR certificates
stand on (``certificates.lots``: [lot, grams] on recycling outputs; ledger/epr.py makes sure a
recovered gram is certified once), on output lots in the same period, material and region
as the totals, times the same factor. Only certificates counted in mass are used
(categories counted in an element's grams, e.g. cobalt, are left out: grams of Co times a
per-tonne-of-material factor would mean nothing). The shares therefore never add up to more
than the totals; the rest is unattributed.

Filters: ``material`` (code or family/grade prefix) and ``region`` (ISO 3166-2 or a
prefix) apply to the output lot's material and the recycler's region. Access: regulators and
the operator see everything; any other organisation sees the outputs of lots it may read
(ledger/access.py) and only its own producer share.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, Text, case, cast, func, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from ledger.access import ReadScope
from ledger.envelope import REGION_RE
from ledger.epr_schemes import default_schemes
from ledger.flows import FlowFilter
from ledger.materials import Taxonomy, default_taxonomy
from ledger.queries import QueryRefused, at_key, lot_visible, time_key
from ledger.state import VOID
from ledger.tables import certificates, epr_outputs, lot_edges, lots, orgs

METHOD: Final = "avoided burden, cut-off (recycled-content) approach; estimate"
G_PER_T: Final = 1_000_000  # grams in a tonne
_DATA_FILE: Final = "emission_factors.toml"


class EmissionFactorError(ValueError):
    """The factors file is malformed; the message says which entry and what to fix."""


@dataclass(frozen=True, slots=True)
class Factor:
    id: str
    material: str  # a material code or family/grade prefix
    processes: frozenset[str]  # empty: any recycling process
    g_per_t: int  # grams CO2e avoided per tonne of recovered output
    baseline: str
    route: str
    source: str
    url: str

    def matches(self, material: str, process: str) -> bool:
        prefix = material == self.material or material.startswith(self.material + ".")
        return prefix and (not self.processes or process in self.processes)


@dataclass(frozen=True, slots=True)
class Row:
    """Recycled output of one material by one organisation, and what it avoided."""

    material: str
    org: str
    output_g: int  # whole mass of the output lots
    recycled_g: int  # their recovered grams when made (what is multiplied)
    rerecycled_g: int  # recovered grams of outputs made from recycled output (not credited)
    factor: Factor | None
    avoided_g: int


@dataclass(frozen=True, slots=True)
class ProducerRow:
    """A producer's share: recovered grams its retired mass certificates stand on."""

    producer: str
    material: str
    certified_g: int
    factor: Factor | None
    avoided_g: int


@dataclass(frozen=True, slots=True)
class Avoided:
    rows: list[Row]
    producers: list[ProducerRow]
    output_g: int
    recycled_g: int
    rerecycled_g: int
    unfactored_g: int  # recycled grams no factor covers (0 g avoided counted for them)
    avoided_g: int
    method: str = METHOD


# --- factors ------------------------------------------------------------------------------


def parse_factors(doc: Mapping[str, Any], tax: Taxonomy | None = None) -> tuple[Factor, ...]:
    """Validated factors from a parsed TOML document (see the data file's header)."""
    tax = tax or default_taxonomy()
    recycling = {p.code for p in tax.processes.values() if p.recycling}
    found: list[Factor] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc.get("factors", [])):
        where = f"factors[{i}]"
        fid = raw.get("id")
        if not isinstance(fid, str) or not fid or fid in seen:
            raise EmissionFactorError(f"{where}: give each factor a unique string id")
        seen.add(fid)
        material = raw.get("material")
        if not isinstance(material, str) or not _known_prefix(tax, material):
            raise EmissionFactorError(
                f"{fid}: material {material!r} is neither a material code nor a family/grade "
                "prefix of one in ledger/data/materials.toml"
            )
        processes = raw.get("processes", [])
        if not isinstance(processes, list) or any(p not in recycling for p in processes):
            raise EmissionFactorError(
                f"{fid}: processes must be recycling processes (recycling = true in "
                f"materials.toml), one of {sorted(recycling)}"
            )
        g = raw.get("g_per_t")
        if isinstance(g, bool) or not isinstance(g, int) or g <= 0:
            raise EmissionFactorError(
                f"{fid}: g_per_t must be a positive integer (grams CO2e per tonne), not {g!r}"
            )
        texts = {k: raw.get(k) for k in ("baseline", "route", "source", "url")}
        for k, v in texts.items():
            if not isinstance(v, str) or not v.strip():
                raise EmissionFactorError(f"{fid}: {k} must name it (a non-empty string)")
        found.append(
            Factor(
                fid,
                material,
                frozenset(processes),
                g,
                str(texts["baseline"]),
                str(texts["route"]),
                str(texts["source"]),
                str(texts["url"]),
            )
        )
    return tuple(found)


def _known_prefix(tax: Taxonomy, prefix: str) -> bool:
    return any(c == prefix or c.startswith(prefix + ".") for c in tax.materials)


@functools.cache
def default_factors() -> tuple[Factor, ...]:
    text = files("ledger").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    return parse_factors(tomllib.loads(text))


def factor_for(
    material: str, process: str, factors: Iterable[Factor] | None = None
) -> Factor | None:
    """The most specific factor for an output of ``material`` made by ``process``: the
    longest matching material; at equal length, one naming the process."""
    best: Factor | None = None
    for f in default_factors() if factors is None else factors:
        if f.matches(material, process) and (
            best is None
            or (len(f.material), bool(f.processes)) > (len(best.material), bool(best.processes))
        ):
            best = f
    return best


def avoided_g(recycled_g: int, factor: Factor | None) -> int:
    return 0 if factor is None else recycled_g * factor.g_per_t // G_PER_T


# --- SQL ----------------------------------------------------------------------------------


def _json_grams(conn: Connection, column: Any, *path: str) -> ColumnElement[int]:
    """Integer grams at ``path`` in a Text column holding a JSON document (0 when absent)."""
    if conn.dialect.name == "postgresql":
        text = func.jsonb_extract_path_text(cast(column, JSONB), *path)
    else:
        text = func.json_extract(
            column, "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
        )
    return func.coalesce(cast(text, BigInteger), 0)


def _json_text(conn: Connection, column: Any, *path: str) -> ColumnElement[str]:
    if conn.dialect.name == "postgresql":
        return func.jsonb_extract_path_text(column, *path)
    return cast(
        func.json_extract(
            column, "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
        ),
        Text,
    )


def _filters(where: FlowFilter) -> list[ColumnElement[bool]]:
    o = epr_outputs
    out: list[ColumnElement[bool]] = []
    if where.start is not None:
        out.append(at_key(o.c.at) >= time_key("from", where.start))
    if where.end is not None:
        out.append(at_key(o.c.at) < time_key("to", where.end))
    if where.start is not None and where.end is not None and where.end <= where.start:
        raise QueryRefused(
            "to", "to must be later than from; give a period like 2026-05-01 .. 2026-06-01"
        )
    if where.material is not None:
        out.append(
            or_(
                o.c.material == where.material,
                o.c.material.startswith(where.material + ".", autoescape=True),
            )
        )
    if where.region is not None:
        if not REGION_RE.fullmatch(where.region):
            raise QueryRefused(
                "region",
                f"region {where.region[:16]!r} is not an ISO 3166-2 code or country prefix; "
                "give e.g. CN or CN-GD",
            )
        in_region = select(orgs.c.id).where(
            or_(
                orgs.c.region == where.region,
                orgs.c.region.startswith(where.region + "-", autoescape=True),
            )
        )
        out.append(o.c.actor.in_(in_region))
    out.append(o.c.process.in_(_recycling_processes()))
    out.append(lots.c.status != VOID)
    return out


def _recycling_processes() -> list[str]:
    return sorted(p.code for p in default_taxonomy().processes.values() if p.recycling)


def _made_from_recycled_output() -> ColumnElement[bool]:
    """True for the output lots (``epr_outputs``) one of whose parents a recycling process
    made: recycled output recycled again."""
    parent = epr_outputs.alias("parent")
    return (
        select(lot_edges.c.parent)
        .join(parent, parent.c.lot == lot_edges.c.parent)
        .where(
            lot_edges.c.child == epr_outputs.c.lot,
            parent.c.process.in_(_recycling_processes()),
        )
        .exists()
    )


def recycled_output(
    conn: Connection, scope: ReadScope, where: FlowFilter
) -> list[tuple[str, str, str, int, int, int]]:
    """(material, org, process, output_g, recycled_g, rerecycled_g) of recycling outputs,
    summed in SQL; rerecycled_g: the recovered grams of outputs made from recycled output,
    left out of recycled_g (module docstring)."""
    o = epr_outputs
    recovered = _json_grams(conn, o.c.recovered, "mass")
    again = _made_from_recycled_output()
    q = (
        select(
            o.c.material,
            o.c.actor,
            o.c.process,
            func.sum(lots.c.mass_g).label("output_g"),
            func.sum(case((again, 0), else_=recovered)).label("recycled_g"),
            func.sum(case((again, recovered), else_=0)).label("rerecycled_g"),
        )
        .select_from(o.join(lots, lots.c.id == o.c.lot))
        .where(*_filters(where), lot_visible(scope, lots))
        .group_by(o.c.material, o.c.actor, o.c.process)
    )
    return [
        (
            str(r.material),
            str(r.actor),
            str(r.process),
            int(r.output_g or 0),
            int(r.recycled_g or 0),
            int(r.rerecycled_g or 0),
        )
        for r in conn.execute(q)
    ]


def certified_output(
    conn: Connection, scope: ReadScope, where: FlowFilter
) -> list[tuple[str, str, str, str, str, int]]:
    """(holder, scheme, category, material, process, grams) that retired certificates stand
    on, on recycling outputs matching ``where``; a participant sees only its own."""
    c = certificates
    if conn.dialect.name == "postgresql":
        items = func.jsonb_array_elements(cast(c.c.lots, JSONB)).table_valued("value", name="item")
    else:
        items = func.json_each(c.c.lots).table_valued("value", name="item")
    o = epr_outputs
    q = (
        select(
            c.c.holder,
            c.c.scheme,
            c.c.category,
            o.c.material,
            o.c.process,
            func.sum(_json_grams(conn, items.c.value, "1")).label("grams"),
        )
        .select_from(
            c.join(items, true())
            .join(o, o.c.lot == _json_text(conn, items.c.value, "0"))
            .join(lots, lots.c.id == o.c.lot)
        )
        .where(
            c.c.retired_period.is_not(None),
            *_filters(where),
            ~_made_from_recycled_output(),
            true() if scope.everything else c.c.holder == scope.org,
        )
        .group_by(c.c.holder, c.c.scheme, c.c.category, o.c.material, o.c.process)
    )
    return [
        (
            str(r.holder),
            str(r.scheme),
            str(r.category),
            str(r.material),
            str(r.process),
            int(r.grams or 0),
        )
        for r in conn.execute(q)
    ]


def _mass_category(scheme: str, category: str) -> bool:
    s = default_schemes().get(scheme)
    cat = None if s is None else s.categories.get(category)
    return cat is not None and cat.element is None


def avoided_emissions(
    conn: Connection,
    scope: ReadScope,
    where: FlowFilter,
    factors: Iterable[Factor] | None = None,
) -> Avoided:
    """Avoided CO2e of the recycled output ``scope`` may see (see the module docstring)."""
    table = tuple(default_factors() if factors is None else factors)
    by_row: dict[tuple[str, str, str | None], list[int]] = {}
    # (material, org, factor id) -> [output_g, recycled_g, rerecycled_g, avoided_g]
    fac: dict[str, Factor] = {f.id: f for f in table}
    for material, org, process, output_g, recycled_g, again_g in recycled_output(
        conn, scope, where
    ):
        f = factor_for(material, process, table)
        acc = by_row.setdefault((material, org, None if f is None else f.id), [0, 0, 0, 0])
        acc[0] += output_g
        acc[1] += recycled_g
        acc[2] += again_g
        acc[3] += avoided_g(recycled_g, f)
    rows = [
        Row(m, org, out, rec, again, None if fid is None else fac[fid], av)
        for (m, org, fid), (out, rec, again, av) in sorted(by_row.items(), key=lambda kv: kv[0][:2])
    ]
    by_producer: dict[tuple[str, str, str | None], list[int]] = {}
    for holder, scheme, category, material, process, grams in certified_output(conn, scope, where):
        if not _mass_category(scheme, category):
            continue
        f = factor_for(material, process, table)
        acc = by_producer.setdefault((holder, material, None if f is None else f.id), [0, 0])
        acc[0] += grams
        acc[1] += avoided_g(grams, f)
    producers = [
        ProducerRow(h, m, g, None if fid is None else fac[fid], av)
        for (h, m, fid), (g, av) in sorted(by_producer.items(), key=lambda kv: kv[0][:2])
    ]
    return Avoided(
        rows=rows,
        producers=producers,
        output_g=sum(r.output_g for r in rows),
        recycled_g=sum(r.recycled_g for r in rows),
        rerecycled_g=sum(r.rerecycled_g for r in rows),
        unfactored_g=sum(r.recycled_g for r in rows if r.factor is None),
        avoided_g=sum(r.avoided_g for r in rows),
    )


__all__ = [
    "METHOD",
    "Avoided",
    "EmissionFactorError",
    "Factor",
    "ProducerRow",
    "Row",
    "avoided_emissions",
    "avoided_g",
    "default_factors",
    "factor_for",
    "parse_factors",
]
