"""The read side of EPR (DESIGN.md "EPR"): compliance reports, scheme-wide totals, anomaly
flags, certificates with the evidence they stand on, and battery collection rates.

Plain SQLAlchemy Core over a :class:`~sqlalchemy.engine.Connection` (the same statements on
SQLite and PostgreSQL), no GraphQL. Schemes are data (:mod:`ledger.epr_schemes`); every
figure is computed from the projections the write side keeps (``declarations``,
``certificates``, ``epr_outputs``) in integer grams; shares are exact fractions reported in
basis points rounded down (1 bp = 0.01 %).

**Who reads what** (the EPR part of the access policy; the rest is ledger/access.py):

* a producer's report (:func:`report`): the producer itself, regulators and the operator;
* scheme-wide totals and flags (:func:`totals`, :func:`flags`): regulators and the operator;
* a certificate (:func:`certificate`): its issuer, its holder (the producer that holds or
  retired it), regulators and the operator. Whoever may read a certificate may read the
  evidence it stands on: its backing lots and their upstream lineage, whoever handled them
  (:func:`evidence_scope`) — that is what a certificate is for.

Anything else answers ``None``, exactly like something that does not exist.

**The figures of a report**, for one producer, scheme, period and category:

* placed on market = Σ of the producer's ``declare`` mass (and units) for it;
* obligation = :meth:`~ledger.epr_schemes.Category.obligation_g` of that sum (declared ×
  the target in force for the period, rounded up: it never understates);
* held = Σ of the certificates of that scheme, category and period the producer holds and
  has not retired; retired = Σ of those it retired against the period (a certificate is
  retired only against its own period, so both are of the same period);
* gap = max(0, obligation − retired); compliance = retired / obligation (10,000 bp when
  nothing is owed), not capped: above 10,000 bp the producer retired more than it owed.

Totals of a report add the categories' grams up (for schemes counted in grams of an element,
grams of different elements); its compliance counts at most the obligation of each
category, so a surplus in one does not hide a gap in another.

**Flags** (:func:`flags`), computed at read time for the recyclers that issued certificates
of a scheme and period — each says what was compared with what, in grams:

* ``yield``: the recycler's certified grams of a category exceed its recorded inputs times
  the highest plausible yield of the processes (``yield_permille`` of
  ledger/data/materials.toml). Inputs = Σ ``inputs[].mass_g`` of its non-void transforms of
  the category's eligible processes in the period that made at least one eligible output;
  allowed = Σ ⌈inputs × highest yield / 1000⌉ per transform (a process without a yield
  range counts at 1000 ‰: mass balance). Categories counted in grams of an element are not
  yield-flagged: the rules already bound each output's element grams by its inputs'
  (``element.exceeds_inputs``).
* ``capacity``: the grams it certified of a category on lots of a material exceed the
  permitted annual capacity it registered for that material (``org.register`` capacity,
  grams per year), prorated to the period: ⌈capacity × months / 12⌉ (a quarter is 3 months).
  For a category counted in grams of an element, those grams are fewer than the lots' mass,
  so a capacity flag there is never a false one.

**Battery collection rate** (:func:`collection_rate`), for schemes whose categories declare
batteries, from the producer's own battery codes (``lot_units``):

* registered: the units the producer registered — the codes of lots it created (its
  ``create`` records, not voided) — before the end of the period;
* a unit is *collected* at the first of these on a lot holding it (``lot_units``): a
  ``status`` "collected"; after a ``status`` "retired" (the battery became waste), a
  ``transfer`` of it, or a ``receive`` of it signed by an organisation other than the
  producer. Voided records don't count. A battery sold, leased or delivered to a fleet is
  not collected: it is not waste yet;
* rate = units collected in the period / units registered before its end and not collected
  before it (the batteries still out there during the period), in basis points rounded
  down; 0 when there were none. Regulation (EU) 2023/1542 Annex XI measures collection
  against the average *mass* placed on the market in the year and the two before: that is
  what the producer declares (placedOnMarketG); this rate is the unit-level view the codes
  allow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from ledger import queries
from ledger.access import Ground, ReadScope
from ledger.epr_schemes import Category, Scheme, default_schemes
from ledger.materials import default_taxonomy
from ledger.queries import IN_CHUNK, Direction, Lineage, QueryRefused, at_key
from ledger.rows import certificate_from_row, chunks, org_from_row, output_from_row
from ledger.state import VOID, Certificate, Org, Output
from ledger.tables import (
    certificates,
    declarations,
    epr_outputs,
    lot_records,
    lot_units,
    lots,
    orgs,
    records,
)

BP = 10_000  # basis points in a whole
PERMILLE = 1_000
MASS = "mass"  # the measure of a category without an element (epr_outputs JSON key)
BATTERY_FAMILY = "batteries"


def share_bp(part: int, whole: int) -> int:
    """``part / whole`` in basis points, rounded down; 0 when ``whole`` is 0."""
    return part * BP // whole if whole > 0 else 0


def compliance_bp(retired_g: int, obligation_g: int) -> int:
    """Retired / obligation in basis points, rounded down; 10,000 when nothing is owed."""
    return BP if obligation_g <= 0 else retired_g * BP // obligation_g


def measure(category: Category) -> str:
    """What the category's grams are of: ``"mass"``, or an element symbol."""
    return category.element or MASS


def unit_of(category: Category) -> str:
    return f"g of {category.element}" if category.element else "g"


def is_battery_scheme(scheme: Scheme) -> bool:
    """Whether producers declare batteries under ``scheme`` (so it has a collection rate)."""
    return any(
        entry == BATTERY_FAMILY or entry.startswith(BATTERY_FAMILY + ".")
        for c in scheme.categories.values()
        for entry in c.declared
    )


def scheme_period(scheme_id: str, period: str) -> Scheme:
    """The scheme named ``scheme_id``, with ``period`` checked against it.

    Raises :class:`~ledger.queries.QueryRefused` naming the argument to fix.
    """
    scheme = default_schemes().get(scheme_id)
    if scheme is None:
        raise QueryRefused(
            "scheme",
            f"no EPR scheme {scheme_id[:64]!r}; the schemes are listed by the eprSchemes query "
            f"({', '.join(default_schemes())})",
        )
    if not scheme.period_ok(period):
        raise QueryRefused(
            "period", f"{scheme.id} counts by {scheme.period_hint}: {period[:16]!r} is not one"
        )
    return scheme


def period_months(scheme: Scheme, period: str) -> int:
    """How many months ``period`` lasts (12 for a year, 3 for a quarter)."""
    start, end = scheme.period_bounds(period)
    return (int(end[:4]) - int(start[:4])) * 12 + int(end[5:7]) - int(start[5:7])


def _keys(scheme: Scheme, period: str) -> tuple[str, str]:
    """[start, end) of ``period`` in the form :func:`ledger.queries.at_key` builds."""
    start, end = scheme.period_bounds(period)
    return start[:19] + ".000000", end[:19] + ".000000"


def _second(at: str) -> str:
    """An ``at`` cut to the second: compares with a period bound (a whole second) as a time."""
    return at[:19]


# --- access ---------------------------------------------------------------------------------


def may_read_report(scope: ReadScope, producer: str) -> bool:
    return scope.everything or scope.org == producer


def may_read_totals(scope: ReadScope) -> bool:
    return scope.everything


def may_read_certificate(scope: ReadScope, cert: Certificate) -> bool:
    return scope.everything or scope.org in (cert.issuer, cert.holder)


def evidence_scope(scope: ReadScope, cert: Certificate) -> ReadScope | None:
    """The scope a certificate's backing lineage is walked with: everything upstream of its
    backing lots, for whoever may read the certificate (None for anyone else)."""
    if not may_read_certificate(scope, cert):
        return None
    return ReadScope(scope.org, True, frozenset(Ground))


# --- records of the read ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    """What one producer declared for one category and period (all its declarations)."""

    producer: str
    category: str
    mass_g: int
    units: int | None  # Σ of the units given; None when no declaration gave any
    declarations: int


class FlagKind(StrEnum):
    YIELD = "yield"
    CAPACITY = "capacity"


@dataclass(frozen=True, slots=True)
class Flag:
    """A recycler certified more than something recorded allows: ``certified_g`` > ``allowed_g``.

    ``yield``: ``input_g`` went into its eligible transforms of ``processes`` in the period,
    and the highest plausible yields (``yield_permille``, per process) allow ``allowed_g``.
    ``capacity``: it registered ``capacity_g_per_year`` of ``material``, which for a period
    of ``months`` allows ``allowed_g``.
    """

    kind: FlagKind
    recycler: str
    scheme: str
    category: str
    period: str
    unit: str
    certified_g: int
    allowed_g: int
    message: str
    material: str | None = None
    processes: tuple[str, ...] = ()
    input_g: int | None = None
    yield_permille: Mapping[str, int] = field(default_factory=dict)
    capacity_g_per_year: int | None = None
    months: int | None = None

    @property
    def excess_g(self) -> int:
        return self.certified_g - self.allowed_g


@dataclass(frozen=True, slots=True)
class CategoryReport:
    """One category of a producer's report (see the module docstring for each figure)."""

    category: Category
    target_bp: int
    placed: Placed
    obligation_g: int
    held: tuple[Certificate, ...]
    retired: tuple[Certificate, ...]

    @property
    def held_g(self) -> int:
        return sum(c.mass_g for c in self.held)

    @property
    def retired_g(self) -> int:
        return sum(c.mass_g for c in self.retired)

    @property
    def gap_g(self) -> int:
        return max(0, self.obligation_g - self.retired_g)

    @property
    def compliance_bp(self) -> int:
        return compliance_bp(self.retired_g, self.obligation_g)

    @property
    def compliance(self) -> Fraction:
        """Retired / obligation, exact (1 when nothing is owed)."""
        if self.obligation_g <= 0:
            return Fraction(1)
        return Fraction(self.retired_g, self.obligation_g)


@dataclass(frozen=True, slots=True)
class CollectionRate:
    """The producer's battery collection rate for a period, from its own codes (see the
    module docstring for the definition)."""

    registered: int  # units it registered before the end of the period
    collected_before: int  # of them, collected before the period
    collected: int  # collected in the period

    @property
    def outstanding(self) -> int:
        """Registered and not collected before the period: what could be collected in it."""
        return self.registered - self.collected_before

    @property
    def rate_bp(self) -> int:
        return share_bp(self.collected, self.outstanding)

    @property
    def rate(self) -> Fraction:
        return Fraction(self.collected, self.outstanding) if self.outstanding else Fraction(0)


@dataclass(frozen=True, slots=True)
class Report:
    """A producer's compliance for one scheme and period."""

    producer: Org
    scheme: Scheme
    period: str
    categories: tuple[CategoryReport, ...]
    flags: tuple[Flag, ...]
    collection: CollectionRate | None
    views: Mapping[str, CertificateView] = field(default_factory=dict)  # by certificate id

    @property
    def placed_g(self) -> int:
        return sum(c.placed.mass_g for c in self.categories)

    @property
    def obligation_g(self) -> int:
        return sum(c.obligation_g for c in self.categories)

    @property
    def held_g(self) -> int:
        return sum(c.held_g for c in self.categories)

    @property
    def retired_g(self) -> int:
        return sum(c.retired_g for c in self.categories)

    @property
    def gap_g(self) -> int:
        return sum(c.gap_g for c in self.categories)

    @property
    def counted_g(self) -> int:
        """Retired grams counted towards compliance: at most each category's obligation."""
        return sum(min(c.retired_g, c.obligation_g) for c in self.categories)

    @property
    def compliance_bp(self) -> int:
        return compliance_bp(self.counted_g, self.obligation_g)

    @property
    def compliance(self) -> Fraction:
        ob = self.obligation_g
        return Fraction(1) if ob <= 0 else Fraction(self.counted_g, ob)

    @property
    def compliant(self) -> bool:
        return self.gap_g == 0


@dataclass(frozen=True, slots=True)
class ProducerLine:
    """One producer's figures for one category (a line of the scheme-wide totals)."""

    producer: str
    category: str
    placed: Placed
    obligation_g: int
    held_g: int
    retired_g: int

    @property
    def gap_g(self) -> int:
        return max(0, self.obligation_g - self.retired_g)

    @property
    def compliance_bp(self) -> int:
        return compliance_bp(self.retired_g, self.obligation_g)


@dataclass(frozen=True, slots=True)
class RecyclerLine:
    """One recycler's figures for one category: eligible recovered output it made in the
    period, what it certified of it, and how much of that was retired (by anyone)."""

    recycler: str
    category: str
    eligible_output_g: int
    certified_g: int
    retired_g: int


@dataclass(frozen=True, slots=True)
class CategoryTotals:
    """A category across the scheme: Σ retired ≤ Σ certified ≤ Σ eligible output always
    holds (the write side's invariants)."""

    category: Category
    target_bp: int
    placed_g: int
    placed_units: int | None
    producers: int
    obligation_g: int
    eligible_output_g: int
    certified_g: int
    held_g: int  # certified and not retired (whoever holds it)
    retired_g: int
    gap_g: int  # Σ of the producers' gaps


@dataclass(frozen=True, slots=True)
class Totals:
    scheme: Scheme
    period: str
    categories: tuple[CategoryTotals, ...]
    producers: tuple[ProducerLine, ...]
    recyclers: tuple[RecyclerLine, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True, slots=True)
class Backing:
    """A lot a certificate stands on: ``mass_g`` of its recovered output (in the category's
    measure), and the output as the write side recorded it (``None`` if missing)."""

    lot: str
    mass_g: int
    output: Output | None


@dataclass(frozen=True, slots=True)
class CertificateView:
    certificate: Certificate
    backing: tuple[Backing, ...]
    evidence: ReadScope  # what its backing lineage is walked with


# --- reads -----------------------------------------------------------------------------------


def _org(conn: Connection, org_id: str) -> Org | None:
    row = conn.execute(select(orgs).where(orgs.c.id == org_id)).first()
    return None if row is None else org_from_row(row)


def _placed(
    conn: Connection, scheme: Scheme, period: str, producer: str | None = None
) -> list[Placed]:
    d = declarations
    q = (
        select(
            d.c.producer,
            d.c.category,
            func.sum(d.c.mass_g).label("mass_g"),
            func.sum(d.c.units).label("units"),
            func.count().label("n"),
        )
        .where(d.c.scheme == scheme.id, d.c.period == period)
        .group_by(d.c.producer, d.c.category)
        .order_by(d.c.producer, d.c.category)
    )
    if producer is not None:
        q = q.where(d.c.producer == producer)
    return [
        Placed(
            r.producer,
            r.category,
            int(r.mass_g),
            None if r.units is None else int(r.units),
            int(r.n),
        )
        for r in conn.execute(q)
    ]


def _certificates(
    conn: Connection, scheme: Scheme, period: str, *, holder: str | None = None
) -> list[Certificate]:
    c = certificates
    q = select(c).where(c.c.scheme == scheme.id, c.c.period == period).order_by(c.c.issued_seq)
    if holder is not None:
        q = q.where(c.c.holder == holder)
    return [certificate_from_row(r) for r in conn.execute(q)]


def _outputs(
    conn: Connection,
    scheme: Scheme,
    period: str,
    processes: Iterable[str],
    actors: Iterable[str] | None = None,
) -> list[Output]:
    """The non-void outputs of transforms of ``processes`` made in ``period`` (by ``actors``)."""
    o, lot = epr_outputs, lots
    start, end = _keys(scheme, period)
    q = (
        select(o)
        .select_from(o.join(lot, lot.c.id == o.c.lot))
        .where(
            o.c.process.in_(sorted(set(processes))),
            at_key(o.c.at) >= start,
            at_key(o.c.at) < end,
            lot.c.status != VOID,
        )
        .order_by(o.c.seq, o.c.lot)
    )
    if actors is None:
        return [output_from_row(r) for r in conn.execute(q)]
    found: list[Output] = []
    for chunk in chunks(sorted(set(actors)), IN_CHUNK):
        found += [output_from_row(r) for r in conn.execute(q.where(o.c.actor.in_(chunk)))]
    return sorted(found, key=lambda x: (x.seq, x.lot))


def _eligible(category: Category, out: Output) -> bool:
    return category.eligible_process(out.process) and category.eligible_output(out.material)


def _outputs_by_lot(conn: Connection, ids: Iterable[str]) -> dict[str, Output]:
    found: dict[str, Output] = {}
    for chunk in chunks(sorted(set(ids)), IN_CHUNK):
        for r in conn.execute(select(epr_outputs).where(epr_outputs.c.lot.in_(chunk))):
            found[r.lot] = output_from_row(r)
    return found


def _bodies(conn: Connection, seqs: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The bodies of the records at ``seqs``."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(seqs)), IN_CHUNK):
        q = select(records.c.seq, records.c.canonical).where(records.c.seq.in_(chunk))
        for seq, canonical in conn.execute(q):
            body = json.loads(bytes(canonical)).get("body")
            found[int(seq)] = body if isinstance(body, dict) else {}
    return found


# --- schemes ---------------------------------------------------------------------------------


def schemes() -> list[Scheme]:
    """Every scheme the ledger knows, in the data file's order."""
    return list(default_schemes().values())


# --- a producer's report ---------------------------------------------------------------------


def report(
    conn: Connection, scope: ReadScope, producer: str, scheme_id: str, period: str
) -> Report | None:
    """``producer``'s compliance with ``scheme_id`` for ``period``; None when the producer
    is not registered or ``scope`` may not read its report."""
    scheme = scheme_period(scheme_id, period)
    if not may_read_report(scope, producer):
        return None
    org = _org(conn, producer)
    if org is None:
        return None
    placed = {p.category: p for p in _placed(conn, scheme, period, producer)}
    certs = _certificates(conn, scheme, period, holder=producer)
    lines: list[CategoryReport] = []
    for code, category in scheme.categories.items():
        p = placed.get(code, Placed(producer, code, 0, None, 0))
        mine = [c for c in certs if c.category == code]
        lines.append(
            CategoryReport(
                category,
                category.target_for(period),
                p,
                category.obligation_g(period, p.mass_g),
                tuple(c for c in mine if not c.retired),
                tuple(c for c in mine if c.retired_period == period),
            )
        )
    issuers = {c.issuer for c in certs}
    found = _flags(conn, scheme, period, issuers) if issuers else []
    collection = (
        collection_rate(conn, producer, scheme, period) if is_battery_scheme(scheme) else None
    )
    views = _views(conn, scope, certs)
    return Report(org, scheme, period, tuple(lines), tuple(found), collection, views)


# --- scheme-wide totals ----------------------------------------------------------------------


def totals(conn: Connection, scope: ReadScope, scheme_id: str, period: str) -> Totals | None:
    """Every producer's and recycler's figures for ``scheme_id`` and ``period``, by category;
    None unless ``scope`` reads everything (regulators and the operator)."""
    scheme = scheme_period(scheme_id, period)
    if not may_read_totals(scope):
        return None
    placed = _placed(conn, scheme, period)
    certs = _certificates(conn, scheme, period)
    processes = {p for c in scheme.categories.values() for p in c.processes}
    outputs = _outputs(conn, scheme, period, processes)
    producers: list[ProducerLine] = []
    for p in placed:
        category = scheme.categories.get(p.category)
        if category is None:  # a category the data file no longer has
            continue
        held = [c for c in certs if c.category == p.category and c.holder == p.producer]
        producers.append(
            ProducerLine(
                p.producer,
                p.category,
                p,
                category.obligation_g(period, p.mass_g),
                sum(c.mass_g for c in held if not c.retired),
                sum(c.mass_g for c in held if c.retired_period == period),
            )
        )
    recyclers: list[RecyclerLine] = []
    lines: list[CategoryTotals] = []
    for code, category in scheme.categories.items():
        m = measure(category)
        made: dict[str, int] = {}
        for out in outputs:
            if _eligible(category, out):
                made[out.actor] = made.get(out.actor, 0) + out.recovered.get(m, 0)
        mine = [c for c in certs if c.category == code]
        issued: dict[str, list[Certificate]] = {}
        for c in mine:
            issued.setdefault(c.issuer, []).append(c)
        for actor in sorted(set(made) | set(issued)):
            of = issued.get(actor, [])
            recyclers.append(
                RecyclerLine(
                    actor,
                    code,
                    made.get(actor, 0),
                    sum(c.mass_g for c in of),
                    sum(c.mass_g for c in of if c.retired),
                )
            )
        ps = [x for x in producers if x.category == code]
        given = [x.placed.units for x in ps if x.placed.units is not None]
        lines.append(
            CategoryTotals(
                category,
                category.target_for(period),
                sum(x.placed.mass_g for x in ps),
                sum(given) if given else None,
                len(ps),
                sum(x.obligation_g for x in ps),
                sum(made.values()),
                sum(c.mass_g for c in mine),
                sum(c.mass_g for c in mine if not c.retired),
                sum(c.mass_g for c in mine if c.retired),
                sum(x.gap_g for x in ps),
            )
        )
    found = _flags(conn, scheme, period, {c.issuer for c in certs})
    return Totals(scheme, period, tuple(lines), tuple(producers), tuple(recyclers), tuple(found))


# --- flags -----------------------------------------------------------------------------------


def flags(conn: Connection, scope: ReadScope, scheme_id: str, period: str) -> list[Flag] | None:
    """The flags of every recycler that certified under ``scheme_id`` for ``period``; None
    unless ``scope`` reads everything (regulators and the operator)."""
    scheme = scheme_period(scheme_id, period)
    if not may_read_totals(scope):
        return None
    issuers = {c.issuer for c in _certificates(conn, scheme, period)}
    return _flags(conn, scheme, period, issuers)


def capacity_allowed_g(capacity_g_per_year: int, months: int) -> int:
    """A yearly capacity prorated to ``months``, rounded up (a flag never fires on rounding)."""
    return -(-capacity_g_per_year * months // 12)


def yield_allowed_g(input_g: int, yield_permille: int) -> int:
    """The most ``input_g`` can give at ``yield_permille``, rounded up."""
    return -(-input_g * yield_permille // PERMILLE)


def _flags(conn: Connection, scheme: Scheme, period: str, issuers: Iterable[str]) -> list[Flag]:
    """Yield and capacity flags of ``issuers`` (see the module docstring)."""
    who = sorted(set(issuers))
    if not who:
        return []
    certs = [c for c in _certificates(conn, scheme, period) if c.issuer in who]
    backing = _outputs_by_lot(conn, {lot for c in certs for lot, _ in c.lots})
    processes = {p for c in scheme.categories.values() for p in c.processes}
    outputs = _outputs(conn, scheme, period, processes, who)
    bodies = _bodies(conn, {o.seq for o in outputs})
    capacities = {o.id: o.capacity for o in (_org(conn, x) for x in who) if o is not None}
    months = period_months(scheme, period)
    taxonomy = default_taxonomy()
    found: list[Flag] = []
    for recycler in who:
        for code, category in scheme.categories.items():
            mine = [c for c in certs if c.issuer == recycler and c.category == code]
            certified = sum(c.mass_g for c in mine)
            if not certified:
                continue
            unit = unit_of(category)
            where = f"{scheme.id} {code} {period}"
            if category.element is None:
                # yield: inputs of its eligible transforms in the period x the highest yield
                seqs: dict[int, str] = {}
                for out in outputs:
                    if out.actor == recycler and _eligible(category, out):
                        seqs[out.seq] = out.process
                input_g = allowed = 0
                used: dict[str, int] = {}
                for seq, process in sorted(seqs.items()):
                    body = bodies.get(seq, {})
                    went_in = sum(int(i.get("mass_g", 0)) for i in body.get("inputs", []))
                    proc = taxonomy.process(process)
                    hi = (
                        proc.yield_permille[1]
                        if proc is not None and proc.yield_permille
                        else PERMILLE
                    )
                    used[process] = hi
                    input_g += went_in
                    allowed += yield_allowed_g(went_in, hi)
                if certified > allowed:
                    names = sorted(used) or sorted(category.processes)
                    ranges = ", ".join(f"{p} {used[p]} ‰" for p in sorted(used))
                    found.append(
                        Flag(
                            FlagKind.YIELD,
                            recycler,
                            scheme.id,
                            code,
                            period,
                            unit,
                            certified,
                            allowed,
                            f"{recycler} certified {certified} {unit} under {where}, but its "
                            f"recorded {'/'.join(names)} inputs in {period} were {input_g} g, "
                            f"which at the highest plausible yield"
                            f"{' (' + ranges + ')' if ranges else ''} give at most "
                            f"{allowed} g: {certified - allowed} {unit} more than the inputs "
                            "allow",
                            processes=tuple(names),
                            input_g=input_g,
                            yield_permille=dict(sorted(used.items())),
                        )
                    )
            # capacity: certified grams on lots of each material vs the prorated capacity
            capacity = capacities.get(recycler, {})
            by_material: dict[str, int] = {}
            for c in mine:
                for lot, grams in c.lots:
                    made = backing.get(lot)
                    if made is not None:
                        by_material[made.material] = by_material.get(made.material, 0) + grams
            for material, grams in sorted(by_material.items()):
                per_year = capacity.get(material)
                if per_year is None:
                    continue
                allowed = capacity_allowed_g(per_year, months)
                if grams > allowed:
                    prorated = "" if months == 12 else f", {allowed} g for {months} months"
                    found.append(
                        Flag(
                            FlagKind.CAPACITY,
                            recycler,
                            scheme.id,
                            code,
                            period,
                            unit,
                            grams,
                            allowed,
                            f"{recycler} certified {grams} {unit} of {material} under {where}, "
                            f"but its registered capacity for {material} is {per_year} g a "
                            f"year{prorated}: {grams - allowed} {unit} more than it may process",
                            material=material,
                            capacity_g_per_year=per_year,
                            months=months,
                        )
                    )
    return found


# --- certificates ----------------------------------------------------------------------------


def certificate(conn: Connection, scope: ReadScope, cert_id: str) -> CertificateView | None:
    """The certificate ``cert_id`` with the outputs it stands on; None when there is none or
    ``scope`` may not read it."""
    row = conn.execute(select(certificates).where(certificates.c.id == cert_id)).first()
    if row is None:
        return None
    return _views(conn, scope, [certificate_from_row(row)]).get(cert_id)


def _views(
    conn: Connection, scope: ReadScope, certs: Sequence[Certificate]
) -> dict[str, CertificateView]:
    """``certs`` as views with their backing outputs, those ``scope`` may read."""
    made = _outputs_by_lot(conn, {lot for c in certs for lot, _ in c.lots})
    found: dict[str, CertificateView] = {}
    for c in certs:
        evidence = evidence_scope(scope, c)
        if evidence is not None:
            backing = tuple(Backing(lot, grams, made.get(lot)) for lot, grams in c.lots)
            found[c.id] = CertificateView(c, backing, evidence)
    return found


def backing_lineage(
    conn: Connection, view: CertificateView, lot: str, max_depth: int
) -> Lineage | None:
    """The upstream lineage of one of the certificate's backing lots (the evidence)."""
    if lot not in {b.lot for b in view.backing}:
        return None
    return queries.lineage(conn, view.evidence, lot, Direction.UPSTREAM, max_depth)


# --- battery collection ----------------------------------------------------------------------


def collection_rate(conn: Connection, producer: str, scheme: Scheme, period: str) -> CollectionRate:
    """The producer's collection rate for ``period`` from its own battery codes (the module
    docstring defines it)."""
    start, end = (_second(x) for x in scheme.period_bounds(period))
    registered = _registered_units(conn, producer, end)
    if not registered:
        return CollectionRate(0, 0, 0)
    held: dict[str, list[tuple[str, int]]] = {}  # unit -> (lot, from seq)
    for chunk in chunks(sorted(registered), IN_CHUNK):
        q = select(lot_units.c.unit, lot_units.c.lot, lot_units.c.seq).where(
            lot_units.c.unit.in_(chunk)
        )
        for unit, lot, seq in conn.execute(q):
            held.setdefault(unit, []).append((lot, int(seq)))
    events = _life_events(conn, {lot for rows in held.values() for lot, _ in rows})
    before = during = 0
    for unit in registered:
        at = collected_at(producer, held.get(unit, []), events)
        if at is None:
            continue
        if _second(at) < start:
            before += 1
        elif _second(at) < end:
            during += 1
    return CollectionRate(len(registered), before, during)


@dataclass(frozen=True, slots=True)
class LifeEvent:
    """A record on a lot that may mark a battery's collection."""

    seq: int
    lot: str
    type: str
    actor: str
    at: str
    status: str | None = None


def collected_at(
    producer: str, held: Sequence[tuple[str, int]], events: Mapping[str, Sequence[LifeEvent]]
) -> str | None:
    """When a unit was collected (the ``at`` of the record), or None.

    ``held``: the lots that held the unit and the seq from which each did; ``events``: each
    lot's status, transfer and receive records (not voided). Pure: the definition of the
    module docstring.
    """
    mine = sorted(
        (e for lot, since in held for e in events.get(lot, ()) if e.seq >= since),
        key=lambda e: e.seq,
    )
    retired = False
    for e in mine:
        if e.type == "status":
            if e.status == "collected":
                return e.at
            if e.status == "retired":
                retired = True
        elif retired and (e.type == "transfer" or (e.type == "receive" and e.actor != producer)):
            return e.at
    return None


def _registered_units(conn: Connection, producer: str, end: str) -> set[str]:
    """The units the producer registered (lots it created, not voided) before ``end``."""
    r, lr, u, lot = records, lot_records, lot_units, lots
    q = (
        select(u.c.unit, r.c.at)
        .select_from(
            r.join(lr, lr.c.seq == r.c.seq)
            .join(u, (u.c.lot == lr.c.lot) & (u.c.seq == r.c.seq))
            .join(lot, lot.c.id == lr.c.lot)
        )
        .where(r.c.actor == producer, r.c.type == "create", u.c.original.is_(None))
        .where(lot.c.status != VOID)
    )
    return {unit for unit, at in conn.execute(q) if _second(at) < end}


def _life_events(conn: Connection, lot_ids: Iterable[str]) -> dict[str, list[LifeEvent]]:
    """Each lot's status, transfer and receive records, leaving out those voided."""
    r, lr = records, lot_records
    # Only a status's and a void's bodies are read: the bytes of the others stay unloaded.
    body = case((r.c.type.in_(("status", "void")), r.c.canonical), else_=None)
    rows: list[Any] = []
    for chunk in chunks(sorted(set(lot_ids)), IN_CHUNK):
        q = (
            select(lr.c.lot, r.c.seq, r.c.hash, r.c.type, r.c.actor, r.c.at, body.label("body"))
            .select_from(lr.join(r, r.c.seq == lr.c.seq))
            .where(lr.c.lot.in_(chunk), r.c.type.in_(("status", "transfer", "receive", "void")))
        )
        rows += conn.execute(q).all()
    voided: set[str] = set()
    kept: list[tuple[Any, str | None]] = []
    for row in rows:
        status: str | None = None
        if row.body is not None:
            found = json.loads(bytes(row.body)).get("body", {})
            if row.type == "void":
                voided.add(str(found.get("record")))
                continue
            status = found.get("status")
        kept.append((row, status))
    out: dict[str, list[LifeEvent]] = {}
    for row, status in kept:
        if row.hash in voided:
            continue
        out.setdefault(row.lot, []).append(
            LifeEvent(int(row.seq), row.lot, row.type, row.actor, row.at, status)
        )
    return out


__all__ = [
    "Backing",
    "CategoryReport",
    "CategoryTotals",
    "CertificateView",
    "CollectionRate",
    "Flag",
    "FlagKind",
    "LifeEvent",
    "ProducerLine",
    "RecyclerLine",
    "Report",
    "Totals",
    "backing_lineage",
    "capacity_allowed_g",
    "certificate",
    "collected_at",
    "collection_rate",
    "compliance_bp",
    "evidence_scope",
    "flags",
    "is_battery_scheme",
    "period_months",
    "report",
    "scheme_period",
    "schemes",
    "share_bp",
    "totals",
    "yield_allowed_g",
]
