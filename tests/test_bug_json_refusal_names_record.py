"""Bug: a refusal of the JSON text named neither the record nor the field.

A record with ``"mass_g": 9007199254740992`` (2^53) was refused
``json.integer_range`` with no record id and no path: the strict parser stops
at the first broken rule, before it has read the id, and its number hook
knows no path. The same for ``json.float``, ``json.duplicate_key`` and
``json.not_canonical``. Found by tests/test_hostile_records.py. Now
ledger/envelope.py reads the text leniently after such a refusal and names the
record (when its id is an id) and, for a number, the field: on both engines,
and nothing is written.
"""

from __future__ import annotations

import json

from conftest import World

from ledger.signing import sign
from ledger.store import Signed


def _text(world: World, mass: str, *, extra: bytes = b"") -> Signed:
    signer = (
        world.admit("org:coll", ["collector"])
        if "org:coll" not in world.orgs
        else world.orgs["org:coll"]
    )
    body = {"lot": "lot:x", "material": "steel.hms1", "mass_g": 1, "origin": "virgin"}
    env = signer.envelope("create", body, record_id="rec-7")
    text = json.dumps(env, sort_keys=True, separators=(",", ":")).encode()
    text = text.replace(b'"mass_g":1', b'"mass_g":' + mass.encode() + extra)
    return Signed(text.decode(), sign(signer.private_key, text))


def test_a_number_refusal_names_the_record_and_the_field(world: World) -> None:
    for mass, code in (
        ("9007199254740992", "json.integer_range"),
        ("-9007199254740992", "json.integer_range"),
        ("100000000000000000000000000000", "json.integer_range"),
        ("1.0", "json.float"),
        ("1e3", "json.float"),
    ):
        refusal = world.refused(_text(world, mass))
        assert (refusal.code, refusal.record_id, refusal.path) == (code, "rec-7", "body.mass_g")
        assert str(refusal).startswith("record rec-7: ")


def test_a_repeated_name_and_a_non_canonical_text_name_the_record(world: World) -> None:
    refusal = world.refused(_text(world, "1", extra=b',"mass_g":2'))
    assert (refusal.code, refusal.record_id, refusal.path) == (
        "json.duplicate_key",
        "rec-7",
        "mass_g",
    )
    refusal = world.refused(_text(world, " 1"))
    assert (refusal.code, refusal.record_id) == ("json.not_canonical", "rec-7")


def test_text_that_is_no_json_object_names_nothing(world: World) -> None:
    for text in (b'{"id":"rec-7",', b'["rec-7"]', b'{"id":"' + b"x" * 65 + b'","v":1.5}'):
        signer = (
            world.admit("org:other", ["collector"])
            if "org:other" not in world.orgs
            else world.orgs["org:other"]
        )
        refusal = world.refused(Signed(text.decode(), sign(signer.private_key, text)))
        assert refusal.record_id is None
