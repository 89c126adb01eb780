"""kill -9 of the server while clients submit batches over HTTP, on SQLite and PostgreSQL.

Two client threads, each with its own organisation, token and chain of batches
(tests/crash_clients.py ``Workload``: batch n creates a lot and splits it, and
disposes of part of a lot batch n-1 split off — so a batch depends on the one
before; odd batches are atomic), submit one batch after another to ``rledger
serve``. At a random point — after a random number of acknowledged batches,
plus a random delay of up to one and a half times a batch's round trip, so the
kill falls before, inside or after a commit — the test sends SIGKILL to the
server's whole process group. Then, with the server dead, straight from the
database:

* every record a client was acknowledged (``Recorded``) is there, with the
  seq and hash it was told;
* each batch that was in flight is there entirely or not at all — its records
  and the lots it creates (the projections), and ``verify_store`` (which
  replays the log and compares every projection row) passes;
* no id is stored twice, and the ledger holds exactly the acknowledged
  records plus the in-flight batches that made it.

The server is restarted and each client sends its in-flight batch again,
unchanged (same ids, same bytes): every record answers ``Recorded`` — with
``existing: true`` exactly when the batch had been committed before the kill
(its answer was lost), so a retry never duplicates — and the client carries
on. Every third kill is placed, not drawn: the server is killed as soon as a
batch is in the database, before the client reads the answer, so each run
covers a lost answer. Each kill is one tally; the note counts where the kills
landed.

``RLEDGER_LONG=1``: 120 kills per engine (CI: 6), and 40 during WAL
checkpoints (CI: 3).
"""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner
from conftest import World
from crash_clients import Batch, ForkedServer, Workload, start_server, tally
from run_length import examples
from sqlalchemy import func, select

from ledger.tables import lots, records
from ledger.tokens import issue_token
from ledger.verify import verify_store
from producers.cli import main as rledger
from producers.client import LedgerClient, Overloaded, Recorded, TransportError

KILLS = examples(6, 120)
CHECKPOINT_KILLS = examples(3, 40)


@dataclass
class Client:
    """One submitting client: its workload, what it was told, and its batch in flight."""

    workload: Workload
    token: str
    acked: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (seq, hash)
    batches: int = 0  # acknowledged
    pending: Batch | None = None  # sent, no answer
    pending_stored: bool | None = None  # what the database showed after the kill
    error: BaseException | None = None


@dataclass
class Landed:
    committed_unanswered: int = 0  # the batch was in the ledger, its answer lost
    before_commit: int = 0  # the batch was not in the ledger
    between_batches: int = 0  # no batch in flight at that client


class Run:
    """The clients of one engine and the kill loop."""

    def __init__(self, world: World, log_dir: Path, seed: int) -> None:
        self.world = world
        self.log_dir = log_dir
        self.rng = random.Random(seed)
        self.clients: list[Client] = []
        for i in range(2):
            signer = world.admit(f"org:crash{i}", ["recycler"])
            workload = Workload(signer, f"lot:k{i}", random.Random(seed * 10 + i))
            self.clients.append(Client(workload, issue_token(world.store.engine, signer.actor)))
        self.base = world.store.last_seq()
        self.cond = threading.Condition()
        self.acked_batches = 0
        self.round_trip = 0.05  # seconds, re-estimated from the answers
        self.landed = Landed()

    # -- the client threads

    def _submit(self, client: Client, http: LedgerClient, batch: Batch, retry: bool) -> None:
        client.pending = batch
        while True:
            try:
                results = http.record(batch.records, atomic=batch.atomic)
                break
            except Overloaded as exc:  # 429/503 before the batch was looked at: send it again
                _pause(exc.retry_after or 0.05)
        assert all(isinstance(r, Recorded) for r in results), results
        answered = [r for r in results if isinstance(r, Recorded)]
        assert [r.id for r in answered] == batch.ids
        assert [r.hash for r in answered] == batch.hashes
        if retry:
            # The retry finds the whole batch stored (existing), or none of it (written now),
            # as the database showed with the server dead.
            assert [r.existing for r in answered] == [client.pending_stored] * len(answered)
        else:
            assert not any(r.existing for r in answered)
        client.pending = client.pending_stored = None
        for r in answered:
            client.acked[r.id] = (r.seq, r.hash)
        with self.cond:
            client.batches += 1
            self.acked_batches += 1
            self.cond.notify_all()

    def _client_loop(self, client: Client, url: str) -> None:
        try:
            with LedgerClient(url, client.token, timeout=30) as http:
                if client.pending is not None:
                    self._submit(client, http, client.pending, retry=True)
                while True:
                    batch = client.workload.next_batch()
                    t0 = _now()
                    self._submit(client, http, batch, retry=False)
                    self.round_trip = 0.8 * self.round_trip + 0.2 * (_now() - t0)
        except TransportError:
            pass  # the server was killed: client.pending is the batch in flight
        except BaseException as exc:
            client.error = exc
        finally:
            with self.cond:
                self.cond.notify_all()

    # -- one kill

    def kill_once(self, checkpoint_db: str | None = None) -> bool:
        server = start_server(self.world.url, self.log_dir, checkpoint_db=checkpoint_db)
        try:
            threads = [
                threading.Thread(target=self._client_loop, args=(c, server.url), daemon=True)
                for c in self.clients
            ]
            start = self.acked_batches
            target = start + len(self.clients) + self.rng.randrange(0, 6)
            for t in threads:
                t.start()
            with self.cond:
                self.cond.wait_for(
                    lambda: (
                        self.acked_batches >= target
                        or any(c.error is not None for c in self.clients)
                    ),
                    timeout=60,
                )
            self._raise_client_errors(server)
            assert self.acked_batches >= target, "the clients made no progress"
            # The random point: somewhere in the next batch's life (or just after it).
            _pause(self.rng.uniform(0, 1.5 * self.round_trip))
        finally:
            server.kill9()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        self._raise_client_errors(server)
        return self.check_after_kill()

    def kill_after_commit(self) -> bool:
        """The answer lost for sure: the first client's next batch is sent, and the server
        is killed as soon as the batch is in the database (the client never reads the
        answer). The retry must answer every record ``existing: true``."""
        server = start_server(self.world.url, self.log_dir)
        client = self.clients[0]
        batch = client.pending or client.workload.next_batch()
        client.pending = batch
        http = LedgerClient(server.url, client.token, timeout=30)
        sender = threading.Thread(target=_send_ignoring_answer, args=(http, batch), daemon=True)
        try:
            sender.start()
            deadline = _now() + 30
            while not self.lots_present(batch.lots[:1]) and _now() < deadline:
                _pause(0.002)  # polling the database: the server has no event to wait on
        finally:
            server.kill9()
            sender.join(30)
            http.close()
        assert self.lots_present(batch.lots[:1]), "the batch was never committed"
        before = self.landed.committed_unanswered
        self.check_after_kill(in_flight=[client])
        assert self.landed.committed_unanswered == before + 1
        return True

    def _raise_client_errors(self, server: ForkedServer) -> None:
        for c in self.clients:
            if c.error is not None:
                raise AssertionError(f"client failed: {c.error!r}\n{server.log()[-3000:]}")

    # -- what must hold with the server dead

    def check_after_kill(self, in_flight: list[Client] | None = None) -> bool:
        """``in_flight``: the clients whose batch was sent at this kill (default: all)."""
        counted = self.clients if in_flight is None else in_flight
        store = self.world.store
        stored = self.stored()
        for c in self.clients:
            for rid, seq_hash in c.acked.items():
                assert stored.get(rid) == seq_hash, f"acknowledged record {rid} lost or changed"
        expected = sum(len(c.acked) for c in self.clients)
        for c in self.clients:
            if c.pending is None:
                self.landed.between_batches += c in counted
                continue
            present = [rid in stored for rid in c.pending.ids]
            assert len(set(present)) == 1, f"batch {c.pending.number} is partly stored: {present}"
            c.pending_stored = present[0]
            made = self.lots_present(c.pending.lots)
            if present[0]:
                assert made == set(c.pending.lots), "records without their lots"
                assert [stored[i][1] for i in c.pending.ids] == c.pending.hashes
                self.landed.committed_unanswered += c in counted
                expected += len(c.pending.ids)
            else:
                assert made == set(), f"lots without their records: {made}"
                self.landed.before_commit += c in counted
        with store.engine.connect() as conn:
            count, distinct = conn.execute(
                select(func.count(), func.count(func.distinct(records.c.id))).where(
                    records.c.seq > self.base
                )
            ).one()
        assert count == distinct == expected, (count, distinct, expected)
        assert store.last_seq() == self.base + expected
        report = verify_store(store)
        assert report.ok, str(report)
        return True

    def stored(self) -> dict[str, tuple[int, str]]:
        with self.world.store.engine.connect() as conn:
            rows = conn.execute(
                select(records.c.id, records.c.seq, records.c.hash).where(records.c.seq > self.base)
            ).all()
        return {r.id: (int(r.seq), r.hash) for r in rows}

    def lots_present(self, lot_ids: list[str]) -> set[str]:
        with self.world.store.engine.connect() as conn:
            return set(conn.execute(select(lots.c.id).where(lots.c.id.in_(lot_ids))).scalars())

    def finish(self) -> None:
        """Restart once more: every in-flight batch is retried and acknowledged."""
        server = start_server(self.world.url, self.log_dir)
        try:
            for c in self.clients:
                if c.pending is not None:
                    with LedgerClient(server.url, c.token, timeout=30) as http:
                        self._submit(c, http, c.pending, retry=True)
        finally:
            server.kill9()
        stored = self.stored()
        acked = {rid: sh for c in self.clients for rid, sh in c.acked.items()}
        made = sum(c.workload.made for c in self.clients)
        assert stored == acked  # every batch made was acknowledged in the end, nothing else
        assert sum(c.batches for c in self.clients) == made


def _now() -> float:
    import time

    return time.monotonic()


def _pause(seconds: float) -> None:
    """The random delay that places the kill: a point in time, not a synchronisation."""
    threading.Event().wait(seconds)


def _send_ignoring_answer(http: LedgerClient, batch: Batch) -> None:
    with contextlib.suppress(TransportError):
        http.record(batch.records, atomic=batch.atomic)


def _cli_verify(url: str) -> None:
    result = CliRunner().invoke(rledger, ["verify", "--db", url, "--processes", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_kill_9_mid_batch_loses_no_acknowledged_record(
    world: World, db_url: str, tmp_path: Path
) -> None:
    engine = "SQLite" if db_url.startswith("sqlite") else "PostgreSQL"
    run = Run(world, tmp_path, seed=9 if engine == "SQLite" else 99)
    held = 0
    for n in range(KILLS):
        # Every third kill waits for the commit: the lost answer is covered in every run.
        held += run.kill_after_commit() if n % 3 == 2 else run.kill_once()
    run.finish()
    _cli_verify(world.url)
    records_made = sum(len(c.acked) for c in run.clients)
    landed = run.landed
    tally(
        f"kill -9 of the server mid-batch ({engine})",
        tried=KILLS,
        held=held,
        unit="kills",
        note=(
            f"{records_made:,} records in {sum(c.batches for c in run.clients)} batches from 2 "
            f"clients; in flight at a kill: {landed.committed_unanswered} committed but "
            f"unanswered (retry: existing), {landed.before_commit} not committed (retry: "
            "written); 0 acknowledged records lost, 0 partial batches, 0 duplicates"
        ),
    )
    assert held == KILLS


def test_kill_9_during_wal_checkpoints(sqlite_world: World, tmp_path: Path) -> None:
    """The same, on SQLite, with a process in the server's group running WAL checkpoints
    (PASSIVE/FULL/RESTART/TRUNCATE) back to back: the kill also lands mid-checkpoint."""
    run = Run(sqlite_world, tmp_path, seed=4242)
    db_path = sqlite_world.url.removeprefix("sqlite:///")
    held = 0
    for _ in range(CHECKPOINT_KILLS):
        held += run.kill_once(checkpoint_db=db_path)
    run.finish()
    _cli_verify(sqlite_world.url)
    tally(
        "kill -9 of the server during WAL checkpoints (SQLite)",
        tried=CHECKPOINT_KILLS,
        held=held,
        unit="kills",
        note="a checkpointer in the server's process group, killed with it",
    )
    assert held == CHECKPOINT_KILLS
