"""The Merkle log in the database (ledger/merkle_log.py), on SQLite and PostgreSQL.

- Every committed record adds exactly its leaf (leaf = seq - 1), in the same
  transaction: refused records and an aborted atomic batch add nothing, and the
  stored tree always gives the root of a tree built at once from the records.
- Proofs for every size the log ever had verify with the pure verifier, and
  cost a fixed number of statements (one read of O(log n) stored hashes).
- Checkpoints: signed with the ledger key, one per tree size, only when the log
  grew; append-only (triggers); a configured origin must match the stored one.
- ``verify`` names the first record whose stored leaf or subtree differs,
  ``rebuild`` repairs the tree; a record rewritten *and* the tree rebuilt over
  it is still caught by the checkpoint signed before (verify, and an auditor's
  consistency proof from that checkpoint).
- Migration 0004 builds the tree of a ledger that already holds records.
- The API (``checkpoint``, ``inclusionProof``, ``consistencyProof``) and the
  CLI (``rledger checkpoint``, ``rledger serve --checkpoint-every``).

Worked example (the ``ledger`` fixture: genesis, two org admissions of two
records each, three creates = 8 records): the tree has 8 leaves and
``2*8 - popcount(8) = 15`` stored hashes; the record at seq 3 is leaf 2, and
its audit path in the tree of 8 is [leaf 3, node(leaf 0, leaf 1),
node(node(4,5), node(6,7))].
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from conftest import World, fixed_key
from driver_statements import driver_statements
from operator_tampering import around_triggers
from read_network import Api
from server_process import running_server
from sqlalchemy import Engine, delete, func, inspect, select, update
from sqlalchemy.exc import DBAPIError

from ledger import merkle, merkle_log
from ledger.access import Viewer, read_scope
from ledger.canonical import canonical_bytes
from ledger.checkpoints import CheckpointError, verify_checkpoint
from ledger.database import alembic_config, is_sqlite, make_engine, migrate
from ledger.envelope import parse_envelope
from ledger.merkle_log import Checkpointer, ProofUnavailable
from ledger.queries import inclusion_by_hash, records_by_hash
from ledger.signing import public_key_bytes, record_hash, sign
from ledger.store import Store
from ledger.tables import checkpoints, merkle_hashes, records
from ledger.verify import rebuild, verify_store
from producers.keyfiles import write_private_key
from schema.app import create_app

CREATE = {"material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
LEDGER_KEY = fixed_key("ledger")
LEDGER_PUB = public_key_bytes(LEDGER_KEY.public_key())


@pytest.fixture
def ledger(world: World) -> World:
    a = world.admit("org:collector-a", ["collector"])
    world.admit("org:collector-b", ["collector"])
    for i in range(3):
        world.create(a, f"lot:a{i}", 1_000 + i)
    assert world.store.last_seq() == 8
    return world


def leaves_of(world: World) -> list[bytes]:
    return [merkle.record_leaf(r.hash) for r in world.store.records()]


def stored_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(merkle_hashes)).scalar_one())


# --- the tree grows with the log, in the same transaction ----------------------------


def test_the_worked_example(ledger: World) -> None:
    leaves = leaves_of(ledger)
    assert stored_count(ledger.store.engine) == 15 == merkle.stored_hash_count(8)
    with ledger.store.engine.connect() as conn:
        proof = merkle_log.inclusion_at(conn, 2, 8)
        root = merkle_log.root_at(conn, 8)
    n45, n67 = merkle.node_hash(leaves[4], leaves[5]), merkle.node_hash(leaves[6], leaves[7])
    assert proof == [leaves[3], merkle.node_hash(leaves[0], leaves[1]), merkle.node_hash(n45, n67)]
    assert root == merkle.root_of(leaves)
    assert merkle.verify_inclusion(2, 8, leaves[2], proof, root)


def test_refused_records_and_aborted_batches_add_no_leaf(ledger: World) -> None:
    a = ledger.orgs["org:collector-a"]
    before = stored_count(ledger.store.engine)
    ledger.refused(a.record("create", {**CREATE, "lot": "lot:a0"}))
    good = a.record("create", {**CREATE, "lot": "lot:new"})
    bad = a.record("create", {**CREATE, "lot": "lot:a1"})
    results = ledger.append(good, bad, atomic=True)
    assert [getattr(r, "code", None) for r in results] == ["batch.aborted", "lot.exists"]
    assert stored_count(ledger.store.engine) == before
    ledger.ok(good)  # now alone: one leaf, one more subtree (8 -> 9 leaves: 15 -> 16 hashes)
    assert stored_count(ledger.store.engine) == merkle.stored_hash_count(9) == 16
    assert verify_store(ledger.store).ok


def test_every_proof_of_every_size_verifies_and_costs_one_statement(ledger: World) -> None:
    a = ledger.orgs["org:collector-a"]
    for i in range(5):  # 13 records: an uneven tree
        ledger.create(a, f"lot:more{i}", 10 + i)
    leaves = leaves_of(ledger)
    n = len(leaves)
    engine = ledger.store.engine
    # Counted below SQLAlchemy: the proof reads on the driver's own cursor.
    with driver_statements(engine) as statements, engine.connect() as conn:
        for size in range(1, n + 1):
            root = merkle.root_of(leaves[:size])
            assert merkle_log.root_at(conn, size) == root
            for index in range(size):
                statements.clear()
                proof = merkle_log.inclusion_at(conn, index, size)
                assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
                # Every stored hash the proof needs, and the last leaf of the tree (its
                # presence shows the log is that large), in one statement.
                assert len(statements) == 1 and "merkle_hashes" in statements[0], statements
            for first in range(size + 1):
                proof = merkle_log.consistency(conn, first, size)
                old_root = merkle.root_of(leaves[:first])
                assert merkle.verify_consistency(first, size, old_root, root, proof)


def test_many_proofs_from_one_read(ledger: World) -> None:
    """A bundle's proofs: every leaf of the tree of 8 from one statement, each equal to the
    proof asked alone."""
    engine = ledger.store.engine
    with driver_statements(engine) as statements, engine.connect() as conn:
        alone = {i: merkle_log.inclusion_at(conn, i, 8) for i in range(8)}
        statements.clear()
        many = merkle_log.inclusions_at(conn, [7, 0, 3, 3, 1, 2, 4, 5, 6], 8)
    assert many == alone and len(statements) == 1, statements
    with engine.connect() as conn, pytest.raises(ProofUnavailable, match="seq 9"):
        merkle_log.inclusions_at(conn, [0, 8], 8)


def test_a_proof_by_record_hash_is_the_proof_of_its_leaf(ledger: World) -> None:
    """``queries.inclusion_by_hash``, what ``inclusionProof`` calls. For a reader of
    everything on PostgreSQL one statement finds the record and reads its proof's hashes
    (its leaf's siblings and the tree's frontier: merkle.sibling_indexes); otherwise two,
    the record with the access check, then the proof. Either way: the proof of its leaf
    for every size that holds it, None for a record the viewer may not read or that does
    not exist, and the same refusals."""
    a = ledger.orgs["org:collector-a"]
    for i in range(5):  # 13 records: an uneven tree
        ledger.create(a, f"lot:more{i}", 10 + i)
    engine = ledger.store.engine
    everything = read_scope(Viewer("org:regulator", frozenset({"regulator"})))
    collector = read_scope(Viewer("org:collector-a", frozenset({"collector"})))
    stored = list(ledger.store.records())
    n = len(stored)
    one = not is_sqlite(engine)
    seen_by_a = []
    with driver_statements(engine) as statements, engine.connect() as conn:
        for rec in stored:
            for size in range(rec.seq, n + 1):
                statements.clear()
                got = inclusion_by_hash(conn, everything, rec.hash, size)
                assert len(statements) == (1 if one else 2), statements
                proof = merkle_log.inclusion_at(conn, rec.seq - 1, size)
                assert got == merkle_log.Inclusion(rec.hash, rec.seq - 1, size, proof)
            visible = records_by_hash(conn, collector, [rec.hash])
            as_a = inclusion_by_hash(conn, collector, rec.hash, n)
            assert as_a == (inclusion_by_hash(conn, everything, rec.hash, n) if visible else None)
            seen_by_a.append(as_a is not None)
        assert any(seen_by_a) and not all(seen_by_a)
        assert inclusion_by_hash(conn, everything, "0" * 64, n) is None
        theirs = stored[seen_by_a.index(True)]
        for scope in (everything, collector):
            with pytest.raises(ProofUnavailable, match="beyond the log") as exc:
                inclusion_by_hash(conn, scope, theirs.hash, n + 1)
            assert exc.value.argument == "treeSize"
        with pytest.raises(ProofUnavailable, match="not among the first 3"):
            inclusion_by_hash(conn, everything, stored[5].hash, 3)
    with engine.begin() as conn:
        conn.execute(delete(merkle_hashes).where(merkle_hashes.c.id == 10))  # leaf 6
    with engine.connect() as conn, pytest.raises(merkle_log.TreeBroken, match="rebuild"):
        inclusion_by_hash(conn, everything, stored[7].hash, n)  # leaf 7: 6 is its sibling


def test_proofs_the_log_cannot_give_are_refused(ledger: World) -> None:
    with ledger.store.engine.connect() as conn:
        with pytest.raises(ProofUnavailable, match="beyond the log") as exc:
            merkle_log.inclusion_at(conn, 0, 9)
        assert exc.value.argument == "treeSize"
        with pytest.raises(ProofUnavailable, match="not among the first 3") as exc:
            merkle_log.inclusion_at(conn, 5, 3)
        assert exc.value.argument == "treeSize"
        with pytest.raises(ProofUnavailable) as exc:
            merkle_log.consistency(conn, 5, 3)
        assert exc.value.argument == "from"
        with pytest.raises(ProofUnavailable) as exc:
            merkle_log.consistency(conn, 3, 9)
        assert exc.value.argument == "to"


# --- checkpoints -----------------------------------------------------------------


def test_checkpoints_are_signed_once_per_size_and_only_when_the_log_grew(ledger: World) -> None:
    clock = iter([1_800_000_000, 1_800_000_060, 1_700_000_000])
    signer = Checkpointer(ledger.store.engine, LEDGER_KEY, clock=lambda: next(clock))
    first = signer.checkpoint()
    assert (first.size, first.time) == (8, 1_800_000_000)
    assert signer.checkpoint() == first  # not grown: the same one, no new row, no clock read
    checked = verify_checkpoint(first.note, LEDGER_PUB, origin=signer.origin)
    assert checked.checkpoint.root == merkle.root_of(leaves_of(ledger))
    assert checked.time == first.time
    assert first.verifier_key == signer.verifier_key
    assert signer.origin == "recovery-ledger/" + next(ledger.store.records()).hash[:16]

    a = ledger.orgs["org:collector-a"]
    ledger.create(a, "lot:later", 7)
    assert signer.checkpoint(min_size=8) == first  # it already covers 8 records
    second = signer.checkpoint()
    assert (second.size, second.time) == (9, 1_800_000_060)
    ledger.create(a, "lot:later-still", 7)
    third = signer.checkpoint()  # the clock went back: the time does not
    assert (third.size, third.time) == (10, 1_800_000_060)
    assert [c.size for c in merkle_log.all_checkpoints(ledger.store.engine)] == [8, 9, 10]
    with ledger.store.engine.connect() as conn:
        assert merkle_log.checkpoint_covering(conn, 9) == second
        assert merkle_log.checkpoint_at(conn, 10) == third
        old, new = merkle.hash_from_hex(first.root), merkle.hash_from_hex(third.root)
        proof = merkle_log.consistency(conn, 8, 10)
    assert merkle.verify_consistency(8, 10, old, new, proof)
    for cp in (first, second, third):
        signer.verify(cp)
    report = verify_store(ledger.store, checkpoint_key=LEDGER_PUB)
    assert report.ok, report


def test_one_log_keeps_one_name(ledger: World) -> None:
    Checkpointer(ledger.store.engine, LEDGER_KEY, origin="example.org/ledger").checkpoint()
    renamed = Checkpointer(ledger.store.engine, LEDGER_KEY, origin="example.org/other")
    with pytest.raises(CheckpointError, match="one log keeps one name"):
        renamed.checkpoint()
    with pytest.raises(CheckpointError):
        Checkpointer(ledger.store.engine, LEDGER_KEY, origin="bad name")


def test_an_empty_ledger_has_no_checkpoint(db_url: str) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        with pytest.raises(ProofUnavailable, match="empty"):
            Checkpointer(engine, LEDGER_KEY).checkpoint()
        assert merkle_log.checkpoint_if_grown(Checkpointer(engine, LEDGER_KEY)) is None
    finally:
        engine.dispose()


def test_checkpoints_are_append_only(ledger: World) -> None:
    Checkpointer(ledger.store.engine, LEDGER_KEY).checkpoint()
    engine = ledger.store.engine
    refused = [
        update(checkpoints).values(root="00" * 32),
        delete(checkpoints),
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    if not is_sqlite(engine):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE checkpoints")
    assert len(merkle_log.all_checkpoints(engine)) == 1


# --- verify and rebuild ----------------------------------------------------------


@pytest.mark.parametrize(
    ("stored_index", "bad_seq", "what"),
    [
        (0, 1, "leaf"),
        (merkle.stored_hash_index(0, 4), 5, "leaf"),
        (merkle.stored_hash_index(1, 1), 4, "subtree"),  # completed by leaf 3 (seq 4)
        (merkle.stored_hash_index(3, 0), 8, "subtree"),  # the root of 8, completed at seq 8
    ],
)
def test_verify_names_the_first_record_whose_tree_hash_differs(
    ledger: World, stored_index: int, bad_seq: int, what: str
) -> None:
    engine = ledger.store.engine
    with engine.begin() as conn:
        conn.execute(
            update(merkle_hashes).where(merkle_hashes.c.id == stored_index).values(hash=bytes(32))
        )
    report = verify_store(ledger.store)
    assert not report.ok and report.bad_seq == bad_seq, report
    assert what in (report.problem or "") and "rledger rebuild" in (report.problem or "")
    rebuild(ledger.store)
    assert verify_store(ledger.store).ok


def test_verify_catches_a_missing_or_extra_tree_row(ledger: World) -> None:
    engine = ledger.store.engine
    with engine.begin() as conn:
        conn.execute(delete(merkle_hashes).where(merkle_hashes.c.id >= 10))
    report = verify_store(ledger.store)
    assert (report.ok, report.bad_seq) == (False, 7), report  # leaf 6 (seq 7) is stored hash 10
    with pytest.raises(merkle_log.TreeBroken, match="rledger rebuild"):
        ledger.create(ledger.orgs["org:collector-a"], "lot:blocked", 1)
    rebuild(ledger.store)
    assert verify_store(ledger.store).ok
    with engine.begin() as conn:  # 8 records: stored hashes 0..14; 15 is one too many
        conn.execute(merkle_hashes.insert().values(id=15, hash=bytes(32)))
    report = verify_store(ledger.store)
    assert not report.ok and "more hashes" in (report.problem or ""), report


def _rewrite_genesis(world: World) -> None:
    """The operator rewrites its own first record (a new display name), re-signs it with
    its own key, fixes the hash column around the triggers, and rebuilds."""
    engine = world.store.engine
    genesis = next(world.store.records())
    doc = json.loads(genesis.canonical)
    doc["body"]["name"] = "Operator (renamed)"
    canonical = canonical_bytes(doc)
    assert parse_envelope(canonical).id == parse_envelope(genesis.canonical).id
    with around_triggers(engine, "records") as conn:
        conn.execute(
            update(records)
            .where(records.c.seq == 1)
            .values(
                canonical=canonical,
                hash=record_hash(canonical),
                sig=sign(world.operator.private_key, canonical),
            )
        )
    rebuild(world.store)


def test_a_rewritten_record_and_a_rebuilt_tree_are_caught_by_the_earlier_checkpoint(
    ledger: World,
) -> None:
    signer = Checkpointer(ledger.store.engine, LEDGER_KEY)
    held = signer.checkpoint()  # what an auditor saw and kept
    _rewrite_genesis(ledger)
    # Everything the operator controls now agrees with itself...
    with ledger.store.engine.connect() as conn:
        new_root = merkle_log.root_at(conn, 8)
        proof = merkle_log.consistency(conn, 8, 8)
    assert new_root == merkle.root_of(leaves_of(ledger)) != merkle.hash_from_hex(held.root)
    # ...but verify compares the log with the checkpoint signed before,
    report = verify_store(ledger.store)
    assert not report.ok and report.bad_seq == 8, report
    assert "changed after it was signed" in (report.problem or "")
    # and so does an auditor holding it: no consistency proof leads to the new root.
    a = ledger.orgs["org:collector-a"]
    ledger.create(a, "lot:after", 1)
    with ledger.store.engine.connect() as conn:
        later_root = merkle_log.root_at(conn, 9)
        proof = merkle_log.consistency(conn, 8, 9)
    assert not merkle.verify_consistency(8, 9, merkle.hash_from_hex(held.root), later_root, proof)


def test_verify_checks_checkpoint_signatures_with_the_ledger_key(ledger: World) -> None:
    Checkpointer(ledger.store.engine, LEDGER_KEY).checkpoint()
    assert verify_store(ledger.store, checkpoint_key=LEDGER_PUB).ok
    other = public_key_bytes(fixed_key("not the ledger").public_key())
    report = verify_store(ledger.store, checkpoint_key=other)
    assert not report.ok and "checkpoint of size 8" in (report.problem or ""), report
    with around_triggers(ledger.store.engine, "checkpoints") as conn:
        conn.execute(update(checkpoints).values(time=1))
    report = verify_store(ledger.store, checkpoint_key=LEDGER_PUB)
    assert not report.ok and "disagree" in (report.problem or ""), report


def test_migration_0004_builds_the_tree_of_an_existing_ledger(ledger: World) -> None:
    """Down to 0003 (no tree), then up again: the tree is computed from the records."""
    root = merkle.root_of(leaves_of(ledger))
    ledger.store.close()
    command.downgrade(alembic_config(ledger.url), "0003")
    with make_engine(ledger.url).connect() as conn:
        assert "merkle_hashes" not in inspect(conn).get_table_names()
    migrate(ledger.url)
    store = Store.open(ledger.url)
    try:
        with store.engine.connect() as conn:
            assert merkle_log.root_at(conn, 8) == root
        assert stored_count(store.engine) == 15
        # Later migrations' projections (EPR outputs, flow_days) come back empty: a
        # rebuild fills them, as their migrations say; then everything verifies.
        rebuild(store)
        with store.engine.connect() as conn:
            assert merkle_log.root_at(conn, 8) == root
        assert verify_store(store).ok
    finally:
        store.close()


# --- the API -----------------------------------------------------------------------


CHECKPOINT = "{ checkpoint { size root note origin time signedAt verifierKey } }"
INCLUSION = """query P($hash: String!, $size: Long!) {
  inclusionProof(hash: $hash, treeSize: $size) { leafIndex treeSize hashes recordHash leafHash }
}"""
CONSISTENCY = """query C($from: Long!, $to: Long!) {
  consistencyProof(from: $from, to: $to) { fromSize toSize hashes }
}"""


def test_the_api_serves_checkpoints_and_proofs_a_client_can_check(ledger: World) -> None:
    api = Api(ledger)
    assert api.ok("org:collector-a", CHECKPOINT) == {"checkpoint": None}  # no key, none signed
    signer = Checkpointer(ledger.store.engine, LEDGER_KEY)
    api.app = create_app(ledger.store, token_ttl=0, checkpointer=signer)
    cp = api.ok("org:collector-b", CHECKPOINT)["checkpoint"]
    checked = verify_checkpoint(cp["note"], LEDGER_PUB, origin=signer.origin)
    size, root = checked.checkpoint.size, checked.checkpoint.root
    assert (cp["size"], cp["root"], cp["time"]) == (8, root.hex(), checked.time)
    assert cp["verifierKey"] == signer.verifier_key and cp["origin"] == signer.origin
    again = api.ok("org:collector-b", CHECKPOINT)["checkpoint"]
    assert again == cp  # nothing new to sign

    record = list(ledger.store.records())[5]  # seq 6: collector-a's first create
    proof = api.ok("org:collector-a", INCLUSION, hash=record.hash, size=size)["inclusionProof"]
    assert proof["leafIndex"] == 5 and proof["treeSize"] == 8 and proof["recordHash"] == record.hash
    leaf = merkle.record_leaf(record.hash)
    assert proof["leafHash"] == leaf.hex()
    assert merkle.verify_inclusion(5, size, leaf, merkle.hashes_from_hex(proof["hashes"]), root)
    # The same hash, upper case, is the same record.
    upper = api.ok("org:collector-a", INCLUSION, hash=record.hash.upper(), size=size)
    assert upper["inclusionProof"] == proof

    # Another collector may not read collector-a's lot: exactly like a missing record.
    assert api.ok("org:collector-b", INCLUSION, hash=record.hash, size=size) == {
        "inclusionProof": None
    }
    assert api.ok("org:collector-b", INCLUSION, hash="ab" * 32, size=size) == {
        "inclusionProof": None
    }

    a = ledger.orgs["org:collector-a"]
    ledger.create(a, "lot:later", 9)
    cp2 = api.ok("org:collector-b", CHECKPOINT)["checkpoint"]
    assert cp2["size"] == 9  # signed on demand: the log grew
    new_root = merkle.hash_from_hex(cp2["root"])
    c = api.ok("org:collector-b", CONSISTENCY, **{"from": 8, "to": 9})["consistencyProof"]
    assert (c["fromSize"], c["toSize"]) == (8, 9)
    assert merkle.verify_consistency(8, 9, root, new_root, merkle.hashes_from_hex(c["hashes"]))


@pytest.mark.parametrize(
    ("query", "variables", "argument", "says"),
    [
        (INCLUSION, {"size": 99}, "treeSize", "beyond the log, which holds 8 records"),
        (INCLUSION, {"size": 3}, "treeSize", "seq 6 is not among the first 3"),
        (CONSISTENCY, {"from": 5, "to": 3}, "from", "logs only grow"),
        (CONSISTENCY, {"from": -1, "to": 3}, "from", "at least 0"),
        (CONSISTENCY, {"from": 1, "to": 99}, "to", "beyond the log"),
    ],
)
def test_sizes_the_log_cannot_serve_are_bad_user_input(
    ledger: World, query: str, variables: dict[str, Any], argument: str, says: str
) -> None:
    api = Api(ledger)
    if query is INCLUSION:
        variables = {**variables, "hash": list(ledger.store.records())[5].hash}
    answer = api.ask("org:collector-a", query, variables)
    assert answer.status == 400 and answer.codes == ["BAD_USER_INPUT"], answer.body
    error = answer.body["errors"][0]
    assert error["extensions"]["argument"] == argument
    assert says in error["message"]


# --- the CLI and the server's schedule ----------------------------------------------

RLEDGER = [sys.executable, "-m", "producers.cli"]


def rledger(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*RLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok and proc.returncode != 0:
        raise AssertionError(f"rledger {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_rledger_checkpoint_signs_prints_and_verify_checks_it(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "l.db"), "--keys", str(tmp_path / "keys")]
    missing = rledger("checkpoint", *db, cwd=tmp_path, ok=False)
    assert missing.returncode != 0 and "rledger init" in missing.stderr
    rledger("init", *db, cwd=tmp_path)
    note = rledger("checkpoint", *db, cwd=tmp_path).stdout
    vkey = rledger("checkpoint", *db, "--verifier-key", cwd=tmp_path).stdout.strip()
    from ledger.checkpoints import parse_verifier_key

    name, public = parse_verifier_key(vkey)
    checked = verify_checkpoint(note, public, origin=name)
    assert checked.checkpoint.size == 1
    assert rledger("checkpoint", *db, cwd=tmp_path).stdout == note  # not grown: the same
    renamed = rledger("checkpoint", *db, "--origin", "example.org/x", cwd=tmp_path, ok=False)
    assert renamed.returncode != 0 and "one log keeps one name" in renamed.stderr
    assert "ok: 1 records" in rledger("verify", *db, cwd=tmp_path).stdout
    nokey = rledger(
        "checkpoint",
        "--db",
        str(tmp_path / "l.db"),
        "--keys",
        str(tmp_path / "x"),
        cwd=tmp_path,
        ok=False,
    )
    assert nokey.returncode != 0 and "no ledger key" in nokey.stderr


def test_serve_signs_checkpoints_on_a_schedule(sqlite_world: World, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_private_key(keys / "ledger.key", LEDGER_KEY)
    collector = sqlite_world.admit("org:collector", ["collector"])
    with running_server(
        sqlite_world.url, extra_args=["--keys", str(keys), "--checkpoint-every", "0.2"]
    ) as server:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not merkle_log.all_checkpoints(
            sqlite_world.store.engine
        ):
            time.sleep(0.1)
        assert [c.size for c in merkle_log.all_checkpoints(sqlite_world.store.engine)] == [3]
        sqlite_world.create(collector, "lot:x", 5)  # written beside the server
        while (
            time.monotonic() < deadline
            and len(merkle_log.all_checkpoints(sqlite_world.store.engine)) < 2
        ):
            time.sleep(0.1)
        sizes = [c.size for c in merkle_log.all_checkpoints(sqlite_world.store.engine)]
        assert sizes == [3, 4], server.tail()
        time.sleep(0.6)  # not grown: no new checkpoint
        assert len(merkle_log.all_checkpoints(sqlite_world.store.engine)) == 2
        assert httpx.get(server.url + "/health").status_code == 200
    for cp in merkle_log.all_checkpoints(sqlite_world.store.engine):
        assert verify_checkpoint(cp.note, LEDGER_PUB).checkpoint.size == cp.size
