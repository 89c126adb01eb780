"""The read side: lots, records, organisations and lineage, filtered by access.

Plain SQLAlchemy Core over a :class:`~sqlalchemy.engine.Connection`, the
same statements on SQLite and PostgreSQL; no GraphQL here. Every function
that returns lots or records takes the viewer's :class:`~ledger.access.ReadScope`
and filters *in SQL* (:func:`lot_visible`, :func:`record_visible`), so a
hidden row is never loaded, and a hidden row answers exactly like a missing one.

Pagination is keyset, never OFFSET: lots are ordered by id, records by
``seq``; a page asks for ``first + 1`` rows after the last key seen, and the
extra row only says whether there is a next page.

Lineage walks ``lot_edges`` breadth first, one statement per level (``IN``
batches of :data:`IN_CHUNK`), bounded by ``max_depth`` (at most
:data:`MAX_LINEAGE_DEPTH`) and :data:`LINEAGE_NODE_CAP` nodes. Edges into or
out of ``void`` lots are skipped: a voided record's edges stay in
``lot_edges`` (the table is a projection of what was recorded), but the lot
they lead to no longer exists in any useful sense.

Times: ``at`` is stored as the envelope's text (``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z``,
always UTC). Those strings do not sort as times when some have fractions and
some have not (``…:00.5Z`` < ``…:00Z``), so time filters compare a
fixed-width key (:func:`at_key`) built from it in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    FromClause,
    Select,
    String,
    and_,
    case,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    union,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.sql.selectable import CTE

from ledger import merkle_log
from ledger.access import Ground, ReadScope
from ledger.database import driver_rows, placeholder
from ledger.envelope import REGION_RE
from ledger.errors import LedgerError, StoreUnavailable
from ledger.rows import chunks, lot_from_row, org_from_row
from ledger.state import VOID, Lot, Org
from ledger.store import StoredRecord
from ledger.tables import by_hash_prefix, lot_edges, lot_records, lots, orgs, records

DEFAULT_PAGE = 50
MAX_PAGE = 500
DEFAULT_LINEAGE_DEPTH = 10
MAX_LINEAGE_DEPTH = 50
LINEAGE_NODE_CAP = 5_000
IN_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

T = TypeVar("T")


class QueryRefused(LedgerError):
    """A read was asked with an argument it cannot take. ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument
        self.message = message


class Direction(StrEnum):
    UPSTREAM = "upstream"  # towards the lots this one was made from
    DOWNSTREAM = "downstream"  # towards the lots made from this one


@dataclass(frozen=True, slots=True)
class LotFilter:
    """All given fields must match. ``material``: a code, or a family/grade prefix
    (``steel`` matches ``steel.hms1``). ``region``: ISO 3166-2 of the custodian,
    or a prefix of it (``CN`` matches ``CN-GD``). ``created_from`` (inclusive) and
    ``created_to`` (exclusive) bound the ``at`` of the record that created the lot."""

    material: str | None = None
    custodian: str | None = None
    status: str | None = None
    region: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """All given fields must match. ``lot``: records that changed this lot.
    ``at_from`` (inclusive) and ``at_to`` (exclusive) bound the record's ``at``."""

    type: str | None = None
    actor: str | None = None
    lot: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """``mass_g`` of lot ``parent`` went into lot ``child`` by the record ``seq``/``record_hash``."""

    parent: str
    child: str
    seq: int
    mass_g: int
    record_hash: str


@dataclass(frozen=True, slots=True)
class Lineage:
    """The lots reached from ``root`` (first in ``nodes``), in breadth-first order.

    ``truncated``: something reachable was left out, because of ``max_depth`` or
    :data:`LINEAGE_NODE_CAP`. ``depth``: the farthest level (in edges from
    ``root``) at which a lot was reached; 0 when none was.
    """

    root: Lot
    nodes: list[Lot]
    edges: list[LineageEdge]
    depth: int
    truncated: bool


# --- running reads ---------------------------------------------------------------


def read(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` on a fresh connection; a database failure becomes
    :class:`StoreUnavailable` (retryable) with no driver text in it."""
    try:
        with engine.connect() as conn:
            return fn(conn, *args)
    except DataError:
        # The arguments, not the database: retrying can't help (found in review).
        raise QueryRefused(
            "input",
            "the database can't compare a value of this query (a NUL character, say); remove it",
        ) from None
    except DBAPIError:
        raise StoreUnavailable("the database failed during a read; retry the query") from None


# --- access in SQL (the rules are ledger.access's) ------------------------------------


def lot_visible(scope: ReadScope, lot: FromClause) -> ColumnElement[bool]:
    """True for the rows of ``lot`` (the lots table or an alias) ``scope`` may read."""
    if scope.everything:
        return true()
    org = scope.org
    grounds: list[ColumnElement[bool]] = []
    if Ground.CUSTODIAN in scope.grounds:
        grounds.append(lot.c.custodian == org)
    if Ground.IN_TRANSIT_TO in scope.grounds:
        grounds.append(lot.c.transit_to == org)
    if Ground.HANDLED in scope.grounds:
        lr, r = lot_records.alias(), records.alias()
        grounds.append(exists().where(lr.c.lot == lot.c.id, r.c.seq == lr.c.seq, r.c.actor == org))
    if Ground.PRODUCER_LINEAGE in scope.grounds:
        grounds.append(lot.c.id.in_(producer_lineage(scope)))
    return or_(*grounds) if grounds else false()


def record_visible(scope: ReadScope, rec: FromClause) -> ColumnElement[bool]:
    """True for the rows of ``rec`` (records or an alias) ``scope`` may read:
    records it signed, and records that changed a lot it may read."""
    if scope.everything:
        return true()
    lr, lot = lot_records.alias(), lots.alias()
    touches = exists().where(lr.c.seq == rec.c.seq, lot.c.id == lr.c.lot, lot_visible(scope, lot))
    return or_(rec.c.actor == scope.org, touches)


def producer_lineage(scope: ReadScope) -> Select[Any]:
    """The ids of the lots upstream or downstream of a lot whose creating record
    ``scope.org`` signed (never through a ``void`` lot).

    Two recursive CTEs (``WITH RECURSIVE``, the same text on SQLite and
    PostgreSQL) whose rows are lot ids alone, so ``UNION`` visits each lot
    once: the walk costs the lots reached, whatever the shape of the graph.
    (A first cut carried a depth column to stop at 50 edges; rows of (id,
    depth) let a lot come back once per path length, and at 100,000 records
    one producer's walk took 2.6 s for 6,862 lots.)
    """
    org = scope.org
    r, lr, made = records.alias(), lot_records.alias(), lots.alias()
    seeds = (
        select(made.c.id.label("id"))
        .select_from(
            r.join(lr, lr.c.seq == r.c.seq).join(
                made, and_(made.c.id == lr.c.lot, made.c.created_seq == r.c.seq)
            )
        )
        .where(r.c.actor == org, made.c.status != VOID)
        .cte("producer_seeds")
    )

    def walk(name: str, near: str, far: str) -> CTE:
        start = select(seeds.c.id).cte(name, recursive=True)
        prev, e, lot = start.alias(), lot_edges.alias(), lots.alias()
        step = (
            select(e.c[far])
            .select_from(prev.join(e, e.c[near] == prev.c.id).join(lot, lot.c.id == e.c[far]))
            .where(lot.c.status != VOID)
        )
        return start.union(step)

    up = walk("producer_up", "child", "parent")
    down = walk("producer_down", "parent", "child")
    return select(union(select(up.c.id), select(down.c.id)).subquery().c.id)


# --- organisations ----------------------------------------------------------------


def orgs_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Org]:
    """Organisations by id (readable by every participant); unknown ids are absent."""
    return {
        o.id: o
        for rows in _in_chunks(conn, ids, lambda c: select(orgs).where(orgs.c.id.in_(c)))
        for o in map(org_from_row, rows)
    }


def all_orgs(conn: Connection) -> list[Org]:
    return [org_from_row(r) for r in conn.execute(select(orgs).order_by(orgs.c.id))]


# --- lots -------------------------------------------------------------------------


def lots_by_id(conn: Connection, scope: ReadScope, ids: Iterable[str]) -> dict[str, Lot]:
    """The lots among ``ids`` that exist and ``scope`` may read."""
    return {
        lot.id: lot
        for rows in _in_chunks(
            conn,
            ids,
            lambda c: select(lots).where(lots.c.id.in_(c), lot_visible(scope, lots)),
        )
        for lot in map(lot_from_row, rows)
    }


def lots_page(
    conn: Connection,
    scope: ReadScope,
    where: LotFilter,
    first: int | None = DEFAULT_PAGE,
    after: str | None = None,
) -> Page[Lot]:
    """One page of the lots ``scope`` may read that match ``where``, by id, after ``after``."""
    n = page_size(first)
    q = select(lots).where(lot_visible(scope, lots))
    if where.material is not None:
        m = where.material
        q = q.where(or_(lots.c.material == m, lots.c.material.startswith(m + ".", autoescape=True)))
    if where.custodian is not None:
        q = q.where(lots.c.custodian == where.custodian)
    if where.status is not None:
        q = q.where(lots.c.status == where.status)
    if where.region is not None:
        region = where.region
        if not REGION_RE.fullmatch(region):
            raise QueryRefused(
                "filter.region",
                f"region {region[:16]!r} is not an ISO 3166-2 code or country prefix; "
                "give e.g. CN or CN-GD",
            )
        in_region = select(orgs.c.id).where(
            or_(orgs.c.region == region, orgs.c.region.startswith(region + "-", autoescape=True))
        )
        q = q.where(lots.c.custodian.in_(in_region))
    if where.created_from is not None or where.created_to is not None:
        created = records.alias("created")
        q = q.join(created, created.c.seq == lots.c.created_seq).where(
            *_time_bounds(
                created.c.at,
                where.created_from,
                where.created_to,
                "filter.createdFrom",
                "filter.createdTo",
            )
        )
    if after is not None:
        q = q.where(lots.c.id > after)
    rows = conn.execute(q.order_by(lots.c.id).limit(n + 1)).all()
    return Page([lot_from_row(r) for r in rows[:n]], len(rows) > n)


# --- records ------------------------------------------------------------------------


def records_by_hash(
    conn: Connection, scope: ReadScope, hashes: Iterable[str]
) -> dict[str, StoredRecord]:
    """The records among ``hashes`` that exist and ``scope`` may read.

    For a reader of everything (no access expression) the statement is plain SQL text on
    the driver's own cursor (:func:`_records_by_prefix`): no statement compiler, no
    bound-parameter expansion, no ``Row`` objects. It is the first half of every
    ``inclusionProof`` (docs/adr/0008-hot-reads-below-sqlalchemy.md)."""
    wanted = {h for h in hashes if isinstance(h, str) and len(h) == 64}
    out: dict[str, StoredRecord] = {}
    for chunk in chunks(sorted(wanted), IN_CHUNK):
        if scope.everything:
            found = map(StoredRecord.from_columns, _records_by_prefix(conn, chunk))
        else:
            q = select(records).where(by_hash_prefix(chunk), record_visible(scope, records))
            found = map(StoredRecord.from_row, conn.execute(q).all())
        for rec in found:
            if rec.hash in wanted:  # the index matches 16 hex digits; keep exact matches
                out[rec.hash] = rec
    return out


def inclusion_by_hash(
    conn: Connection, scope: ReadScope, record_hash: str, size: int
) -> merkle_log.Inclusion | None:
    """The inclusion proof of the record ``record_hash`` in the tree of ``size`` leaves;
    None when no record has that hash or ``scope`` may not read it (``inclusionProof``).

    For a reader of everything on PostgreSQL, one round trip finds the record and reads
    its proof (:func:`ledger.merkle_log.inclusion_by_record_hash_pg`): over loopback TCP
    each statement costs at least 0.2 ms. Otherwise two: the record
    with the access check, then its proof."""
    one_statement = conn.dialect.name == "postgresql" and size in merkle_log.ONE_STATEMENT_SIZES
    if scope.everything and one_statement:
        return merkle_log.inclusion_by_record_hash_pg(conn, record_hash, size)
    found = records_by_hash(conn, scope, [record_hash]).get(record_hash)
    if found is None:
        return None
    return merkle_log.inclusion_for_record(conn, found.hash, found.seq, size)


def _records_by_prefix(conn: Connection, hashes: Sequence[str]) -> list[Sequence[Any]]:
    """Whole records (their columns in table order) whose hash starts as one of ``hashes``
    does (16 hex digits), on the driver's own cursor (:func:`ledger.database.driver_rows`),
    through ix_records_hash16: ``substr(hash, 1, 16)`` written exactly as the index's
    expression, the 1 and 16 in the text (see :func:`ledger.tables.by_hash_prefix`)."""
    prefixes = sorted({h[:16] for h in hashes})
    mark = placeholder(conn)
    columns = ", ".join(c.name for c in records.columns)
    sql = (
        f"SELECT {columns} FROM records "
        f"WHERE substr(hash, 1, 16) IN ({', '.join([mark] * len(prefixes))})"
    )
    return driver_rows(conn, sql, prefixes)


def records_by_seq(
    conn: Connection, scope: ReadScope, seqs: Iterable[int]
) -> dict[int, StoredRecord]:
    """The records among ``seqs`` that exist and ``scope`` may read."""
    return {
        rec.seq: rec
        for rows in _in_chunks(
            conn,
            seqs,
            lambda c: select(records).where(records.c.seq.in_(c), record_visible(scope, records)),
        )
        for rec in map(StoredRecord.from_row, rows)
    }


def lots_of_records(conn: Connection, seqs: Iterable[int]) -> dict[int, list[str]]:
    """The ids of the lots each record changed (from ``lot_records``), sorted.

    No access filter: call it for records the viewer may read; their
    envelopes name these lots anyway."""
    out: dict[int, list[str]] = {}
    for rows in _in_chunks(
        conn,
        seqs,
        lambda c: (
            select(lot_records.c.seq, lot_records.c.lot)
            .where(lot_records.c.seq.in_(c))
            .order_by(lot_records.c.seq, lot_records.c.lot)
        ),
    ):
        for row in rows:
            out.setdefault(int(row.seq), []).append(row.lot)
    return out


def records_page(
    conn: Connection,
    scope: ReadScope,
    where: EventFilter,
    first: int | None = DEFAULT_PAGE,
    after: int | None = None,
) -> Page[StoredRecord]:
    """One page of the records ``scope`` may read that match ``where``, by seq, after ``after``."""
    n = page_size(first)
    q = select(records).where(record_visible(scope, records))
    if where.type is not None:
        q = q.where(records.c.type == where.type)
    if where.actor is not None:
        q = q.where(records.c.actor == where.actor)
    if where.lot is not None:
        q = q.where(
            records.c.seq.in_(select(lot_records.c.seq).where(lot_records.c.lot == where.lot))
        )
    q = q.where(*_time_bounds(records.c.at, where.at_from, where.at_to, "filter.from", "filter.to"))
    if after is not None:
        q = q.where(records.c.seq > after)
    rows = conn.execute(q.order_by(records.c.seq).limit(n + 1)).all()
    return Page([StoredRecord.from_row(r) for r in rows[:n]], len(rows) > n)


# --- lineage --------------------------------------------------------------------------


def lineage(
    conn: Connection,
    scope: ReadScope,
    lot_id: str,
    direction: Direction = Direction.UPSTREAM,
    max_depth: int = DEFAULT_LINEAGE_DEPTH,
    node_cap: int = LINEAGE_NODE_CAP,
) -> Lineage | None:
    """The lineage of ``lot_id`` in ``direction``, or None if the lot is missing or hidden.

    For a scope that does not read everything, only lots it may read are
    walked and returned: the walk does not pass through a hidden lot, so
    the answer shows no edge to or from one (and says nothing of what lies
    beyond it). Statements: one for the root, one per level (per
    :data:`IN_CHUNK` lots of a level), one probe when ``max_depth`` ends the
    walk, and for a producer one for its lineage set (see :class:`_WalkAccess`).
    """
    if not 0 <= max_depth <= MAX_LINEAGE_DEPTH:
        raise QueryRefused(
            "maxDepth",
            f"maxDepth must lie in 0..{MAX_LINEAGE_DEPTH}, got {max_depth}; "
            "walk further from a lot at the edge of the answer",
        )
    access = _WalkAccess.of(conn, scope)
    q = select(lots, access.flag(lots)).where(lots.c.id == lot_id, *access.where(lots))
    found = conn.execute(q).first()
    if found is None or not access.visible(found):
        return None
    root = lot_from_row(found)
    seen: dict[str, Lot] = {root.id: root}
    edges: list[LineageEdge] = []
    frontier = [] if root.status == VOID else [root.id]
    truncated = False
    level = depth = 0
    while frontier and level < max_depth:
        level += 1
        following: list[str] = []
        for row in _lineage_level(conn, access, frontier, direction):
            if not access.visible(row):
                continue
            if row.id not in seen:
                if len(seen) >= node_cap:
                    truncated = True
                    continue
                seen[row.id] = lot_from_row(row)
                following.append(row.id)
            edges.append(
                LineageEdge(
                    row.edge_parent,
                    row.edge_child,
                    int(row.edge_seq),
                    int(row.edge_mass_g),
                    row.edge_hash,
                )
            )
        frontier = following
        if following:
            depth = level
    if frontier and not truncated:  # stopped by max_depth: is there more?
        truncated = any(
            access.visible(r) for r in _lineage_level(conn, access, frontier, direction)
        )
    return Lineage(root, list(seen.values()), edges, depth, truncated)


@dataclass(frozen=True, slots=True)
class _WalkAccess:
    """How a lineage walk decides what it may show.

    Usually in SQL, in each level's WHERE. For a producer, whose lineage set
    is a recursive query (:func:`producer_lineage`), that set is read once per
    walk instead of once per level: the level statements then return every
    non-void neighbour with a ``visible`` flag for the other grounds, and a
    row is shown when flagged or in the set.
    """

    scope: ReadScope  # what SQL decides
    lineage_set: frozenset[str] | None  # the producer's lineage set; None: SQL decides alone

    @staticmethod
    def of(conn: Connection, scope: ReadScope) -> _WalkAccess:
        if scope.everything or Ground.PRODUCER_LINEAGE not in scope.grounds:
            return _WalkAccess(scope, None)
        ids = frozenset(str(x) for x in conn.execute(producer_lineage(scope)).scalars())
        rest = replace(scope, grounds=scope.grounds - {Ground.PRODUCER_LINEAGE})
        return _WalkAccess(rest, ids)

    def where(self, lot: FromClause) -> list[ColumnElement[bool]]:
        return [lot_visible(self.scope, lot)] if self.lineage_set is None else []

    def flag(self, lot: FromClause) -> ColumnElement[Any]:
        if self.lineage_set is None:
            return literal_column("1").label("visible")
        shown = lot_visible(self.scope, lot)
        return case((shown, literal_column("1")), else_=literal_column("0")).label("visible")

    def visible(self, row: Row[Any]) -> bool:
        return bool(row.visible) or (self.lineage_set is not None and row.id in self.lineage_set)


def _lineage_level(
    conn: Connection, access: _WalkAccess, frontier: Sequence[str], direction: Direction
) -> list[Row[Any]]:
    """The edges from ``frontier`` one step in ``direction``, each with the lot at its far
    end (never a void one) and that lot's ``visible`` flag, in (seq, parent, child) order."""
    e, far, rec = lot_edges.alias("e"), lots.alias("far"), records.alias("r")
    near_col, far_col = (
        (e.c.child, e.c.parent) if direction is Direction.UPSTREAM else (e.c.parent, e.c.child)
    )
    out: list[Row[Any]] = []
    for chunk in chunks(sorted(frontier), IN_CHUNK):
        q = (
            select(
                far,
                access.flag(far),
                e.c.parent.label("edge_parent"),
                e.c.child.label("edge_child"),
                e.c.seq.label("edge_seq"),
                e.c.mass_g.label("edge_mass_g"),
                rec.c.hash.label("edge_hash"),
            )
            .select_from(e.join(far, far.c.id == far_col).join(rec, rec.c.seq == e.c.seq))
            .where(near_col.in_(chunk), far.c.status != VOID, *access.where(far))
            .order_by(e.c.seq, e.c.parent, e.c.child)
        )
        out.extend(conn.execute(q).all())
    return out


# --- helpers ----------------------------------------------------------------------------


def page_size(first: int | None) -> int:
    """``first`` checked: 0..MAX_PAGE (None: the default)."""
    if first is None:
        return DEFAULT_PAGE
    if first < 0:
        raise QueryRefused("first", f"first must be 0 or more, got {first}")
    if first > MAX_PAGE:
        raise QueryRefused(
            "first",
            f"first may be at most {MAX_PAGE}, got {first}; "
            "fetch the next page with after: pageInfo.endCursor",
        )
    return first


def at_key(column: Any) -> ColumnElement[str]:
    """A stored ``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffff`` (26 characters), which sorts as time."""
    n = func.length(column)
    return case(
        (n == 20, func.substr(column, 1, 19, type_=String) + ".000000"),
        else_=func.substr(
            func.substr(column, 1, n - 1, type_=String) + "00000", 1, 26, type_=String
        ),
    )


def time_key(argument: str, t: datetime) -> str:
    """A time bound in the form :func:`at_key` builds; it must carry a time zone."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise QueryRefused(argument, f"{argument} needs a time zone, e.g. 2026-11-20T08:15:00Z")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _time_bounds(
    column: Any, start: datetime | None, end: datetime | None, start_arg: str, end_arg: str
) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if start is not None:
        out.append(at_key(column) >= time_key(start_arg, start))
    if end is not None:
        out.append(at_key(column) < time_key(end_arg, end))
    return out


def _in_chunks(
    conn: Connection, values: Iterable[Any], build: Callable[[Sequence[Any]], Select[Any]]
) -> Iterable[Sequence[Row[Any]]]:
    for chunk in chunks(sorted(set(values)), IN_CHUNK):
        yield conn.execute(build(chunk)).all()
