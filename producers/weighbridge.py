"""Weighbridge tickets (CSV) → draft records for ``rledger submit``.

One row per ticket, as a weighbridge's software exports them; the format is
documented in docs/weighbridge-csv.md. A ticket becomes one draft:

* ``in``: a collected lot arrives → ``create`` (net mass, material, origin);
* ``out``: a lot leaves for ``counterparty`` → ``transfer`` (the whole lot);
* ``received``: a lot another org declared to this site arrives → ``receive``.

Masses are exact: kilograms are parsed as decimals (at most 3 places) and
turned into integer grams, net = gross − tare; never a float. A file is
imported whole or not at all: every bad row is reported (row number, column,
rule) and nothing is written if there is one.

Importing the same ticket again gives the same record id (a ULID whose time
is the ticket's and whose other 80 bits come from SHA-256 of the site and
ticket number), so a ticket can never be counted twice: the ledger answers an
already stored id with the stored record, and an edited ticket (same id,
other bytes) is refused as ``id.reused``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ulid import ULID

from ledger.envelope import ID_RE, ORIGINS
from ledger.materials import default_taxonomy
from producers.builders import BuildError, draft, kg_to_grams, utc_at

REQUIRED = ("ticket_no", "date_time", "site", "direction", "gross_kg", "tare_kg")
OPTIONAL = ("lot", "material", "origin", "counterparty", "vehicle", "note")
COLUMNS = REQUIRED + OPTIONAL
DIRECTIONS = {"in": "create", "out": "transfer", "received": "receive"}
TICKET_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
MAX_GROSS_G = 1_000_000_000  # 1,000 t: more on one ticket is a unit mistake (grams in kg?)
CLOCK_SKEW = timedelta(minutes=5)  # the ledger's own tolerance (ledger.rules.CLOCK_SKEW)
MAX_VEHICLE = 32
MAX_NOTE = 500
ID_DOMAIN = b"rledger/weighbridge/v1\x00"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}, {self.column}" if self.column else f"row {self.row}"
        return f"{where}: {self.message}"


class WeighbridgeError(ValueError):
    """The file has bad rows; ``errors`` lists each (nothing was imported)."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:50])
        more = f"\n… and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(
            f"{len(self.errors)} problem{'s' if len(self.errors) != 1 else ''} in the file; "
            f"nothing was imported:\n{shown}{more}"
        )


@dataclass(frozen=True, slots=True)
class Ticket:
    """One weighing, checked."""

    row: int
    ticket_no: str
    at: str  # RFC 3339 UTC
    site: str
    direction: str
    lot: str
    material: str | None
    gross_g: int
    tare_g: int
    origin: str | None
    counterparty: str | None
    vehicle: str | None
    note: str | None
    weighed_at: datetime

    @property
    def net_g(self) -> int:
        return self.gross_g - self.tare_g

    @property
    def record_id(self) -> str:
        return ticket_record_id(self.site, self.ticket_no, self.weighed_at)

    def draft(self) -> dict[str, Any]:
        """The draft line (``rledger submit`` input) for this ticket."""
        body: dict[str, Any]
        if self.direction == "in":
            assert self.material is not None and self.origin is not None
            body = {
                "lot": self.lot,
                "material": self.material,
                "mass_g": self.net_g,
                "origin": self.origin,
            }
        elif self.direction == "out":
            body = {"lot": self.lot, "to": self.counterparty, "mass_g": self.net_g}
        else:
            body = {"lot": self.lot, "mass_g": self.net_g}
        ticket: dict[str, Any] = {
            "site": self.site,
            "ticket_no": self.ticket_no,
            "row": self.row,
            "direction": self.direction,
            "gross_g": self.gross_g,
            "tare_g": self.tare_g,
        }
        for name in ("material", "counterparty", "vehicle", "note"):
            if (value := getattr(self, name)) is not None:
                ticket[name] = value
        return draft(
            DIRECTIONS[self.direction],
            body,
            record_id=self.record_id,
            at=self.at,
            actor=self.site,
            ticket=ticket,
        )


def ticket_record_id(site: str, ticket_no: str, weighed_at: datetime) -> str:
    """The record id of a ticket: ULID time = the weighing (ms), randomness = SHA-256(site, ticket)."""
    millis = (weighed_at - EPOCH) // timedelta(milliseconds=1)
    digest = hashlib.sha256(ID_DOMAIN + site.encode() + b"\x00" + ticket_no.encode()).digest()
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + digest[:10]))


def default_lot(site: str, ticket_no: str) -> str:
    """The lot id of an ``in`` ticket without one: ``lot:<site>.<ticket_no>``."""
    return f"lot:{site.removeprefix('org:')}.{ticket_no}"


# --- reading ---------------------------------------------------------------------


def read_tickets(
    source: str | Path | Iterable[str], *, now: datetime | None = None
) -> list[Ticket]:
    """Parse and check a whole file; raises :class:`WeighbridgeError` listing every bad row.

    ``source``: a path, or the CSV text as a string or lines. Tickets come
    back in the order they were weighed (time, then row).
    """
    if isinstance(source, Path):
        text = source.read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    elif isinstance(source, str):
        rows = list(csv.reader(io.StringIO(source.removeprefix("\ufeff"), newline="")))
    else:
        rows = list(csv.reader(source))
    now = now or datetime.now(UTC)
    errors: list[RowError] = []
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise WeighbridgeError([RowError(1, None, "the file is empty; row 1 names the columns")])
    header = [cell.strip().lower() for cell in rows[0]]
    _check_header(header, errors)
    if errors:
        raise WeighbridgeError(errors)
    tickets: list[Ticket] = []
    first: dict[str, tuple[str, int]] = {}  # where a site / ticket number was first seen
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if len(cells) != len(header):
            errors.append(
                RowError(
                    number,
                    None,
                    f"{len(cells)} fields but the header has {len(header)}; "
                    "quote a value that holds a comma",
                )
            )
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        _check_across(number, values, first, errors)
        ticket = _ticket(number, values, now, errors)
        if ticket is not None:
            tickets.append(ticket)
    if not tickets and not errors:
        errors.append(RowError(2, None, "no tickets: the file has a header but no rows"))
    _check_file(tickets, errors)
    if errors:
        raise WeighbridgeError(sorted(errors, key=lambda e: e.row))
    return sorted(tickets, key=lambda t: (t.weighed_at, t.row))


def import_file(path: Path, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The drafts of a weighbridge file, in weighing order (or WeighbridgeError)."""
    return [t.draft() for t in read_tickets(path, now=now)]


def write_drafts(drafts: Sequence[dict[str, Any]], out: Path) -> None:
    """Write drafts as JSON lines, all or nothing (a temporary file renamed into place)."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for line in drafts:
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    tmp.replace(out)


def _check_header(header: list[str], errors: list[RowError]) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            errors.append(RowError(1, name, "the column appears twice"))
        seen.add(name)
        if name not in COLUMNS:
            errors.append(
                RowError(
                    1, name or "(empty)", f"unknown column; the columns are {', '.join(COLUMNS)}"
                )
            )
    for name in REQUIRED:
        if name not in seen:
            errors.append(RowError(1, name, "required column is missing"))


def _ticket(row: int, v: dict[str, str], now: datetime, errors: list[RowError]) -> Ticket | None:
    before = len(errors)

    def bad(column: str, message: str) -> None:
        errors.append(RowError(row, column, message))

    def get(name: str) -> str | None:
        return v.get(name) or None

    ticket_no = get("ticket_no")
    if ticket_no is None:
        bad("ticket_no", "required")
    elif not TICKET_RE.fullmatch(ticket_no):
        bad("ticket_no", "1-32 characters of letters, digits, '.', '_' or '-'")

    weighed_at: datetime | None = None
    raw_time = get("date_time")
    if raw_time is None:
        bad("date_time", "required")
    else:
        try:
            weighed_at = datetime.fromisoformat(raw_time)
        except ValueError:
            bad("date_time", f"{raw_time!r} is not ISO 8601, e.g. 2026-03-02T08:15:00+08:00")
        else:
            if weighed_at.tzinfo is None:
                bad(
                    "date_time",
                    f"{raw_time!r} has no UTC offset; add the site's, e.g. +08:00 (or Z for UTC)",
                )
                weighed_at = None
            elif weighed_at < EPOCH:
                bad("date_time", f"{raw_time} is before 1970; check the weighbridge's clock")
                weighed_at = None
            elif weighed_at > now + CLOCK_SKEW:
                bad("date_time", f"{raw_time} is in the future; check the weighbridge's clock")
                weighed_at = None
            else:
                weighed_at = weighed_at.astimezone(UTC)

    site = _org(get("site"), "site", bad, required=True)

    direction = (get("direction") or "").lower()
    if not direction:
        bad("direction", "required: in, out or received")
    elif direction not in DIRECTIONS:
        bad("direction", f"{direction!r} is not in, out or received")

    lot = get("lot")
    if lot is not None:
        if not ID_RE.fullmatch(lot) or not lot.startswith("lot:"):
            bad("lot", "a lot id starts with 'lot:' and is 1-64 characters of [A-Za-z0-9._:-]")
            lot = None
    elif direction in ("out", "received"):
        bad("lot", f"required for {direction} tickets: the lot that leaves or arrives")
    elif direction == "in" and site is not None and ticket_no is not None:
        lot = default_lot(site, ticket_no)
        if not ID_RE.fullmatch(lot):
            bad("lot", f"give a lot id: the default {lot[:70]} is over 64 characters")
            lot = None

    material = get("material")
    if material is not None and default_taxonomy().material(material) is None:
        bad("material", f"{material!r} is not a material code (ledger/data/materials.toml)")
    elif material is None and direction == "in":
        bad("material", "required for in tickets, e.g. steel.hms1 or paper.occ")

    gross = _kg(get("gross_kg"), "gross_kg", bad)
    tare = _kg(get("tare_kg"), "tare_kg", bad)
    if gross is not None and tare is not None:
        if gross <= tare:
            bad(
                "net_kg",
                f"gross {_kg_text(gross)} <= tare {_kg_text(tare)}; the net must be more "
                "than 0 (are gross and tare swapped?)",
            )
        elif gross > MAX_GROSS_G:
            bad("gross_kg", f"{_kg_text(gross)} is over 1,000 t; are these grams, not kg?")

    origin = get("origin")
    if direction == "in":
        if origin is None:
            bad("origin", f"required for in tickets: {', '.join(sorted(ORIGINS))}")
        elif origin not in ORIGINS:
            bad("origin", f"{origin!r} is not one of {', '.join(sorted(ORIGINS))}")
    elif origin is not None and direction in DIRECTIONS:
        bad("origin", f"only for in tickets (a new lot); leave it empty on {direction} tickets")

    counterparty = _org(get("counterparty"), "counterparty", bad, required=direction == "out")
    if direction == "out" and counterparty is not None and counterparty == site:
        bad("counterparty", "a lot cannot go out to its own site")

    vehicle = get("vehicle")
    if vehicle is not None and (len(vehicle) > MAX_VEHICLE or not vehicle.isprintable()):
        bad("vehicle", f"at most {MAX_VEHICLE} printable characters")
    note = get("note")
    if note is not None and len(note) > MAX_NOTE:
        bad("note", f"at most {MAX_NOTE} characters")

    if len(errors) > before:
        return None
    assert ticket_no and weighed_at and site and lot and gross is not None and tare is not None
    return Ticket(
        row,
        ticket_no,
        utc_at(weighed_at),
        site,
        direction,
        lot,
        material,
        gross,
        tare,
        origin if direction == "in" else None,
        counterparty,
        vehicle,
        note,
        weighed_at,
    )


def _org(value: str | None, column: str, bad: Any, *, required: bool) -> str | None:
    if value is None:
        if required:
            bad(column, "required: an organisation id such as org:acme-recycling")
        return None
    if not ID_RE.fullmatch(value) or not value.startswith("org:"):
        bad(column, f"{value[:70]!r} is not an organisation id (org:…, [A-Za-z0-9._:-], ≤ 64)")
        return None
    return value


def _kg(value: str | None, column: str, bad: Any) -> int | None:
    if value is None:
        bad(column, "required: kilograms, e.g. 12340 or 12340.5")
        return None
    try:
        return kg_to_grams(value, path=column)
    except BuildError as exc:
        bad(column, exc.message)
        return None


def _kg_text(grams: int) -> str:
    whole, frac = divmod(grams, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + " kg"


def _check_across(
    row: int, v: dict[str, str], first: dict[str, tuple[str, int]], errors: list[RowError]
) -> None:
    """One site per file, each ticket number once (on the raw values, so a row with
    other mistakes is still checked against the rest)."""
    site = v.get("site", "")
    if ID_RE.fullmatch(site) and site.startswith("org:"):
        seen_site, seen_row = first.setdefault("site", (site, row))
        if site != seen_site:
            errors.append(
                RowError(
                    row,
                    "site",
                    f"{site}, but row {seen_row} is {seen_site}; a file holds one site's "
                    "tickets (each site signs its own): split the file per site",
                )
            )
    ticket_no = v.get("ticket_no", "")
    if TICKET_RE.fullmatch(ticket_no):
        _, seen_row = first.setdefault(f"ticket:{ticket_no}", (ticket_no, row))
        if seen_row != row:
            errors.append(
                RowError(row, "ticket_no", f"ticket {ticket_no} is already on row {seen_row}")
            )


def _check_file(tickets: list[Ticket], errors: list[RowError]) -> None:
    """Across good rows: an in lot is created once; an out of it moves all of it, later."""
    created: dict[str, Ticket] = {}
    for t in tickets:  # file order
        if t.direction == "in":
            if t.lot in created:
                errors.append(
                    RowError(
                        t.row, "lot", f"{t.lot} is already collected on row {created[t.lot].row}"
                    )
                )
            created.setdefault(t.lot, t)
    for t in sorted(tickets, key=lambda x: (x.weighed_at, x.row)):
        source = created.get(t.lot)
        if t.direction != "out" or source is None:
            continue
        if source.weighed_at > t.weighed_at:
            errors.append(
                RowError(
                    t.row, "date_time", f"{t.lot} goes out before it came in on row {source.row}"
                )
            )
        elif t.net_g != source.net_g:
            errors.append(
                RowError(
                    t.row,
                    "net_kg",
                    f"{t.lot} came in on row {source.row} at {_kg_text(source.net_g)} but goes out "
                    f"at {_kg_text(t.net_g)}; a transfer moves the whole lot as recorded: record "
                    "the difference first (split or transform with loss_g) and send the rest",
                )
            )
