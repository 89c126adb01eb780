"""What doesn't add up: anomalies for regulators, each with the records that raise it.

Kinds (thresholds are data: ``ledger/data/anomaly_thresholds.toml``):

- ``transit_loss``: a lot whose transit losses (declared minus weighed, over its receipts)
  exceed its family's tolerance, in per mille of its mass. Records: its receipts.
- ``yield``: a transform whose output mass ÷ input mass (all outputs, by-products too, as
  the taxonomy defines ``yield_permille`` in ledger/data/materials.toml) lies outside its
  process's plausible range. Records: the transform.
- ``over_certification``: a recycler certified more than its recorded inputs × the highest
  plausible yield, or its registered capacity, allow (the EPR flags of
  :mod:`ledger.epr_reports`, for every scheme period overlapping the window).
- ``stuck_in_transit``: a lot transferred more than ``transit_days`` ago and never received.
  Records: the transfer.
- ``missing_role``: a record whose step needs a role its organisation lacks — collected waste
  created by an organisation that is no collector, processor, recycler or manufacturer; a
  transform by one that is no processor, recycler or manufacturer. Records: the record.

The window (``from`` inclusive, ``to`` exclusive) is on each record's ``at``; a stuck lot is
judged at ``now``. Regulators and the operator only (everyone else gets None).
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib.resources import files
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledger.access import ReadScope
from ledger.epr_reports import flags as epr_flags
from ledger.epr_schemes import default_schemes
from ledger.materials import default_taxonomy
from ledger.queries import QueryRefused, at_key, time_key
from ledger.state import IN_TRANSIT, VOID
from ledger.tables import certificates, lot_records, lots, orgs, records

COLLECTING_ROLES = frozenset({"collector", "processor", "recycler", "manufacturer"})
TRANSFORMING_ROLES = frozenset({"processor", "recycler", "manufacturer"})
RECOVERED_ORIGINS = ("pre_consumer", "post_consumer")


class Kind(StrEnum):
    TRANSIT_LOSS = "transit_loss"
    YIELD = "yield"
    OVER_CERTIFICATION = "over_certification"
    STUCK_IN_TRANSIT = "stuck_in_transit"
    MISSING_ROLE = "missing_role"


@dataclass(frozen=True, slots=True)
class Thresholds:
    transit_tolerance_permille: dict[str, int]  # by material family, with a "default"
    transit_days: int

    def tolerance(self, material: str) -> int:
        family = material.split(".", 1)[0]
        table = self.transit_tolerance_permille
        return table.get(family, table["default"])


@functools.cache
def default_thresholds() -> Thresholds:
    text = files("ledger").joinpath("data", "anomaly_thresholds.toml").read_text("utf-8")
    doc = tomllib.loads(text)
    tolerance = doc["transit_tolerance_permille"]
    if "default" not in tolerance or not all(
        type(v) is int and 0 <= v <= 1000 for v in tolerance.values()
    ):
        raise ValueError(
            "anomaly_thresholds.toml: transit_tolerance_permille needs a default, 0..1000"
        )
    days = doc["transit_days"]
    if type(days) is not int or days <= 0:
        raise ValueError("anomaly_thresholds.toml: transit_days must be a positive integer")
    return Thresholds(dict(tolerance), days)


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: Kind
    org: str  # whose step it is
    message: str  # what was compared with what, in grams or days
    records: tuple[str, ...]  # the hashes of the records that raise it
    lot: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime | None = None
    end: datetime | None = None


def anomalies(
    conn: Connection,
    scope: ReadScope,
    window: Window,
    kinds: Iterable[Kind] | None = None,
    transit_days: int | None = None,
    *,
    now: datetime | None = None,
) -> list[Anomaly] | None:
    """The anomalies of ``kinds`` (all by default) in ``window``; None unless ``scope`` reads
    everything."""
    if not scope.everything:
        return None
    if window.start is not None and window.end is not None and window.end <= window.start:
        raise QueryRefused("to", "to must be later than from")
    if transit_days is not None and transit_days <= 0:
        raise QueryRefused("transitDays", "transitDays must be a positive number of days")
    wanted = set(kinds or Kind)
    limits = default_thresholds()
    found: list[Anomaly] = []
    if Kind.TRANSIT_LOSS in wanted:
        found += _transit_loss(conn, window, limits)
    if Kind.YIELD in wanted or Kind.MISSING_ROLE in wanted:
        found += _records(conn, window, wanted)
    if Kind.OVER_CERTIFICATION in wanted:
        found += _over_certification(conn, scope, window)
    if Kind.STUCK_IN_TRANSIT in wanted:
        days = transit_days or limits.transit_days
        found += _stuck(conn, now or datetime.now(UTC), days)
    return found


def _in_window(column: Any, window: Window) -> list[Any]:
    out = []
    if window.start is not None:
        out.append(at_key(column) >= time_key("from", window.start))
    if window.end is not None:
        out.append(at_key(column) < time_key("to", window.end))
    return out


def _transit_loss(conn: Connection, window: Window, limits: Thresholds) -> list[Anomaly]:
    q = (
        select(
            lots.c.id,
            lots.c.material,
            lots.c.mass_g,
            lots.c.transit_loss_g,
            records.c.hash,
            records.c.actor,
        )
        .select_from(
            lots.join(lot_records, lot_records.c.lot == lots.c.id).join(
                records, records.c.seq == lot_records.c.seq
            )
        )
        .where(
            lots.c.transit_loss_g > 0,
            records.c.type == "receive",
            *_in_window(records.c.at, window),
        )
        .order_by(lots.c.id, records.c.seq)
    )
    by_lot: dict[str, list[Any]] = {}
    for row in conn.execute(q):
        by_lot.setdefault(row.id, []).append(row)
    out = []
    for lot_id, rows in by_lot.items():
        first = rows[0]
        tolerance = limits.tolerance(first.material)
        mass, lost = int(first.mass_g), int(first.transit_loss_g)
        if lost * 1000 > tolerance * mass:
            out.append(
                Anomaly(
                    Kind.TRANSIT_LOSS,
                    rows[-1].actor,
                    f"{lot_id} lost {lost} g of {mass} g in transit "
                    f"({lost * 1000 // mass} ‰), above the {tolerance} ‰ tolerated for "
                    f"{first.material.split('.', 1)[0]}",
                    tuple(r.hash for r in rows),
                    lot_id,
                )
            )
    return out


def _records(conn: Connection, window: Window, wanted: set[Kind]) -> list[Anomaly]:
    """Yields and roles, from the transform and create records in the window."""
    taxonomy = default_taxonomy()
    org_rows = conn.execute(select(orgs.c.id, orgs.c.roles)).all()
    roles = {r.id: set(json.loads(r.roles)) for r in org_rows}
    q = (
        select(records.c.hash, records.c.type, records.c.actor, records.c.canonical)
        .where(records.c.type.in_(("transform", "create")), *_in_window(records.c.at, window))
        .order_by(records.c.seq)
    )
    voided = {
        str(lot_id)
        for lot_id in conn.execute(select(lots.c.id).where(lots.c.status == VOID)).scalars()
    }
    out: list[Anomaly] = []
    for row in conn.execute(q):
        body = json.loads(bytes(row.canonical))["body"]
        actor, has = row.actor, roles.get(row.actor, set())
        if row.type == "create":
            if (
                Kind.MISSING_ROLE in wanted
                and body["origin"] in RECOVERED_ORIGINS
                and body["lot"] not in voided
                and not has & COLLECTING_ROLES
            ):
                out.append(
                    Anomaly(
                        Kind.MISSING_ROLE,
                        actor,
                        f"{actor} recorded collected waste ({body['lot']}) but is registered "
                        f"as {', '.join(sorted(has)) or 'no role'}, not a collector, processor, "
                        "recycler or manufacturer",
                        (row.hash,),
                        body["lot"],
                    )
                )
            continue
        if any(o["lot"] in voided for o in body["outputs"]):
            continue
        made = sum(o["mass_g"] for o in body["outputs"])
        used = made + body["loss_g"]
        process = taxonomy.process(body["process"])
        if Kind.YIELD in wanted and process is not None and process.yield_permille:
            lo, hi = process.yield_permille
            if not lo * used <= made * 1000 <= hi * used:
                out.append(
                    Anomaly(
                        Kind.YIELD,
                        actor,
                        f"{body['process']} by {actor} gave {made} g from {used} g "
                        f"({made * 1000 // used} ‰), outside the plausible {lo}-{hi} ‰",
                        (row.hash,),
                    )
                )
        if Kind.MISSING_ROLE in wanted and not has & TRANSFORMING_ROLES:
            out.append(
                Anomaly(
                    Kind.MISSING_ROLE,
                    actor,
                    f"{actor} ran {body['process']} but is registered as "
                    f"{', '.join(sorted(has)) or 'no role'}, not a processor, recycler or "
                    "manufacturer",
                    (row.hash,),
                )
            )
    return out


def _over_certification(conn: Connection, scope: ReadScope, window: Window) -> list[Anomaly]:
    out: list[Anomaly] = []
    for scheme in default_schemes().values():
        for period in _periods(scheme, window):
            for flag in epr_flags(conn, scope, scheme.id, period) or []:
                out.append(
                    Anomaly(
                        Kind.OVER_CERTIFICATION,
                        flag.recycler,
                        f"{scheme.id} {flag.category} {period}: {flag.message}",
                        tuple(_certify_hashes(conn, flag.recycler, scheme.id, period)),
                    )
                )
    return out


def _certify_hashes(conn: Connection, recycler: str, scheme: str, period: str) -> list[str]:
    seqs = select(certificates.c.issued_seq).where(
        certificates.c.issuer == recycler,
        certificates.c.scheme == scheme,
        certificates.c.period == period,
    )
    q = select(records.c.hash).where(records.c.seq.in_(seqs)).order_by(records.c.seq)
    return [str(h) for h in conn.execute(q).scalars()]


def _periods(scheme: Any, window: Window) -> list[str]:
    """The scheme's periods overlapping the window (a window without bounds: none)."""
    if window.start is None or window.end is None:
        return []
    found: list[str] = []
    t = window.start.astimezone(UTC)
    end = window.end.astimezone(UTC)
    while t < end and len(found) < 200:
        period = scheme.period_of(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
        if period not in found:
            found.append(period)
        t += timedelta(days=28)
    last = scheme.period_of((end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if last not in found:
        found.append(last)
    return found


def _stuck(conn: Connection, now: datetime, days: int) -> list[Anomaly]:
    cutoff = time_key("now", now - timedelta(days=days))
    q = (
        select(
            lots.c.id,
            lots.c.transit_to,
            lots.c.transit_g,
            records.c.hash,
            records.c.actor,
            records.c.at,
        )
        .select_from(lots.join(records, records.c.seq == lots.c.updated_seq))
        .where(
            lots.c.status == IN_TRANSIT, records.c.type == "transfer", at_key(records.c.at) < cutoff
        )
        .order_by(lots.c.id)
    )
    return [
        Anomaly(
            Kind.STUCK_IN_TRANSIT,
            row.actor,
            f"{row.id} ({row.transit_g} g) was sent to {row.transit_to} at {row.at} and not "
            f"received within {days} days",
            (row.hash,),
            row.id,
        )
        for row in conn.execute(q)
    ]
