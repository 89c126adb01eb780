"""``rledger audit`` (producers/audit.py): an auditor holding an earlier checkpoint catches an
operator who rewrites history, on SQLite and PostgreSQL.

The scenario: a collector records five lots (seq 4..8 after the genesis and its admission);
the auditor audits (pins the ledger's verifier key and keeps the checkpoint of 8 records);
a sixth lot comes; the auditor audits again (a consistency proof from 8 to 9 verifies). Then
the operator, acting as a malicious operator would, rewrites lot:c1's create (seq 4: 1,000 g
becomes 1,001 g) straight in the database — around the append-only triggers — fixes the hash
column and rebuilds the Merkle tree, so that everything the server serves agrees with itself:

- it signs a new checkpoint after one more record (10 records): no consistency proof leads
  from the held root of 9 to it (the first 9 leaves changed) -> "HISTORY REWRITTEN";
- it deletes its checkpoints and signs the same 9 records again: the same size, another
  root -> caught;
- it deletes the last records and signs a smaller tree -> caught (a log never shrinks).

Each time the auditor exits non-zero, keeps the checkpoint it held, and shows both signed
notes: two statements by the ledger's key that can't both be true.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner
from conftest import World, fixed_key
from operator_tampering import around_triggers
from server_process import running_server
from sqlalchemy import delete, update

from ledger import merkle_log
from ledger.canonical import canonical_bytes
from ledger.checkpoints import verify_checkpoint
from ledger.merkle_log import Checkpointer
from ledger.signing import public_key_bytes, record_hash
from ledger.tables import checkpoints, ledger_meta, records
from ledger.tokens import issue_token
from producers.audit import AuditFailure, audit, load_state
from producers.cli import main
from producers.client import LedgerClient
from producers.keyfiles import write_private_key
from schema.app import create_app

LEDGER_KEY = fixed_key("ledger")
LEDGER_PUB = public_key_bytes(LEDGER_KEY.public_key())
URL = "http://ledger.test"


def asgi_client(app: Any, token: str) -> LedgerClient:
    """The SDK's synchronous client over the ASGI app: each request runs through httpx's ASGI
    transport on an event loop of its own (the tests are synchronous)."""

    def handle(request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=URL) as c:
                got = await c.request(
                    request.method, request.url, headers=request.headers, content=request.content
                )
                return httpx.Response(got.status_code, headers=got.headers, content=got.content)

        return anyio.run(send)

    http = httpx.Client(transport=httpx.MockTransport(handle), base_url=URL)
    return LedgerClient(token=token, client=http)


def rewrite_create(world: World, seq: int) -> None:
    """One gram more in the create at ``seq``, written over the stored record, its hash
    column fixed, and the tree rebuilt from the records: the server agrees with itself."""
    engine = world.store.engine
    rec = next(r for r in world.store.records() if r.seq == seq)
    doc = json.loads(rec.canonical)
    doc["body"]["mass_g"] += 1
    canonical = canonical_bytes(doc)
    with around_triggers(engine, "records") as conn:
        conn.execute(
            update(records)
            .where(records.c.seq == seq)
            .values(canonical=canonical, hash=record_hash(canonical))
        )
    merkle_log.rebuild_tree(engine)


def drop_checkpoints(world: World) -> None:
    with around_triggers(world.store.engine, "checkpoints") as conn:
        conn.execute(delete(checkpoints))


def truncate_log(world: World, size: int) -> None:
    """Drop every record after ``size`` (and the checkpoints), then rebuild the tree."""
    engine = world.store.engine
    with around_triggers(engine, "records") as conn:
        conn.execute(delete(records).where(records.c.seq > size))
        conn.execute(update(ledger_meta).values(seq=size))
    drop_checkpoints(world)
    merkle_log.rebuild_tree(engine)


@pytest.fixture
def ledger(world: World) -> tuple[World, LedgerClient, Checkpointer]:
    c = world.admit("org:collector", ["collector"])
    for i in range(1, 6):
        world.create(c, f"lot:c{i}", 1_000 * i)
    assert world.store.last_seq() == 8
    signer = Checkpointer(world.store.engine, LEDGER_KEY)
    app = create_app(world.store, token_ttl=0, checkpointer=signer)
    token = issue_token(world.store.engine, "org:collector", label="auditor")
    return world, asgi_client(app, token), signer


def test_an_auditor_catches_a_rewritten_record_and_a_rebuilt_tree(
    ledger: tuple[World, LedgerClient, Checkpointer], tmp_path: Path
) -> None:
    world, client, signer = ledger
    state = tmp_path / "audit.json"
    first = audit(client, URL, state, signer.verifier_key)
    assert first.before is None and first.now.size == 8
    assert "the first this auditor holds" in first.summary()
    world.create(world.orgs["org:collector"], "lot:c6", 6_000)
    second = audit(client, URL, state)  # the key is pinned now
    assert (second.before, second.now.size) == (first.now, 9)
    assert "consistent with the 8 records" in second.summary()
    assert audit(client, URL, state).summary().endswith(f"unchanged since {second.now.checked_at}")
    held = load_state(state)
    assert [(e.size, e.root) for e in held] == [(9, second.now.root)]

    rewrite_create(world, 4)
    # Everything the server serves now agrees with itself: the stored tree is the tree of
    # the rewritten records. The checkpoint of 9 still stored is the old one, so:
    world.create(world.orgs["org:collector"], "lot:c7", 7_000)  # the log grows
    with pytest.raises(AuditFailure) as caught:
        audit(client, URL, state)
    reason = caught.value.reason
    assert reason.startswith("HISTORY REWRITTEN: the ledger's tree of 10 records does not extend")
    assert f"the tree of 9 records it signed before (root {second.now.root}" in reason
    old, new = (verify_checkpoint(n, LEDGER_PUB) for n in caught.value.evidence)
    assert (old.checkpoint.size, new.checkpoint.size) == (9, 10)  # both signed by the ledger
    assert load_state(state) == held  # the evidence is kept, not overwritten

    drop_checkpoints(world)  # the operator hides the checkpoint of 10 and signs 9 again?
    truncate_log(world, 9)
    with pytest.raises(AuditFailure, match="two different roots signed for the same 9 records"):
        audit(client, URL, state)
    truncate_log(world, 8)
    with pytest.raises(AuditFailure, match="tree of 8 records, but signed one of 9 before"):
        audit(client, URL, state)
    assert load_state(state) == held


def test_audit_refuses_what_it_cannot_check(
    ledger: tuple[World, LedgerClient, Checkpointer], tmp_path: Path
) -> None:
    world, client, signer = ledger
    state = tmp_path / "audit.json"
    with pytest.raises(AuditFailure, match="no verifier key pinned for this ledger yet"):
        audit(client, URL, state)
    other = Checkpointer(world.store.engine, fixed_key("not the ledger")).verifier_key
    with pytest.raises(AuditFailure, match="does not verify with the pinned key"):
        audit(client, URL, state, other)
    assert not state.exists()
    audit(client, URL, state, signer.verifier_key)
    with pytest.raises(AuditFailure, match="pins another verifier key"):
        audit(client, URL, state, other)
    state.write_text('{"not": "ours"}')
    with pytest.raises(AuditFailure, match="is not an rledger audit file"):
        audit(client, URL, state)
    assert state.read_text() == '{"not": "ours"}'


def test_rledger_audit_over_http(sqlite_world: World, tmp_path: Path) -> None:
    """The CLI against `rledger serve` in a subprocess (SQLite)."""
    world = sqlite_world
    keys = tmp_path / "keys"
    write_private_key(keys / "ledger.key", LEDGER_KEY)
    c = world.admit("org:collector", ["collector"])
    world.create(c, "lot:a", 1_000)
    vkey = Checkpointer(world.store.engine, LEDGER_KEY).verifier_key
    (tmp_path / "ledger.vkey").write_text(vkey + "\n")
    token = issue_token(world.store.engine, "org:collector", label="auditor")
    state = tmp_path / "audit.json"
    run = CliRunner().invoke
    with running_server(world.url, extra_args=["--keys", str(keys)]) as server:
        args = ["audit", "--url", server.url, "--state", str(state)]
        env = {"RLEDGER_TOKEN": token}
        unpinned = run(main, args, env=env)
        assert unpinned.exit_code == 1 and "pass --verifier-key" in unpinned.stderr
        pin = run(main, [*args, "--verifier-key", str(tmp_path / "ledger.vkey")], env=env)
        assert pin.exit_code == 0 and pin.stdout.startswith("ok: checkpoint of 4 records")
        world.create(c, "lot:b", 2_000)
        grew = run(main, args, env=env)
        assert grew.exit_code == 0 and "consistent with the 4 records" in grew.stdout
        rewrite_create(world, 4)
        world.create(c, "lot:c", 3_000)
        caught = run(main, args, env=env)
        assert caught.exit_code == 1, caught.output
        assert "FAILED: HISTORY REWRITTEN" in caught.stderr
        assert caught.stderr.count("evidence (a note signed by the ledger's key)") == 2
        notoken = run(main, args, env={"RLEDGER_TOKEN": ""})
        assert notoken.exit_code == 2 and "needs a token" in notoken.output
    assert run(main, ["audit", "--help"]).exit_code == 0
