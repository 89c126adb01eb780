"""Regression: every lookup by hash scanned the whole records table.

``by_hash_prefix`` wrote ``func.substr(records.c.hash, 1, 16)``, which
SQLAlchemy sends as ``substr(records.hash, ?, ?)`` with 1 and 16 bound as
parameters. A planner matches an expression index only to the very same
expression, so ix_records_hash16 went unused: at 100,000 records a page of
100 lots with their head events took 120 ms, nearly all of it one scan.
The earlier regression test (test_bug_hash_lookup_full_scan.py) explained a
hand-written query; this one captures the statement the store really sends
and explains that, with its parameters, on both engines.
"""

from __future__ import annotations

from typing import Any

from conftest import World
from sqlalchemy import event


def test_the_statement_sent_for_a_hash_lookup_uses_the_prefix_index(world: World) -> None:
    engine = world.store.engine
    first = next(world.store.records())
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        if "substr" in statement:
            sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert world.store.past_record(first.hash) is not None
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, params)] = sent
    assert "substr(records.hash, 1, 16)" in statement, statement
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            plan = " ".join(str(r[-1]) for r in rows)
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a small table: can the index serve?
            plan = " ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
    assert "ix_records_hash16" in plan, plan
