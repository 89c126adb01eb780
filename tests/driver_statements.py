"""Count the statements a database driver is asked to run, below SQLAlchemy.

ledger/tracing.py, ledger/merkle_log.py and ledger/queries.py read partly on the driver's
own cursor (ledger.database.driver_rows: no SQLAlchemy events), so tests that pin how many
statements a read costs count what the driver runs: SQLite's trace callback, and on
PostgreSQL a psycopg cursor class that notes each statement, both put on every connection
checked out while counting. BEGIN (SQLite) and the pool's ping (``;``, psycopg) are left
out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def driver_statements(engine: Engine) -> Iterator[list[str]]:
    """The statements run on connections checked out of ``engine`` within the block."""
    seen: list[str] = []
    hooked: list[Any] = []

    def note(statement: object) -> None:
        text = str(statement).strip()
        if text.upper() not in ("BEGIN", "BEGIN DEFERRED", "SELECT 1", ";", "COMMIT", "ROLLBACK"):
            seen.append(text)

    def install(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        hooked.append(dbapi_conn)
        if hasattr(dbapi_conn, "set_trace_callback"):  # sqlite3
            dbapi_conn.set_trace_callback(note)
            return
        import psycopg

        class Noting(psycopg.Cursor):
            def execute(self, query: Any, *args: Any, **kw: Any) -> Any:
                note(query)
                return super().execute(query, *args, **kw)

        dbapi_conn.cursor_factory = Noting

    event.listen(engine, "checkout", install)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", install)
        for c in hooked:
            if hasattr(c, "set_trace_callback"):
                c.set_trace_callback(None)
            else:
                import psycopg

                c.cursor_factory = psycopg.Cursor
