"""provenance(lot): the bundle (ledger/provenance.py, schema/provenance.py), on SQLite and
PostgreSQL, checked by the independent verifier (producers/verifier.py).

The network is tests/tracing_network.py's battery loop. Worked by hand, the regulator's bundle
of lot:cathode holds 32 records:

- the 23 of the content proof (tests/test_tracing.py): lot:packs' create, placed_on_market,
  transfer, receive, in_use and split (6); lot:fleet-a's retired, transfer, receive and the
  dismantling (4); the mechanical transform (1); the merge (1); lot:bm-other's create (1); the
  hydrometallurgy (1); the three salts' transfers and receives (6); lot:co-mined's create (1);
  the cathode synthesis (1); the cathode's placed_on_market (1);
- the 9 registry records that make their keys checkable: the genesis (the operator's key),
  and the org.register and key.add of each of the four organisations that signed them or
  received a transfer (maker, fleet, recycler, cathode). The regulator and the outsider signed
  none of them: their records are not in it.

The server's claim for lot:cathode (tests/test_tracing.py, worked there): 400,000 g, of which
376,471 g post-consumer and none pre-consumer; Co 63,000 g of which 50,400 g recovered; Ni
132,000 g and Li 22,560 g, all recovered. The verifier replays the 32 records through the
ledger's rules and arrives at the same grams.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import World, fixed_key
from read_network import Api
from sqlalchemy import func, select
from tracing_network import CATHODE, MAKER, OUTSIDER, RECYCLER, REGULATOR, Loop, build_loop

from ledger import merkle, provenance, tlog_proof
from ledger.access import Viewer, read_scope
from ledger.checkpoints import verify_checkpoint
from ledger.merkle_log import Checkpointer
from ledger.signing import public_key_bytes
from ledger.tables import checkpoints
from producers.events import Signer
from producers.verifier import BundleInvalid, verify_bundle
from schema.app import create_app

LEDGER_KEY = fixed_key("ledger")
LEDGER_PUB = public_key_bytes(LEDGER_KEY.public_key())

PROVENANCE = """query($lot: ID!) { provenance(lot: $lot) {
  lot complete truncated hiddenByAccess recordCount lotCount treeSize root bundle
} }"""
CONTENT = """query($lot: ID!) { recoveredContent(lot: $lot) {
  massG recoveredG preConsumerG postConsumerG elements { element massG recoveredG }
} }"""


@pytest.fixture
def loop(world: World) -> Loop:
    return build_loop(world)


@pytest.fixture
def signer(loop: Loop) -> Checkpointer:
    return Checkpointer(loop.world.store.engine, LEDGER_KEY)


@pytest.fixture
def api(loop: Loop, signer: Checkpointer) -> Api:
    api = Api(loop.world)
    api.app = create_app(loop.world.store, token_ttl=0, checkpointer=signer)
    return api


def bundle_of(api: Api, who: str, lot: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = api.ok(who, PROVENANCE, lot=lot)["provenance"]
    assert found is not None
    return found, json.loads(found["bundle"])


def checkpoint_count(loop: Loop) -> int:
    with loop.world.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(checkpoints)).scalar_one())


def test_a_regulators_bundle_of_the_cathode_is_complete_and_verifies(
    loop: Loop, api: Api, signer: Checkpointer
) -> None:
    found, doc = bundle_of(api, REGULATOR, "lot:cathode")
    assert found["complete"] and not found["truncated"] and not found["hiddenByAccess"]
    assert (found["recordCount"], found["lotCount"]) == (32, 11)
    records = doc["records"]
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    hashes = {r["hash"] for r in records}
    lineage = set(loop.hashes.values()) - {
        loop.hashes[x] for x in ("fleet-b.second_life", "co-mined.stored", "gs1.create")
    }
    assert hashes >= lineage and len(hashes - lineage) == 9  # the registry records
    registry = [json.loads(r["envelope"]) for r in records if r["hash"] not in lineage]
    assert registry[0]["type"] == "org.register" and records[0]["seq"] == 1
    registered = {e["body"]["org"] for e in registry if e["type"] == "org.register"}
    assert registered == {"org:operator", MAKER, "org:fleet", RECYCLER, CATHODE}
    assert sorted(k["org"] for k in doc["keys"]) == sorted(registered)

    # One signed checkpoint for every record: the one just signed, of the whole log.
    cp = doc["checkpoint"]
    assert (found["treeSize"], found["root"]) == (cp["size"], cp["root"])
    assert cp["size"] == loop.world.store.last_seq() and cp["verifierKey"] == signer.verifier_key
    checked = verify_checkpoint(cp["note"], LEDGER_PUB, origin=signer.origin)
    for r in records:  # each record's C2SP tlog-proof, rendered and read back, checks out
        text = tlog_proof.render(
            tlog_proof.TlogProof(
                r["index"], tuple(tlog_proof.decode_hash(h) for h in r["inclusion"]), cp["note"]
            )
        )
        assert text.startswith(f"c2sp.org/tlog-proof@v1\nindex {r['seq'] - 1}\n")
        back = tlog_proof.parse(text)
        assert back.checkpoint == cp["note"]
        merkle.check_inclusion(
            back.index,
            checked.checkpoint.size,
            merkle.record_leaf(r["hash"]),
            list(back.hashes),
            checked.checkpoint.root,
        )

    # The claim is what recoveredContent answers.
    content = api.ok(REGULATOR, CONTENT, lot="lot:cathode")["recoveredContent"]
    claim = doc["claim"]
    assert (claim["massG"], claim["recoveredG"], claim["preConsumerG"], claim["postConsumerG"]) == (
        400_000,
        376_471,
        0,
        376_471,
    )
    assert (content["massG"], content["recoveredG"]) == (claim["massG"], claim["recoveredG"])
    co = next(e for e in content["elements"] if e["element"] == "Co")
    assert (claim["content"]["Co"], claim["content"]["Co.post"]) == (co["massG"], co["recoveredG"])
    assert claim["head"] == loop.hashes["cathode.market"]
    assert doc["chains"]["lot:cathode"] == [loop.hashes["cathode.make"], claim["head"]]

    # The verifier replays all of it and agrees.
    ok = verify_bundle(found["bundle"], signer.verifier_key)
    assert ok.complete and ok.records == 32 and ok.lots == 11
    assert ok.content == claim["content"] and ok.mass_g == 400_000
    assert "376471 of 400000 g recovered" in ok.summary()
    assert "Co 50400 of 63000 g" in ok.summary()


def test_hidden_upstream_lots_make_a_bundle_that_says_it_is_incomplete(
    loop: Loop, api: Api, signer: Checkpointer
) -> None:
    """org:cathode reads the cathode, the three salts and its own virgin cobalt, not the
    recycler's campaign beyond them: 15 records (the cathode's 2, the salts' transfers and
    receives 6, the hydrometallurgy that made them, co-mined's create; genesis and the
    registrations of cathode and recycler — the salts' sender — 5)."""
    found, doc = bundle_of(api, CATHODE, "lot:cathode")
    assert not found["complete"] and found["hiddenByAccess"] and not found["truncated"]
    assert doc["complete"] is False and doc["hiddenByAccess"] is True
    assert found["recordCount"] == 15
    hashes = {r["hash"] for r in doc["records"]}
    assert loop.hashes["hydrometallurgy"] in hashes  # it made the salts the cathode holds
    assert loop.hashes["campaign.merge"] not in hashes  # the campaign is the recycler's
    assert {x["lot"] for x in doc["lots"]} == {
        "lot:cathode",
        "lot:coso4",
        "lot:niso4",
        "lot:li2co3",
        "lot:co-mined",
    }
    with pytest.raises(BundleInvalid, match="the bundle is incomplete: 9 of its records"):
        verify_bundle(found["bundle"], signer.verifier_key)
    partial = verify_bundle(found["bundle"], signer.verifier_key, allow_incomplete=True)
    assert not partial.complete and partial.content is None and len(partial.unreplayed) == 9
    assert partial.summary().startswith("PARTIAL lot:cathode")
    # Saying "complete" does not make it so: the verifier finds the missing history.
    forged = dict(doc, complete=True, hiddenByAccess=False)
    with pytest.raises(BundleInvalid, match="changes lot lot:campaign, but the bundle holds no"):
        verify_bundle(forged, signer.verifier_key)


def test_missing_hidden_and_void_lots_answer_null(loop: Loop, api: Api) -> None:
    assert api.ok(OUTSIDER, PROVENANCE, lot="lot:cathode") == {"provenance": None}
    assert api.ok(REGULATOR, PROVENANCE, lot="lot:nope") == {"provenance": None}
    w = loop.world
    s = w.orgs[OUTSIDER]
    made = w.create(s, "lot:oops", 5)
    w.ok(s.record("void", {"record": made.hash, "reason": "typo"}, w.heads("lot:oops")))
    assert api.ok(OUTSIDER, PROVENANCE, lot="lot:oops") == {"provenance": None}
    assert api.ok(REGULATOR, PROVENANCE, lot="lot:oops") == {"provenance": None}


def test_one_checkpoint_the_latest_signed_on_demand_only_when_none_covers(
    loop: Loop, signer: Checkpointer
) -> None:
    bare = Api(loop.world)  # no ledger key: it can only use stored checkpoints
    answer = bare.ask(REGULATOR, PROVENANCE, {"lot": "lot:cathode"})
    assert answer.codes == ["BAD_USER_INPUT"], answer.body
    assert "no signed checkpoint covers this lot's records" in answer.body["errors"][0]["message"]
    assert answer.body["errors"][0]["extensions"]["argument"] == "lot"
    first = signer.checkpoint()
    found, doc = bundle_of(bare, REGULATOR, "lot:cathode")
    assert doc["checkpoint"]["note"] == first.note
    # A later record of another lot: the latest checkpoint still covers this lot's records.
    w = loop.world
    w.create(w.orgs[OUTSIDER], "lot:later", 7)
    keyed = Api(loop.world)
    keyed.app = create_app(w.store, token_ttl=0, checkpointer=signer)
    assert bundle_of(keyed, REGULATOR, "lot:cathode")[1]["checkpoint"]["note"] == first.note
    assert checkpoint_count(loop) == 1
    # A later record of this lot: none covers it, so one is signed now (of the whole log).
    cathode = w.orgs[CATHODE]
    w.ok(
        cathode.record("status", {"lot": "lot:cathode", "status": "stored"}, w.heads("lot:cathode"))
    )
    found, doc = bundle_of(keyed, REGULATOR, "lot:cathode")
    assert checkpoint_count(loop) == 2 and found["treeSize"] == w.store.last_seq()
    assert doc["claim"]["updatedSeq"] == w.store.last_seq()
    assert verify_bundle(found["bundle"], signer.verifier_key).records == 33
    # The stored checkpoint is served by a server without the key, too.
    assert bundle_of(bare, REGULATOR, "lot:cathode")[1]["checkpoint"]["size"] == found["treeSize"]


def test_inputs_no_flow_records_are_in_the_bundle_too(world: World) -> None:
    """Two cases the lineage walk cannot see, because no flow records them.

    1. A transform of lot:big (1,000,000 g) and lot:speck (1 g) into lot:tiny (1 g), loss
       1,000,000 g: largest remainder gives lot:tiny's gram to lot:big (1,000,000 : 1), so
       lot:speck gives it nothing and no flow leaves it. Replaying the transform still needs
       lot:speck: its create is in lot:tiny's bundle.
    2. lot:tiny is then merged with lot:other (1 g) into lot:pair. lot:tiny's bundle holds
       every record of lot:tiny, the merge too; replaying the merge needs lot:other: its
       create is in the bundle.
    """
    p = world.admit("org:p", ["processor"])
    world.create(p, "lot:big", 1_000_000, material="plastics.pet")
    world.create(p, "lot:speck", 1, material="plastics.pet")
    world.ok(
        p.record(
            "transform",
            {
                "process": "washing_flaking",
                "inputs": [
                    {"lot": "lot:big", "mass_g": 1_000_000},
                    {"lot": "lot:speck", "mass_g": 1},
                ],
                "outputs": [{"lot": "lot:tiny", "material": "plastics.pet_flake", "mass_g": 1}],
                "loss_g": 1_000_000,
            },
            world.heads("lot:big", "lot:speck"),
        )
    )
    world.create(p, "lot:other", 1, material="plastics.pet_flake")
    world.ok(
        p.record(
            "merge",
            {"lots": ["lot:tiny", "lot:other"], "into": "lot:pair"},
            world.heads("lot:tiny", "lot:other"),
        )
    )
    signer = Checkpointer(world.store.engine, LEDGER_KEY)
    api = Api(world)
    api.app = create_app(world.store, token_ttl=0, checkpointer=signer)
    found, doc = bundle_of(api, "org:p", "lot:tiny")
    assert found["complete"]
    assert [f["parent"] for f in doc["flows"]] == ["lot:big"]  # no flow from lot:speck
    made = {json.loads(r["envelope"])["body"].get("lot") for r in doc["records"]}
    assert {"lot:speck", "lot:other", "lot:big"} <= made
    assert set(doc["chains"]) >= {"lot:speck", "lot:other", "lot:pair"}
    assert verify_bundle(found["bundle"], signer.verifier_key).content == {"post": 1}


def test_a_key_rotated_mid_lineage_is_replayed_from_the_bundle(world: World) -> None:
    """org:c records lot:r1 with its first key (seq 4), adds a second key and revokes the
    first (seq 5, 6, signed by itself), then splits lot:r1 with the second key (seq 7). The
    bundle of a part holds both key records; the keys list shows the first key revoked at 6;
    the verifier replays them and accepts the split because the second key was registered (at
    5) before it. Dropping that key.add makes the split's key unknown."""
    first = world.admit("org:c", ["collector"])
    world.create(first, "lot:r1", 10_000)
    second = Signer("org:c", fixed_key("org:c second key"))
    world.ok(first.record("key.add", {"org": "org:c", "public_key": second.public_key}))
    world.ok(first.record("key.revoke", {"org": "org:c", "key": first.key_id}))
    parts = [{"lot": "lot:r1-a", "mass_g": 4_000}, {"lot": "lot:r1-b", "mass_g": 6_000}]
    world.ok(second.record("split", {"lot": "lot:r1", "parts": parts}, world.heads("lot:r1")))
    signer = Checkpointer(world.store.engine, LEDGER_KEY)
    api = Api(world)
    api.app = create_app(world.store, token_ttl=0, checkpointer=signer)
    found, doc = bundle_of(api, "org:c", "lot:r1-a")
    assert [r["seq"] for r in doc["records"]] == [1, 2, 3, 4, 5, 6, 7]
    keys = {k["key"]: k for k in doc["keys"]}
    assert keys[first.key_id]["revokedSeq"] == 6 and keys[second.key_id]["addedSeq"] == 5
    ok = verify_bundle(found["bundle"], signer.verifier_key)
    assert ok.content == {"post": 4_000} and ok.mass_g == 4_000
    del doc["records"][4]  # the key.add of the second key
    with pytest.raises(BundleInvalid, match=r"record seq 7 \(split by org:c.*no key.add before"):
        verify_bundle(doc, signer.verifier_key)


def test_records_appended_while_a_bundle_is_built(world: World) -> None:
    """A record lands after the bundle's reads began and before its checkpoint is signed (on
    SQLite the reads run in one snapshot): the checkpoint covers the new record too, and the
    bundle's proofs are read from a tree that holds it. The new record is not in the bundle
    (it is not part of the lot's lineage)."""
    c = world.admit("org:c", ["collector"])
    world.create(c, "lot:x", 1_000)
    signer = Checkpointer(world.store.engine, LEDGER_KEY)

    def busy_then_sign(size: int) -> Any:
        world.create(c, "lot:meanwhile", 5)  # another writer, between the reads and the signing
        return signer.checkpoint(min_size=size)

    scope = read_scope(Viewer("org:c", frozenset({"collector"})))
    with world.store.engine.connect() as conn:
        conn.execute(select(func.count()).select_from(checkpoints)).scalar_one()  # reads begin
        made = provenance.provenance_bundle(conn, scope, "lot:x", sign=busy_then_sign)
    assert made is not None and made.checkpoint.size == 5 == world.store.last_seq()
    assert made.record_count == 4
    assert verify_bundle(made.text, signer.verifier_key).records == 4
