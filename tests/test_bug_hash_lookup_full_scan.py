"""Regression: looking a record up by hash scanned the whole records table.

The query said ``substr(hash, 1, 16) = :p AND hash = :h``; SQLite's constant
propagation rewrote the indexed expression into a constant and dropped the
index. Lookups now filter by the prefix in SQL and by the full hash in Python
(ledger.tables.by_hash_prefix).
"""

from __future__ import annotations


def test_records_are_found_by_hash_through_the_prefix_index(db_url: str) -> None:
    """The hash is looked up through ix_records_hash16 (no UNIQUE index on 64 hex digits)."""
    from conftest import make_world
    from sqlalchemy import select

    from ledger.tables import by_hash_prefix, records

    world = make_world(db_url)
    try:
        engine = world.store.engine
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                names = {
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT name FROM sqlite_master WHERE type='index'"
                    )
                }
                plan = " ".join(
                    str(r[-1])
                    for r in conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN SELECT seq FROM records "
                        "WHERE substr(hash, 1, 16) IN ('abc', 'def')"
                    )
                )
                assert "ix_records_hash16" in plan
            else:
                names = {
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT indexname FROM pg_indexes WHERE tablename='records'"
                    )
                }
            assert "ix_records_hash16" in names
            first = next(world.store.records())
            found = conn.execute(
                select(records.c.seq, records.c.hash).where(by_hash_prefix([first.hash]))
            )
            assert [tuple(r) for r in found] == [(1, first.hash)]
            assert world.store.past_record(first.hash) is not None
            assert world.store.past_record("0" * 64) is None
    finally:
        world.store.close()
