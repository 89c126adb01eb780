"""Builders: one typed function per record type, returning the record's ``body``.

They check what can be checked without the ledger's state (ids, integer
grams, known materials, processes, elements, statuses, conservation inside
one transform) and raise :class:`BuildError` naming the field, so a mistake
surfaces where the body is written rather than as a refusal from the
server. What needs state (a lot's remaining mass, who holds it, its head)
is still the ledger's to check. Bodies follow DESIGN.md "Event vocabulary";
the server's shape check is :mod:`ledger.envelope`.

    body = builders.create("lot:c-001", "steel.hms1", kg_to_grams("12.340"), "post_consumer")
    line = builders.draft("create", body, at=builders.utc_at(weighed_at))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ledger.envelope import (
    AT_RE,
    DISPOSAL_METHODS,
    HEX64_RE,
    ID_RE,
    LIFECYCLE_STATUSES,
    MAX_LIST,
    MAX_TEXT,
    ORIGINS,
    REGION_RE,
    ROLES,
    TYPES,
)
from ledger.materials import default_taxonomy
from ledger.signing import b64url_decode, b64url_encode

Body = dict[str, Any]
Origin = Literal["virgin", "pre_consumer", "post_consumer"]
Method = Literal["landfill", "incineration", "energy_recovery"]
MAX_GRAMS = 2**53 - 1  # I-JSON's safe integer range (RFC 7493 §2.2)


class BuildError(ValueError):
    """A body that the ledger would refuse; ``path`` names the field (``body.parts[1].mass_g``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- values ---------------------------------------------------------------------

_KG_RE = re.compile(r"\d+(\.\d+)?")


def kg_to_grams(kg: str | Decimal | int, *, path: str = "mass") -> int:
    """Exact integer grams from kilograms (``"12.345"`` → 12345); never via a float.

    Refuses more than 3 decimal places (less than a gram), negative values,
    exponents and thousands separators: a weighbridge's ``12,500`` is
    ambiguous, so write ``12500`` or ``12.5``.
    """
    if isinstance(kg, bool | float):
        raise BuildError(path, "give kilograms as a string or Decimal, never a float")
    if isinstance(kg, int):
        value = Decimal(kg)
    elif isinstance(kg, Decimal):
        value = kg
    else:
        text = kg.strip()
        if not _KG_RE.fullmatch(text):
            raise BuildError(
                path,
                f"{text[:20]!r} is not a number of kilograms like 12500 or 12.345 "
                "(digits and one decimal point; no sign, comma, unit or exponent)",
            )
        try:
            value = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise BuildError(path, f"{text[:20]!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise BuildError(path, "kilograms must be a finite number of at least 0")
    grams = value * 1000
    if grams != grams.to_integral_value():
        raise BuildError(path, f"{value} kg has more than 3 decimal places (finer than a gram)")
    if grams > MAX_GRAMS:
        raise BuildError(path, f"{value} kg is beyond the ledger's range of 2^53 g")
    return int(grams)


def utc_at(when: datetime) -> str:
    """An ``at`` value (RFC 3339 UTC, ``Z``) from an aware datetime; refuses a naive one."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise BuildError("at", "the time has no UTC offset; give one (e.g. +08:00) or use UTC")
    t = when.astimezone(UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{t.microsecond:06d}Z" if t.microsecond else f"{base}Z"


def _id(value: object, path: str, prefix: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise BuildError(path, "an id is 1-64 characters of [A-Za-z0-9._:-]")
    if not value.startswith(prefix):
        raise BuildError(path, f"must start with {prefix!r} (got {value!r})")
    return value


def _grams(value: object, path: str, *, zero_ok: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = (
            " (convert kilograms with kg_to_grams)"
            if isinstance(value, float | Decimal | str)
            else ""
        )
        raise BuildError(path, f"must be an integer number of grams, got {value!r}{hint}")
    if value < 0 or (value == 0 and not zero_ok):
        raise BuildError(path, f"must be {'at least 0' if zero_ok else 'more than 0'} g")
    if value > MAX_GRAMS:
        raise BuildError(path, "is beyond the ledger's range of 2^53 g")
    return value


def _text(value: object, path: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise BuildError(path, f"must be a string of 1-{limit} characters")
    return value


def _choice(value: object, path: str, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise BuildError(path, f"must be one of {', '.join(sorted(allowed))} (got {value!r})")
    return value


def _material(value: object, path: str) -> str:
    code = _text(value, path, 64)
    if default_taxonomy().material(code) is None:
        raise BuildError(
            path, f"{code!r} is not in the material taxonomy (ledger/data/materials.toml)"
        )
    return code


def _elements(elements: Mapping[str, int], mass_g: int, path: str) -> dict[str, int]:
    taxonomy = default_taxonomy()
    out: dict[str, int] = {}
    for symbol, grams in elements.items():
        if not taxonomy.is_element(symbol):
            raise BuildError(f"{path}.{symbol}", f"{symbol!r} is not a tracked element")
        out[symbol] = _grams(grams, f"{path}.{symbol}", zero_ok=True)
    if sum(out.values()) > mass_g:
        raise BuildError(path, f"element masses add up to {sum(out.values())} g, over {mass_g} g")
    return out


def _units(units: Sequence[str], path: str) -> list[str]:
    if isinstance(units, str):
        raise BuildError(path, "units is a list of unit ids, not one string")
    out = list(units)
    if not 1 <= len(out) <= MAX_LIST:
        raise BuildError(path, f"must list 1-{MAX_LIST} units")
    for i, unit in enumerate(out):
        _text(unit, f"{path}[{i}]", 128)
    if len(set(out)) != len(out):
        raise BuildError(path, "a unit id is listed twice")
    return out


def _lot_masses(
    items: Sequence[Mapping[str, Any] | tuple[str, int]], path: str, *, units: bool = False
) -> list[dict[str, Any]]:
    if isinstance(items, str | bytes) or not 1 <= len(items) <= MAX_LIST:
        raise BuildError(path, f"must be a list of 1-{MAX_LIST} {{lot, mass_g}} items")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, tuple):
            item = {"lot": item[0], "mass_g": item[1]}
        allowed = {"lot", "mass_g", "units"} if units else {"lot", "mass_g"}
        extra = set(item) - allowed
        if extra:
            raise BuildError(f"{where}.{sorted(extra)[0]}", "is not allowed here")
        entry: dict[str, Any] = {
            "lot": _id(item.get("lot"), f"{where}.lot", "lot:"),
            "mass_g": _grams(item.get("mass_g"), f"{where}.mass_g"),
        }
        if item.get("units") is not None:
            entry["units"] = _units(item["units"], f"{where}.units")
        out.append(entry)
    seen: set[str] = set()
    for i, entry in enumerate(out):
        if entry["lot"] in seen:
            raise BuildError(f"{path}[{i}].lot", f"{entry['lot']} appears twice")
        seen.add(entry["lot"])
    return out


def _public_key(value: bytes | str, path: str) -> str:
    raw = value if isinstance(value, bytes) else _b64(value, path)
    if len(raw) != 32:
        raise BuildError(path, "an Ed25519 public key is 32 raw bytes (base64url: 43 characters)")
    return b64url_encode(raw)


def _b64(value: str, path: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        raise BuildError(path, "is not base64url") from None


def _at(value: str, path: str) -> str:
    if not AT_RE.fullmatch(value):
        raise BuildError(
            path, "must be an RFC 3339 UTC time like 2026-11-20T08:15:00Z (see utc_at)"
        )
    return value


# --- bodies ---------------------------------------------------------------------


def org_register(
    org: str,
    name: str,
    roles: Sequence[str],
    region: str,
    *,
    capacity: Mapping[str, int] | None = None,
) -> Body:
    """``org.register`` (signed by the operator): a participant exists; ``capacity``: its
    permitted annual capacity per material, grams per year."""
    if isinstance(roles, str) or not roles:
        raise BuildError("body.roles", "give at least one role, as a list")
    for i, role in enumerate(roles):
        _choice(role, f"body.roles[{i}]", ROLES)
    if len(set(roles)) != len(roles):
        raise BuildError("body.roles", "a role is listed twice")
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise BuildError("body.region", "must be an ISO 3166-2 code such as CN-GD or DE-BY")
    body: Body = {
        "org": _id(org, "body.org", "org:"),
        "name": _text(name, "body.name", 200),
        "roles": list(roles),
        "region": region,
    }
    if capacity is not None:
        body["capacity"] = {
            _material(m, f"body.capacity.{m}"): _grams(g, f"body.capacity.{m}")
            for m, g in capacity.items()
        }
    return body


def key_add(
    org: str,
    public_key: bytes | str,
    *,
    valid_from: str | None = None,
    valid_until: str | None = None,
) -> Body:
    """``key.add`` (the org itself or the operator): raw key bytes or base64url."""
    body: Body = {
        "org": _id(org, "body.org", "org:"),
        "public_key": _public_key(public_key, "body.public_key"),
    }
    if valid_from is not None:
        body["valid_from"] = _at(valid_from, "body.valid_from")
    if valid_until is not None:
        body["valid_until"] = _at(valid_until, "body.valid_until")
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        raise BuildError("body.valid_until", "must be after valid_from")
    return body


def key_revoke(org: str, key: str, *, reason: str | None = None) -> Body:
    """``key.revoke``: ``key`` is the key id (hex SHA-256 of the raw public key)."""
    if not isinstance(key, str) or not HEX64_RE.fullmatch(key):
        raise BuildError("body.key", "a key id is 64 lowercase hex digits")
    body: Body = {"org": _id(org, "body.org", "org:"), "key": key}
    if reason is not None:
        body["reason"] = _text(reason, "body.reason")
    return body


def create(
    lot: str,
    material: str,
    mass_g: int,
    origin: Origin,
    *,
    elements: Mapping[str, int] | None = None,
    units: Sequence[str] | None = None,
) -> Body:
    """``create``: a new lot of collected waste or of virgin material/new product."""
    grams = _grams(mass_g, "body.mass_g")
    body: Body = {
        "lot": _id(lot, "body.lot", "lot:"),
        "material": _material(material, "body.material"),
        "mass_g": grams,
        "origin": _choice(origin, "body.origin", ORIGINS),
    }
    if elements is not None:
        body["elements"] = _elements(elements, grams, "body.elements")
    if units is not None:
        body["units"] = _units(units, "body.units")
    return body


def transfer(lot: str, to: str, mass_g: int) -> Body:
    """``transfer`` (the sender): the whole lot, its remaining mass declared, goes to ``to``."""
    return {
        "lot": _id(lot, "body.lot", "lot:"),
        "to": _id(to, "body.to", "org:"),
        "mass_g": _grams(mass_g, "body.mass_g"),
    }


def receive(lot: str, mass_g: int) -> Body:
    """``receive`` (the receiver): the mass weighed on arrival (at most what was declared)."""
    return {"lot": _id(lot, "body.lot", "lot:"), "mass_g": _grams(mass_g, "body.mass_g")}


def split(lot: str, parts: Sequence[Mapping[str, Any] | tuple[str, int]]) -> Body:
    """``split``: parts as ``{"lot", "mass_g", "units"?}`` or ``(lot, mass_g)``; they must
    add up to the lot's remaining mass."""
    source = _id(lot, "body.lot", "lot:")
    out = _lot_masses(parts, "body.parts", units=True)
    if any(p["lot"] == source for p in out):
        raise BuildError("body.parts", f"a part may not reuse the split lot's id {source}")
    return {"lot": source, "parts": out}


def merge(lots: Sequence[str], into: str, *, mass_g: int | None = None) -> Body:
    """``merge``: lots of one material into a new lot (``mass_g``: the merged mass, if weighed)."""
    if isinstance(lots, str) or len(lots) < 2:
        raise BuildError("body.lots", "merge at least two lots, given as a list")
    ids = [_id(x, f"body.lots[{i}]", "lot:") for i, x in enumerate(lots)]
    if len(set(ids)) != len(ids):
        raise BuildError("body.lots", "a lot is listed twice")
    body: Body = {"lots": ids, "into": _id(into, "body.into", "lot:")}
    if body["into"] in ids:
        raise BuildError("body.into", "the merged lot needs a new id")
    if mass_g is not None:
        body["mass_g"] = _grams(mass_g, "body.mass_g")
    return body


def output(
    lot: str, material: str, mass_g: int, *, elements: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """One output of a :func:`transform`."""
    out: dict[str, Any] = {"lot": lot, "material": material, "mass_g": mass_g}
    if elements is not None:
        out["elements"] = dict(elements)
    return out


def transform(
    process: str,
    inputs: Sequence[Mapping[str, Any] | tuple[str, int]],
    outputs: Sequence[Mapping[str, Any]],
    loss_g: int,
) -> Body:
    """``transform``: sum(outputs) + loss_g = sum(inputs), in grams (mass balance)."""
    if default_taxonomy().process(_text(process, "body.process", 64)) is None:
        raise BuildError("body.process", f"{process!r} is not a process in the taxonomy")
    ins = _lot_masses(inputs, "body.inputs")
    if isinstance(outputs, str | bytes) or not 1 <= len(outputs) <= MAX_LIST:
        raise BuildError("body.outputs", f"must be a list of 1-{MAX_LIST} outputs")
    outs: list[dict[str, Any]] = []
    for i, item in enumerate(outputs):
        where = f"body.outputs[{i}]"
        extra = set(item) - {"lot", "material", "mass_g", "elements"}
        if extra:
            raise BuildError(f"{where}.{sorted(extra)[0]}", "is not allowed here")
        grams = _grams(item.get("mass_g"), f"{where}.mass_g")
        out: dict[str, Any] = {
            "lot": _id(item.get("lot"), f"{where}.lot", "lot:"),
            "material": _material(item.get("material"), f"{where}.material"),
            "mass_g": grams,
        }
        if item.get("elements") is not None:
            out["elements"] = _elements(item["elements"], grams, f"{where}.elements")
        outs.append(out)
    loss = _grams(loss_g, "body.loss_g", zero_ok=True)
    lots = [x["lot"] for x in ins] + [x["lot"] for x in outs]
    if len(set(lots)) != len(lots):
        raise BuildError("body.outputs", "every input and output lot needs its own id")
    spent, made = sum(x["mass_g"] for x in ins), sum(x["mass_g"] for x in outs)
    if made + loss != spent:
        raise BuildError(
            "body.loss_g",
            f"outputs {made} g + loss {loss} g = {made + loss} g, but inputs are {spent} g; "
            "every gram in must come out as an output or as loss_g",
        )
    return {"process": process, "inputs": ins, "outputs": outs, "loss_g": loss}


def status(
    lot: str, status: str, *, note: str | None = None, recode: Mapping[str, str] | None = None
) -> Body:
    """``status``: a lifecycle status (e.g. ``second_life``) set by the custodian.

    ``recode`` (with ``second_life`` only): each unit's original code -> its new
    second-life code (GB/T 34014-2017 §4.2: coded anew, the original kept).
    """
    body: Body = {
        "lot": _id(lot, "body.lot", "lot:"),
        "status": _choice(status, "body.status", LIFECYCLE_STATUSES),
    }
    if note is not None:
        body["note"] = _text(note, "body.note")
    if recode is not None:
        if status != "second_life":
            raise BuildError("body.recode", "new codes are given only with status second_life")
        _units(list(recode), "body.recode")
        body["recode"] = dict(
            zip(recode, _units(list(recode.values()), "body.recode"), strict=True)
        )
    return body


def dispose(lot: str, mass_g: int, method: Method) -> Body:
    """``dispose``: mass leaving the loop (counts against recovery)."""
    return {
        "lot": _id(lot, "body.lot", "lot:"),
        "mass_g": _grams(mass_g, "body.mass_g"),
        "method": _choice(method, "body.method", DISPOSAL_METHODS),
    }


def void(record: str, reason: str) -> Body:
    """``void``: reverse a record (by its hash); nothing is ever edited."""
    if not isinstance(record, str) or not HEX64_RE.fullmatch(record):
        raise BuildError("body.record", "a record hash is 64 lowercase hex digits")
    return {"record": record, "reason": _text(reason, "body.reason")}


def draft(
    rtype: str,
    body: Body,
    *,
    record_id: str | None = None,
    at: str | None = None,
    parents: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A draft line for ``rledger submit`` / ``sign_and_submit``: ``{"type", "body", …}``.

    ``extra`` members (e.g. ``ticket``, ``actor``) ride along in the file, unsigned.
    """
    if rtype not in TYPES:
        raise BuildError("type", f"{rtype!r} is not a record type")
    line: dict[str, Any] = {"type": rtype, "body": body}
    if record_id is not None:
        line["id"] = _id(record_id, "id", "")
    if at is not None:
        line["at"] = _at(at, "at")
    if parents:
        line["parents"] = dict(parents)
    line.update(extra)
    return line
