"""The ledger's state as the rules see it: lots, organisations and keys.

These are *projections* of the record log. :class:`StateView` is the narrow
read interface the rules need; :class:`MemoryState` is the in-memory
implementation used by ``verify``, ``rebuild`` and as the store's per-batch
overlay.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Compact JSON with sorted keys: projection columns and lot snapshots (not signed bytes;
# those are ledger/canonical.py's). One encoder, built once: json.dumps builds one a call.
sorted_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False).encode

# Lot statuses the ledger itself manages; a lot in any other (lifecycle)
# status is "held" and may be spent, moved or relabelled by its custodian.
IN_TRANSIT = "in_transit"
CONSUMED = "consumed"
DISPOSED = "disposed"
VOID = "void"
NOT_HELD = frozenset({IN_TRANSIT, CONSUMED, DISPOSED, VOID})


# Not frozen: a frozen dataclass's __init__ costs ~5x a plain one (object.__setattr__ per
# field), and these are built for every record under the writer lock. Treat them as
# values all the same: nothing assigns to a field; changes make a new one (Lot.evolve).
@dataclass(slots=True)
class Lot:
    """A lot's current state.

    ``prev`` is the lot's state before its head record (JSON, or None when
    the head record created it): what a ``void`` of the head restores.
    """

    id: str
    material: str
    origin: str
    mass_g: int
    remaining_g: int
    status: str
    custodian: str
    head: str
    created_seq: int
    updated_seq: int
    elements: dict[str, int] = field(default_factory=dict)
    units: tuple[str, ...] = ()
    held_status: str | None = None
    transit_from: str | None = None
    transit_to: str | None = None
    transit_g: int | None = None
    transit_loss_g: int = 0
    disposed_g: int = 0
    # Recovered content (ledger/content.py): ``content`` is the lot's composition for its
    # ``mass_g`` as made; ``recovered`` the recovered buckets of what remains.
    content: dict[str, int] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)
    recoded: dict[str, str] = field(default_factory=dict)  # unit -> its second-life code
    prev: str | None = None

    def evolve(self, **changes: Any) -> Lot:
        """A copy with ``changes`` (a fast ``dataclasses.replace``: this is the append hot path)."""
        get = changes.get
        return Lot(
            get("id", self.id),
            get("material", self.material),
            get("origin", self.origin),
            get("mass_g", self.mass_g),
            get("remaining_g", self.remaining_g),
            get("status", self.status),
            get("custodian", self.custodian),
            get("head", self.head),
            get("created_seq", self.created_seq),
            get("updated_seq", self.updated_seq),
            get("elements", self.elements),
            get("units", self.units),
            get("held_status", self.held_status),
            get("transit_from", self.transit_from),
            get("transit_to", self.transit_to),
            get("transit_g", self.transit_g),
            get("transit_loss_g", self.transit_loss_g),
            get("disposed_g", self.disposed_g),
            get("content", self.content),
            get("recovered", self.recovered),
            get("recoded", self.recoded),
            get("prev", self.prev),
        )

    @property
    def held(self) -> bool:
        return self.status not in NOT_HELD

    def snapshot(self) -> str:
        """This state as a compact JSON array (every field but ``prev``): the next version's ``prev``.

        Keys sorted: the same lot must give the same text whether its dicts were built by
        the rules or read back from the database (tests/test_bug_snapshot_key_order.py)."""
        return sorted_json(
            [
                self.id,
                self.material,
                self.origin,
                self.mass_g,
                self.remaining_g,
                self.status,
                self.custodian,
                self.head,
                self.created_seq,
                self.updated_seq,
                self.elements,
                self.units,
                self.held_status,
                self.transit_from,
                self.transit_to,
                self.transit_g,
                self.transit_loss_g,
                self.disposed_g,
                self.content,
                self.recovered,
                self.recoded,
            ],
        )

    @staticmethod
    def from_snapshot(text: str) -> Lot:
        values: list[Any] = json.loads(text)
        values[11] = tuple(values[11])
        return Lot(*values)


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    roles: tuple[str, ...]
    region: str
    registered_seq: int
    capacity: dict[str, int] = field(default_factory=dict)  # material -> grams per year

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    org: str
    public_key: bytes
    added_seq: int
    valid_from: str | None = None
    valid_until: str | None = None
    revoked_seq: int | None = None


@dataclass(slots=True)
class PastRecord:
    """What a ``void`` needs to know of the record it reverses."""

    hash: str
    seq: int
    type: str
    actor: str
    body: dict[str, Any]
    at: str = ""


@dataclass(slots=True)
class Edge:
    """Mass (and the element grams within it) that flowed from one lot into another,
    by the record at ``seq``."""

    parent: str
    child: str
    seq: int
    mass_g: int
    elements: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnitRow:
    """A lot that holds a unit (battery), from the record at ``seq``.

    ``unit`` is the code's canonical key (:attr:`ledger.battery_codes.UnitCode.key`); for a
    second-life code, ``original`` is the key of the code it replaces.
    """

    unit: str
    lot: str
    seq: int
    original: str | None = None


@dataclass(slots=True)
class Output:
    """A lot made by a transform: what a recycler may certify (EPR, DESIGN.md "EPR").

    ``recovered``: the lot's recovered grams when made, by measure — ``"mass"`` and each
    element symbol; ``certified``: how many of them certificates already stand on.
    Invariant: certified[m] <= recovered[m] for every measure m.
    """

    lot: str
    actor: str
    process: str
    material: str
    at: str
    seq: int
    recovered: dict[str, int]
    certified: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Certificate:
    """Recovery evidence: ``mass_g`` of eligible recovered output, issued once, retired once."""

    id: str
    scheme: str
    category: str
    period: str
    issuer: str
    holder: str
    mass_g: int
    lots: tuple[tuple[str, int], ...]  # (lot, grams) it stands on
    issued_seq: int
    updated_seq: int
    retired_period: str | None = None

    @property
    def retired(self) -> bool:
        return self.retired_period is not None


@dataclass(frozen=True, slots=True)
class Declaration:
    """A producer's placed-on-market mass (and units) for a scheme, category and period."""

    seq: int
    producer: str
    scheme: str
    category: str
    period: str
    mass_g: int
    units: int | None = None


# A row of the flow_days rollup (ledger/flows.py): day (YYYY-MM-DD), source stage ("
# for none), target stage, actor, material, method ("" for none).
FlowKey = tuple[str, str, str, str, str, str]


class StateView(Protocol):
    """What the rules may read. Implementations do no I/O inside the rules:
    the store loads everything a batch touches before the rules run."""

    @property
    def empty(self) -> bool: ...
    def lot(self, lot_id: str) -> Lot | None: ...
    def org(self, org_id: str) -> Org | None: ...
    def key(self, key_id: str) -> Key | None: ...
    def record(self, record_hash: str) -> PastRecord | None: ...
    def unit_lots(self, unit: str) -> list[str]:
        """The lots that have held ``unit`` (a code's canonical key)."""
        ...

    def output(self, lot_id: str) -> Output | None: ...
    def certificate(self, cert_id: str) -> Certificate | None: ...


@dataclass(slots=True)
class Effects:
    """What one record changes: new versions of lots, orgs and keys; new edges and unit rows."""

    lots: list[Lot] = field(default_factory=list)
    orgs: list[Org] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    units: list[UnitRow] = field(default_factory=list)
    registered: dict[str, str] = field(default_factory=dict)  # unit key -> lot, new codes only
    outputs: list[Output] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    declarations: list[Declaration] = field(default_factory=list)
    flows: list[tuple[FlowKey, int]] = field(default_factory=list)  # flow_days increments


class MemoryState:
    """State held in dicts: the replay state of ``verify``/``rebuild``, and the
    overlay a store batch writes into.

    Past records (what a ``void`` needs) are looked up in memory, then through
    ``record_loader``; a replay of a whole ledger keeps none in memory
    (``keep_records=False``) and fetches the few it needs.
    """

    def __init__(
        self,
        record_loader: Callable[[str], PastRecord | None] | None = None,
        *,
        keep_records: bool = True,
    ) -> None:
        self.lots: dict[str, Lot] = {}
        self.orgs: dict[str, Org] = {}
        self.keys: dict[str, Key] = {}
        self.records: dict[str, PastRecord] = {}
        self.edges: list[Edge] = []
        self.units: dict[str, list[str]] = {}  # unit key -> the lots that registered it
        self.unit_rows: list[UnitRow] = []
        self.outputs: dict[str, Output] = {}
        self.certificates: dict[str, Certificate] = {}
        self.declarations: list[Declaration] = []
        self.flow_days: dict[FlowKey, int] = {}  # flow_days rows: grams by (day, ..., actor, ...)
        self.lot_records: list[tuple[str, int]] = []  # (lot, seq): each lot a record changed
        self.seq = 0
        self._record_loader = record_loader
        self._keep_records = keep_records

    @property
    def empty(self) -> bool:
        return self.seq == 0

    def lot(self, lot_id: str) -> Lot | None:
        return self.lots.get(lot_id)

    def org(self, org_id: str) -> Org | None:
        return self.orgs.get(org_id)

    def key(self, key_id: str) -> Key | None:
        return self.keys.get(key_id)

    def record(self, record_hash: str) -> PastRecord | None:
        found = self.records.get(record_hash)
        if found is None and self._record_loader is not None:
            found = self._record_loader(record_hash)
        return found

    def unit_lots(self, unit: str) -> list[str]:
        return self.units.get(unit, [])

    def output(self, lot_id: str) -> Output | None:
        return self.outputs.get(lot_id)

    def certificate(self, cert_id: str) -> Certificate | None:
        return self.certificates.get(cert_id)

    def apply(self, effects: Effects, record: PastRecord | None = None) -> None:
        for lot in effects.lots:
            self.lots[lot.id] = lot
        for org in effects.orgs:
            self.orgs[org.id] = org
        for key in effects.keys:
            self.keys[key.id] = key
        self.edges.extend(effects.edges)
        for unit, lot_id in effects.registered.items():
            self.units.setdefault(unit, []).append(lot_id)
        self.unit_rows.extend(effects.units)
        self.outputs.update((x.lot, x) for x in effects.outputs)
        self.certificates.update((x.id, x) for x in effects.certificates)
        self.declarations.extend(effects.declarations)
        for flow, grams in effects.flows:
            self.flow_days[flow] = self.flow_days.get(flow, 0) + grams
        if record is not None:
            self.lot_records.extend((lot_id, record.seq) for lot_id in {x.id for x in effects.lots})
            if self._keep_records:
                self.records[record.hash] = record
            self.seq = max(self.seq, record.seq)

    def load(self, lots: Iterable[Lot], orgs: Iterable[Org], keys: Iterable[Key]) -> None:
        self.lots.update((x.id, x) for x in lots)
        self.orgs.update((x.id, x) for x in orgs)
        self.keys.update((x.id, x) for x in keys)
