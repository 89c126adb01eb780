"""Two writers spending the same lot at once: exactly one wins, the other is
told "conflict"; the lot never goes below zero and its chain never forks."""

from __future__ import annotations

import threading

import pytest
from conftest import World, make_world

from ledger.errors import RecordRefused
from ledger.store import Appended, Result, Signed, Store
from ledger.verify import verify_store


def _writer(
    barrier: threading.Barrier, store: Store, record: Signed, results: list[Result | None], i: int
) -> None:
    barrier.wait()
    results[i] = store.append([record])[0]


def _race(world: World, url: str, rounds: int) -> None:
    a = world.admit("org:a", ["recycler"])
    for n in range(rounds):
        lot = f"lot:r{n}"
        world.create(a, lot, 1_000)
        heads = world.heads(lot)
        # Both writers read the same head and try to spend 800 g of 1000 g.
        records = [
            a.record("dispose", {"lot": lot, "mass_g": 800, "method": "landfill"}, heads),
            a.record(
                "transform",
                {
                    "process": "shredding",
                    "inputs": [{"lot": lot, "mass_g": 800}],
                    "outputs": [{"lot": f"{lot}-out", "material": "steel.shredded", "mass_g": 800}],
                    "loss_g": 0,
                },
                heads,
            ),
        ]
        stores = [Store.open(url), Store.open(url)]
        results: list[Result | None] = [None, None]
        barrier = threading.Barrier(2)

        threads = [
            threading.Thread(target=_writer, args=(barrier, stores[i], records[i], results, i))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
        winners = [r for r in results if isinstance(r, Appended)]
        losers = [r for r in results if isinstance(r, RecordRefused)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert losers[0].code == "conflict"
        state = world.store.lot(lot)
        assert state is not None and state.remaining_g == 200
        assert state.head == winners[0].hash
    report = verify_store(world.store)
    assert report.ok, str(report)


@pytest.mark.postgres
def test_two_writers_same_lot_postgres(pg_url: str) -> None:
    world = make_world(pg_url)
    try:
        _race(world, pg_url, rounds=15)
    finally:
        world.store.close()


def test_two_writers_same_lot_sqlite(sqlite_url: str) -> None:
    world = make_world(sqlite_url)
    try:
        _race(world, sqlite_url, rounds=10)
    finally:
        world.store.close()
