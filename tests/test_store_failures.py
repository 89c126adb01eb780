"""A database failure in the middle of a write: the caller gets StoreUnavailable
(retryable), nothing of the batch is kept, and the same batch then succeeds."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import World

import ledger.store
from ledger.errors import StoreUnavailable
from ledger.store import Appended


def _batch(world: World) -> list[Any]:
    a = world.admit("org:a")
    world.create(a, "lot:x", 1_000)
    return [
        a.record(
            "create", {"lot": "lot:y", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
        ),
        a.record(
            "dispose", {"lot": "lot:x", "mass_g": 10, "method": "landfill"}, world.heads("lot:x")
        ),
    ]


def test_a_dropped_connection_mid_write_keeps_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(world)
    before = (world.store.last_seq(), world.store.projection_rows())
    real = ledger.store.write_projections

    def failing(conn: Any, *args: Any, **kwargs: Any) -> None:
        real(conn, *args, **kwargs)  # the records and projections are written ...
        if conn.dialect.name == "postgresql":  # ... then the server drops the session
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        else:  # ... then the database fails: SQLite at its size limit ("database or disk is full")
            conn.exec_driver_sql("PRAGMA max_page_count = 1")  # clamps to the current size
            conn.exec_driver_sql("CREATE TABLE filler (x BLOB)")
            conn.exec_driver_sql("INSERT INTO filler VALUES (zeroblob(1000000))")

    monkeypatch.setattr(ledger.store, "write_projections", failing)
    with pytest.raises(StoreUnavailable) as info:
        world.store.append(batch)
    assert "retry" in str(info.value)
    assert (world.store.last_seq(), world.store.projection_rows()) == before

    monkeypatch.setattr(ledger.store, "write_projections", real)
    world.store.engine.dispose()  # new connections: none keeps the size limit
    results = world.store.append(batch)
    assert all(isinstance(r, Appended) and not r.existing for r in results)
    lot = world.store.lot("lot:x")
    assert lot is not None and lot.remaining_g == 990
