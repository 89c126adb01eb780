"""Every kind of bad record named in issue 1/8 is refused with its own stable
code, names the record and the field, and writes nothing — on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from battery_test_codes import gbt_code
from conftest import World, fixed_key

from ledger.canonical import canonical_bytes
from ledger.errors import RecordRefused
from ledger.signing import b64url_encode, public_key_bytes, sign
from ledger.store import Appended, Signed
from producers.events import Signer


def raw(signer: Signer, text: bytes) -> Signed:
    """Sign arbitrary bytes (to submit text that is not canonical JSON)."""
    return Signed(text, sign(signer.private_key, text))


def expect(world: World, record: Signed, code: str, path: str | None = None) -> RecordRefused:
    refusal = world.refused(record)
    assert refusal.code == code, str(refusal)
    if path is not None:
        assert refusal.path == path, str(refusal)
    assert refusal.message
    return refusal


@pytest.fixture
def setup(world: World) -> tuple[World, Signer, Signer]:
    a = world.admit("org:collector", ["collector"])
    b = world.admit("org:recycler", ["recycler"])
    world.create(a, "lot:a", 1_000_000)
    return world, a, b


def test_malformed_and_non_canonical_json(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    expect(world, raw(a, b'{"v":1,'), "json.malformed")
    env = a.envelope(
        "create", {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    )
    pretty = canonical_bytes(env).replace(b",", b", ")
    refusal = expect(world, raw(a, pretty), "json.not_canonical")
    assert "canonical" in refusal.message


def test_a_float_anywhere(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    text = canonical_bytes(
        a.envelope(
            "create", {"lot": "lot:x", "material": "steel.hms1", "mass_g": 7, "origin": "virgin"}
        )
    ).replace(b'"mass_g":7', b'"mass_g":7.5')
    expect(world, raw(a, text), "json.float")


def test_unknown_type(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    refusal = expect(world, a.record("recycle", {"lot": "lot:a"}), "type.unknown", "type")
    assert refusal.record_id is not None


def test_control_characters_in_free_text(setup: tuple[World, Signer, Signer]) -> None:
    """PostgreSQL can't store NUL in text: refused on both engines alike, as a rule of the
    record rather than a database failure. Tabs and line breaks stay allowed."""
    world, a, _ = setup
    note = {"lot": "lot:a", "status": "stored", "note": "bay 3\u0000"}
    expect(world, a.record("status", note), "envelope.field", "body.note")
    name = {"org": "org:x", "name": "X\u0007", "roles": ["collector"], "region": "CN-GD"}
    expect(world, world.operator.record("org.register", name), "envelope.field", "body.name")
    [ok] = world.append(
        a.record("status", {**note, "note": "bay 3\n\trow 2"}, world.heads("lot:a"))
    )
    assert not isinstance(ok, RecordRefused), ok


def test_unknown_lot(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    expect(
        world,
        a.record("transfer", {"lot": "lot:nope", "to": b.actor, "mass_g": 1}),
        "lot.unknown",
        "body.lot",
    )


def test_existing_lot_cannot_be_created_again(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    body = {"lot": "lot:a", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(world, a.record("create", body), "lot.exists", "body.lot")


def test_unknown_material(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    body = {"lot": "lot:x", "material": "steel.unobtainium", "mass_g": 5, "origin": "virgin"}
    expect(world, a.record("create", body), "material.unknown", "body.material")


@pytest.mark.parametrize(("mass", "code"), [(0, "mass.not_positive"), (-5, "mass.not_positive")])
def test_zero_or_negative_mass(setup: tuple[World, Signer, Signer], mass: int, code: str) -> None:
    world, a, _ = setup
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": mass, "origin": "virgin"}
    expect(world, a.record("create", body), code, "body.mass_g")
    split = {
        "lot": "lot:a",
        "parts": [{"lot": "lot:p", "mass_g": 1_000_000 - mass}, {"lot": "lot:q", "mass_g": mass}],
    }
    expect(world, a.record("split", split, world.heads("lot:a")), code, "body.parts[1].mass_g")


def test_negative_loss(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    body = _transform(900_000, 200_000, -100_000)
    expect(world, a.record("transform", body, world.heads("lot:a")), "mass.negative", "body.loss_g")


def _transform(inp: int, out: int, loss: int) -> dict[str, Any]:
    return {
        "process": "shredding",
        "inputs": [{"lot": "lot:a", "mass_g": inp}],
        "outputs": [{"lot": "lot:s", "material": "steel.shredded", "mass_g": out}],
        "loss_g": loss,
    }


def test_outputs_plus_loss_must_equal_inputs(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    for out, loss in ((900_000, 50_000), (900_000, 150_000)):
        body = _transform(1_000_000, out, loss)
        expect(
            world,
            a.record("transform", body, world.heads("lot:a")),
            "mass.unbalanced",
            "body.outputs",
        )
    world.ok(a.record("transform", _transform(1_000_000, 950_000, 50_000), world.heads("lot:a")))


def test_split_must_conserve(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    for masses in ((400_000, 500_000), (600_000, 500_000)):
        parts = [{"lot": "lot:p", "mass_g": masses[0]}, {"lot": "lot:q", "mass_g": masses[1]}]
        body = {"lot": "lot:a", "parts": parts}
        expect(
            world, a.record("split", body, world.heads("lot:a")), "mass.unbalanced", "body.parts"
        )


def test_merge_must_conserve(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    world.create(a, "lot:b", 500_000)
    heads = world.heads("lot:a", "lot:b")
    body = {"lots": ["lot:a", "lot:b"], "into": "lot:m", "mass_g": 1_400_000}
    expect(world, a.record("merge", body, heads), "mass.unbalanced", "body.mass_g")
    other = world.create(a, "lot:c", 10, material="paper.occ")
    assert other.seq > 0
    body = {"lots": ["lot:a", "lot:c"], "into": "lot:m"}
    expect(
        world,
        a.record("merge", body, world.heads("lot:a", "lot:c")),
        "material.mismatch",
        "body.lots[1]",
    )
    body = {"lots": ["lot:a", "lot:b"], "into": "lot:m", "mass_g": 1_500_000}
    world.ok(a.record("merge", body, heads))
    merged = world.store.lot("lot:m")
    assert merged is not None and merged.remaining_g == 1_500_000


def test_spending_more_than_a_lot_holds(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    heads = world.heads("lot:a")
    body = _transform(1_000_001, 1_000_001, 0)
    expect(world, a.record("transform", body, heads), "mass.insufficient", "body.inputs[0].mass_g")
    dispose = {"lot": "lot:a", "mass_g": 1_000_001, "method": "landfill"}
    expect(world, a.record("dispose", dispose, heads), "mass.insufficient", "body.mass_g")


def test_wrong_signature(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    good = a.record("create", body)
    forged = Signed(good.envelope, b.record("create", body).signature)
    expect(world, forged, "signature.invalid", "signature")
    expect(world, Signed(good.envelope, "not-a-signature"), "signature.malformed", "signature")
    # A signature made by b's key, over an envelope claiming a's key id.
    text = good.envelope.encode() if isinstance(good.envelope, str) else good.envelope
    expect(world, Signed(text, sign(b.private_key, text)), "signature.invalid")


def test_unknown_key(setup: tuple[World, Signer, Signer]) -> None:
    world, _, _ = setup
    stranger = Signer("org:collector", fixed_key("stranger"))
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(world, stranger.record("create", body), "key.unknown", "key")


def test_key_of_another_org(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    impostor = Signer(b.actor, a.private_key)
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(world, impostor.record("create", body), "key.wrong_actor", "key")


def test_revoked_key_and_rotation(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    new = Signer(a.actor, fixed_key("collector-2"))
    world.ok(a.record("key.add", {"org": a.actor, "public_key": new.public_key}))
    world.ok(new.record("key.revoke", {"org": a.actor, "key": a.key_id, "reason": "rotated"}))
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(world, a.record("create", body), "key.revoked", "key")
    world.ok(new.record("create", body))


def test_key_not_yet_valid_and_expired(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    later = Signer(a.actor, fixed_key("collector-later"))
    body = {
        "org": a.actor,
        "public_key": later.public_key,
        "valid_from": "2030-01-01T00:00:00Z",
        "valid_until": "2031-01-01T00:00:00Z",
    }
    world.ok(world.operator.record("key.add", body))
    create = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(
        world, later.record("create", create, at="2029-12-31T23:59:59Z"), "key.not_yet_valid", "at"
    )
    expect(world, later.record("create", create, at="2031-01-01T00:00:00Z"), "key.expired", "at")


def test_record_dated_in_the_future(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    create = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    expect(world, a.record("create", create, at="2099-01-01T00:00:00Z"), "at.future", "at")


def test_actor_not_custodian(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    heads = world.heads("lot:a")
    expect(
        world,
        b.record("transfer", {"lot": "lot:a", "to": a.actor, "mass_g": 1_000_000}, heads),
        "actor.not_custodian",
        "body.lot",
    )
    expect(
        world,
        b.record("dispose", {"lot": "lot:a", "mass_g": 1, "method": "landfill"}, heads),
        "actor.not_custodian",
        "body.lot",
    )


def test_stale_missing_and_unexpected_parents(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    stale = world.heads("lot:a")
    world.ok(a.record("status", {"lot": "lot:a", "status": "stored"}, stale))
    refusal = expect(
        world,
        a.record("transfer", {"lot": "lot:a", "to": b.actor, "mass_g": 1_000_000}, stale),
        "conflict",
        "parents.lot:a",
    )
    assert "re-read" in refusal.message
    expect(
        world,
        a.record("status", {"lot": "lot:a", "status": "in_use"}),
        "parents.missing",
        "parents.lot:a",
    )
    extra = {**world.heads("lot:a"), "lot:zzz": "0" * 64}
    expect(
        world, a.record("status", {"lot": "lot:a", "status": "in_use"}, extra), "parents.unexpected"
    )


def test_same_id_same_bytes_is_idempotent_other_bytes_refused(
    setup: tuple[World, Signer, Signer],
) -> None:
    world, a, _ = setup
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    first = a.record(
        "create", body, record_id="01JD0000000000000000000001", at="2026-01-01T00:00:00Z"
    )
    [stored] = world.ok(first)
    [again] = world.ok(first)
    assert again.existing and (again.seq, again.hash) == (stored.seq, stored.hash)
    other = a.record("create", {**body, "lot": "lot:y"}, record_id="01JD0000000000000000000001")
    expect(world, other, "id.reused", "id")


def test_transit_and_receive(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    world.ok(
        a.record(
            "transfer", {"lot": "lot:a", "to": b.actor, "mass_g": 1_000_000}, world.heads("lot:a")
        )
    )
    expect(
        world,
        a.record("status", {"lot": "lot:a", "status": "stored"}, world.heads("lot:a")),
        "lot.state",
    )
    expect(
        world,
        b.record("receive", {"lot": "lot:a", "mass_g": 1_000_001}, world.heads("lot:a")),
        "mass.gain",
    )
    world.ok(b.record("receive", {"lot": "lot:a", "mass_g": 990_000}, world.heads("lot:a")))
    lot = world.store.lot("lot:a")
    assert lot is not None
    assert (lot.custodian, lot.remaining_g, lot.transit_loss_g, lot.status) == (
        b.actor,
        990_000,
        10_000,
        "active",
    )


def test_partial_transfer_is_refused(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    body = {"lot": "lot:a", "to": b.actor, "mass_g": 10}
    expect(world, a.record("transfer", body, world.heads("lot:a")), "mass.mismatch", "body.mass_g")


def test_atomic_batch_is_all_or_nothing(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    good = a.record(
        "create", {"lot": "lot:g", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    )
    bad = a.record(
        "create", {"lot": "lot:h", "material": "nope.nope", "mass_g": 5, "origin": "virgin"}
    )
    before = (world.store.last_seq(), world.store.projection_rows())
    results = world.append(good, bad, atomic=True)
    assert [getattr(r, "code", None) for r in results] == ["batch.aborted", "material.unknown"]
    assert (world.store.last_seq(), world.store.projection_rows()) == before
    results = world.append(good, bad)
    assert isinstance(results[0], Appended) and isinstance(results[1], RecordRefused)


def test_only_the_operator_registers_orgs(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    body = {"org": "org:new", "name": "New", "roles": ["collector"], "region": "CN-GD"}
    expect(world, a.record("org.register", body), "org.not_permitted", "actor")
    genesis_like = {
        **body,
        "public_key": b64url_encode(public_key_bytes(a.private_key.public_key())),
    }
    expect(
        world,
        world.operator.record("org.register", genesis_like),
        "envelope.field",
        "body.public_key",
    )


def test_void_reverses_the_head_record(setup: tuple[World, Signer, Signer]) -> None:
    world, a, b = setup
    before = world.store.lot("lot:a")
    [split] = world.ok(
        a.record(
            "split",
            {
                "lot": "lot:a",
                "parts": [{"lot": "lot:p", "mass_g": 400_000}, {"lot": "lot:q", "mass_g": 600_000}],
            },
            world.heads("lot:a"),
        )
    )
    expect(
        world,
        b.record(
            "void",
            {"record": split.hash, "reason": "typo"},
            {lot: split.hash for lot in ("lot:a", "lot:p", "lot:q")},
        ),
        "void.not_permitted",
    )
    [void] = world.ok(
        a.record(
            "void",
            {"record": split.hash, "reason": "wrong scale"},
            world.heads("lot:a", "lot:p", "lot:q"),
        )
    )
    after = world.store.lot("lot:a")
    assert before is not None and after is not None
    assert (after.remaining_g, after.status, after.head) == (
        before.remaining_g,
        before.status,
        void.hash,
    )
    part = world.store.lot("lot:p")
    assert part is not None and (part.status, part.remaining_g) == ("void", 0)
    expect(
        world,
        a.record(
            "void",
            {"record": split.hash, "reason": "again"},
            world.heads("lot:a", "lot:p", "lot:q"),
        ),
        "void.already",
    )
    # A record with later records on its lots can't be voided: void those first.
    [create] = world.ok(
        a.record(
            "create", {"lot": "lot:n", "material": "steel.hms1", "mass_g": 9, "origin": "virgin"}
        )
    )
    world.ok(a.record("status", {"lot": "lot:n", "status": "stored"}, world.heads("lot:n")))
    refusal = expect(
        world,
        a.record("void", {"record": create.hash, "reason": "late"}, world.heads("lot:n")),
        "void.not_head",
    )
    assert "void those first" in refusal.message


def test_genesis_must_come_first(db_url: str) -> None:
    from ledger.database import migrate
    from ledger.store import Store

    migrate(db_url)
    store = Store.open(db_url)
    try:
        a = Signer("org:a", fixed_key("a"))
        body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
        [r] = store.append([a.record("create", body)])
        assert isinstance(r, RecordRefused) and r.code in ("genesis.required", "key.unknown")
        assert store.last_seq() == 0
    finally:
        store.close()


def test_a_split_hands_every_unit_to_exactly_one_part(setup: tuple[World, Signer, Signer]) -> None:
    world, a, _ = setup
    codes = [gbt_code(1), gbt_code(2), gbt_code(3)]
    world.create(a, "lot:packs", 900, material="batteries.pack", origin="virgin", units=codes)
    heads = world.heads("lot:packs")

    def split(*parts: tuple[str, int, list[str]]) -> Signed:
        body = {
            "lot": "lot:packs",
            "parts": [
                {"lot": lot, "mass_g": m, **({"units": u} if u else {})} for lot, m, u in parts
            ],
        }
        return a.record("split", body, heads)

    expect(
        world,
        split(("lot:p1", 600, codes[:2]), ("lot:p2", 300, [])),
        "units.unassigned",
        "body.parts",
    )
    expect(
        world,
        split(("lot:p1", 600, codes), ("lot:p2", 300, [gbt_code(9)])),
        "units.unknown",
        "body.parts[1].units[0]",
    )
    expect(
        world,
        split(("lot:p1", 600, codes), ("lot:p2", 300, codes[:1])),
        "units.unassigned",
        "body.parts[1].units[0]",
    )
    world.ok(split(("lot:p1", 600, codes[:2]), ("lot:p2", 300, codes[2:])))
    p1, p2 = world.store.lot("lot:p1"), world.store.lot("lot:p2")
    assert p1 is not None and p2 is not None
    assert (p1.units, p2.units) == (tuple(codes[:2]), tuple(codes[2:]))
