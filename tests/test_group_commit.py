"""Group commit (ledger/store.py, ``Store.commit``): batches that queue for the writer are
committed together in one transaction, and each gets exactly what it would have had alone.

The tests hold the writer lock themselves so that three batches are sure to queue, then let
go: the first thread to take the lock commits all three.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import World
from sqlalchemy import event, text

from ledger.envelope import parse_envelope
from ledger.errors import RecordRefused, StoreUnavailable
from ledger.store import Appended, Result, Signed, Store, WriterStats


def _hash(record: Signed) -> str:
    return parse_envelope(record.envelope).hash


def _queued(store: Store, batches: list[list[Signed]]) -> list[list[Result] | BaseException]:
    """Commit each batch from its own thread while the test holds the writer lock; the
    batches queue in list order; then let go. Each thread's results, or its error."""
    out: list[list[Result] | BaseException] = [[] for _ in batches]

    def run(k: int) -> None:
        try:
            out[k] = store.commit(store.prepare(batches[k]))
        except BaseException as exc:  # the test looks at it
            out[k] = exc

    threads = []
    with store._commit_lock:
        for k in range(len(batches)):
            t = threading.Thread(target=run, args=(k,))
            t.start()
            threads.append(t)
            deadline = time.monotonic() + 10
            while len(store._queue) < k + 1:  # queued in order
                assert time.monotonic() < deadline, "a batch never queued"
                time.sleep(0.001)
    for t in threads:
        t.join(30)
    return out


def _transactions(store: Store) -> list[int]:
    """A counter of commits on the store's engine."""
    count = [0]

    def on_commit(_conn: Any) -> None:
        count[0] += 1

    event.listen(store.engine, "commit", on_commit)
    return count


def test_queued_batches_commit_in_one_transaction_with_the_answers_each_would_get_alone(
    world: World,
) -> None:
    a = world.admit("org:a")
    b = world.admit("org:b")
    first_seq = world.store.last_seq()
    create = a.record(
        "create",
        {"lot": "lot:g1", "material": "steel.hms1", "mass_g": 1_000, "origin": "post_consumer"},
    )
    other = b.record(
        "create",
        {"lot": "lot:g2", "material": "steel.hms1", "mass_g": 500, "origin": "post_consumer"},
    )
    # Batch 2 spends the lot batch 1 creates, and repeats batch 1's record (same bytes).
    spend = a.record(
        "dispose",
        {"lot": "lot:g1", "mass_g": 1_000, "method": "landfill"},
        {"lot:g1": _hash(create)},
    )
    # Batch 3 reuses batch 1's id with other bytes, and holds a record the rules refuse.
    clash = a.record(
        "create",
        {"lot": "lot:g3", "material": "steel.hms1", "mass_g": 9, "origin": "post_consumer"},
        record_id=parse_envelope(create.envelope).id,
    )
    overspend = b.record(
        "dispose", {"lot": "lot:g2", "mass_g": 600, "method": "landfill"}, {"lot:g2": _hash(other)}
    )
    commits = _transactions(world.store)
    got = _queued(world.store, [[create, other], [spend, create], [clash, overspend]])

    assert commits[0] == 1  # one transaction for the three batches
    one, two, three = got
    assert isinstance(one, list) and isinstance(two, list) and isinstance(three, list)
    assert [(r.seq, r.existing) for r in one if isinstance(r, Appended)] == [
        (first_seq + 1, False),
        (first_seq + 2, False),
    ]
    assert isinstance(two[0], Appended) and (two[0].seq, two[0].existing) == (first_seq + 3, False)
    assert isinstance(two[1], Appended) and (two[1].seq, two[1].existing) == (first_seq + 1, True)
    assert isinstance(three[0], RecordRefused) and three[0].code == "id.reused"
    assert three[0].path == "id"
    assert isinstance(three[1], RecordRefused) and three[1].code == "mass.insufficient"
    assert world.store.last_seq() == first_seq + 3
    lot = world.store.lot("lot:g1")
    assert lot is not None and lot.remaining_g == 0


def test_a_failed_group_fails_every_batch_in_it_and_keeps_nothing(world: World) -> None:
    a = world.admit("org:a")
    before = (world.store.last_seq(), world.store.projection_rows())
    records = [
        a.record(
            "create",
            {"lot": f"lot:f{n}", "material": "steel.hms1", "mass_g": 10, "origin": "post_consumer"},
        )
        for n in range(3)
    ]
    poisoned = parse_envelope(records[2].envelope).id
    with world.store.engine.begin() as conn:  # the database refuses the third batch's row
        if world.store.engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON records WHEN NEW.id = :id "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned'); END".replace(":id", f"'{poisoned}'")
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.id = '{poisoned}' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )
    got = _queued(world.store, [[r] for r in records])
    assert all(isinstance(g, StoreUnavailable) for g in got), got
    assert (world.store.last_seq(), world.store.projection_rows()) == before
    with world.store.engine.begin() as conn:
        conn.execute(
            text(
                "DROP TRIGGER poison"
                + ("" if world.store.engine.dialect.name == "sqlite" else " ON records")
            )
        )
    # Retried one by one, the first two are written; the store's caches were not left stale.
    results = [world.store.append([r])[0] for r in records]
    assert [isinstance(r, Appended) for r in results] == [True, True, True]


def test_an_atomic_batch_is_committed_alone(world: World) -> None:
    a = world.admit("org:a")
    good = a.record(
        "create",
        {"lot": "lot:x1", "material": "steel.hms1", "mass_g": 10, "origin": "post_consumer"},
    )
    bad = a.record(
        "dispose", {"lot": "lot:nope", "mass_g": 1, "method": "landfill"}, {"lot:nope": "0" * 64}
    )
    results = world.store.append([good, bad], atomic=True)
    assert [r.code for r in results if isinstance(r, RecordRefused)] == [
        "batch.aborted",
        "lot.unknown",
    ]
    assert world.store.lot("lot:x1") is None and not world.store._queue


@pytest.mark.parametrize("n", [1, 4])
def test_a_lone_batch_still_commits_at_once(world: World, n: int) -> None:
    a = world.admit("org:a")
    seq = world.store.last_seq()
    records = [
        a.record(
            "create",
            {"lot": f"lot:l{k}", "material": "steel.hms1", "mass_g": 10, "origin": "post_consumer"},
        )
        for k in range(n)
    ]
    results = world.store.append(records)
    assert [r.seq for r in results if isinstance(r, Appended)] == list(range(seq + 1, seq + n + 1))
    assert not world.store._queue


def test_the_writer_counts_what_it_did(world: World) -> None:
    """WriterStats: what ``rledger serve`` logs when it stops (docs/performance.md)."""
    a = world.admit("org:a")
    before = world.store.writer_stats()
    batches = [
        [
            a.record(
                "create",
                {
                    "lot": f"lot:w{n}",
                    "material": "steel.hms1",
                    "mass_g": 10,
                    "origin": "post_consumer",
                },
            )
        ]
        for n in range(3)
    ]
    _queued(world.store, batches)
    world.store.append(batches[0])  # answered as stored: counted as a batch, not a record
    after = world.store.writer_stats()
    assert (after.transactions - before.transactions, after.batches - before.batches) == (2, 4)
    assert after.records - before.records == 3
    assert after.lock_cpu_seconds - before.lock_cpu_seconds > 0
    assert after.lock_seconds > before.lock_seconds
    text = after.describe()
    assert f"{after.records:,} records from {after.batches:,} batches" in text


def test_a_writer_line_reads_back() -> None:
    """national.py reads the servers' logged lines back with WriterStats.parse_all."""
    stats = WriterStats(681, 952, 200_000, 62.84, 50.41)
    [back] = WriterStats.parse_all(f"INFO: rledger.writer: {stats.describe()}\nother line\n")
    assert (back.transactions, back.batches, back.records) == (681, 952, 200_000)
    assert (back.lock_seconds, back.lock_cpu_seconds) == (62.8, 50.4)  # as logged, 0.1 s
