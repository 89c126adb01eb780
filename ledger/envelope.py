"""Envelopes: the signed unit of the ledger, and their shape per event type.

This module checks *shape* only (types, formats, required and allowed
fields), with no knowledge of ledger state; :mod:`ledger.rules` checks
meaning against state. See DESIGN.md "Records" and "Event vocabulary".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger.canonical import MAX_SAFE_INTEGER, parse_canonical
from ledger.errors import RecordRefused
from ledger.signing import b64url_decode, record_hash

VERSION = 1

ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
# RFC 3339 in UTC with a "Z", optional fraction up to microseconds.
AT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
# ISO 3166-2 subdivision (or a bare ISO 3166-1 alpha-2 country).
REGION_RE = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
SYMBOL_RE = re.compile(r"[A-Z][a-z]?")

LEDGER_TYPES = (
    "org.register",
    "key.add",
    "key.revoke",
    "create",
    "transfer",
    "receive",
    "split",
    "merge",
    "transform",
    "status",
    "dispose",
    "void",
)
# EPR records (issue 4/8): their envelopes parse; the rules refuse them until then.
EPR_TYPES = ("declare", "certify", "certificate.transfer", "certificate.retire")
TYPES = frozenset(LEDGER_TYPES + EPR_TYPES)

ROLES = frozenset(
    {
        "operator",
        "regulator",
        "collector",
        "processor",
        "recycler",
        "manufacturer",
        "producer",
        "transporter",
    }
)
ORIGINS = frozenset({"virgin", "pre_consumer", "post_consumer"})
DISPOSAL_METHODS = frozenset({"landfill", "incineration", "energy_recovery"})
# Lifecycle statuses a custodian may set with a `status` record. The
# ledger-managed ones (active, in_transit, consumed, disposed, void) are set
# only by the records that cause them.
LIFECYCLE_STATUSES = frozenset(
    {
        "active",
        "placed_on_market",
        "in_use",
        "retired",
        "collected",
        "stored",
        "second_life",
        "awaiting_treatment",
    }
)
MAX_TEXT = 500
# Field names that would declare recovered content, which is computed, never submitted.
DECLARED_SHARE_RE = re.compile(r"recovered|recycled|share|pre_?consumer|post_?consumer", re.I)
# Control characters other than tab, line feed and carriage return.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_LIST = 10_000

ENVELOPE_FIELDS = frozenset({"v", "id", "type", "actor", "key", "at", "parents", "body"})

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed, shape-checked record, with the exact bytes it was signed over."""

    id: str
    type: str
    actor: str
    key: str
    at: str
    parents: dict[str, str]
    body: Body
    canonical: bytes
    hash: str

    @property
    def at_datetime(self) -> datetime:
        return parse_at(self.at)


def parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def parse_envelope(data: bytes | str) -> Envelope:
    """Canonical-JSON check, then shape check. Raises :class:`RecordRefused`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    try:
        obj = parse_canonical(raw)
    except RecordRefused as exc:
        raise _named(raw, exc) from None
    rid = obj.get("id") if isinstance(obj.get("id"), str) else None
    try:
        return _shape(obj, raw)
    except RecordRefused as exc:
        raise exc.for_record(rid) from None


def _named(raw: bytes, exc: RecordRefused) -> RecordRefused:
    """A refusal of the JSON text (duplicate key, float, integer out of range, not
    canonical) names the record and, for a number, its field, when a lenient read of
    the text finds them: the strict parser stops at the first broken rule, before it
    has read the id (found by tests/test_hostile_records.py: ``mass_g`` of 2^53
    was refused naming neither the record nor the field;
    tests/test_bug_json_refusal_names_record.py)."""
    try:
        obj = json.loads(
            raw, parse_float=Decimal, parse_constant=Decimal
        )  # repeated names: the last
    except (ValueError, RecursionError):
        return exc
    if not isinstance(obj, dict):
        return exc
    rid = obj.get("id")
    if isinstance(rid, str) and ID_RE.fullmatch(rid):
        exc.for_record(rid)
    if exc.path is None and exc.code in ("json.float", "json.integer_range"):
        exc.path = _bad_number(obj, "")
    return exc


def _bad_number(value: Any, path: str) -> str | None:
    """The path (``body.inputs[1].mass_g``) of the first float or integer beyond
    ±(2^53-1) in ``value``, members in canonical (sorted) order; None if there is none."""
    if isinstance(value, Decimal) or (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    ):
        return path or None
    if isinstance(value, dict):
        for name in sorted(value):
            found = _bad_number(value[name], f"{path}.{name}" if path else name)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _bad_number(item, f"{path}[{i}]")
            if found:
                return found
    return None


def checked_envelope(canonical: bytes) -> Envelope:
    """The Envelope of bytes that :func:`parse_envelope` already accepted — in a
    verify worker process (ledger/prepare.py) — rebuilt without checking again:
    the same bytes give the same fields, at the cost of one plain ``json.loads``."""
    obj = json.loads(canonical)
    return Envelope(
        obj["id"],
        obj["type"],
        obj["actor"],
        obj["key"],
        obj["at"],
        obj["parents"],
        obj["body"],
        canonical,
        record_hash(canonical),
    )


def _shape(obj: dict[str, Any], canonical: bytes) -> Envelope:
    extra = set(obj) - ENVELOPE_FIELDS
    if extra:
        raise RecordRefused(
            "envelope.field", f"unknown envelope field {sorted(extra)[0]!r}", path=sorted(extra)[0]
        )
    if obj.get("v") != VERSION or isinstance(obj.get("v"), bool):
        raise RecordRefused("envelope.version", f"v must be {VERSION}", path="v")
    rid = _id(obj, "id", "id")
    rtype = obj.get("type")
    if not isinstance(rtype, str):
        raise RecordRefused("envelope.field", "type must be a string", path="type")
    if rtype not in TYPES:
        raise RecordRefused(
            "type.unknown",
            f"{rtype[:64]!r} is not a record type ({', '.join(sorted(TYPES))})",
            path="type",
        )
    actor = _id(obj, "actor", "actor", prefix="org:")
    key = _hex64(obj, "key", "key")
    at = _at(obj, "at", "at")
    parents = obj.get("parents")
    if not isinstance(parents, dict):
        raise RecordRefused("envelope.field", "parents must be an object", path="parents")
    for lot, head in parents.items():
        if not ID_RE.fullmatch(lot) or not lot.startswith("lot:"):
            raise RecordRefused("envelope.field", "parents keys are lot ids", path=f"parents.{lot}")
        if not isinstance(head, str) or not HEX64_RE.fullmatch(head):
            raise RecordRefused(
                "envelope.field", "a parent is a lowercase hex SHA-256", path=f"parents.{lot}"
            )
    body = obj.get("body")
    if not isinstance(body, dict):
        raise RecordRefused("envelope.field", "body must be an object", path="body")
    _BODY_CHECKS[rtype](body)
    return Envelope(rid, rtype, actor, key, at, parents, body, canonical, record_hash(canonical))


# --- field checks -----------------------------------------------------------


def _fields(
    body: Body,
    required: set[str],
    optional: frozenset[str] | set[str] = frozenset(),
    where: str = "body",
) -> None:
    for name in required:
        if name not in body:
            raise RecordRefused(
                "envelope.field", f"{where}.{name} is required", path=f"{where}.{name}"
            )
    for name in body:
        if name not in required and name not in optional:
            if DECLARED_SHARE_RE.search(name):
                raise RecordRefused(
                    "recovered.declared",
                    f"{where}.{name[:64]} declares recovered content; the ledger computes it "
                    "from the lot's origin and lineage (DESIGN.md 'Recovered content'): "
                    "remove the field",
                    path=f"{where}.{name[:64]}",
                )
            raise RecordRefused(
                "envelope.field", f"{where}.{name[:64]} is not allowed", path=f"{where}.{name[:64]}"
            )


def _id(obj: dict[str, Any], name: str, path: str, prefix: str = "") -> str:
    return _id_value(obj.get(name), path, prefix)


def _id_value(value: Any, path: str, prefix: str = "") -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise RecordRefused(
            "envelope.field", f"{path} must be an id of 1-64 characters [A-Za-z0-9._:-]", path=path
        )
    if prefix and not value.startswith(prefix):
        raise RecordRefused("envelope.field", f"{path} must start with {prefix!r}", path=path)
    return value


def _hex64(obj: dict[str, Any], name: str, path: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
        raise RecordRefused("envelope.field", f"{path} must be 64 lowercase hex digits", path=path)
    return value


def _at(obj: dict[str, Any], name: str, path: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not AT_RE.fullmatch(value):
        raise RecordRefused(
            "envelope.field",
            f"{path} must be an RFC 3339 UTC time like 2026-11-20T08:15:00Z",
            path=path,
        )
    try:
        parse_at(value)
    except ValueError:
        raise RecordRefused(
            "envelope.field", f"{path} is not a real date and time", path=path
        ) from None
    return value


def _mass(obj: dict[str, Any], name: str, path: str, *, zero_ok: bool = False) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordRefused(
            "envelope.field", f"{path} must be an integer number of grams", path=path
        )
    if zero_ok and value < 0:
        raise RecordRefused("mass.negative", f"{path} may not be negative", path=path)
    if not zero_ok and value <= 0:
        raise RecordRefused("mass.not_positive", f"{path} must be more than 0 g", path=path)
    return value


def _text(obj: dict[str, Any], name: str, path: str, *, limit: int = MAX_TEXT) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise RecordRefused(
            "envelope.field", f"{path} must be a string of 1-{limit} characters", path=path
        )
    if CONTROL_RE.search(value):
        # PostgreSQL can't store NUL in text, so without this the two engines would
        # disagree (and the refusal would surface as a retryable database failure).
        raise RecordRefused(
            "envelope.field",
            f"{path} holds a control character (U+0000-U+001F but tab and line breaks, "
            "or U+007F); remove it",
            path=path,
        )
    return value


def _choice(obj: dict[str, Any], name: str, path: str, allowed: frozenset[str]) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or value not in allowed:
        raise RecordRefused(
            "envelope.field", f"{path} must be one of {', '.join(sorted(allowed))}", path=path
        )
    return value


def _list(obj: dict[str, Any], name: str, path: str, *, minimum: int = 1) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list) or not minimum <= len(value) <= MAX_LIST:
        raise RecordRefused(
            "envelope.field", f"{path} must be a list of {minimum}-{MAX_LIST} items", path=path
        )
    return value


def _elements(obj: dict[str, Any], path: str) -> None:
    value = obj.get("elements")
    if value is None and "elements" not in obj:
        return
    if not isinstance(value, dict):
        raise RecordRefused("envelope.field", f"{path} must be an object", path=path)
    for symbol in value:
        if not SYMBOL_RE.fullmatch(symbol):
            raise RecordRefused(
                "element.unknown",
                f"{symbol[:8]!r} is not an element symbol",
                path=f"{path}.{symbol}",
            )
        _mass(value, symbol, f"{path}.{symbol}", zero_ok=True)


def _lot_masses(body: Body, name: str, *, units: bool = False) -> None:
    for i, item in enumerate(_list(body, name, f"body.{name}")):
        path = f"body.{name}[{i}]"
        if not isinstance(item, dict):
            raise RecordRefused("envelope.field", f"{path} must be an object", path=path)
        _fields(item, {"lot", "mass_g"}, {"units"} if units else set(), path)
        _id(item, "lot", f"{path}.lot", prefix="lot:")
        _mass(item, "mass_g", f"{path}.mass_g")
        if "units" in item:
            _units(item, f"{path}.units")


def _units(obj: dict[str, Any], path: str) -> None:
    units = _list(obj, "units", path)
    for i, unit in enumerate(units):
        if not isinstance(unit, str) or not 0 < len(unit) <= 128:
            raise RecordRefused(
                "envelope.field",
                "a unit id is a string of 1-128 characters",
                path=f"{path}[{i}]",
            )
    if len(set(units)) != len(units):
        raise RecordRefused("envelope.field", "a unit id is listed twice", path=path)


# --- bodies -----------------------------------------------------------------


def _org_register(b: Body) -> None:
    # capacity (optional, an extension of the contract): the organisation's permitted
    # annual capacity per material, {"<material>": grams per year} — EPR flags compare
    # certified output with it.
    _fields(b, {"org", "name", "roles", "region"}, {"public_key", "capacity"})
    _id(b, "org", "body.org", prefix="org:")
    if "capacity" in b:
        capacity = b["capacity"]
        if not isinstance(capacity, dict) or not 0 < len(capacity) <= 200:
            raise RecordRefused(
                "envelope.field",
                "body.capacity maps material codes to grams per year: a non-empty object",
                path="body.capacity",
            )
        for material in capacity:
            _mass(capacity, material, f"body.capacity.{material[:64]}")
    _text(b, "name", "body.name", limit=200)
    roles = _list(b, "roles", "body.roles")
    for i, role in enumerate(roles):
        if not isinstance(role, str) or role not in ROLES:
            raise RecordRefused(
                "envelope.field",
                f"roles must be among {', '.join(sorted(ROLES))}",
                path=f"body.roles[{i}]",
            )
    if len(set(roles)) != len(roles):
        raise RecordRefused("envelope.field", "a role is listed twice", path="body.roles")
    region = b.get("region")
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise RecordRefused(
            "envelope.field",
            "region must be an ISO 3166-2 code such as CN-GD or DE-BY",
            path="body.region",
        )
    if "public_key" in b:
        _public_key(b, "body.public_key")


def _public_key(b: Body, path: str) -> None:
    value = b.get("public_key")
    try:
        ok = isinstance(value, str) and len(b64url_decode(value)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise RecordRefused(
            "envelope.field", f"{path} must be a raw 32-byte Ed25519 key, base64url", path=path
        )


def _key_add(b: Body) -> None:
    _fields(b, {"org", "public_key"}, {"valid_from", "valid_until"})
    _id(b, "org", "body.org", prefix="org:")
    _public_key(b, "body.public_key")
    for name in ("valid_from", "valid_until"):
        if name in b:
            _at(b, name, f"body.{name}")
    if "valid_from" in b and "valid_until" in b and b["valid_from"] >= b["valid_until"]:
        raise RecordRefused(
            "envelope.field", "valid_until must be after valid_from", path="body.valid_until"
        )


def _key_revoke(b: Body) -> None:
    _fields(b, {"org", "key"}, {"reason"})
    _id(b, "org", "body.org", prefix="org:")
    _hex64(b, "key", "body.key")
    if "reason" in b:
        _text(b, "reason", "body.reason")


def _create(b: Body) -> None:
    _fields(b, {"lot", "material", "mass_g", "origin"}, {"elements", "units"})
    _id(b, "lot", "body.lot", prefix="lot:")
    _text(b, "material", "body.material", limit=64)
    _mass(b, "mass_g", "body.mass_g")
    _choice(b, "origin", "body.origin", ORIGINS)
    _elements(b, "body.elements")
    if "units" in b:
        _units(b, "body.units")


def _transfer(b: Body) -> None:
    _fields(b, {"lot", "to", "mass_g"})
    _id(b, "lot", "body.lot", prefix="lot:")
    _id(b, "to", "body.to", prefix="org:")
    _mass(b, "mass_g", "body.mass_g")


def _receive(b: Body) -> None:
    _fields(b, {"lot", "mass_g"})
    _id(b, "lot", "body.lot", prefix="lot:")
    _mass(b, "mass_g", "body.mass_g")


def _split(b: Body) -> None:
    _fields(b, {"lot", "parts"})
    _id(b, "lot", "body.lot", prefix="lot:")
    # parts[].units (optional): which of the lot's units (battery codes) each part takes.
    _lot_masses(b, "parts", units=True)


def _merge(b: Body) -> None:
    # mass_g (optional, an extension of the contract): the merged mass as the
    # custodian weighed it; refused unless it equals the inputs' remaining mass.
    _fields(b, {"lots", "into"}, {"mass_g"})
    if "mass_g" in b:
        _mass(b, "mass_g", "body.mass_g")
    lots = _list(b, "lots", "body.lots", minimum=2)
    for i, lot in enumerate(lots):
        _id_value(lot, f"body.lots[{i}]", prefix="lot:")
    _id(b, "into", "body.into", prefix="lot:")


def _transform(b: Body) -> None:
    _fields(b, {"process", "inputs", "outputs", "loss_g"})
    _text(b, "process", "body.process", limit=64)
    _lot_masses(b, "inputs")
    for i, item in enumerate(_list(b, "outputs", "body.outputs")):
        path = f"body.outputs[{i}]"
        if not isinstance(item, dict):
            raise RecordRefused("envelope.field", f"{path} must be an object", path=path)
        _fields(item, {"lot", "material", "mass_g"}, {"elements"}, path)
        _id(item, "lot", f"{path}.lot", prefix="lot:")
        _text(item, "material", f"{path}.material", limit=64)
        _mass(item, "mass_g", f"{path}.mass_g")
        _elements(item, f"{path}.elements")
    _mass(b, "loss_g", "body.loss_g", zero_ok=True)


def _status(b: Body) -> None:
    # recode (optional, an extension of the contract): {"<unit code>": "<second-life code>"},
    # GB/T 34014-2017 §4.2 — a second-life product is coded anew and keeps its original code.
    _fields(b, {"lot", "status"}, {"note", "recode"})
    _id(b, "lot", "body.lot", prefix="lot:")
    _choice(b, "status", "body.status", LIFECYCLE_STATUSES)
    if "note" in b:
        _text(b, "note", "body.note")
    if "recode" in b:
        recode = b["recode"]
        if not isinstance(recode, dict) or not 0 < len(recode) <= MAX_LIST:
            raise RecordRefused(
                "envelope.field",
                "body.recode maps each unit code to its new code: a non-empty object",
                path="body.recode",
            )
        for unit, new in recode.items():
            if not isinstance(new, str) or not 0 < len(new) <= 128 or len(unit) > 128:
                raise RecordRefused(
                    "envelope.field",
                    "a unit code is a string of 1-128 characters",
                    path=f"body.recode.{unit[:64]}",
                )
        if len(set(recode.values())) != len(recode):
            raise RecordRefused(
                "envelope.field", "two units are given the same new code", path="body.recode"
            )


def _dispose(b: Body) -> None:
    _fields(b, {"lot", "mass_g", "method"})
    _id(b, "lot", "body.lot", prefix="lot:")
    _mass(b, "mass_g", "body.mass_g")
    _choice(b, "method", "body.method", DISPOSAL_METHODS)


def _void(b: Body) -> None:
    _fields(b, {"record", "reason"})
    _hex64(b, "record", "body.record")
    _text(b, "reason", "body.reason")


def _epr_scope(b: Body) -> None:
    _text(b, "scheme", "body.scheme", limit=64)
    _text(b, "category", "body.category", limit=64)
    _text(b, "period", "body.period", limit=16)


def _declare(b: Body) -> None:
    # units (optional): how many units (e.g. batteries) the mass stands for.
    _fields(b, {"scheme", "category", "period", "mass_g"}, {"units"})
    _epr_scope(b)
    _mass(b, "mass_g", "body.mass_g")
    if "units" in b:
        _mass(b, "units", "body.units", zero_ok=True)


def _certify(b: Body) -> None:
    _fields(b, {"certificate", "scheme", "category", "period", "lots", "mass_g"})
    _id(b, "certificate", "body.certificate", prefix="cert:")
    _epr_scope(b)
    _lot_masses(b, "lots")
    _mass(b, "mass_g", "body.mass_g")


def _certificate_transfer(b: Body) -> None:
    _fields(b, {"certificate", "to"})
    _id(b, "certificate", "body.certificate", prefix="cert:")
    _id(b, "to", "body.to", prefix="org:")


def _certificate_retire(b: Body) -> None:
    _fields(b, {"certificate", "period"})
    _id(b, "certificate", "body.certificate", prefix="cert:")
    _text(b, "period", "body.period", limit=16)


_BODY_CHECKS = {
    "org.register": _org_register,
    "key.add": _key_add,
    "key.revoke": _key_revoke,
    "create": _create,
    "transfer": _transfer,
    "receive": _receive,
    "split": _split,
    "merge": _merge,
    "transform": _transform,
    "status": _status,
    "dispose": _dispose,
    "void": _void,
    "declare": _declare,
    "certify": _certify,
    "certificate.transfer": _certificate_transfer,
    "certificate.retire": _certificate_retire,
}
