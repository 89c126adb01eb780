"""The independent verifier (producers/verifier.py) and ``rledger verify-bundle``: a bundle
verifies; a bundle edited by hand fails, with the reason naming what was edited.

One bundle is built once (the regulator's bundle of lot:cathode, tests/test_provenance.py
works it out: 32 records, 400,000 g of which 376,471 g post-consumer) and every test edits a
copy of it, as a forger would: the verifier has no database, so the engine it was built on does
not matter (tests/test_provenance.py builds bundles on SQLite and PostgreSQL).

The edits, each with the check that catches it:

- one gram more in a record's envelope (the cathode synthesis makes 400,001 g and loses
  619,999 g: still balanced), hash left alone -> its bytes no longer hash to its name;
- the same with the hash recomputed -> not in the signed tree (its inclusion proof fails);
- one gram more in the claimed content (Co.post 50,401 g), a flow or a lot -> the replay
  computes other grams;
- two records' signatures swapped -> the first of them does not verify;
- one record dropped: a transfer of lot:coso4 -> the receive after it names it as lot:coso4's
  parent; a key.add -> a record signed by a key nothing registers; the genesis; the last record
  of the lot -> its chain no longer matches;
- one bit flipped in an inclusion proof, a checkpoint re-signed by another key, a checkpoint
  of another size -> the checkpoint or the proof fails.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import fixed_key, make_world
from tracing_network import CATHODE, REGULATOR, ROLES, Loop, build_loop

from ledger import provenance
from ledger.access import Viewer, read_scope
from ledger.canonical import canonical_bytes
from ledger.checkpoints import (
    Checkpoint,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    verifier_key,
)
from ledger.database import database_url
from ledger.merkle_log import Checkpointer
from ledger.signing import public_key_bytes, record_hash
from producers.audit import Seen, save_state
from producers.cli import main
from producers.verifier import BundleInvalid, load_bundle, verify_bundle

LEDGER_KEY = fixed_key("ledger")


@dataclass(frozen=True)
class Built:
    loop: Loop
    vkey: str
    text: str  # the regulator's bundle of lot:cathode
    partial: str  # org:cathode's (incomplete)

    def doc(self) -> dict[str, Any]:
        return copy.deepcopy(json.loads(self.text))

    def seq(self, step: str) -> int:
        return self.loop.seqs[step]

    def at(self, doc: dict[str, Any], step: str) -> int:
        """The position in doc["records"] of the record of ``step``."""
        h = self.loop.hashes[step]
        return next(i for i, r in enumerate(doc["records"]) if r["hash"] == h)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    world = make_world(database_url(str(tmp_path_factory.mktemp("verifier") / "l.db")))
    loop = build_loop(world)
    signer = Checkpointer(world.store.engine, LEDGER_KEY)

    def bundle(org: str) -> str:
        with world.store.engine.connect() as conn:
            found = provenance.provenance_bundle(
                conn,
                read_scope(Viewer(org, frozenset(ROLES[org]))),
                "lot:cathode",
                sign=lambda n: signer.checkpoint(min_size=n),
            )
        assert found is not None
        return found.text

    built = Built(loop, signer.verifier_key, bundle(REGULATOR), bundle(CATHODE))
    world.store.close()
    return built


def fails(built: Built, doc: Any, *says: str, vkey: str | None = None) -> str:
    with pytest.raises(BundleInvalid) as caught:
        verify_bundle(doc if isinstance(doc, str) else json.dumps(doc), vkey or built.vkey)
    for part in says:
        assert part in caught.value.reason, caught.value.reason
    return caught.value.reason


def resign_envelope(record: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> None:
    env = json.loads(record["envelope"])
    edit(env)
    record["envelope"] = canonical_bytes(env).decode()


def wrong_key(built: Built) -> str:
    """The verifier key of another key, under this log's name."""
    origin = built.vkey.split("+", 1)[0]
    return verifier_key(origin, public_key_bytes(fixed_key("another").public_key()))


def one_more_gram(env: dict[str, Any]) -> None:
    env["body"]["outputs"][0]["mass_g"] += 1
    env["body"]["loss_g"] -= 1


def test_the_bundle_verifies(built: Built) -> None:
    ok = verify_bundle(built.text, built.vkey)
    assert (ok.records, ok.lots, ok.mass_g, ok.complete) == (32, 11, 400_000, True)
    assert ok.content is not None and ok.content["post"] == 376_471


def test_one_gram_changed_in_a_signed_record(built: Built) -> None:
    doc = built.doc()
    make = doc["records"][built.at(doc, "cathode.make")]
    resign_envelope(make, one_more_gram)
    seq = built.seq("cathode.make")
    fails(built, doc, f"record seq {seq} (transform by {CATHODE}", "envelope was altered")
    make["hash"] = record_hash(make["envelope"].encode())  # a forger fixes the hash too
    fails(built, doc, f"record seq {seq} (transform", "is not proven to be in the log")


def test_one_gram_changed_in_a_claim_a_flow_or_a_lot(built: Built) -> None:
    doc = built.doc()
    doc["claim"]["content"]["Co.post"] += 1
    fails(built, doc, "Co.post: claimed 50401 g, the records give 50400 g", "lot:cathode")
    doc = built.doc()
    doc["claim"]["recoveredG"] += 1
    fails(built, doc, "recoveredG is 376472 g, but its records give 376471 g")
    doc = built.doc()
    flow = next(f for f in doc["flows"] if f["parent"] == "lot:coso4")
    flow["massG"] += 1
    fails(built, doc, "claims 94119 g", "from lot:coso4 into lot:cathode")
    doc = built.doc()
    lot = next(x for x in doc["lots"] if x["lot"] == "lot:bm")
    lot["massG"] += 1
    fails(built, doc, "lot lot:bm is 540001 g", "its records make 540000 g")


def test_a_signature_swapped(built: Built) -> None:
    doc = built.doc()
    a, b = built.at(doc, "lot:coso4.transfer"), built.at(doc, "lot:niso4.transfer")
    recs = doc["records"]
    recs[a]["signature"], recs[b]["signature"] = recs[b]["signature"], recs[a]["signature"]
    seq = built.seq("lot:coso4.transfer")
    fails(built, doc, f"the signature of record seq {seq} (transfer by org:recycler", "altered")


def test_a_record_dropped(built: Built) -> None:
    doc = built.doc()
    del doc["records"][built.at(doc, "lot:coso4.transfer")]
    receive = built.seq("lot:coso4.receive")
    fails(
        built,
        doc,
        f"record seq {receive} (receive by {CATHODE}",
        f"names {built.loop.hashes['lot:coso4.transfer']} as the latest record of lot:coso4",
        "is missing from the bundle",
    )
    # The cathode's key registration: its first record is signed by a key nothing registers.
    doc = built.doc()
    add = next(
        i
        for i, r in enumerate(doc["records"])
        if json.loads(r["envelope"])["type"] == "key.add"
        and json.loads(r["envelope"])["body"]["org"] == CATHODE
    )
    del doc["records"][add]
    fails(
        built, doc, f"(receive by {CATHODE}", "which no key.add before it in the bundle registers"
    )
    doc = built.doc()
    del doc["records"][0]
    fails(built, doc, "lacks the ledger's genesis record")
    doc = built.doc()
    del doc["records"][built.at(doc, "cathode.market")]
    fails(built, doc, "the bundle's chain of lot:cathode lists 2 records, but its records give 1")


def test_a_proof_hash_flipped(built: Built) -> None:
    doc = built.doc()
    rec = doc["records"][built.at(doc, "bm-other.create")]
    raw = bytearray(base64.b64decode(rec["inclusion"][2]))
    raw[7] ^= 0x10
    rec["inclusion"][2] = base64.b64encode(bytes(raw)).decode()
    seq = built.seq("bm-other.create")
    fails(built, doc, f"record seq {seq} (create by org:recycler", "is not proven to be in the log")
    rec["inclusion"].pop()
    fails(built, doc, f"record seq {seq}", "RFC 9162 gives")
    doc = built.doc()
    doc["records"][3]["index"] += 1
    fails(built, doc, "proof index is", "not seq - 1")


def test_a_checkpoint_from_another_key_or_of_another_tree(built: Built) -> None:
    doc = built.doc()
    text, _ = parse_note(doc["checkpoint"]["note"])
    cp = parse_checkpoint(text)
    doc["checkpoint"]["note"] = sign_checkpoint(cp, fixed_key("a forger"), time=1_900_000_000)
    fails(built, doc, "not signed by the ledger key", "carries no signature by this ledger key")
    doc = built.doc()
    smaller = Checkpoint(cp.origin, cp.size - 1, cp.root)  # a note the ledger key never signed
    doc["checkpoint"]["note"] = sign_checkpoint(smaller, fixed_key("a forger"), time=1)
    fails(built, doc, "not signed by the ledger key")
    doc = built.doc()
    doc["checkpoint"]["size"] -= 1
    fails(built, doc, "disagree with its signed note")
    doc = built.doc()
    doc["checkpoint"]["verifierKey"] = wrong_key(built)
    fails(built, doc, "disagree with its signed note and the pinned key")
    # The right bundle, checked against another ledger's key.
    fails(built, built.text, "not signed by the ledger key", vkey=wrong_key(built))
    with pytest.raises(BundleInvalid, match="verifier key is not usable"):
        verify_bundle(built.text, "not a key")


def test_keys_chains_and_flags_are_checked_not_believed(built: Built) -> None:
    doc = built.doc()
    doc["keys"][1]["revokedSeq"] = 5
    fails(built, doc, "is not the key its registry records give")
    doc = built.doc()
    doc["chains"]["lot:bm"].reverse()
    fails(built, doc, "the bundle's chain of lot:bm", "edited")
    doc = built.doc()
    doc["flows"].pop()
    fails(built, doc, "the bundle leaves out the flow")
    doc = built.doc()
    doc["records"][4], doc["records"][5] = doc["records"][5], doc["records"][4]
    fails(built, doc, "records are listed once each, in ledger order")
    doc = built.doc()
    doc["complete"] = False
    fails(built, doc, "complete flag contradicts")
    doc["hiddenByAccess"] = True  # a complete bundle that undersells itself still proves it all
    ok = verify_bundle(json.dumps(doc), built.vkey)
    assert ok.complete and "holds every record" in ok.notes[0]


def test_malformed_json_fails_closed(built: Built) -> None:
    fails(built, built.text[:-1], "not JSON text")
    fails(built, '{"format": 1, "format": 2}', "repeats the member 'format'")
    fails(built, built.text.replace('"massG":400000', '"massG":400000.0', 1), "only integers")
    fails(built, "[]", "must be a JSON object")
    doc = built.doc()
    doc["format"] = "something/else"
    fails(built, doc, "not a provenance bundle")
    doc = built.doc()
    doc["records"][2]["seq"] = "3"
    fails(built, doc, "records[2].seq must be int")
    doc = built.doc()
    del doc["claim"]["content"]
    fails(built, doc, "lacks 'content'")
    assert load_bundle(built.text)["lot"] == "lot:cathode"


def test_members_the_format_does_not_define_fail(built: Built) -> None:
    doc = built.doc()
    doc["note"] = "trust me"
    fails(built, doc, "the bundle has a member the format does not define: 'note'")
    doc = built.doc()
    doc["lots"][0]["content"] = {"post": 1}
    fails(built, doc, "lots[0] has a member the format does not define: 'content'")
    doc = built.doc()
    doc["lots"].append(doc["lots"][0])
    fails(built, doc, "is listed twice")


def test_any_one_character_edit_fails_or_changes_nothing_checked(built: Built) -> None:
    """500 edits at random positions (fixed seed), each replacing one character of the JSON
    text. Each must fail with BundleInvalid — never another exception — unless it lies where
    the format says nothing is proven: a record's recordedAt (the server's clock, only
    required to be a time and not to go backwards) or the last character of a base64url
    signature, whose low bits are not part of the 64 bytes."""
    import random
    import re

    text = built.text
    free: set[int] = set()
    for m in re.finditer(r'"recordedAt":"([^"]*)"', text):
        free.update(range(m.start(1), m.end(1)))
    for m in re.finditer(r'"signature":"([^"]*)"', text):
        free.add(m.end(1) - 1)
    rng = random.Random(2026)
    alphabet = '0123456789abcdefABCDEF{}[]":,-_+/=. xyz\\'
    passed = 0
    for _ in range(500):
        at = rng.randrange(len(text))
        ch = rng.choice([c for c in alphabet if c != text[at]])
        edited = text[:at] + ch + text[at + 1 :]
        try:
            verify_bundle(edited, built.vkey)
        except BundleInvalid:
            continue
        assert at in free, f"an edit at {at} ({text[at - 30 : at + 30]!r} -> {ch!r}) passed"
        passed += 1
    assert passed < 50


# --- the CLI ---------------------------------------------------------------------------------


def test_rledger_verify_bundle(built: Built, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(built.text)
    doc = built.doc()
    doc["claim"]["content"]["Co.post"] += 1
    bad.write_text(json.dumps(doc))
    state = tmp_path / "audit.json"
    run = CliRunner().invoke
    ok = run(
        main, ["verify-bundle", str(good), "--verifier-key", built.vkey, "--state", str(state)]
    )
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: lot:cathode: 32 records"), ok.output
    no = run(main, ["verify-bundle", str(bad), "--verifier-key", built.vkey, "--state", str(state)])
    assert no.exit_code == 1 and "FAILED: " in no.stderr and "Co.post: claimed 50401 g" in no.stderr
    # The key from a file, as `rledger checkpoint --verifier-key > ledger.vkey` writes it.
    (tmp_path / "ledger.vkey").write_text(built.vkey + "\n")
    from_file = run(
        main, ["verify-bundle", str(good), "--verifier-key", str(tmp_path / "ledger.vkey")]
    )
    assert from_file.exit_code == 0, from_file.output
    # No key given and none pinned: told how to get one.
    none = run(main, ["verify-bundle", str(good), "--state", str(state)])
    assert none.exit_code == 1 and "no verifier key: pass --verifier-key" in none.stderr
    # Pinned by `rledger audit` (its state file): used for bundles of that log.
    origin = built.vkey.split("+", 1)[0]
    save_state(state, [Seen("http://x/graphql", built.vkey, 1, "00" * 32, 0, "", "2026")])
    pinned = run(main, ["verify-bundle", "-", "--state", str(state)], input=built.text)
    assert pinned.exit_code == 0 and origin in pinned.stdout, pinned.output
    partial = tmp_path / "partial.json"
    partial.write_text(built.partial)
    refused = run(main, ["verify-bundle", str(partial), "--state", str(state)])
    assert refused.exit_code == 1 and "the bundle is incomplete" in refused.stderr
    allowed = run(
        main, ["verify-bundle", str(partial), "--state", str(state), "--allow-incomplete"]
    )
    assert allowed.exit_code == 0 and allowed.stdout.startswith("PARTIAL lot:cathode")
    assert run(main, ["verify-bundle", "--help"]).exit_code == 0
