"""Rows: projection state <-> table rows, and the append path's SQL.

The append path writes with the driver's ``executemany`` and tuples in
column order, bypassing SQLAlchemy's statement compiler (see ADR 0002);
``verify`` compares rows built by the same functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence, Set
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Row

from ledger.database import placeholder
from ledger.envelope import Envelope
from ledger.errors import RecordRefused
from ledger.signing import Ed25519PublicKey, load_public_key
from ledger.state import (
    Certificate,
    Declaration,
    Edge,
    FlowKey,
    Key,
    Lot,
    Org,
    Output,
    UnitRow,
    sorted_json,
)
from ledger.tables import (
    certificates,
    declarations,
    epr_outputs,
    keys,
    lot_edges,
    lot_records,
    lot_units,
    lots,
    orgs,
    records,
    refused_records,
)

LOT_COLUMNS = tuple(c.name for c in lots.columns)  # lot_values() follows this order
# What a record can change on an existing lot (material, origin, mass and units never change).
LOT_MUTABLE = (
    "remaining_g",
    "status",
    "custodian",
    "head",
    "updated_seq",
    "elements",
    "held_status",
    "transit_from",
    "transit_to",
    "transit_g",
    "transit_loss_g",
    "disposed_g",
    "content",
    "recovered",
    "recoded",
    "prev",
)


def lot_values(lot: Lot) -> tuple[Any, ...]:
    """A lot as a row, in LOT_COLUMNS order."""
    return (
        lot.id,
        lot.material,
        lot.origin,
        lot.mass_g,
        lot.remaining_g,
        lot.status,
        lot.custodian,
        lot.head,
        lot.created_seq,
        lot.updated_seq,
        _json(lot.elements),
        _json(list(lot.units)),
        lot.held_status,
        lot.transit_from,
        lot.transit_to,
        lot.transit_g,
        lot.transit_loss_g,
        lot.disposed_g,
        _json(lot.content),
        _json(lot.recovered),
        _json(lot.recoded),
        lot.prev,
    )


_MUTABLE_AT = tuple(LOT_COLUMNS.index(c) for c in LOT_MUTABLE)


def lot_mutable_values(lot: Lot) -> tuple[Any, ...]:
    """The UPDATE parameters: LOT_MUTABLE in order, then the id."""
    row = lot_values(lot)
    return (*(row[i] for i in _MUTABLE_AT), lot.id)


def _json(value: Any) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return sorted_json(value)


def lot_to_row(lot: Lot) -> dict[str, Any]:
    return dict(zip(LOT_COLUMNS, lot_values(lot), strict=True))


def lot_from_row(r: Row[Any]) -> Lot:
    return Lot(
        r.id,
        r.material,
        r.origin,
        int(r.mass_g),
        int(r.remaining_g),
        r.status,
        r.custodian,
        r.head,
        int(r.created_seq),
        int(r.updated_seq),
        json.loads(r.elements),
        tuple(json.loads(r.units)),
        r.held_status,
        r.transit_from,
        r.transit_to,
        None if r.transit_g is None else int(r.transit_g),
        int(r.transit_loss_g),
        int(r.disposed_g),
        json.loads(r.content),
        json.loads(r.recovered),
        json.loads(r.recoded),
        r.prev,
    )


def org_to_row(org: Org) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "roles": json.dumps(list(org.roles)),
        "region": org.region,
        "registered_seq": org.registered_seq,
        "capacity": _json(org.capacity),
    }


def org_from_row(r: Row[Any]) -> Org:
    return Org(
        r.id,
        r.name,
        tuple(json.loads(r.roles)),
        r.region,
        int(r.registered_seq),
        json.loads(r.capacity),
    )


def key_to_row(key: Key) -> dict[str, Any]:
    return {
        "id": key.id,
        "org": key.org,
        "public_key": key.public_key,
        "added_seq": key.added_seq,
        "valid_from": key.valid_from,
        "valid_until": key.valid_until,
        "revoked_seq": key.revoked_seq,
    }


def edge_to_row(edge: Edge) -> dict[str, Any]:
    return dict(zip(EDGE_COLUMNS, edge_values(edge), strict=True))


EDGE_COLUMNS = tuple(c.name for c in lot_edges.columns)
UNIT_COLUMNS = tuple(c.name for c in lot_units.columns)


def edge_values(edge: Edge) -> tuple[Any, ...]:
    return (edge.parent, edge.child, edge.seq, edge.mass_g, _json(edge.elements))


def unit_values(row: UnitRow) -> tuple[Any, ...]:
    return (row.unit, row.lot, row.seq, row.original)


def unit_to_row(row: UnitRow) -> dict[str, Any]:
    return dict(zip(UNIT_COLUMNS, unit_values(row), strict=True))


def output_to_row(x: Output) -> dict[str, Any]:
    return {
        "lot": x.lot,
        "actor": x.actor,
        "process": x.process,
        "material": x.material,
        "at": x.at,
        "seq": x.seq,
        "recovered": _json(x.recovered),
        "certified": _json(x.certified),
    }


def output_from_row(r: Row[Any]) -> Output:
    return Output(
        r.lot,
        r.actor,
        r.process,
        r.material,
        r.at,
        int(r.seq),
        json.loads(r.recovered),
        json.loads(r.certified),
    )


def certificate_to_row(x: Certificate) -> dict[str, Any]:
    return {
        "id": x.id,
        "scheme": x.scheme,
        "category": x.category,
        "period": x.period,
        "issuer": x.issuer,
        "holder": x.holder,
        "mass_g": x.mass_g,
        "lots": json.dumps([list(pair) for pair in x.lots], separators=(",", ":")),
        "issued_seq": x.issued_seq,
        "updated_seq": x.updated_seq,
        "retired_period": x.retired_period,
    }


def certificate_from_row(r: Row[Any]) -> Certificate:
    return Certificate(
        r.id,
        r.scheme,
        r.category,
        r.period,
        r.issuer,
        r.holder,
        int(r.mass_g),
        tuple((str(lot), int(g)) for lot, g in json.loads(r.lots)),
        int(r.issued_seq),
        int(r.updated_seq),
        r.retired_period,
    )


def declaration_to_row(x: Declaration) -> dict[str, Any]:
    return {
        "seq": x.seq,
        "producer": x.producer,
        "scheme": x.scheme,
        "category": x.category,
        "period": x.period,
        "mass_g": x.mass_g,
        "units": x.units,
    }


def write_epr(
    conn: Connection,
    changed_outputs: Iterable[Output],
    changed_certificates: Iterable[Certificate],
    new_declarations: Sequence[Declaration],
    *,
    stored_outputs: Set[str] = frozenset(),
    stored_certificates: Set[str] = frozenset(),
) -> None:
    """Insert new and update changed EPR projection rows (``stored_*``: ids in the database)."""
    outs = [output_to_row(x) for x in changed_outputs]
    new_outs = [r for r in outs if r["lot"] not in stored_outputs]
    if new_outs:
        conn.execute(insert(epr_outputs), new_outs)
    certified = [
        {"b_lot": r["lot"], "certified": r["certified"]} for r in outs if r["lot"] in stored_outputs
    ]
    if certified:
        conn.execute(update(epr_outputs).where(epr_outputs.c.lot == bindparam("b_lot")), certified)
    certs = [certificate_to_row(x) for x in changed_certificates]
    new_certs = [r for r in certs if r["id"] not in stored_certificates]
    if new_certs:
        conn.execute(insert(certificates), new_certs)
    moved = [
        {
            "b_id": r["id"],
            "holder": r["holder"],
            "updated_seq": r["updated_seq"],
            "retired_period": r["retired_period"],
        }
        for r in certs
        if r["id"] in stored_certificates
    ]
    if moved:
        conn.execute(update(certificates).where(certificates.c.id == bindparam("b_id")), moved)
    if new_declarations:
        conn.execute(insert(declarations), [declaration_to_row(x) for x in new_declarations])


def key_from_row(r: Row[Any]) -> Key:
    return Key(
        r.id,
        r.org,
        bytes(r.public_key),
        int(r.added_seq),
        r.valid_from,
        r.valid_until,
        None if r.revoked_seq is None else int(r.revoked_seq),
    )


class Statements:
    """The append path's SQL, in the driver's own parameter style (no ORM, no compiler)."""

    def __init__(self, engine: Engine) -> None:
        mark = placeholder(engine)

        def insert_sql(table: Any) -> str:
            cols = [c.name for c in table.columns]
            return f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"

        self.insert_records = insert_sql(records)
        self.insert_lots = insert_sql(lots)
        self.insert_edges = insert_sql(lot_edges)
        self.insert_lot_records = insert_sql(lot_records)
        self.insert_lot_units = insert_sql(lot_units)
        keys = "day, source, target, actor, material, method"
        self.add_flows = (
            f"INSERT INTO flow_days ({keys}, mass_g) VALUES ({', '.join([mark] * 7)}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET mass_g = flow_days.mass_g + excluded.mass_g"
        )
        keys = "day, source, target, material, method"
        self.add_flow_totals = (
            f"INSERT INTO flow_totals ({keys}, mass_g) VALUES ({', '.join([mark] * 6)}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET mass_g = flow_totals.mass_g + excluded.mass_g"
        )
        cols = [c.name for c in refused_records.columns if c.name != "id"]
        self.insert_refusals = (
            f"INSERT INTO {refused_records.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join([mark] * len(cols))})"
        )
        sets = ", ".join(f"{c} = {mark}" for c in LOT_MUTABLE)
        self.update_lots = f"UPDATE lots SET {sets} WHERE id = {mark}"
        self.set_seq = f"UPDATE ledger_meta SET seq = {mark} WHERE id = 1"
        self.read_seq = "SELECT seq FROM ledger_meta WHERE id = 1"
        self.lock = self.read_seq + " FOR UPDATE"


def write_projections(
    conn: Connection,
    changed_lots: Iterable[Lot],
    new_orgs: Iterable[Org],
    changed_keys: Iterable[Key],
    new_edges: Sequence[Edge],
    new_lot_records: Sequence[tuple[str, int]] = (),
    new_units: Sequence[UnitRow] = (),
    *,
    sql: Statements,
    stored_lots: Set[str] = frozenset(),
    stored_keys: Set[str] = frozenset(),
) -> None:
    """Insert new and update changed projection rows (``stored_*``: ids already in the database)."""
    created: list[tuple[Any, ...]] = []
    updated: list[tuple[Any, ...]] = []
    for lot in changed_lots:
        if lot.id in stored_lots:
            updated.append(lot_mutable_values(lot))
        else:
            created.append(lot_values(lot))
    for chunk in chunks(created, 5_000):
        conn.exec_driver_sql(sql.insert_lots, chunk)
    if updated:
        conn.exec_driver_sql(sql.update_lots, updated)
    org_rows = [org_to_row(o) for o in new_orgs]
    if org_rows:
        conn.execute(insert(orgs), org_rows)
    key_rows = [key_to_row(k) for k in changed_keys]
    new_keys = [r for r in key_rows if r["id"] not in stored_keys]
    revoked = [r for r in key_rows if r["id"] in stored_keys]
    if new_keys:
        conn.execute(insert(keys), new_keys)
    if revoked:
        conn.execute(
            update(keys).where(keys.c.id == bindparam("b_id")),
            [{"revoked_seq": r["revoked_seq"], "b_id": r["id"]} for r in revoked],
        )
    edge_rows = [edge_values(e) for e in new_edges]
    for chunk in chunks(edge_rows, 5_000):
        conn.exec_driver_sql(sql.insert_edges, chunk)
    for chunk in chunks(new_lot_records, 5_000):
        conn.exec_driver_sql(sql.insert_lot_records, chunk)
    unit_rows = [unit_values(u) for u in new_units]
    for chunk in chunks(unit_rows, 5_000):
        conn.exec_driver_sql(sql.insert_lot_units, chunk)


def public_keys_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """Registered public keys by key id (the store's and the verify workers' one reader)."""
    found: dict[str, Ed25519PublicKey] = {}
    for chunk in chunks(sorted(set(ids)), 500):
        for kid, raw in conn.execute(
            select(keys.c.id, keys.c.public_key).where(keys.c.id.in_(chunk))
        ):
            found[kid] = load_public_key(bytes(raw))
    return found


# Refusals that are routine, not attempts worth a regulator's eye: a stale head is retried.
UNLOGGED_REFUSALS = frozenset({"conflict"})


def refusal_values(
    env: Envelope, signature: str | bytes, exc: RecordRefused, received_at: str
) -> tuple[Any, ...] | None:
    """A row of the refusals log (in column order, without the id), or None if routine."""
    if exc.code in UNLOGGED_REFUSALS:
        return None
    sig = signature if isinstance(signature, str) else signature.decode("ascii", "replace")
    return (
        env.id,
        env.hash,
        env.type,
        env.actor,
        env.at,
        received_at,
        exc.code,
        exc.path,
        exc.message[:1000],
        env.canonical,
        sig[:128],
    )


def add_flows(conn: Connection, flows: dict[FlowKey, int], sql: Statements) -> None:
    """Add a batch's flow_days increments (one upsert per key; a void's are negative), and
    the same increments without the actor to flow_totals."""
    rows = [(*key, grams) for key, grams in sorted(flows.items())]
    for chunk in chunks(rows, 5_000):
        conn.exec_driver_sql(sql.add_flows, chunk)
    totals = [(*key, grams) for key, grams in sorted(flow_totals_of(flows).items())]
    for chunk in chunks(totals, 5_000):
        conn.exec_driver_sql(sql.add_flow_totals, chunk)


def flow_totals_of(flows: dict[FlowKey, int]) -> dict[tuple[str, str, str, str, str], int]:
    """flow_days increments summed over the actors: flow_totals' increments (or rows)."""
    out: dict[tuple[str, str, str, str, str], int] = {}
    for (day, source, target, _actor, material, method), grams in flows.items():
        key = (day, source, target, material, method)
        out[key] = out.get(key, 0) + grams
    return out


def flow_total_to_row(key: tuple[str, str, str, str, str], grams: int) -> dict[str, Any]:
    day, source, target, material, method = key
    return {
        "day": day,
        "source": source,
        "target": target,
        "material": material,
        "method": method,
        "mass_g": grams,
    }


def flow_to_row(key: FlowKey, grams: int) -> dict[str, Any]:
    day, source, target, actor, material, method = key
    return {
        "day": day,
        "source": source,
        "target": target,
        "actor": actor,
        "material": material,
        "method": method,
        "mass_g": grams,
    }


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
