"""A writer that can't get the writer lock in time is told Overloaded (retryable),
and nothing of its batch is written; the same batch succeeds once the lock is free."""

from __future__ import annotations

import pytest
from conftest import World, make_world

import ledger.database
import ledger.store
from ledger.errors import Overloaded
from ledger.store import Appended, Store


def _hold_lock_and_append(world: World, store: Store) -> None:
    a = world.admit("org:a")
    record = a.record(
        "create", {"lot": "lot:x", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    )
    before = world.store.last_seq()
    blocker = world.store._write_connection()
    with blocker.begin():
        world.store._lock(blocker)
        with pytest.raises(Overloaded) as info:
            store.append([record])
        assert "retry" in str(info.value)
    blocker.close()
    assert world.store.last_seq() == before
    [result] = store.append([record])
    assert isinstance(result, Appended)


def test_overloaded_on_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.store, "LOCK_TIMEOUT_MS", 200)
    world = make_world(pg_url)
    store = Store.open(pg_url)
    try:
        _hold_lock_and_append(world, store)
    finally:
        store.close()
        world.store.close()


def test_overloaded_on_sqlite(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(sqlite_url)
    monkeypatch.setattr(ledger.database, "BUSY_TIMEOUT_MS", 200)
    store = Store.open(sqlite_url)
    try:
        _hold_lock_and_append(world, store)
    finally:
        store.close()
        world.store.close()
