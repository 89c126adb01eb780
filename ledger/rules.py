"""The rules: whether a record may follow the current state, and what it changes.

Pure functions of (envelope, state, seq, time): no session, no socket.
Signature bytes are checked by the caller (:func:`ledger.signing.verify`);
here we check that the key was valid for the actor when the record arrived.

Order of checks for a record that touches lots: the key, then that every lot
it names exists (or, for lots it creates, does not), then ``parents`` (the
compare-and-swap of DESIGN.md "Records"), then the type's own rules.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ledger import content, epr
from ledger.apportion import apportion
from ledger.battery_codes import BatteryCodeError, classify_unit_code, second_life_pair
from ledger.envelope import Envelope, parse_at
from ledger.errors import Conflict, RecordRefused
from ledger.materials import default_taxonomy
from ledger.signing import b64url_decode, key_id
from ledger.stages import flow_rows
from ledger.state import (
    CONSUMED,
    DISPOSED,
    IN_TRANSIT,
    VOID,
    Edge,
    Effects,
    Key,
    Lot,
    Org,
    Output,
    PastRecord,
    StateView,
    UnitRow,
)

# A record may be dated at most this far ahead of the server's clock.
CLOCK_SKEW = timedelta(minutes=5)
VOIDABLE = frozenset(
    {"create", "transfer", "receive", "split", "merge", "transform", "status", "dispose"}
)


def apply(env: Envelope, state: StateView, seq: int, now: datetime) -> Effects:
    """Check ``env`` against ``state``; return its effects or raise RecordRefused."""
    try:
        effects = _apply(env, state, seq, now)
    except RecordRefused as exc:
        raise exc.for_record(env.id) from None
    if env.type == "void":
        target = state.record(env.body["record"])
        if target is not None:
            rows = flow_rows(target.type, target.body, target.actor, target.at, state)
            effects.flows = [(key, -grams) for key, grams in rows]
    else:
        effects.flows = flow_rows(env.type, env.body, env.actor, env.at, state)
    return effects


def touched_lots(rtype: str, body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(lots that must exist, lots the record creates) for a record's body."""
    if rtype in ("transfer", "receive", "status", "dispose"):
        return [body["lot"]], []
    if rtype == "create":
        return [], [body["lot"]]
    if rtype == "split":
        return [body["lot"]], [p["lot"] for p in body["parts"]]
    if rtype == "merge":
        return list(body["lots"]), [body["into"]]
    if rtype == "transform":
        return [i["lot"] for i in body["inputs"]], [o["lot"] for o in body["outputs"]]
    return [], []


def registered_unit_keys(env: Envelope) -> list[str]:
    """The canonical keys of the battery codes ``env`` would register (malformed ones left
    out: the rules refuse them), so a store can load who holds them before the rules run."""
    if env.type == "create":
        codes = list(env.body.get("units", ()))
    elif env.type == "status":
        codes = list(env.body.get("recode", {}).values())
    else:
        return []
    found: list[str] = []
    for code in codes:
        try:
            found.append(classify_unit_code(code).key)
        except BatteryCodeError:
            continue
    return found


def _apply(env: Envelope, state: StateView, seq: int, now: datetime) -> Effects:
    if state.empty:
        return _genesis(env, seq)
    if env.type == "org.register" and "public_key" in env.body:
        raise RecordRefused(
            "envelope.field",
            "public_key is only for the genesis record; add keys with key.add",
            path="body.public_key",
        )
    _check_key(env, state, seq, now)
    handler = _HANDLERS[env.type]
    return handler(env, state, seq)


# --- keys and organisations -----------------------------------------------------


def _genesis(env: Envelope, seq: int) -> Effects:
    body = env.body
    if env.type != "org.register" or "operator" not in body["roles"] or "public_key" not in body:
        raise RecordRefused(
            "genesis.required",
            "an empty ledger starts with org.register of the operator, with its public_key, "
            "signed by that key; run `rledger init`",
        )
    if env.actor != body["org"]:
        raise RecordRefused(
            "envelope.field", "the genesis record is signed by the operator itself", path="actor"
        )
    raw = b64url_decode(body["public_key"])
    if key_id(raw) != env.key:
        raise RecordRefused("key.unknown", "key must be the id of body.public_key", path="key")
    org = Org(body["org"], body["name"], tuple(body["roles"]), body["region"], seq)
    if "capacity" in body:
        raise RecordRefused("envelope.field", "the operator has no capacity", path="body.capacity")
    return Effects(orgs=[org], keys=[Key(env.key, org.id, raw, seq)])


def _check_key(env: Envelope, state: StateView, seq: int, now: datetime) -> None:
    key = state.key(env.key)
    if key is None:
        raise RecordRefused(
            "key.unknown", "no key with this id is registered; register it with key.add", path="key"
        )
    if key.org != env.actor:
        raise RecordRefused(
            "key.wrong_actor", f"the key belongs to {key.org}, not {env.actor}", path="key"
        )
    if key.revoked_seq is not None and key.revoked_seq < seq:
        raise RecordRefused(
            "key.revoked",
            f"the key was revoked at seq {key.revoked_seq}; sign with a current key",
            path="key",
        )
    if key.valid_from is not None and env.at < key.valid_from:
        raise RecordRefused(
            "key.not_yet_valid", f"the key is valid from {key.valid_from}", path="at"
        )
    if key.valid_until is not None and env.at >= key.valid_until:
        raise RecordRefused("key.expired", f"the key was valid until {key.valid_until}", path="at")
    if parse_at(env.at) > now + CLOCK_SKEW:
        raise RecordRefused(
            "at.future", "the record is dated in the future; check the clock", path="at"
        )
    if state.org(env.actor) is None:
        raise RecordRefused("org.unknown", f"{env.actor} is not registered", path="actor")


def _is_operator(state: StateView, org_id: str) -> bool:
    org = state.org(org_id)
    return org is not None and org.has_role("operator")


def _org_register(env: Envelope, state: StateView, seq: int) -> Effects:
    if not _is_operator(state, env.actor):
        raise RecordRefused(
            "org.not_permitted", "only the operator registers organisations", path="actor"
        )
    body = env.body
    if state.org(body["org"]) is not None:
        raise RecordRefused("org.exists", f"{body['org']} is already registered", path="body.org")
    capacity = body.get("capacity", {})
    for material in capacity:
        _material(material, f"body.capacity.{material}")
    org = Org(body["org"], body["name"], tuple(body["roles"]), body["region"], seq, capacity)
    return Effects(orgs=[org])


def _key_owner_check(env: Envelope, state: StateView) -> None:
    org_id = env.body["org"]
    if state.org(org_id) is None:
        raise RecordRefused("org.unknown", f"{org_id} is not registered", path="body.org")
    if env.actor != org_id and not _is_operator(state, env.actor):
        raise RecordRefused(
            "org.not_permitted",
            "keys are managed by the organisation itself or the operator",
            path="actor",
        )


def _key_add(env: Envelope, state: StateView, seq: int) -> Effects:
    _key_owner_check(env, state)
    raw = b64url_decode(env.body["public_key"])
    kid = key_id(raw)
    if state.key(kid) is not None:
        raise RecordRefused(
            "key.exists", "this public key is already registered", path="body.public_key"
        )
    key = Key(
        kid, env.body["org"], raw, seq, env.body.get("valid_from"), env.body.get("valid_until")
    )
    return Effects(keys=[key])


def _key_revoke(env: Envelope, state: StateView, seq: int) -> Effects:
    _key_owner_check(env, state)
    key = state.key(env.body["key"])
    if key is None or key.org != env.body["org"]:
        raise RecordRefused("key.unknown", f"{env.body['org']} has no such key", path="body.key")
    if key.revoked_seq is not None:
        raise RecordRefused("key.revoked", "the key is already revoked", path="body.key")
    return Effects(keys=[replace(key, revoked_seq=seq)])


# --- lots -----------------------------------------------------------------------


def _lots(env: Envelope, state: StateView) -> tuple[dict[str, Lot], list[str]]:
    """Existing lots the record spends (checked, with parents) and lots it creates."""
    existing, created = touched_lots(env.type, env.body)
    found: dict[str, Lot] = {}
    for i, lot_id in enumerate(existing):
        lot = state.lot(lot_id)
        if lot is None:
            raise RecordRefused("lot.unknown", f"no lot {lot_id}", path=_lot_path(env.type, i))
        if lot_id in found:
            raise RecordRefused(
                "lot.duplicate", f"{lot_id} appears twice", path=_lot_path(env.type, i)
            )
        found[lot_id] = lot
    seen: set[str] = set(found)
    for i, lot_id in enumerate(created):
        path = _new_lot_path(env.type, i)
        if lot_id in seen:
            raise RecordRefused("lot.duplicate", f"{lot_id} appears twice", path=path)
        seen.add(lot_id)
        if state.lot(lot_id) is not None:
            raise RecordRefused(
                "lot.exists", f"lot {lot_id} already exists; choose a new id", path=path
            )
    _check_parents(env, found)
    return found, created


def _check_parents(env: Envelope, lots: dict[str, Lot]) -> None:
    for lot_id, lot in lots.items():
        claimed = env.parents.get(lot_id)
        if claimed is None:
            raise RecordRefused(
                "parents.missing",
                f"parents must give the head of {lot_id} ({lot.head})",
                path=f"parents.{lot_id}",
            )
        if claimed != lot.head:
            raise Conflict(
                f"{lot_id} has moved on to {lot.head}; re-read the lot and retry",
                path=f"parents.{lot_id}",
            )
    for lot_id in env.parents:
        if lot_id not in lots:
            raise RecordRefused(
                "parents.unexpected",
                f"{lot_id} is not touched by this record",
                path=f"parents.{lot_id}",
            )


def _lot_path(rtype: str, i: int) -> str:
    return {"merge": f"body.lots[{i}]", "transform": f"body.inputs[{i}].lot"}.get(rtype, "body.lot")


def _new_lot_path(rtype: str, i: int) -> str:
    return {
        "split": f"body.parts[{i}].lot",
        "merge": "body.into",
        "transform": f"body.outputs[{i}].lot",
    }.get(rtype, "body.lot")


def _held_by_actor(env: Envelope, lot: Lot, path: str) -> None:
    if lot.status == IN_TRANSIT and lot.transit_to == env.actor:
        raise RecordRefused(
            "lot.state", f"{lot.id} is in transit to you: receive it first", path=path
        )
    if lot.custodian != env.actor:
        raise RecordRefused(
            "actor.not_custodian", f"{lot.id} is held by {lot.custodian}", path=path
        )
    if not lot.held:
        raise RecordRefused("lot.state", f"{lot.id} is {lot.status}", path=path)


def _material(code: str, path: str) -> None:
    if default_taxonomy().material(code) is None:
        raise RecordRefused(
            "material.unknown", f"{code!r} is not in the material taxonomy", path=path
        )


def _elements(elements: dict[str, int], mass_g: int, path: str) -> None:
    taxonomy = default_taxonomy()
    for symbol in elements:
        if not taxonomy.is_element(symbol):
            raise RecordRefused(
                "element.unknown", f"{symbol} is not a tracked element", path=f"{path}.{symbol}"
            )
    if sum(elements.values()) > mass_g:
        raise RecordRefused(
            "element.exceeds_mass", "element masses exceed the lot's mass", path=path
        )


def _moved(lot: Lot, env: Envelope, seq: int, **changes: Any) -> Lot:
    """The lot's next version: head moves to this record; prev keeps the old state."""
    return lot.evolve(head=env.hash, updated_seq=seq, prev=lot.snapshot(), **changes)


def _new_lot(
    env: Envelope,
    seq: int,
    lot_id: str,
    material: str,
    origin: str,
    mass_g: int,
    elements: dict[str, int],
    units: tuple[str, ...] = (),
    recovered: dict[str, int] | None = None,
    recoded: dict[str, str] | None = None,
) -> Lot:
    """A new lot; ``recovered`` (buckets, ledger/content.py) defaults to what ``origin`` gives."""
    elements = {k: v for k, v in elements.items() if v}
    if recovered is None:
        recovered = content.at_origin(origin, mass_g, elements)
    return Lot(
        lot_id,
        material,
        origin,
        mass_g,
        mass_g,
        "active",
        env.actor,
        env.hash,
        seq,
        seq,
        elements=elements,
        units=units,
        content=content.composition(mass_g, elements, recovered),
        recovered=recovered,
        recoded=recoded or {},
    )


def _create(env: Envelope, state: StateView, seq: int) -> Effects:
    _lots(env, state)
    b = env.body
    _material(b["material"], "body.material")
    elements = b.get("elements", {})
    _elements(elements, b["mass_g"], "body.elements")
    units = tuple(b.get("units", ()))
    keys = _register_units(state, b["material"], units)
    lot = _new_lot(env, seq, b["lot"], b["material"], b["origin"], b["mass_g"], elements, units)
    return Effects(
        lots=[lot],
        units=[UnitRow(k, lot.id, seq) for k in keys],
        registered={k: lot.id for k in keys},
    )


def _unit_key(code: str, path: str) -> str:
    """The canonical key of a battery code, or ``battery_code.malformed``."""
    try:
        return classify_unit_code(code).key
    except BatteryCodeError as exc:
        raise RecordRefused(
            "battery_code.malformed", f"{code[:64]!r}: {exc.message} ({exc.rule})", path=path
        ) from None


def _unit_free(state: StateView, key: str, code: str, path: str) -> None:
    """A battery is registered once in the whole ledger (a voided registration frees it)."""
    for holder in state.unit_lots(key):
        lot = state.lot(holder)
        if lot is not None and lot.status == VOID:
            continue
        raise RecordRefused(  # held, or not loaded: fail closed
            "battery_code.duplicate",
            f"battery {code[:64]!r} is already registered on {holder}; each battery is "
            "registered once — trace it with battery(code), or void that record first",
            path=path,
        )


def _register_units(state: StateView, material: str, units: tuple[str, ...]) -> list[str]:
    """Check a new lot's unit codes; return their canonical keys."""
    if not units:
        return []
    entry = default_taxonomy().material(material)
    if entry is None or entry.family != "batteries":
        raise RecordRefused(
            "battery_code.not_battery",
            f"{material} is not a battery material; unit codes (battery codes) belong on lots "
            "of the batteries family — leave out body.units",
            path="body.units",
        )
    keys: list[str] = []
    for i, code in enumerate(units):
        path = f"body.units[{i}]"
        key = _unit_key(code, path)
        if key in keys:
            raise RecordRefused(
                "battery_code.duplicate",
                f"{code[:64]!r} names a battery already listed in this record",
                path=path,
            )
        _unit_free(state, key, code, path)
        keys.append(key)
    return keys


def _transfer(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    lot = lots[b["lot"]]
    _held_by_actor(env, lot, "body.lot")
    if b["to"] == env.actor:
        raise RecordRefused(
            "envelope.field", "a lot cannot be transferred to its own custodian", path="body.to"
        )
    if state.org(b["to"]) is None:
        raise RecordRefused("org.unknown", f"{b['to']} is not registered", path="body.to")
    if b["mass_g"] != lot.remaining_g:
        raise RecordRefused(
            "mass.mismatch",
            f"a transfer moves the whole lot: {lot.remaining_g} g, not {b['mass_g']} g; split first to move part",
            path="body.mass_g",
        )
    return Effects(
        lots=[
            _moved(
                lot,
                env,
                seq,
                status=IN_TRANSIT,
                held_status=lot.status,
                transit_from=env.actor,
                transit_to=b["to"],
                transit_g=b["mass_g"],
            )
        ]
    )


def _receive(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    lot = lots[b["lot"]]
    if lot.status != IN_TRANSIT or lot.transit_to != env.actor:
        raise RecordRefused(
            "lot.state", f"{lot.id} is not in transit to {env.actor}", path="body.lot"
        )
    declared = lot.transit_g or 0
    if b["mass_g"] > declared:
        raise RecordRefused(
            "mass.gain",
            f"weighed {b['mass_g']} g exceeds the {declared} g declared by the sender",
            path="body.mass_g",
        )
    loss = declared - b["mass_g"]
    kept = content.divide(declared, lot.elements, lot.recovered, [b["mass_g"], loss])[0]
    return Effects(
        lots=[
            _moved(
                lot,
                env,
                seq,
                custodian=env.actor,
                remaining_g=b["mass_g"],
                status=lot.held_status or "active",
                held_status=None,
                transit_to=None,
                transit_g=None,
                transit_loss_g=lot.transit_loss_g + loss,
                elements=kept.elements,
                recovered=kept.recovered,
            )
        ]
    )


def _split(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    lot = lots[b["lot"]]
    _held_by_actor(env, lot, "body.lot")
    masses = [p["mass_g"] for p in b["parts"]]
    if sum(masses) != lot.remaining_g:
        raise RecordRefused(
            "mass.unbalanced",
            f"parts add up to {sum(masses)} g but {lot.id} holds {lot.remaining_g} g",
            path="body.parts",
        )
    given = _check_unit_partition(lot, b["parts"])
    # Element and recovered content follow mass (ledger/content.py).
    shares = content.divide(lot.remaining_g, lot.elements, lot.recovered, masses)
    parts = [
        _new_lot(
            env,
            seq,
            p["lot"],
            lot.material,
            lot.origin,
            p["mass_g"],
            shares[i].elements,
            given[i],
            shares[i].recovered,
            {u: lot.recoded[u] for u in given[i] if u in lot.recoded},
        )
        for i, p in enumerate(b["parts"])
    ]
    edges = [Edge(lot.id, p.id, seq, p.mass_g, p.elements) for p in parts]
    source = _moved(lot, env, seq, remaining_g=0, status=CONSUMED, elements={}, recovered={})
    return Effects(lots=[source, *parts], edges=edges, units=_unit_rows(parts, seq))


def _unit_rows(lots: list[Lot], seq: int) -> list[UnitRow]:
    """Unit rows for lots that took over units (and their second-life codes) from others."""
    rows: list[UnitRow] = []
    for lot in lots:
        for unit in lot.units:
            key = _unit_key(unit, "body")
            rows.append(UnitRow(key, lot.id, seq))
            if unit in lot.recoded:
                rows.append(UnitRow(_unit_key(lot.recoded[unit], "body"), lot.id, seq, key))
    return rows


def _check_unit_partition(lot: Lot, parts: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Units (battery codes) are never lost: a split hands each to exactly one part.

    A part may name a unit by its code or by its second-life code; returns each part's
    units by their (original) code.
    """
    held = set(lot.units)
    by_new = {new: unit for unit, new in lot.recoded.items()}
    given: set[str] = set()
    out: list[tuple[str, ...]] = []
    for i, part in enumerate(parts):
        mine: list[str] = []
        for j, named in enumerate(part.get("units", ())):
            path = f"body.parts[{i}].units[{j}]"
            unit = by_new.get(named, named)
            if unit not in held:
                raise RecordRefused(
                    "units.unknown", f"{lot.id} holds no unit {named[:64]!r}", path=path
                )
            if unit in given:
                raise RecordRefused(
                    "units.unassigned", f"unit {named[:64]!r} is given to two parts", path=path
                )
            given.add(unit)
            mine.append(unit)
        out.append(tuple(mine))
    if given != held:
        missing = sorted(held - given)
        raise RecordRefused(
            "units.unassigned",
            f"{len(missing)} of {lot.id}'s units go to no part (first: {missing[0]!r}); "
            "list each unit under parts[].units",
            path="body.parts",
        )
    return out


def _merge(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    inputs = [lots[x] for x in b["lots"]]
    for i, lot in enumerate(inputs):
        _held_by_actor(env, lot, f"body.lots[{i}]")
        if lot.material != inputs[0].material:
            raise RecordRefused(
                "material.mismatch",
                f"{lot.id} is {lot.material}, not {inputs[0].material}; use a transform",
                path=f"body.lots[{i}]",
            )
    total = sum(lot.remaining_g for lot in inputs)
    if "mass_g" in b and b["mass_g"] != total:
        raise RecordRefused(
            "mass.unbalanced",
            f"the merged lots hold {total} g, not {b['mass_g']} g",
            path="body.mass_g",
        )
    merged = content.add([content.Part(lot.elements, lot.recovered) for lot in inputs])
    origins = {lot.origin for lot in inputs}
    into = _new_lot(
        env,
        seq,
        b["into"],
        inputs[0].material,
        origins.pop() if len(origins) == 1 else "mixed",
        total,
        merged.elements,
        tuple(u for lot in inputs for u in lot.units),
        merged.recovered,
        {u: new for lot in inputs for u, new in lot.recoded.items()},
    )
    spent = [
        _moved(lot, env, seq, remaining_g=0, status=CONSUMED, elements={}, recovered={})
        for lot in inputs
    ]
    edges = [Edge(lot.id, into.id, seq, lot.remaining_g, lot.elements) for lot in inputs]
    return Effects(lots=[*spent, into], edges=edges, units=_unit_rows([into], seq))


def _transform(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    if default_taxonomy().process(b["process"]) is None:
        raise RecordRefused(
            "process.unknown", f"{b['process']!r} is not a known process", path="body.process"
        )
    in_masses = [i["mass_g"] for i in b["inputs"]]
    spent: list[Lot] = []
    drawn: list[content.Part] = []
    for i, item in enumerate(b["inputs"]):
        lot = lots[item["lot"]]
        _held_by_actor(env, lot, f"body.inputs[{i}].lot")
        if item["mass_g"] > lot.remaining_g:
            raise RecordRefused(
                "mass.insufficient",
                f"{lot.id} holds {lot.remaining_g} g, not {item['mass_g']} g",
                path=f"body.inputs[{i}].mass_g",
            )
        # Units can't be split by mass: a transform (dismantling) takes the whole lot.
        if lot.units and item["mass_g"] != lot.remaining_g:
            raise RecordRefused(
                "mass.mismatch",
                f"{lot.id} holds {len(lot.units)} units (batteries): a transform takes the "
                f"whole lot ({lot.remaining_g} g); split it by units first",
                path=f"body.inputs[{i}].mass_g",
            )
        left = lot.remaining_g - item["mass_g"]
        took, kept = content.divide(
            lot.remaining_g, lot.elements, lot.recovered, [item["mass_g"], left]
        )
        drawn.append(took)
        spent.append(
            _moved(
                lot,
                env,
                seq,
                remaining_g=left,
                status=lot.status if left else CONSUMED,
                elements=kept.elements,
                recovered=kept.recovered,
            )
        )
    out_total = sum(o["mass_g"] for o in b["outputs"]) + b["loss_g"]
    if out_total != sum(in_masses):
        raise RecordRefused(
            "mass.unbalanced",
            f"outputs + loss_g = {out_total} g but inputs = {sum(in_masses)} g; every gram must be accounted for",
            path="body.outputs",
        )
    for j, out in enumerate(b["outputs"]):
        _material(out["material"], f"body.outputs[{j}].material")
        _elements(out.get("elements", {}), out["mass_g"], f"body.outputs[{j}].elements")
    declared = [out.get("elements", {}) for out in b["outputs"]]
    made = content.transform(
        sum(in_masses),
        content.add(drawn),
        [out["mass_g"] for out in b["outputs"]],
        declared,
        b["loss_g"],
    )
    if isinstance(made, content.Shortfall):
        raise RecordRefused(
            "element.exceeds_inputs",
            f"the outputs declare {made.declared_g} g of {made.symbol} but the inputs gave "
            f"{made.available_g} g: an output can't hold more of an element than went in — "
            "correct the assay, or declare the element content on the input lots",
            path=_first_declaring(declared, made.symbol),
        )
    outputs: list[Lot] = []
    edges: list[Edge] = []
    made_outputs: list[Output] = []
    for j, out in enumerate(b["outputs"]):
        made_outputs.append(
            Output(
                out["lot"],
                env.actor,
                b["process"],
                out["material"],
                env.at,
                seq,
                content.measures(made[j].elements, made[j].recovered),
            )
        )
        outputs.append(
            _new_lot(
                env,
                seq,
                out["lot"],
                out["material"],
                "transformed",
                out["mass_g"],
                made[j].elements,
                recovered=made[j].recovered,
            )
        )
        # How much of this output came from each input: its mass in proportion to input
        # mass, each element in proportion to the element's grams drawn from each input.
        masses = apportion(out["mass_g"], in_masses)
        by_element = {
            symbol: apportion(grams, [d.elements.get(symbol, 0) for d in drawn])
            for symbol, grams in made[j].elements.items()
        }
        for i, item in enumerate(b["inputs"]):
            flowed = {s: parts[i] for s, parts in by_element.items() if parts[i]}
            if masses[i] or flowed:
                edges.append(Edge(item["lot"], out["lot"], seq, masses[i], flowed))
    return Effects(lots=[*spent, *outputs], edges=edges, outputs=made_outputs)


def _first_declaring(declared: list[dict[str, int]], symbol: str) -> str:
    for j, elements in enumerate(declared):
        if elements.get(symbol):
            return f"body.outputs[{j}].elements.{symbol}"
    return "body.outputs"


def _status(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    lot = lots[b["lot"]]
    _held_by_actor(env, lot, "body.lot")
    changes: dict[str, Any] = {"status": b["status"]}
    if b["status"] in content.END_OF_LIFE:
        # The product has reached its end of life: it is post-consumer waste now (ISO 14021 §7.8.1.1).
        elements = {
            k: v for k, v in lot.content.items() if "." not in k and k not in ("pre", "post")
        }
        changes["recovered"] = content.end_of_life(lot.remaining_g, lot.elements)
        changes["content"] = content.composition(
            lot.mass_g, elements, content.end_of_life(lot.mass_g, elements)
        )
    effects = Effects()
    if "recode" in b:
        changes["recoded"], effects.units, effects.registered = _recode(state, lot, b, seq)
    effects.lots.append(_moved(lot, env, seq, **changes))
    return effects


def _recode(
    state: StateView, lot: Lot, b: dict[str, Any], seq: int
) -> tuple[dict[str, str], list[UnitRow], dict[str, str]]:
    """Second-life codes: GB/T 34014-2017 §4.2 — a cascade-use product is coded anew, and
    the original product's code is kept (so the lot carries both)."""
    if b["status"] != "second_life":
        raise RecordRefused(
            "battery_code.second_life",
            "new codes are given only when units go to second life: set status second_life",
            path="body.recode",
        )
    recoded = dict(lot.recoded)
    rows: list[UnitRow] = []
    registered: dict[str, str] = {}
    for unit, new in b["recode"].items():
        path = f"body.recode.{unit[:64]}"
        if unit not in lot.units:
            raise RecordRefused(
                "battery_code.second_life",
                f"{lot.id} holds no unit {unit[:64]!r}; give each unit's original code as the key",
                path=path,
            )
        if unit in recoded:
            raise RecordRefused(
                "battery_code.second_life",
                f"{unit[:64]!r} already has the second-life code {recoded[unit]!r}",
                path=path,
            )
        original, key = _unit_key(unit, path), _unit_key(new, path)
        if original == key:
            raise RecordRefused(
                "battery_code.second_life",
                "a second-life product gets a new code, not its original one "
                "(GB/T 34014-2017 §4.2): give the new code",
                path=path,
            )
        if len(unit) == len(new) == 24 and unit.isalnum() and new.isalnum():
            try:
                second_life_pair(unit, new)
            except BatteryCodeError as exc:
                raise RecordRefused(
                    "battery_code.second_life", f"{exc.message} ({exc.rule})", path=path
                ) from None
        if key in registered:
            raise RecordRefused("battery_code.duplicate", f"{new[:64]!r} is given twice", path=path)
        _unit_free(state, key, new, path)
        recoded[unit] = new
        rows.append(UnitRow(key, lot.id, seq, original))
        registered[key] = lot.id
    return recoded, rows, registered


def _dispose(env: Envelope, state: StateView, seq: int) -> Effects:
    lots, _ = _lots(env, state)
    b = env.body
    lot = lots[b["lot"]]
    _held_by_actor(env, lot, "body.lot")
    if b["mass_g"] > lot.remaining_g:
        raise RecordRefused(
            "mass.insufficient",
            f"{lot.id} holds {lot.remaining_g} g, not {b['mass_g']} g",
            path="body.mass_g",
        )
    left = lot.remaining_g - b["mass_g"]
    kept = content.divide(lot.remaining_g, lot.elements, lot.recovered, [left, b["mass_g"]])[0]
    return Effects(
        lots=[
            _moved(
                lot,
                env,
                seq,
                remaining_g=left,
                disposed_g=lot.disposed_g + b["mass_g"],
                status=lot.status if left else DISPOSED,
                elements=kept.elements,
                recovered=kept.recovered,
            )
        ]
    )


def _void(env: Envelope, state: StateView, seq: int) -> Effects:
    """Reverse a record that is still the head of every lot it touched.

    Each touched lot returns to its state before that record (lots the record
    created become ``void`` with nothing remaining); the void record becomes
    the lots' new head, so the chain still only grows.
    """
    target = state.record(env.body["record"])
    if target is None or target.seq >= seq:
        raise RecordRefused("record.unknown", "no record with this hash", path="body.record")
    if target.type not in VOIDABLE:
        raise RecordRefused(
            "void.unsupported",
            f"{target.type} records cannot be voided (revoke keys with key.revoke)",
            path="body.record",
        )
    actor = state.org(env.actor)
    if env.actor != target.actor and not (actor is not None and actor.has_role("regulator")):
        raise RecordRefused(
            "void.not_permitted", "only the record's actor or a regulator may void it", path="actor"
        )
    existing, created = touched_lots(target.type, target.body)
    lots: dict[str, Lot] = {}
    for lot_id in [*existing, *created]:
        lot = state.lot(lot_id)
        if lot is not None and lot.head != target.hash:
            head = state.record(lot.head)
            if head is not None and head.type == "void" and head.body["record"] == target.hash:
                raise RecordRefused(
                    "void.already", "this record is already voided", path="body.record"
                )
        if lot is None or lot.head != target.hash:
            raise RecordRefused(
                "void.not_head",
                f"{lot_id} has records after this one; void those first",
                path="body.record",
            )
        lots[lot_id] = lot
    _check_parents(env, lots)
    for lot_id in created:
        made = state.output(lot_id)
        if made is not None and any(made.certified.values()):
            raise RecordRefused(
                "void.certified",
                f"certificates stand on {lot_id}; a record whose "
                "output backs a certificate can't be voided",
                path="body.record",
            )
    restored: list[Lot] = []
    for lot in lots.values():
        if lot.prev is None:
            restored.append(
                _moved(lot, env, seq, remaining_g=0, status=VOID, elements={}, recovered={})
            )
        else:
            before = Lot.from_snapshot(lot.prev)
            restored.append(before.evolve(head=env.hash, updated_seq=seq, prev=lot.snapshot()))
    return Effects(lots=restored)


def signing_key(env: Envelope, state: StateView) -> bytes | None:
    """The raw public key ``env`` must verify under: its registered key, or — for
    the genesis record only — the operator's own key in its body. None: unknown."""
    key = state.key(env.key)
    if key is not None:
        return key.public_key
    if state.empty and env.type == "org.register" and isinstance(env.body.get("public_key"), str):
        return b64url_decode(env.body["public_key"])
    return None


def past_record(env: Envelope, seq: int) -> PastRecord:
    return PastRecord(env.hash, seq, env.type, env.actor, env.body, env.at)


_HANDLERS = {
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
    "declare": epr.declare,
    "certify": epr.certify,
    "certificate.transfer": epr.certificate_transfer,
    "certificate.retire": epr.certificate_retire,
}
