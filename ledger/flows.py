"""Material flows for regulators: Sankey-ready stages, rates and a monthly series.

Every figure is an integer number of grams summed **in SQL**. Collection,
transforms (inputs and losses) and disposals come from ``flow_days``, a
rollup the rules keep at append time (:func:`ledger.stages.flow_rows`: grams
per UTC day, source stage, target stage, actor, material and method; a
``void`` subtracts what it reverses), so a year is a few thousand rows
however many records it holds. Second life and in transit are states of
lots now, read from ``lots`` (indexed by status). A question about everyone
(everything visible, by stage, no region) reads ``flow_totals`` instead: the
same increments without the actor, a few thousand rows for a year of a
national network where ``flow_days`` has hundreds of thousands. Python only adds up the
grouped rows; no record is walked in Python. Because the rollup is per day,
``from`` and ``to`` must be UTC midnights.

Stages, from the record vocabulary (DESIGN.md "Event vocabulary"); a flow
falls in the period when the ``at`` of the record that made it does
(``from`` inclusive, ``to`` exclusive, compared with
:func:`ledger.queries.at_key` so fractional seconds sort right):

* ``collected`` — a ``create`` of a lot with origin ``pre_consumer`` or
  ``post_consumer``: the lot's ``mass_g``. A source node.
* ``virgin`` — lots created with origin ``virgin`` appear only as the source
  of the flows out of them (primary material mixed in or made into products).
* ``processed`` — the inputs (``body.inputs[].mass_g``) of a ``transform``
  whose process is neither recycling (``recycling = false`` in
  ledger/data/materials.toml) nor manufacturing: sorting, baling, shredding,
  dismantling, black-mass production, washing and flaking, …
* ``recycled`` — the inputs of a ``transform`` whose process has
  ``recycling = true`` (melting, pulping, pelletising, hydrometallurgy, …).
* ``manufactured`` — the inputs of a ``transform`` whose process is in
  :data:`MANUFACTURING` (products made: cathode synthesis, cell manufacture,
  pack assembly, papermaking, generic manufacturing).
* ``second_life`` — a ``status`` record setting ``second_life`` on a lot
  whose status is still ``second_life`` (or which is in transit while in
  second life): the lot's ``remaining_g`` now. Its source is ``collected``:
  a lot reaches second life through take-back.
* ``disposed`` — a ``dispose`` record: its ``mass_g``, split by ``method``
  (landfill, incineration, energy_recovery).
* ``in_transit`` — a ``transfer`` not yet received (the lot's status is
  ``in_transit`` now): the declared ``transit_g``.
* ``loss`` — a transform's ``loss_g`` (process loss), a link from the
  transform's stage.

A link ``A → B`` carries the grams of lots *of class A* that went into stage
``B``. A lot's class: the stage of the process that made it (its
``epr_outputs`` row), else ``collected`` for origin pre/post-consumer,
``virgin`` for virgin, else ``processed`` (parts of split or merged
intermediate lots).

Filters: ``material`` matches the material of the lot the mass came from (the
transform's input lot; the created, disposed, transferred lot), as a code
or a family/grade prefix (``steel`` matches ``steel.hms1``); a transform's
loss is shared over its inputs by mass (largest remainder) and each share
follows its input's material. ``region`` matches the
acting organisation's ``orgs.region`` (ISO 3166-2) or a prefix of it (``CN``
matches ``CN-GD``). Acting organisation: the record's signer.

Rates, in basis points of ``collected`` (floored; 0 when nothing was
collected): recovery = grams of matching lots that went into recycling
transforms ÷ collected; reuse = second life ÷ collected; disposal = disposed
÷ collected.

Access (ledger/access.py): regulators and the operator see every flow; any
other organisation sees the flows of its own records (what it collected,
processed, disposed of) and the lots it may read that are in second life or
in transit (:func:`lot_visible`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    String,
    Text,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from ledger.access import ReadScope
from ledger.envelope import REGION_RE
from ledger.materials import default_taxonomy
from ledger.queries import QueryRefused, at_key, lot_visible, time_key
from ledger.stages import MANUFACTURING, RECOVERED_ORIGINS, Stage
from ledger.tables import epr_outputs, flow_days, flow_totals, lot_records, lots, orgs, records

BP = 10_000

STAGE_ORDER = tuple(Stage)
_NOT_TOTALLED = frozenset({Stage.VIRGIN, Stage.LOSS})  # a source, and a sink of links only


class GroupBy(StrEnum):
    STAGE = "stage"
    ORGANISATION = "organisation"
    REGION = "region"


@dataclass(frozen=True, slots=True)
class FlowFilter:
    start: datetime | None = None
    end: datetime | None = None
    material: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str  # "stage", "organisation" or "region"
    mass_g: int  # the larger of the grams in and the grams out (a Sankey node's size)


@dataclass(frozen=True, slots=True)
class Link:
    source: str
    target: str
    mass_g: int


@dataclass(frozen=True, slots=True)
class Month:
    month: str  # YYYY-MM
    stages: dict[str, int]  # grams into each stage that month


@dataclass(frozen=True, slots=True)
class Flows:
    group_by: GroupBy
    nodes: list[Node]
    links: list[Link]
    stages: dict[str, int]  # grams into each stage over the period
    disposed_by_method: dict[str, int]
    recovery_bp: int
    reuse_bp: int
    disposal_bp: int
    months: list[Month] = field(default_factory=list)

    def stage(self, s: Stage) -> int:
        return self.stages.get(s.value, 0)


@dataclass(frozen=True, slots=True)
class _Fact:
    source: str | None
    target: str
    actor: str
    month: str
    mass_g: int
    method: str | None = None


def rate_bp(part: int, whole: int) -> int:
    return part * BP // whole if whole > 0 else 0


def material_flows(
    conn: Connection, scope: ReadScope, where: FlowFilter, group_by: GroupBy = GroupBy.STAGE
) -> Flows:
    """The flows ``scope`` may see that match ``where`` (see the module docstring)."""
    facts = list(_facts(conn, scope, where, group_by))
    region_of = (
        {str(r.id): str(r.region) for r in conn.execute(select(orgs.c.id, orgs.c.region))}
        if group_by is GroupBy.REGION
        else {}
    )
    stages: dict[str, int] = {}
    by_method: dict[str, int] = {}
    months: dict[str, dict[str, int]] = {}
    links: dict[tuple[str, str], int] = {}
    recycled_in = 0
    for f in facts:
        if f.target != Stage.LOSS:
            stages[f.target] = stages.get(f.target, 0) + f.mass_g
            per = months.setdefault(f.month, {})
            per[f.target] = per.get(f.target, 0) + f.mass_g
        if f.method is not None:
            by_method[f.method] = by_method.get(f.method, 0) + f.mass_g
        if f.target == Stage.RECYCLED:
            recycled_in += f.mass_g
        if group_by is GroupBy.STAGE:
            if f.source is not None:
                key = (f.source, f.target)
                links[key] = links.get(key, 0) + f.mass_g
        else:
            who = f.actor if group_by is GroupBy.ORGANISATION else region_of.get(f.actor, "?")
            key = (who, f.target)
            links[key] = links.get(key, 0) + f.mass_g
    link_list = [Link(s, t, g) for (s, t), g in sorted(links.items(), key=_link_order) if g]
    nodes = _nodes(link_list, stages, group_by)
    collected = stages.get(Stage.COLLECTED, 0)
    return Flows(
        group_by=group_by,
        nodes=nodes,
        links=link_list,
        stages={s.value: stages.get(s.value, 0) for s in STAGE_ORDER if s not in _NOT_TOTALLED},
        disposed_by_method=dict(sorted(by_method.items())),
        recovery_bp=rate_bp(recycled_in, collected),
        reuse_bp=rate_bp(stages.get(Stage.SECOND_LIFE, 0), collected),
        disposal_bp=rate_bp(stages.get(Stage.DISPOSED, 0), collected),
        months=[Month(m, dict(sorted(v.items()))) for m, v in sorted(months.items())],
    )


def _link_order(item: tuple[tuple[str, str], int]) -> tuple[int, str, int, str]:
    (s, t), _ = item
    rank = {x.value: i for i, x in enumerate(STAGE_ORDER)}
    return (rank.get(s, -1), s, rank.get(t, -1), t)


def _nodes(links: list[Link], stages: dict[str, int], group_by: GroupBy) -> list[Node]:
    into: dict[str, int] = {}
    out: dict[str, int] = {}
    for link in links:
        out[link.source] = out.get(link.source, 0) + link.mass_g
        into[link.target] = into.get(link.target, 0) + link.mass_g
    if group_by is GroupBy.STAGE:
        for s, g in stages.items():  # a source stage like collected has no link in
            into[s] = max(into.get(s, 0), g)
    stage_ids = {s.value for s in Stage}
    ids = sorted(set(into) | set(out), key=lambda n: (n in stage_ids, _stage_rank(n), n))
    found = []
    for n in ids:
        mass = max(into.get(n, 0), out.get(n, 0))
        if mass:
            kind = "stage" if n in stage_ids else group_by.value
            found.append(Node(n, kind, mass))
    return found


def _stage_rank(n: str) -> int:
    try:
        return STAGE_ORDER.index(Stage(n))
    except ValueError:
        return -1


# --- SQL ----------------------------------------------------------------------------------


def _canonical(conn: Connection, column: Any) -> Any:
    """The record's canonical bytes as a JSON document the database can read."""
    if conn.dialect.name == "postgresql":
        return cast(func.convert_from(column, literal("UTF8")), JSONB)
    return cast(column, Text)


def _json_text(conn: Connection, doc: Any, *path: str) -> ColumnElement[Any]:
    """Text at ``path`` in a JSON document column (canonical bytes or a JSON value)."""
    if conn.dialect.name == "postgresql":
        return func.jsonb_extract_path_text(doc, *path)
    return func.json_extract(doc, "$." + ".".join(path))


def _first(n: int) -> list[ColumnElement[Any]]:
    """GROUP BY the first ``n`` output columns by position (the same statement text on both
    engines: PostgreSQL won't match a grouped expression whose constants are bound anew)."""
    return [literal_column(str(i)) for i in range(1, n + 1)]


def _month(at: Any) -> ColumnElement[str]:
    return func.substr(at, 1, 7, type_=String)


def _process_stage(process: Any) -> ColumnElement[str]:
    tax = default_taxonomy()
    recycling = sorted(p.code for p in tax.processes.values() if p.recycling)
    return case(
        (process.in_(recycling), literal(Stage.RECYCLED.value)),
        (process.in_(sorted(MANUFACTURING)), literal(Stage.MANUFACTURED.value)),
        else_=literal(Stage.PROCESSED.value),
    )


def _lot_class(lot: FromClause, made: FromClause) -> ColumnElement[str]:
    """A lot's class (module docstring); ``made``: epr_outputs LEFT JOINed on the lot."""
    return case(
        (made.c.process.is_not(None), _process_stage(made.c.process)),
        (lot.c.origin.in_(RECOVERED_ORIGINS), literal(Stage.COLLECTED.value)),
        (lot.c.origin == "virgin", literal(Stage.VIRGIN.value)),
        else_=literal(Stage.PROCESSED.value),
    )


def _material(column: Any, material: str | None) -> list[ColumnElement[bool]]:
    if material is None:
        return []
    return [or_(column == material, column.startswith(material + ".", autoescape=True))]


def _region(actor: Any, region: str | None) -> list[ColumnElement[bool]]:
    if region is None:
        return []
    if not REGION_RE.fullmatch(region):
        raise QueryRefused(
            "region",
            f"region {region[:16]!r} is not an ISO 3166-2 code or country prefix; "
            "give e.g. CN or CN-GD",
        )
    in_region = select(orgs.c.id).where(
        or_(orgs.c.region == region, orgs.c.region.startswith(region + "-", autoescape=True))
    )
    return [actor.in_(in_region)]


def _period(at: Any, where: FlowFilter) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if where.start is not None:
        out.append(at_key(at) >= time_key("from", where.start))
    if where.end is not None:
        out.append(at_key(at) < time_key("to", where.end))
    if where.start is not None and where.end is not None and where.end <= where.start:
        raise QueryRefused(
            "to", "to must be later than from; give a period like 2026-05-01 .. 2026-06-01"
        )
    return out


def _facts(
    conn: Connection, scope: ReadScope, where: FlowFilter, group_by: GroupBy = GroupBy.STAGE
) -> Iterable[_Fact]:
    for q in _statements(conn, scope, where, group_by):
        for row in conn.execute(q):
            method = getattr(row, "method", None)
            yield _Fact(
                row.source,
                row.target,
                row.actor,
                row.month,
                int(row.mass_g or 0),
                str(method) if method else None,
            )


def _day(argument: str, t: datetime) -> str:
    """A bound as a UTC day; flows are kept per day, so a bound must be a UTC midnight."""
    key = time_key(argument, t)
    if not key.endswith("T00:00:00.000000"):
        raise QueryRefused(
            argument,
            f"{argument} must be a UTC midnight (flows are kept per day), e.g. "
            f"{key[:10]}T00:00:00Z",
        )
    return key[:10]


def _days(day: Any, where: FlowFilter) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if where.start is not None:
        out.append(day >= _day("from", where.start))
    if where.end is not None:
        out.append(day < _day("to", where.end))
    return out


def _statements(
    conn: Connection, scope: ReadScope, where: FlowFilter, group_by: GroupBy = GroupBy.STAGE
) -> list[Select[Any]]:
    out: list[Select[Any]] = []

    def visible(lot: FromClause) -> ColumnElement[bool]:
        return lot_visible(scope, lot)  # true() for regulators and the operator

    # collected, transform inputs and losses, disposals: the flow_days rollup, kept up to
    # date at append time (ledger/stages.py flow_rows). A question about everyone — all of
    # it visible, by stage, no region — reads flow_totals, the same sums without the actor:
    # a year of the national network is about 6,000 rows there against 330,000 here.
    if scope.everything and where.region is None and group_by is GroupBy.STAGE:
        t = flow_totals
        out.append(
            select(
                case((t.c.source == "", literal(None, String)), else_=t.c.source).label("source"),
                t.c.target.label("target"),
                literal_column("''", String).label("actor"),
                func.substr(t.c.day, 1, 7, type_=String).label("month"),
                t.c.method.label("method"),
                func.sum(t.c.mass_g).label("mass_g"),
            )
            .where(*_days(t.c.day, where), *_material(t.c.material, where.material))
            .group_by(*[literal_column(str(i)) for i in (1, 2, 4, 5)])
        )
    else:
        f = flow_days
        scoped = [] if scope.everything else [f.c.actor == scope.org]
        out.append(
            select(
                case((f.c.source == "", literal(None, String)), else_=f.c.source).label("source"),
                f.c.target.label("target"),
                f.c.actor.label("actor"),
                func.substr(f.c.day, 1, 7, type_=String).label("month"),
                f.c.method.label("method"),
                func.sum(f.c.mass_g).label("mass_g"),
            )
            .where(
                *_days(f.c.day, where),
                *_material(f.c.material, where.material),
                *_region(f.c.actor, where.region),
                *scoped,
            )
            .group_by(*_first(5))
        )

    # second life: status second_life on lots still in second life
    s, sl, slr = records.alias("s"), lots.alias("sl"), lot_records.alias("slr")
    sdoc = _canonical(conn, s.c.canonical)
    out.append(
        select(
            literal(Stage.COLLECTED.value).label("source"),
            literal(Stage.SECOND_LIFE.value).label("target"),
            s.c.actor.label("actor"),
            _month(s.c.at).label("month"),
            func.sum(sl.c.remaining_g).label("mass_g"),
        )
        .select_from(sl.join(slr, slr.c.lot == sl.c.id).join(s, s.c.seq == slr.c.seq))
        .where(
            sl.c.status.in_(("second_life", "in_transit")),  # ix_lots_status
            or_(sl.c.status == "second_life", sl.c.held_status == "second_life"),
            s.c.type == "status",
            _json_text(conn, sdoc, "body", "status") == "second_life",
            *_period(s.c.at, where),
            *_material(sl.c.material, where.material),
            *_region(s.c.actor, where.region),
            visible(sl),
        )
        .group_by(*_first(4))
    )

    # in transit: transfers not yet received (the lot's latest record is the transfer)
    x, xl, xm = records.alias("x"), lots.alias("xl"), epr_outputs.alias("xm")
    xsource = _lot_class(xl, xm)
    out.append(
        select(
            xsource.label("source"),
            literal(Stage.IN_TRANSIT.value).label("target"),
            x.c.actor.label("actor"),
            _month(x.c.at).label("month"),
            func.sum(xl.c.transit_g).label("mass_g"),
        )
        .select_from(xl.join(x, x.c.seq == xl.c.updated_seq).outerjoin(xm, xm.c.lot == xl.c.id))
        .where(
            xl.c.status == "in_transit",
            x.c.type == "transfer",
            *_period(x.c.at, where),
            *_material(xl.c.material, where.material),
            *_region(x.c.actor, where.region),
            visible(xl),
        )
        .group_by(*_first(4))
    )
    return out


def check_period(where: FlowFilter) -> None:
    """Raise :class:`QueryRefused` for a malformed period (used by callers before a read)."""
    _period(records.c.at, where)


__all__ = [
    "MANUFACTURING",
    "FlowFilter",
    "Flows",
    "GroupBy",
    "Link",
    "Month",
    "Node",
    "Stage",
    "material_flows",
]
