"""The verify-worker path (``Store(verify_processes=N)``, ledger/prepare.py): workers
parse and verify, the writer rebuilds the envelopes they accepted. It must answer
every record exactly as the in-process path does, on both engines."""

from __future__ import annotations

import json

from conftest import World, fixed_key

from ledger.errors import RecordRefused
from ledger.signing import public_key_bytes
from ledger.store import PARALLEL_VERIFY_MIN, Appended, Signed, Store
from producers.bootstrap import admit
from producers.events import Signer


def _batch(world: World) -> tuple[list[Signed], list[str | None]]:
    """A batch big enough for the workers, with one of each kind of failure; the codes expected."""
    acme = world.admit("org:acme", ["collector"])
    newco = Signer("org:newco", fixed_key("org:newco"))
    records: list[Signed] = []
    expected: list[str | None] = []
    for i in range(PARALLEL_VERIFY_MIN):
        body = {
            "lot": f"lot:a{i}",
            "material": "steel.hms1",
            "mass_g": 1000 + i,
            "origin": "post_consumer",
        }
        records.append(acme.record("create", body))
        expected.append(None)
    good = acme.record(
        "create",
        {"lot": "lot:bad-sig", "material": "steel.hms1", "mass_g": 5, "origin": "post_consumer"},
    )
    other = acme.record(
        "create",
        {"lot": "lot:other", "material": "steel.hms1", "mass_g": 5, "origin": "post_consumer"},
    )
    records.append(Signed(good.envelope, other.signature))
    expected.append("signature.invalid")
    records.append(Signed("{not json", good.signature))
    expected.append("json.malformed")
    spaced = json.dumps(json.loads(good.envelope), indent=1)
    records.append(Signed(spaced, good.signature))
    expected.append("json.not_canonical")
    records.append(Signed(good.envelope, "!!"))
    expected.append("signature.malformed")
    # A key registered earlier in this same batch: the workers can't know it yet.
    registered, _ = admit(
        world.operator,
        "org:newco",
        "New Co",
        ["collector"],
        "CN-GD",
        public_key_bytes(newco.private_key.public_key()),
    )
    records.extend(registered)
    expected.extend([None, None])
    body = {"lot": "lot:n1", "material": "paper.occ", "mass_g": 7, "origin": "post_consumer"}
    records.append(newco.record("create", body))
    expected.append(None)
    forged = newco.record("create", {**body, "lot": "lot:n2"})
    records.append(Signed(forged.envelope, acme.record("create", body).signature))
    expected.append("signature.invalid")
    return records, expected


def test_workers_answer_every_record_as_the_writer_would(world: World) -> None:
    records, expected = _batch(world)
    store = Store.open(world.url, verify_processes=1)
    try:
        results = store.append(records)
        assert [None if isinstance(r, Appended) else r.code for r in results] == expected
        for result, record in zip(results, records, strict=True):
            if isinstance(result, RecordRefused) and result.code.startswith("signature.invalid"):
                assert result.record_id == json.loads(record.envelope)["id"]
        again = store.append(records)  # the same batch again: stored ones answer "existing"
        assert all(r.existing for r in again if isinstance(r, Appended))
        assert [None if isinstance(r, Appended) else r.code for r in again] == expected
    finally:
        store.close()
    lot = world.store.lot("lot:n1")
    assert lot is not None and lot.custodian == "org:newco"
