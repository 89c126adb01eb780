"""What a malicious operator does to the database behind the ledger's back: one committed
transaction in which a table's append-only triggers do not fire. The tamper, audit,
Merkle-log and parallel-verify tests edit stored rows through it, to show that verify and
the auditors catch what the database itself no longer refuses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from ledger.database import TRIGGERS, is_sqlite


@contextmanager
def around_triggers(engine: Engine, table: str = "records") -> Iterator[Connection]:
    """One committed transaction in which ``table``'s append-only triggers are dropped
    (SQLite; put back after, from the CREATE statements SQLite keeps verbatim) or do not
    fire (PostgreSQL: ``session_replication_role = replica`` for the transaction)."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            saved = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
                (table,),
            ).all()
            assert saved, f"{table} has no triggers"
            if table == "records":
                assert {name for name, _ in saved} >= set(TRIGGERS["sqlite"])
            for name, _ in saved:
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
            yield conn
            for _, sql in saved:
                conn.exec_driver_sql(sql)
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
