"""Backup and restore across engines, and of a ledger being written to (issue 8/8).

tests/test_archive.py covers the archive format on one engine at a time (round
trips, every kind of edited archive refused, the CLI on SQLite). This adds:

* across engines, with the CLI (``rledger export`` / ``import`` / ``verify``,
  run through click's runner): a SQLite ledger of 25 client batches and two
  signed checkpoints exported, imported into an empty PostgreSQL database
  (checkpoints pinned to the ledger's verifier key), verified, exported again
  and imported into an empty SQLite file, verified: the same records (seq,
  hash, recorded_at, bytes, signature), the same Merkle root, checkpoints and
  projection rows all the way, and the two archives equal but for the time of
  export;
* a live backup: ``rledger export`` while ``rledger serve`` takes a client's
  batches. The archive is a consistent prefix of the ledger — whole batches
  only, its root the ledger's root at its size — and restored into an empty
  PostgreSQL database and served, it carries on: the client's last archived
  batch sent again answers ``existing: true`` with the same seqs (record ids
  stay idempotency keys across a restore), and a new record is appended
  after it.

``RLEDGER_LONG=1``: 400 batches instead of 25 for the round trip.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import World, fixed_key
from crash_clients import Batch, Workload, forked_server, tally
from postgres_server import create_database, drop_database
from run_length import examples

from ledger.database import database_url
from ledger.merkle_log import Checkpointer, all_checkpoints, root_at
from ledger.store import Appended, Store
from ledger.tokens import issue_token
from producers.cli import main as rledger
from producers.client import LedgerClient, Recorded, TransportError

BATCHES = examples(25, 400)
LEDGER_KEY = fixed_key("ledger")


def cli(*args: str) -> str:
    result = CliRunner().invoke(rledger, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def ledger_rows(store: Store) -> list[tuple[int, str, str, str, bytes]]:
    return [(r.seq, r.hash, r.recorded_at, r.sig, r.canonical) for r in store.records()]


def root(store: Store, size: int | None = None) -> str:
    with store.engine.connect() as conn:
        return root_at(conn, store.last_seq() if size is None else size).hex()


def assert_same(src: Store, dst: Store) -> None:
    assert ledger_rows(dst) == ledger_rows(src)
    assert root(dst) == root(src)
    assert all_checkpoints(dst.engine) == all_checkpoints(src.engine)
    assert dst.projection_rows() == src.projection_rows()


@pytest.fixture
def empty_pg(pg_admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database: no schema (import migrates it)."""
    name = f"restore_{random.randrange(10**9)}"
    url = create_database(pg_admin_url, name)
    yield url
    drop_database(pg_admin_url, name)


def test_sqlite_to_postgres_to_sqlite_with_the_cli(
    sqlite_world: World, empty_pg: str, tmp_path: Path
) -> None:
    world = sqlite_world
    workload = Workload(world.admit("org:backup", ["recycler"]), "lot:b", random.Random(5))
    signer = Checkpointer(world.store.engine, LEDGER_KEY, clock=lambda: 1_780_000_000)
    for n in range(BATCHES):
        batch = workload.next_batch()
        assert all(isinstance(r, Appended) for r in world.append(*batch.records))
        if n in (BATCHES // 2, BATCHES - 1):
            signer.checkpoint()
    vkey = signer.verifier_key
    source_root = root(world.store)
    db = world.url.removeprefix("sqlite:///")

    first = tmp_path / "first.jsonl"
    said = cli("export", "--db", db, "--out", str(first))
    assert f"root {source_root}" in said
    said = cli("import", str(first), "--db", empty_pg, "--verifier-key", vkey, "--processes", "0")
    assert f"root {source_root}" in said
    assert cli("verify", "--db", empty_pg, "--processes", "0").startswith(
        f"ok: {world.store.last_seq()} records verified"
    )
    pg = Store.open(empty_pg)
    try:
        assert_same(world.store, pg)
        second = tmp_path / "second.jsonl"
        cli("export", "--db", empty_pg, "--out", str(second))
    finally:
        pg.close()

    copy = tmp_path / "copy.db"
    cli("import", str(second), "--db", str(copy), "--verifier-key", vkey, "--processes", "0")
    assert cli("verify", "--db", str(copy), "--processes", "0").startswith("ok: ")
    back = Store.open(database_url(str(copy)))
    try:
        assert_same(world.store, back)
    finally:
        back.close()
    a, b = first.read_text().splitlines(), second.read_text().splitlines()
    assert a[1:] == b[1:]
    assert {**json.loads(a[0]), "exported_at": ""} == {**json.loads(b[0]), "exported_at": ""}
    assert json.loads(a[0])["root"] == source_root
    tally(
        "backup -> restore -> verify, same Merkle root",
        tried=2,
        held=2,
        unit="restores",
        note="SQLite -> PostgreSQL -> SQLite with rledger export/import/verify",
    )


class Submitter:
    """A client thread sending one batch after another until told to stop."""

    def __init__(self, url: str, token: str, workload: Workload) -> None:
        self.http = LedgerClient(url, token, timeout=30)
        self.workload = workload
        self.acked: list[tuple[Batch, list[Recorded]]] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.workload.next_batch()
                results = self.http.record(batch.records, atomic=batch.atomic)
                assert all(isinstance(r, Recorded) for r in results), results
                with self.cond:
                    self.acked.append((batch, [r for r in results if isinstance(r, Recorded)]))
                    self.cond.notify_all()
        except (TransportError, AssertionError) as exc:
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def wait_for(self, batches: int) -> None:
        with self.cond:
            assert self.cond.wait_for(
                lambda: len(self.acked) >= batches or self.error is not None, timeout=60
            )
        assert self.error is None, self.error


def test_a_live_backup_restores_and_carries_on(
    sqlite_world: World, empty_pg: str, tmp_path: Path
) -> None:
    world = sqlite_world
    signer = world.admit("org:live", ["recycler"])
    token = issue_token(world.store.engine, signer.actor)
    archive = tmp_path / "live.jsonl"
    with forked_server(world.url, tmp_path) as server:
        client = Submitter(server.url, token, Workload(signer, "lot:l", random.Random(11)))
        client.thread.start()
        client.wait_for(3)
        before = world.store.last_seq()
        cli("export", "--db", world.url, "--out", str(archive))  # while the client writes
        client.wait_for(len(client.acked) + 2)  # it went on writing after the export
        client.stop.set()
        client.thread.join(30)
        client.http.close()
    assert client.error is None, client.error
    header = json.loads(archive.read_text().splitlines()[0])
    size = header["size"]
    assert before <= size < world.store.last_seq()
    assert header["root"] == root(world.store, size)
    # Whole batches only: every acknowledged batch is wholly in the archive, or not at all.
    archived = {json.loads(line)["hash"] for line in archive.read_text().splitlines()[1:]}
    inside = [(b, rs) for b, rs in client.acked if rs[-1].seq <= size]
    for batch, _ in client.acked:
        assert len({h in archived for h in batch.hashes}) == 1, batch.number
    assert inside and len(inside) < len(client.acked)

    cli("import", str(archive), "--db", empty_pg, "--processes", "0")
    assert cli("verify", "--db", empty_pg, "--processes", "0").startswith(f"ok: {size} records")
    store = Store.open(empty_pg)
    try:
        assert root(store) == header["root"]
        token = issue_token(store.engine, signer.actor)  # API tokens are not in an archive
        last_batch, last_results = inside[-1]
        lot = last_batch.lots[1]  # P-na: split off in that batch, touched by no later record
        heads = store.heads([lot])
        with forked_server(empty_pg, tmp_path) as server, LedgerClient(server.url, token) as http:
            again = http.record(last_batch.records, atomic=last_batch.atomic)
            assert [(r.seq, r.hash, r.existing) for r in again if isinstance(r, Recorded)] == [
                (r.seq, r.hash, True) for r in last_results
            ]
            spend = {"lot": lot, "mass_g": 1, "method": "landfill"}
            [new] = http.record([signer.record("dispose", spend, heads)])
        assert isinstance(new, Recorded) and not new.existing and new.seq == size + 1
        assert new.hash == store.heads([lot])[lot]
    finally:
        store.close()
    tally(
        "backup -> restore -> verify, same Merkle root",
        tried=1,
        held=1,
        unit="restores",
        note="exported while a client wrote (SQLite), restored into PostgreSQL and served",
    )
