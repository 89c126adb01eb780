"""GS1 EPCIS 2.0 (ISO/IEC 19987) JSON-LD export of ledger records, and import into drafts.

Export (:func:`export_document`) maps stored records to EPCIS events with
CBV 2.0 (ISO/IEC 19988) business steps and dispositions; the mapping table is
docs/epcis-mapping.md. Lots are class-level identifiers (``quantityList`` with
``epcClass`` = ``urn:recovery-ledger:lot:…`` and quantities in KGM, exact
decimal kilograms from integer grams); battery unit codes are instance-level
EPCs. Each event carries its GS1 event hash ID (``ni:///sha-256;…?ver=CBV2.0``,
computed by the ``epcis-event-hash-generator`` package over the event without
its ``eventID``) and ``rl:`` extension members linking it to the ledger record
(hash, seq, id).

Import (:func:`import_drafts`) validates a document against the vendored
EPCIS JSON schema (producers/data/epcis/) and turns each event into an
unsigned draft ``{"type", "body", "at", "ticket"}`` that ``rledger submit``
(producers/submit.py) signs with :class:`producers.events.Signer`; parents
are resolved by the submitter. Anything that cannot be mapped raises
:class:`EpcisError` naming the event and the field.

No binary floats: documents are parsed with ``parse_float=Decimal`` and
written by :func:`dumps`, which writes a Decimal's exact digits.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
RL_NS = "https://recovery-ledger.example/epcis/"  # extension namespace (placeholder IRI)
URN = "urn:recovery-ledger:"
SCHEMA_PATH = Path(__file__).parent / "data" / "epcis" / "EPCIS-JSON-Schema.json"
_PACKAGED_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
_EXT_BIZSTEP = URN + "bizstep:"  # CBV 2.0 has no split/merge/recycling step (docs/epcis-mapping.md)

# CBV 2.0 dispositions for the ledger's lifecycle statuses (nearest; rl:status keeps the exact one).
STATUS_DISPOSITION = {
    "active": "active",
    "placed_on_market": "sellable_accessible",
    "in_use": "in_progress",
    "retired": "inactive",
    "collected": "active",
    "stored": "available",
    "second_life": "active",
    "awaiting_treatment": "in_progress",
}
EXPORTED_TYPES = frozenset(
    {"create", "transfer", "receive", "split", "merge", "transform", "status", "dispose"}
)


class EpcisError(ValueError):
    """An EPCIS document or event that cannot be mapped; names the event and the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A stored record as export needs it: its seq, hash and parsed envelope."""

    seq: int
    hash: str
    envelope: Mapping[str, Any]


# --- values ----------------------------------------------------------------------


def kg(grams: int) -> Decimal:
    """Exact kilograms from integer grams (12345 -> Decimal('12.345'))."""
    return (Decimal(grams) / 1000).normalize() if grams % 1000 else Decimal(grams // 1000)


def grams(value: Any, where: str) -> int:
    """Integer grams from an exact KGM quantity; refuses floats and sub-gram values."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise EpcisError(where, f"quantity {value!r} is not an exact decimal number of kilograms")
    g = Decimal(value) * 1000
    if g != g.to_integral_value() or g < 0:
        raise EpcisError(where, f"quantity {value} kg is negative or finer than a gram")
    return int(g)


def to_urn(ledger_id: str) -> str:
    """``lot:c-001`` -> ``urn:recovery-ledger:lot:c-001`` (lots and orgs)."""
    return URN + ledger_id


def from_urn(uri: Any, prefix: str, where: str) -> str:
    if not isinstance(uri, str) or not uri.startswith(URN + prefix):
        raise EpcisError(where, f"{uri!r} is not a {URN}{prefix}… identifier")
    return uri[len(URN) :]


def unit_epc(code: str) -> str:
    """A battery unit code as an instance-level EPC: URIs as they are, others under our URN."""
    if re.match(r"(https?|urn):", code):
        return code
    return URN + "unit:" + code


def unit_code(epc: str) -> str:
    return epc[len(URN + "unit:") :] if epc.startswith(URN + "unit:") else epc


def dumps(value: Any, indent: int | None = 2) -> str:
    """JSON text with Decimals written exactly (never through a float)."""
    marker = "\x00dec:"

    def tag(v: Any) -> Any:
        if isinstance(v, Decimal):
            return marker + format(v, "f")
        if isinstance(v, dict):
            return {k: tag(x) for k, x in v.items()}
        if isinstance(v, list):
            return [tag(x) for x in v]
        if isinstance(v, float):
            raise TypeError("binary float in an EPCIS document; use Decimal")
        return v

    text = json.dumps(tag(value), indent=indent, ensure_ascii=False)
    return re.sub(r'"\\u0000dec:(-?[0-9.]+)"', r"\1", text)


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


# --- event hash ID (GS1 EPCIS event hash algorithm, CBV 2.0 §8.9) ------------------


def _document_loader() -> Any:
    """pyld loader serving the EPCIS context from the hash package's copy; never the network."""
    from pyld.jsonld import JsonLdError

    ctx_file = "e532647e8eb371379b8b0e8602d8981c8566bc60f7351f22c76a5bc865962008.jsonld"
    import importlib.resources

    data = json.loads(
        importlib.resources.files("epcis_event_hash_generator").joinpath(ctx_file).read_text()
    )

    def loader(url: str, options: Any = None) -> dict[str, Any]:
        if url in (EPCIS_CONTEXT, _PACKAGED_CONTEXT):
            return {"contentType": "application/ld+json", "contextUrl": None,
                    "documentUrl": url, "document": data}  # fmt: skip
        raise JsonLdError(f"refusing to fetch {url}: only the EPCIS context is known offline",
                          "jsonld.LoadDocumentError", code="loading document failed")  # fmt: skip

    return loader


def event_hash_ids(events: Sequence[Mapping[str, Any]], context: Any) -> list[str]:
    """GS1 event hash IDs of ``events`` (each without its ``eventID``), by the package."""
    from epcis_event_hash_generator import hash_generator, json_to_py
    from pyld import jsonld

    jsonld.set_document_loader(_document_loader())
    doc = {
        "@context": context,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "1970-01-01T00:00:00Z",
        "epcisBody": {"eventList": [_without_id(e) for e in events]},
    }
    doc = json.loads(dumps(doc))  # the package reads plain JSON values
    py = json_to_py.event_list_from_epcis_document_json(doc)
    ids: list[str] = hash_generator.epcis_hashes_from_events(py)
    if len(ids) != len(events):
        raise EpcisError("eventList", "the event hash generator could not hash every event")
    return ids


def _without_id(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "eventID"}


# --- export -----------------------------------------------------------------------


def _qty(lot: str, mass_g: int) -> dict[str, Any]:
    return {"epcClass": to_urn(lot), "quantity": kg(mass_g), "uom": "KGM"}


def record_event(rec: LedgerRecord) -> dict[str, Any] | None:
    """The EPCIS event for one record (without eventID), or None for non-custody types."""
    env = rec.envelope
    rtype, body, at = env["type"], env["body"], env["at"]
    if rtype not in EXPORTED_TYPES:
        return None
    ev: dict[str, Any] = {"type": "ObjectEvent", "eventTime": at, "eventTimeZoneOffset": "+00:00"}
    if rtype == "create":
        recovered = body["origin"] != "virgin"
        ev |= {
            "epcList": [unit_epc(u) for u in body.get("units", [])],
            "quantityList": [_qty(body["lot"], body["mass_g"])],
            "action": "ADD",
            # CBV 2.0 §7.1: collecting (waste gathered) / commissioning (a new object).
            "bizStep": "collecting" if recovered else "commissioning",
            "disposition": "active",
            "ilmd": {"rl:material": body["material"], "rl:origin": body["origin"]}
            | ({"rl:elementsGrams": dict(body["elements"])} if body.get("elements") else {}),
        }
    elif rtype == "transfer":
        ev |= {
            "quantityList": [_qty(body["lot"], body["mass_g"])],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "sourceList": [{"type": "owning_party", "source": to_urn(env["actor"])}],
            "destinationList": [{"type": "owning_party", "destination": to_urn(body["to"])}],
        }
    elif rtype == "receive":
        ev |= {
            "quantityList": [_qty(body["lot"], body["mass_g"])],
            "action": "OBSERVE",
            "bizStep": "receiving",
            "disposition": "in_progress",
        }
    elif rtype in ("split", "merge", "transform"):
        ev = {"type": "TransformationEvent", "eventTime": at, "eventTimeZoneOffset": "+00:00"}
        if rtype == "split":
            ins = [_qty(body["lot"], sum(p["mass_g"] for p in body["parts"]))]
            outs = [_qty(p["lot"], p["mass_g"]) for p in body["parts"]]
            ev |= {"inputQuantityList": ins, "outputQuantityList": outs,
                   "bizStep": _EXT_BIZSTEP + "splitting"}  # fmt: skip
        elif rtype == "merge":
            # A merge record carries no masses: the lots go by identifier (inputEPCList).
            ev |= {"inputEPCList": [to_urn(lot) for lot in body["lots"]],
                   "outputEPCList": [to_urn(body["into"])],
                   "bizStep": _EXT_BIZSTEP + "merging"}  # fmt: skip
        else:
            outputs = [{"rl:lot": o["lot"], "rl:material": o["material"]}
                       | ({"rl:elementsGrams": dict(o["elements"])} if o.get("elements") else {})
                       for o in body["outputs"]]  # fmt: skip
            ev |= {
                "inputQuantityList": [_qty(i["lot"], i["mass_g"]) for i in body["inputs"]],
                "outputQuantityList": [_qty(o["lot"], o["mass_g"]) for o in body["outputs"]],
                # CBV 2.0 has no recycling step; disassembling where the process is dismantling.
                "bizStep": "disassembling"
                if "dismantl" in body["process"]
                else _EXT_BIZSTEP + "recycling",
                "rl:process": body["process"],
                "rl:lossGrams": body["loss_g"],
                "rl:outputs": outputs,
            }
    elif rtype == "status":
        ev |= {
            "epcList": [],
            "action": "OBSERVE",
            "disposition": STATUS_DISPOSITION.get(body["status"], "unknown"),
            "rl:lot": body["lot"],
            "rl:status": body["status"],
        }
        if body.get("note"):
            ev["rl:note"] = body["note"]
        if body.get("recode"):
            ev["rl:recode"] = dict(body["recode"])
    else:  # dispose
        ev |= {
            "quantityList": [_qty(body["lot"], body["mass_g"])],
            "action": "DELETE",
            "bizStep": "destroying",
            "disposition": "destroyed",
            "rl:method": body["method"],
        }
    ev |= {"rl:ledgerRecord": {"rl:hash": rec.hash, "rl:seq": rec.seq, "rl:id": env["id"],
                               "rl:type": rtype, "rl:actor": env["actor"]}}  # fmt: skip
    return ev


def export_document(
    records: Iterable[LedgerRecord], *, created: str | None = None
) -> dict[str, Any]:
    """An EPCISDocument of the custody records among ``records`` (in the given order)."""
    context: list[Any] = [EPCIS_CONTEXT, {"rl": RL_NS}]
    events = [ev for ev in (record_event(r) for r in records) if ev is not None]
    for ev, hid in zip(events, event_hash_ids(events, context), strict=True):
        ev["eventID"] = hid
    return {
        "@context": context,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "epcisBody": {"eventList": events},
    }


# --- schema validation --------------------------------------------------------------


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _as_draft_instance(doc: Any) -> Any:
    """Project ratified EPCIS 2.0 member names onto the vendored draft schema's (SOURCE.md)."""
    doc = copy.deepcopy(doc)
    if isinstance(doc, dict):
        if "type" in doc:
            doc["isA"] = doc.pop("type")
        if doc.get("schemaVersion") == "2.0":
            doc["schemaVersion"] = Decimal("2.0")
        events = (
            doc.get("epcisBody", {}).get("eventList")
            if isinstance(doc.get("epcisBody"), dict)
            else None
        )
        for ev in events if isinstance(events, list) else []:
            if isinstance(ev, dict) and "type" in ev:
                ev["isA"] = ev.pop("type")
    return doc


def validate(doc: Any) -> None:
    """Raise EpcisError naming the first place where ``doc`` breaks the EPCIS JSON schema."""
    if not isinstance(doc, dict) or doc.get("type") != "EPCISDocument":
        raise EpcisError(
            "document", 'an EPCIS document is a JSON object with "type": "EPCISDocument"'
        )
    errors = sorted(_validator().iter_errors(_as_draft_instance(doc)), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        path = "/".join(str(p) for p in err.absolute_path) or "document"
        path = path.replace("epcisBody/eventList/", "event ")
        raise EpcisError(path, f"does not match the EPCIS 2.0 JSON schema: {err.message[:300]}")


# --- import -----------------------------------------------------------------------


def _ext(ev: Mapping[str, Any], name: str) -> Any:
    """Extension member ``rl:name`` (or its expanded IRI form)."""
    return ev.get("rl:" + name, ev.get(RL_NS + name))


def _need(ev: Mapping[str, Any], name: str, where: str) -> Any:
    value = ev.get(name) if not name.startswith("rl:") else _ext(ev, name[3:])
    if value is None:
        raise EpcisError(f"{where}.{name}", "missing: the ledger needs it to make a record")
    return value


def _step(ev: Mapping[str, Any]) -> str:
    step = ev.get("bizStep", "")
    for prefix in ("https://ref.gs1.org/cbv/BizStep-", "urn:epcglobal:cbv:bizstep:", _EXT_BIZSTEP):
        if isinstance(step, str) and step.startswith(prefix):
            return step[len(prefix) :]
    return step if isinstance(step, str) else ""


def _at(ev: Mapping[str, Any], where: str) -> str:
    try:
        t = datetime.fromisoformat(str(ev["eventTime"]).replace("Z", "+00:00"))
    except ValueError:
        raise EpcisError(f"{where}.eventTime", f"{ev['eventTime']!r} is not a date-time") from None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_lot_qty(ev: Mapping[str, Any], key: str, where: str) -> tuple[str, int]:
    items = ev.get(key)
    if not isinstance(items, list) or len(items) != 1:
        raise EpcisError(
            f"{where}.{key}", "needs exactly one lot quantity (epcClass + KGM quantity)"
        )
    return _lot_qty(items[0], f"{where}.{key}[0]")


def _lot_qty(item: Mapping[str, Any], where: str) -> tuple[str, int]:
    lot = from_urn(item.get("epcClass"), "lot:", f"{where}.epcClass")
    if item.get("uom") != "KGM":
        raise EpcisError(f"{where}.uom", f"{item.get('uom')!r}: only KGM (kilograms) is accepted")
    return lot, grams(item.get("quantity"), f"{where}.quantity")


def _elements(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise EpcisError(where, "element content is an object of integer grams")
    return dict(value)


def event_draft(ev: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One EPCIS event -> a draft ``{"type", "body", "at", "ticket"}``."""
    where = f"event {index}"
    etype, step, action = ev.get("type"), _step(ev), ev.get("action")
    body: dict[str, Any]
    if etype == "ObjectEvent" and action == "ADD" and step in ("collecting", "commissioning"):
        lot, mass = _one_lot_qty(ev, "quantityList", where)
        ilmd = ev.get("ilmd") or {}
        origin = _ext(ilmd, "origin") or ("virgin" if step == "commissioning" else None)
        if origin is None:
            raise EpcisError(
                f"{where}.ilmd.rl:origin", "say pre_consumer or post_consumer for collected waste"
            )
        body = {"lot": lot, "material": _need(ilmd, "rl:material", f"{where}.ilmd"),
                "mass_g": mass, "origin": origin}  # fmt: skip
        if _ext(ilmd, "elementsGrams"):
            body["elements"] = _elements(
                _ext(ilmd, "elementsGrams"), f"{where}.ilmd.rl:elementsGrams"
            )
        if ev.get("epcList"):
            body["units"] = [unit_code(e) for e in ev["epcList"]]
        rtype = "create"
    elif etype in ("ObjectEvent", "TransactionEvent") and step == "shipping":
        lot, mass = _one_lot_qty(ev, "quantityList", where)
        dests = ev.get("destinationList") or []
        if len(dests) != 1:
            raise EpcisError(
                f"{where}.destinationList", "needs exactly one owning_party destination"
            )
        to = from_urn(
            dests[0].get("destination"), "org:", f"{where}.destinationList[0].destination"
        )
        rtype, body = "transfer", {"lot": lot, "to": to, "mass_g": mass}
    elif etype == "ObjectEvent" and step == "receiving":
        lot, mass = _one_lot_qty(ev, "quantityList", where)
        rtype, body = "receive", {"lot": lot, "mass_g": mass}
    elif etype == "ObjectEvent" and action == "DELETE" and step == "destroying":
        lot, mass = _one_lot_qty(ev, "quantityList", where)
        rtype = "dispose"
        body = {"lot": lot, "mass_g": mass, "method": _need(ev, "rl:method", where)}
    elif etype == "ObjectEvent" and action == "OBSERVE" and _ext(ev, "status") is not None:
        rtype = "status"
        body = {"lot": _need(ev, "rl:lot", where), "status": _ext(ev, "status")}
        if _ext(ev, "note"):
            body["note"] = _ext(ev, "note")
        if _ext(ev, "recode"):
            body["recode"] = dict(_ext(ev, "recode"))
    elif etype == "TransformationEvent" and step == "splitting":
        lot, _total = _one_lot_qty(ev, "inputQuantityList", where)
        parts = [_lot_qty(q, f"{where}.outputQuantityList[{i}]")
                 for i, q in enumerate(ev.get("outputQuantityList") or [])]  # fmt: skip
        rtype, body = "split", {"lot": lot, "parts": [{"lot": p, "mass_g": m} for p, m in parts]}
    elif etype == "TransformationEvent" and step == "merging":
        lots = [from_urn(u, "lot:", f"{where}.inputEPCList[{i}]")
                for i, u in enumerate(ev.get("inputEPCList") or [])]  # fmt: skip
        into = from_urn((ev.get("outputEPCList") or [None])[0], "lot:", f"{where}.outputEPCList[0]")
        rtype, body = "merge", {"lots": lots, "into": into}
    elif etype == "TransformationEvent" and step in ("recycling", "disassembling"):
        ins = [_lot_qty(q, f"{where}.inputQuantityList[{i}]")
               for i, q in enumerate(ev.get("inputQuantityList") or [])]  # fmt: skip
        outs = [_lot_qty(q, f"{where}.outputQuantityList[{i}]")
                for i, q in enumerate(ev.get("outputQuantityList") or [])]  # fmt: skip
        meta = {m.get("rl:lot"): m for m in _need(ev, "rl:outputs", where) if isinstance(m, dict)}
        outputs = []
        for i, (lot, mass) in enumerate(outs):
            m = meta.get(lot)
            if m is None or not m.get("rl:material"):
                raise EpcisError(f"{where}.rl:outputs[{i}]", f"no rl:material for output {lot}")
            out: dict[str, Any] = {"lot": lot, "material": m["rl:material"], "mass_g": mass}
            if m.get("rl:elementsGrams"):
                out["elements"] = _elements(m["rl:elementsGrams"], f"{where}.rl:outputs[{i}]")
            outputs.append(out)
        loss = _need(ev, "rl:lossGrams", where)
        if isinstance(loss, bool) or not isinstance(loss, int):
            raise EpcisError(f"{where}.rl:lossGrams", "integer grams")
        rtype = "transform"
        body = {"process": _need(ev, "rl:process", where),
                "inputs": [{"lot": lot, "mass_g": m} for lot, m in ins],
                "outputs": outputs, "loss_g": loss}  # fmt: skip
    else:
        raise EpcisError(
            where,
            f"{etype} with action {action!r} and bizStep {ev.get('bizStep')!r} has no ledger "
            "record type (see docs/epcis-mapping.md for the events the ledger reads)",
        )
    return {"type": rtype, "body": body, "at": _at(ev, where),
            "ticket": {"epcisEventID": ev.get("eventID")}}  # fmt: skip


def import_drafts(doc: Any) -> list[dict[str, Any]]:
    """Validate ``doc`` against the EPCIS JSON schema, then map each event to a draft."""
    validate(doc)
    return [event_draft(ev, i) for i, ev in enumerate(doc["epcisBody"]["eventList"])]
