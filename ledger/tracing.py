"""Tracing, the read side of recovered content: a lot's recovered share with its proof, and
a battery's life from its code.

Two questions (DESIGN.md "Recovered content"; issue 4):

* **How much of this lot is recovered material?** :func:`content_of` reads the lot's stored
  ``content`` — its composition for its ``mass_g`` as made, computed by the rules at write
  time (ledger/content.py, the ISO 22095 proportional model) — and never recomputes it.
  :func:`content_proof` gives what justifies it: the upstream lineage (lots, the flows between
  them with their element grams, the hash of the record that made each lot) and the hash of
  every record that shaped that composition, so anyone holding the records and the public
  keys can replay ledger/content.py over them and arrive at the same grams.
  :func:`recycled_content_check` compares the lot with the EU Regulation 2023/1542 Art. 8
  minimum shares (ledger/recycled_content.py).
* **What became of this battery?** :func:`battery` resolves a GB/T 34014-2017 code, a GS1
  battery-passport id or a second-life code to the battery, lists the lots that held it, its
  life as events, its custodians, and the grams of each element attributed to it, followed
  downstream to the lots that hold them now.

Access (ledger/access.py): every lot is read through :func:`ledger.queries.lot_visible` or
:func:`ledger.queries.lineage`, so a hidden lot answers exactly like a missing one, and a walk
never passes through a hidden lot. Records are read only through ``lot_records`` of lots the
viewer may read: such a record is one the viewer may read (it changed a lot it may read).
What the viewer may not see is left out, and the answer says so (``hidden``).

Shares: exact :class:`~fractions.Fraction` arithmetic on integer grams; reported grams and
basis points are rounded down, so a report never overstates recovered content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import case, literal_column, select
from sqlalchemy.engine import Connection, Row

from ledger import queries
from ledger.access import ReadScope
from ledger.battery_codes import BatteryCodeError, Scheme, classify_unit_code
from ledger.content import POST, PRE
from ledger.queries import IN_CHUNK, Direction, LineageEdge, QueryRefused, lot_visible
from ledger.recycled_content import (
    Finding,
    RecycledContentError,
    Tier,
    check_recycled_content,
    default_tiers,
    tier_in_force,
)
from ledger.rows import chunks, lot_from_row
from ledger.state import VOID, Lot
from ledger.tables import lot_edges, lot_records, lot_units, lots, records

BP = 10_000  # basis points in a whole
DEFAULT_PROOF_DEPTH = queries.MAX_LINEAGE_DEPTH
DEFAULT_BATTERY_DEPTH = 20
BATTERY_FAMILY = "batteries"
ELEMENTS_FAMILY = "elements"
BLACK_MASS = "batteries.black_mass"


def share_bp(part: int, whole: int) -> int:
    """``part / whole`` in whole basis points, rounded down (0 for an empty whole)."""
    return part * BP // whole if whole > 0 else 0


def family(material: str) -> str:
    return material.split(".", 1)[0]


def element_grams(content: Mapping[str, int]) -> dict[str, int]:
    """The element grams of a ``content`` map (the keys without a bucket suffix)."""
    return {k: v for k, v in content.items() if "." not in k and k not in (PRE, POST)}


# --- recovered content ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ElementContent:
    """One element of a lot as made: its grams, and the recovered part, pre- and post-consumer."""

    element: str
    mass_g: int
    pre_g: int
    post_g: int

    @property
    def recovered_g(self) -> int:
        return self.pre_g + self.post_g

    @property
    def share(self) -> Fraction:
        return Fraction(self.recovered_g, self.mass_g) if self.mass_g else Fraction(0)

    @property
    def share_bp(self) -> int:
        return share_bp(self.recovered_g, self.mass_g)


@dataclass(frozen=True, slots=True)
class Content:
    """A lot's recovered content as made (its stored ``content``, for its ``mass_g``)."""

    lot: Lot
    pre_g: int
    post_g: int
    elements: tuple[ElementContent, ...]  # by symbol

    @property
    def mass_g(self) -> int:
        return self.lot.mass_g

    @property
    def recovered_g(self) -> int:
        return self.pre_g + self.post_g

    @property
    def share(self) -> Fraction:
        return Fraction(self.recovered_g, self.mass_g) if self.mass_g else Fraction(0)

    @property
    def share_bp(self) -> int:
        return share_bp(self.recovered_g, self.mass_g)

    def element(self, symbol: str) -> ElementContent | None:
        return next((e for e in self.elements if e.element == symbol), None)


def content_of(lot: Lot) -> Content:
    """``lot``'s stored composition as a :class:`Content` (pure: no recomputation)."""
    c = lot.content
    return Content(
        lot,
        c.get(PRE, 0),
        c.get(POST, 0),
        tuple(
            ElementContent(e, g, c.get(f"{e}.{PRE}", 0), c.get(f"{e}.{POST}", 0))
            for e, g in sorted(element_grams(c).items())
        ),
    )


def recovered_content(conn: Connection, scope: ReadScope, lot_id: str) -> Content | None:
    """The recovered content of ``lot_id``; None when it is missing, hidden or void (a lot
    whose making was reversed has no content to speak of)."""
    lot = queries.lots_by_id(conn, scope, [lot_id]).get(lot_id)
    return None if lot is None or lot.status == VOID else content_of(lot)


# --- the proof --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofEdge:
    """``mass_g`` of ``parent`` (holding ``elements`` grams) went into ``child`` by ``record_hash``."""

    parent: str
    child: str
    seq: int
    mass_g: int
    elements: dict[str, int]
    record_hash: str


@dataclass(frozen=True, slots=True)
class ProofLot:
    """A lot of the upstream lineage and the record that made it."""

    lot: Lot
    made_by: str  # hash of the record that made the lot

    @property
    def content(self) -> Content:
        return content_of(self.lot)


@dataclass(frozen=True, slots=True)
class Proof:
    """What justifies a lot's recovered content: its upstream lineage, and the records.

    ``records``: (seq, hash) of every record that changed a lot of ``lots`` up to the last
    flow out of it that the proof shows (the root: every record of it), in ledger order —
    the records to replay through ledger/content.py. ``truncated``: the walk stopped at its
    depth or lot cap; ``hidden``: a flow comes from a lot the viewer may not read. Complete
    means neither: the lineage reaches every origin (a create) of the lot's material.
    """

    root: str
    lots: list[ProofLot]  # the root first, then breadth first
    edges: list[ProofEdge]
    records: list[tuple[int, str]]
    depth: int
    truncated: bool
    hidden: bool

    @property
    def complete(self) -> bool:
        return not (self.truncated or self.hidden)


def content_proof(
    conn: Connection,
    scope: ReadScope,
    lot_id: str,
    max_depth: int = DEFAULT_PROOF_DEPTH,
    max_lots: int = queries.LINEAGE_NODE_CAP,
) -> Proof | None:
    """The proof of ``lot_id``'s recovered content; None when the lot is missing, hidden or void.

    Statements: :func:`ledger.queries.lineage` upstream (one per level), one per
    :data:`~ledger.queries.IN_CHUNK` lots for the flows' element grams and one for the
    records, and — for a viewer who does not read everything — one for the flows the walk
    did not show and one to tell hidden lots from lots beyond the walk's caps.
    """
    if not 1 <= max_lots <= queries.LINEAGE_NODE_CAP:
        raise QueryRefused(
            "maxLots", f"maxLots must lie in 1..{queries.LINEAGE_NODE_CAP}, got {max_lots}"
        )
    found = queries.lineage(conn, scope, lot_id, Direction.UPSTREAM, max_depth, max_lots)
    if found is None or found.root.status == VOID:
        return None
    ids = [x.id for x in found.nodes]
    flows = _edge_elements(conn, ids, by="child")
    edges = [
        ProofEdge(
            e.parent,
            e.child,
            e.seq,
            e.mass_g,
            flows.get((e.parent, e.child, e.seq), {}),
            e.record_hash,
        )
        for e in found.edges
    ]
    # A lot's records matter up to the last flow out of it that the proof shows; the root's
    # all matter (a later ``status retired`` makes it post-consumer).
    cutoff: dict[str, int] = {}
    for e in edges:
        cutoff[e.parent] = max(cutoff.get(e.parent, 0), e.seq)
    created = {x.id: x.created_seq for x in found.nodes}
    made_by: dict[str, str] = {}
    wanted: dict[int, str] = {}
    for row in _records_of(conn, ids):
        lot, seq = row.lot, int(row.seq)
        if seq == created[lot]:
            made_by[lot] = row.hash
        if lot == lot_id or seq <= cutoff.get(lot, 0):
            wanted[seq] = row.hash
    hidden = False
    if not scope.everything:
        shown = {(e.parent, e.child, e.seq) for e in edges}
        hidden = _hidden_neighbours(conn, scope, ids, shown, Direction.UPSTREAM)
    return Proof(
        lot_id,
        [ProofLot(x, made_by[x.id]) for x in found.nodes],
        edges,
        sorted(wanted.items()),
        found.depth,
        found.truncated,
        hidden,
    )


def _edge_elements(
    conn: Connection, ids: Sequence[str], *, by: str
) -> dict[tuple[str, str, int], dict[str, int]]:
    """The element grams of the flows into (``by="child"``) or out of (``"parent"``) ``ids``."""
    e = lot_edges
    out: dict[tuple[str, str, int], dict[str, int]] = {}
    for chunk in chunks(sorted(set(ids)), IN_CHUNK):
        q = select(e.c.parent, e.c.child, e.c.seq, e.c.elements).where(e.c[by].in_(chunk))
        for row in conn.execute(q):
            out[(row.parent, row.child, int(row.seq))] = json.loads(row.elements)
    return out


def _records_of(conn: Connection, ids: Sequence[str]) -> list[Any]:
    """(lot, seq, hash) of every record that changed one of ``ids``."""
    lr, r = lot_records, records
    rows: list[Any] = []
    for chunk in chunks(sorted(set(ids)), IN_CHUNK):
        q = (
            select(lr.c.lot, lr.c.seq, r.c.hash)
            .select_from(lr.join(r, r.c.seq == lr.c.seq))
            .where(lr.c.lot.in_(chunk))
        )
        rows.extend(conn.execute(q).all())
    return rows


def _hidden_neighbours(
    conn: Connection,
    scope: ReadScope,
    ids: Sequence[str],
    shown: set[tuple[str, str, int]],
    direction: Direction,
) -> bool:
    """Whether a flow into (UPSTREAM) or out of (DOWNSTREAM) one of ``ids`` that a walk did
    not show joins a non-void lot ``scope`` may not read.

    A walk leaves out both hidden lots and lots beyond its caps; only the first make an
    answer "hidden" (the second make it "truncated"). Says nothing of what the hidden lot is.
    """
    near, far = ("child", "parent") if direction is Direction.UPSTREAM else ("parent", "child")
    e, other = lot_edges, lots.alias("other")
    unseen: set[str] = set()
    for chunk in chunks(sorted(set(ids)), IN_CHUNK):
        q = (
            select(e.c.parent, e.c.child, e.c.seq)
            .select_from(e.join(other, other.c.id == e.c[far]))
            .where(e.c[near].in_(chunk), other.c.status != VOID)
        )
        for row in conn.execute(q):
            if (row.parent, row.child, int(row.seq)) not in shown:
                unseen.add(row.parent if far == "parent" else row.child)
    if not unseen:
        return False
    return len(queries.lots_by_id(conn, scope, unseen)) < len(unseen)


# --- EU 2023/1542 Art. 8 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Art8Check:
    """The lot's element shares against the Art. 8 targets in force on ``on``."""

    on: date
    article: str
    in_force_from: date
    findings: list[Finding]

    @property
    def meets_all(self) -> bool:
        return all(f.meets for f in self.findings)


@dataclass(frozen=True, slots=True)
class Art8NoTarget:
    """No Art. 8 minimum applies on ``on`` (the first applies from ``first_from``)."""

    on: date
    first_from: date
    message: str


@dataclass(frozen=True, slots=True)
class Art8NotApplicable:
    """Art. 8 says nothing about this lot (not a battery material, or none of its elements)."""

    reason: str


Art8Outcome = Art8Check | Art8NoTarget | Art8NotApplicable


def recycled_content_check(
    content: Content, on: date, tiers: tuple[Tier, ...] | None = None
) -> Art8Outcome:
    """``content`` checked against Regulation (EU) 2023/1542 Art. 8 as in force on ``on``.

    Approximation (documented in the API): Art. 8 measures Co, Li and Ni as shares of the
    element in the battery's *active materials* and Pb of the whole battery; the ledger knows
    only the element grams of the lot as a whole, so for a battery or cathode lot those grams
    stand for the active material (for a cathode lot they are the active material). Recovered
    means pre- plus post-consumer (Art. 8: "recovered from battery manufacturing waste or
    post-consumer waste"). Only lots of the ``batteries`` family are checked.
    """
    all_tiers = default_tiers() if tiers is None else tiers
    material = content.lot.material
    if family(material) != BATTERY_FAMILY:
        return Art8NotApplicable(
            f"{material} is not a battery material: Art. 8 sets recycled-content shares for "
            "batteries (and, through their active materials, cathode lots); check a lot of "
            "the batteries family"
        )
    if tier_in_force(on, all_tiers) is None:
        first = min(t.start for t in all_tiers)
        return Art8NoTarget(
            on,
            first,
            f"no Regulation (EU) 2023/1542 Art. 8 minimum share applies on {on.isoformat()}; "
            f"the first applies from {first.isoformat()}: the shares above stand without a "
            "verdict, or ask again with a later date",
        )
    grams = {e.element: (e.mass_g, e.recovered_g) for e in content.elements}
    try:
        findings = check_recycled_content(on, grams, tiers=all_tiers)
    except RecycledContentError as exc:  # stored content is consistent; fail closed if not
        raise ValueError(f"lot {content.lot.id}: {exc}") from None
    if not findings:
        targeted = sorted({t.element for tier in all_tiers for t in tier.targets})
        return Art8NotApplicable(
            f"{content.lot.id} holds none of the elements Art. 8 sets shares for "
            f"({', '.join(targeted)})"
        )
    tier = tier_in_force(on, all_tiers)
    assert tier is not None
    return Art8Check(on, tier.article, tier.start, findings)


# --- batteries --------------------------------------------------------------------------------


class Stage(StrEnum):
    """Where a battery's life stands after an event (issue 4's life stages).

    Assigned from the record: the ``create`` that registered the code; a ``status``
    placed_on_market / in_use / retired / collected / second_life; a ``receive``, once the
    battery was retired, signed by an organisation other than the one that registered it
    (collected: a delivery to a fleet before retirement is not a collection); the
    ``transform`` of a lot holding it (dismantled: a lot holding units is only transformed
    whole); a ``dispose`` of it; downstream, the transform that made black mass
    (``batteries.black_mass``), recovered elements (the ``elements`` family) or a new cathode
    or precursor (remanufactured). Any other record (a transfer, a split, a merge, another
    status, a void) is "handled".
    """

    REGISTERED = "registered"
    PLACED_ON_MARKET = "placed_on_market"
    IN_USE = "in_use"
    RETIRED = "retired"
    COLLECTED = "collected"
    SECOND_LIFE = "second_life"
    DISMANTLED = "dismantled"
    DISPOSED = "disposed"
    BLACK_MASS = "black_mass"
    RECOVERED_ELEMENTS = "recovered_elements"
    REMANUFACTURED = "remanufactured"
    HANDLED = "handled"


_STATUS_STAGES = {
    "placed_on_market": Stage.PLACED_ON_MARKET,
    "in_use": Stage.IN_USE,
    "retired": Stage.RETIRED,
    "collected": Stage.COLLECTED,
    "second_life": Stage.SECOND_LIFE,
}


@dataclass(frozen=True, slots=True)
class BatteryEvent:
    """One record of the battery's life. ``lots``: the lots of the answer it changed or made."""

    seq: int
    hash: str
    type: str
    actor: str
    at: str
    stage: Stage
    lots: tuple[str, ...]
    status: str | None = None  # for a status record
    note: str | None = None
    voided_by: str | None = None  # the hash of a void record among the events that reversed it


@dataclass(frozen=True, slots=True)
class Custody:
    """``org`` held the battery from ``seq`` (``at``), in ``lot``."""

    org: str
    seq: int
    at: str
    lot: str


@dataclass(frozen=True, slots=True)
class HeldIn:
    """The battery was in ``lot`` from the record ``seq`` (create, split part, merge into)."""

    lot: Lot
    seq: int


@dataclass(frozen=True, slots=True)
class Attributed:
    """The part of one downstream lot attributed to the battery, as exact fractions of grams.

    ``mass`` and ``elements``: of what went into the lot (its ``mass_g`` and content);
    ``mass_now`` and ``elements_now``: of what it still holds (``remaining_g``, ``elements``).
    """

    lot: Lot
    mass: Fraction
    elements: dict[str, Fraction]
    mass_now: Fraction
    elements_now: dict[str, Fraction]


@dataclass(frozen=True, slots=True)
class ElementTrace:
    """Where the battery's grams of one element went (exact; floor them to report)."""

    element: str
    initial: Fraction  # its share of the last lot that held it
    recovered: Fraction  # reached lots of recovered elements (the elements family)
    held_now: Fraction  # still in the lots of the answer


@dataclass(frozen=True, slots=True)
class Battery:
    """A battery and its life. See :func:`battery`."""

    code: str  # the original code's key (ledger.battery_codes.UnitCode.key)
    scheme: Scheme
    second_life_codes: tuple[str, ...]
    held_in: list[HeldIn]  # the lots that held it, in order (void ones left out)
    events: list[BatteryEvent]
    custodians: list[Custody]
    last: HeldIn | None  # the last lot that held it (None: hidden from the viewer)
    units_in_last: int
    downstream: list[Attributed]  # the last lot first, then by the seq that made each
    elements: list[ElementTrace]
    truncated: bool
    hidden: bool

    @property
    def complete(self) -> bool:
        return not (self.truncated or self.hidden)


def unit_key(code: str) -> tuple[str, Scheme]:
    """The canonical key and scheme of a battery code; ``QueryRefused("code")`` if malformed."""
    try:
        unit = classify_unit_code(code)
    except BatteryCodeError as exc:
        raise QueryRefused(
            "code", f"{code[:64]!r} is not a battery code: {exc.message} ({exc.rule})"
        ) from None
    return unit.key, unit.scheme


def battery(
    conn: Connection,
    scope: ReadScope,
    code: str,
    max_depth: int = DEFAULT_BATTERY_DEPTH,
    max_lots: int = queries.LINEAGE_NODE_CAP,
) -> Battery | None:
    """The battery with ``code`` (GB/T 34014-2017, GS1 passport id, or a second-life code of
    either); None when no lot registered it, or the viewer may not read the first lot that held
    it (the producer that placed it on the market reads it through its lineage).

    The lots that held it come from ``lot_units`` (one row each time a lot holding the unit was
    made; a second-life code resolves to its original through ``lot_units.original``). Its
    events are the records of those lots (``lot_records``), plus the record that made each
    downstream lot. Custodians: the signer of the create, and of each receive, split or merge
    of a lot holding it, in order (consecutive repeats dropped).

    **Attribution rule.** In the last lot ``L`` that held the battery, the battery's share is
    ``1 / n`` of ``L``'s mass and of each element of its content, ``n`` being the number of
    units ``L`` holds (the units of a lot are taken as equal: the ledger knows no unit's own
    mass). Downstream, along ``lot_edges`` (each flow carries its mass and element grams), a
    child ``c`` gets ``attributed_E(c) = sum over flows p->c of attributed_E(p) / content_E(p)
    * flow_E(p->c)``, and the same for mass with ``mass_g(p)`` and the flow's ``mass_g`` —
    exact fractions, each lot taken in the order it was made (a parent is made before its
    child). What a lot still holds is ``attributed_E(p) / content_E(p) * elements_E(p)`` (its
    remaining grams). Reported grams are rounded down: the answer never overstates what came
    back. Only material of ``L`` is followed (a lot holding units is split or merged whole,
    with its units, and transformed whole, so nothing of the battery leaves earlier lots).
    The walk is bounded like :func:`ledger.queries.lineage` (``max_depth``, ``max_lots``;
    ``truncated`` says it stopped) and passes through no lot the viewer may not read
    (``hidden`` says one was left out: what lies beyond it is not attributed).
    """
    key, scheme = unit_key(code)
    rows = _unit_lots(conn, scope, key)
    original = next((r.unit_original for r in rows if r.unit_original is not None), None)
    if original is not None:  # a second-life code: the battery is the original's
        key, scheme = original, classify_unit_code(original).scheme
        rows = _unit_lots(conn, scope, key)
    if not rows or not rows[0].visible:
        return None
    held = [HeldIn(lot_from_row(r), int(r.unit_seq)) for r in rows if r.visible]
    hidden = len(held) < len(rows)
    last = held[-1] if rows[-1].visible else None
    events = _unit_events(conn, held)
    custodians = _custodians(events, held)
    downstream: list[Attributed] = []
    recovered: dict[str, Fraction] = {}
    truncated = False
    if last is not None:
        walk = queries.lineage(conn, scope, last.lot.id, Direction.DOWNSTREAM, max_depth, max_lots)
        assert walk is not None  # readable: it was just read with the same scope
        ids = [x.id for x in walk.nodes]
        flows = _edge_elements(conn, ids, by="parent")
        downstream, recovered = attribute(last.lot, walk.nodes, walk.edges, flows)
        truncated = walk.truncated
        if not scope.everything:
            shown = {(e.parent, e.child, e.seq) for e in walk.edges}
            hidden = hidden or _hidden_neighbours(conn, scope, ids, shown, Direction.DOWNSTREAM)
        events = _with_downstream(conn, events, walk.nodes[1:])
    return Battery(
        code=key,
        scheme=scheme,
        second_life_codes=_second_life_codes(held, key),
        held_in=held,
        events=events,
        custodians=custodians,
        last=last,
        units_in_last=len(last.lot.units) if last is not None else 0,
        downstream=downstream,
        elements=_traces(downstream, recovered),
        truncated=truncated,
        hidden=hidden,
    )


def attribute(
    last: Lot,
    nodes: Sequence[Lot],
    edges: Iterable[LineageEdge],
    flows: Mapping[tuple[str, str, int], Mapping[str, int]],
) -> tuple[list[Attributed], dict[str, Fraction]]:
    """The battery's part of each lot of a downstream walk from ``last`` (rule: :func:`battery`),
    and the grams of each element of it that reached lots of recovered elements (flows from a
    lot outside the ``elements`` family into one inside it: a later split or merge of a sulfate
    lot is not counted again).

    Pure. ``nodes``: ``last`` and the lots reached from it; ``edges``: the flows between them;
    ``flows``: each flow's element grams, by (parent, child, seq).
    """
    n = max(len(last.units), 1)
    by_id = {x.id: x for x in nodes}
    into: dict[str, list[LineageEdge]] = {}
    for e in edges:
        if e.parent in by_id and e.child in by_id:
            into.setdefault(e.child, []).append(e)
    contents = {x.id: element_grams(x.content) for x in nodes}
    mass: dict[str, Fraction] = {last.id: Fraction(last.mass_g, n)}
    elems: dict[str, dict[str, Fraction]] = {
        last.id: {s: Fraction(g, n) for s, g in contents[last.id].items()}
    }
    recovered: dict[str, Fraction] = {}
    ordered = sorted((x for x in nodes if x.id != last.id), key=lambda x: (x.created_seq, x.id))
    for child in ordered:
        m = Fraction(0)
        el: dict[str, Fraction] = {}
        entering = family(child.material) == ELEMENTS_FAMILY
        for e in into.get(child.id, []):
            p = by_id[e.parent]
            if p.id not in mass:  # not reached from ``last`` before ``child`` was made
                continue
            if p.mass_g:
                m += mass[p.id] / p.mass_g * e.mass_g
            for s, g in flows.get((e.parent, e.child, e.seq), {}).items():
                whole = contents[p.id].get(s, 0)
                if whole and s in elems[p.id]:
                    part = elems[p.id][s] / whole * g
                    el[s] = el.get(s, Fraction(0)) + part
                    if entering and family(p.material) != ELEMENTS_FAMILY:
                        recovered[s] = recovered.get(s, Fraction(0)) + part
        mass[child.id] = m
        elems[child.id] = {s: v for s, v in el.items() if v}
    out: list[Attributed] = []
    for x in [last, *ordered]:
        made = contents[x.id]
        out.append(
            Attributed(
                x,
                mass[x.id],
                elems[x.id],
                mass[x.id] / x.mass_g * x.remaining_g if x.mass_g else Fraction(0),
                {
                    s: v / made[s] * x.elements.get(s, 0)
                    for s, v in elems[x.id].items()
                    if made.get(s)
                },
            )
        )
    return out, recovered


def _traces(
    downstream: Sequence[Attributed], recovered: Mapping[str, Fraction]
) -> list[ElementTrace]:
    if not downstream:
        return []
    first = downstream[0]
    return [
        ElementTrace(
            s,
            first.elements.get(s, Fraction(0)),
            recovered.get(s, Fraction(0)),
            sum((a.elements_now.get(s, Fraction(0)) for a in downstream), Fraction(0)),
        )
        for s in sorted(first.elements)
    ]


def _unit_lots(conn: Connection, scope: ReadScope, key: str) -> list[Row[Any]]:
    """The non-void lots that held unit ``key``, in order, each with ``unit_seq`` (the record
    that put the unit in it), ``unit_original`` and whether ``scope`` may read it."""
    lu = lot_units
    flag = case((lot_visible(scope, lots), literal_column("1")), else_=literal_column("0"))
    q = (
        select(
            lots,
            lu.c.seq.label("unit_seq"),
            lu.c.original.label("unit_original"),
            flag.label("visible"),
        )
        .select_from(lu.join(lots, lots.c.id == lu.c.lot))
        .where(lu.c.unit == key, lots.c.status != VOID)
        .order_by(lu.c.seq, lots.c.id)
    )
    return list(conn.execute(q).all())


def _second_life_codes(held: Sequence[HeldIn], key: str) -> tuple[str, ...]:
    """The keys of the second-life codes the lots gave the battery (GB/T 34014-2017 §4.2)."""
    found: set[str] = set()
    for h in held:
        for unit, new in h.lot.recoded.items():
            if classify_unit_code(unit).key == key:
                found.add(classify_unit_code(new).key)
    return tuple(sorted(found))


def _unit_events(conn: Connection, held: Sequence[HeldIn]) -> list[BatteryEvent]:
    """The records of the lots that held the battery, one event each, in ledger order."""
    ids = [h.lot.id for h in held]
    lr, r = lot_records, records
    body = case((r.c.type.in_(("status", "void")), r.c.canonical), else_=None)
    touched: dict[int, list[str]] = {}
    found: dict[int, Any] = {}  # seq -> row
    for chunk in chunks(sorted(set(ids)), IN_CHUNK):
        q = (
            select(lr.c.lot, r.c.seq, r.c.hash, r.c.type, r.c.actor, r.c.at, body.label("body"))
            .select_from(lr.join(r, r.c.seq == lr.c.seq))
            .where(lr.c.lot.in_(chunk))
        )
        for row in conn.execute(q):
            touched.setdefault(int(row.seq), []).append(row.lot)
            found[int(row.seq)] = row
    order = {lot: i for i, lot in enumerate(ids)}
    registered = held[0].seq
    producer = found[registered].actor if registered in found else None
    events: list[BatteryEvent] = []
    voided: dict[str, str] = {}
    retired = False
    for seq in sorted(found):
        row = found[seq]
        status = note = None
        stage = Stage.HANDLED
        if row.body is not None:
            env = json.loads(bytes(row.body))
            b = env.get("body", {})
            if row.type == "void":
                voided[str(b.get("record"))] = row.hash
            else:
                status, note = b.get("status"), b.get("note")
                stage = _STATUS_STAGES.get(str(status), Stage.HANDLED)
                retired = retired or stage is Stage.RETIRED
        elif seq == registered and row.type == "create":
            stage = Stage.REGISTERED
        elif row.type == "receive" and retired and row.actor != producer:
            stage = Stage.COLLECTED
        elif row.type == "transform":  # a lot holding units is only transformed whole
            stage = Stage.DISMANTLED
        elif row.type == "dispose":
            stage = Stage.DISPOSED
        lots_of = tuple(sorted(touched[seq], key=order.__getitem__))
        events.append(
            BatteryEvent(seq, row.hash, row.type, row.actor, row.at, stage, lots_of, status, note)
        )
    return [e if e.hash not in voided else _evolve(e, voided_by=voided[e.hash]) for e in events]


def _evolve(e: BatteryEvent, **changes: Any) -> BatteryEvent:
    values = {name: getattr(e, name) for name in BatteryEvent.__slots__}
    values.update(changes)
    return BatteryEvent(**values)


def _custodians(events: Sequence[BatteryEvent], held: Sequence[HeldIn]) -> list[Custody]:
    """Who held the battery, in order: the signer of each create, receive, split or merge of
    a lot holding it (the custodian signs those; a transfer leaves custody with the sender
    until the receive). A voided record gave no custody."""
    made_at = {h.seq: h.lot.id for h in held}
    out: list[Custody] = []
    for e in events:
        if e.type not in ("create", "receive", "split", "merge") or e.voided_by is not None:
            continue
        lot = made_at.get(e.seq, e.lots[-1])
        if not out or out[-1].org != e.actor:
            out.append(Custody(e.actor, e.seq, e.at, lot))
    return out


def _with_downstream(
    conn: Connection, events: list[BatteryEvent], made: Sequence[Lot]
) -> list[BatteryEvent]:
    """``events`` plus, for each lot downstream of the battery, the record that made it (one
    event per record, in ledger order), staged by what it made."""
    by_seq: dict[int, list[Lot]] = {}
    for x in made:
        by_seq.setdefault(x.created_seq, []).append(x)
    known = {e.seq: e for e in events}
    out = [
        e if e.seq not in by_seq else _evolve(e, lots=(*e.lots, *(x.id for x in by_seq[e.seq])))
        for e in events
    ]
    missing = sorted(set(by_seq) - set(known))
    r = records
    for chunk in chunks(missing, IN_CHUNK):
        q = select(r.c.seq, r.c.hash, r.c.type, r.c.actor, r.c.at).where(r.c.seq.in_(chunk))
        for row in conn.execute(q):
            lots_made = by_seq[int(row.seq)]
            out.append(
                BatteryEvent(
                    int(row.seq),
                    row.hash,
                    row.type,
                    row.actor,
                    row.at,
                    _made_stage(row.type, (x.material for x in lots_made)),
                    tuple(x.id for x in lots_made),
                )
            )
    out.sort(key=lambda e: e.seq)
    return out


def _made_stage(rtype: str, materials: Iterable[str]) -> Stage:
    """The stage of a downstream record: only a transform changes what the material is."""
    found = set(materials) if rtype == "transform" else set()
    if any(family(m) == ELEMENTS_FAMILY for m in found):
        return Stage.RECOVERED_ELEMENTS
    if BLACK_MASS in found:
        return Stage.BLACK_MASS
    if any(m.startswith(("batteries.cathode.", "batteries.pcam.")) for m in found):
        return Stage.REMANUFACTURED
    return Stage.HANDLED
