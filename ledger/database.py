"""Engines and migrations for the two supported databases.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so
an acknowledged batch survives a crash; writers take the database lock up
front (``BEGIN IMMEDIATE``) so two writers queue instead of deadlocking.
PostgreSQL writers serialise on the ``ledger_meta`` row (the sequencer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

DEFAULT_DB = "rledger.db"
ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"
BUSY_TIMEOUT_MS = 10_000


def database_url(db: str | None) -> str:
    """``--db`` accepts a SQLAlchemy URL or a SQLite file path."""
    db = db or os.environ.get("RLEDGER_DB") or DEFAULT_DB
    if "://" in db:
        if db.startswith("postgresql://"):
            return "postgresql+psycopg://" + db[len("postgresql://") :]
        return db
    return f"sqlite:///{Path(db).resolve()}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Errors never carry statement parameters (record bytes, token hashes) into logs or messages.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide when a transaction begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A 64 MiB page cache (the default is 2 MiB): lot lookups stay in memory as the ledger grows.
    cursor.execute("PRAGMA cache_size=-65536")
    # Checkpoint the WAL every ~40 MB instead of every 4 MB: index pages that
    # many batches dirty are copied into the database once, not once per 4 MB
    # (measured: ~20 % less commit time per record at 100k records).
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def placeholder(bind: Engine | Connection) -> str:
    """The driver's parameter mark for hand-written SQL: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if bind.dialect.paramstyle == "qmark" else "%s"


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """Rows of ``sql`` (in the driver's own paramstyle: ``?`` or ``%s``) on the driver's own
    cursor, in ``conn``'s transaction: no statement compiler, no parameter processing, no
    ``Row`` objects. For the hot reads of proofs and walks, where SQLAlchemy's share is
    most of the cost: on PostgreSQL over loopback TCP ``SELECT 1`` takes 0.25 ms this way and
    0.39 ms through ``exec_driver_sql`` (docs/adr/0008-hot-reads-below-sqlalchemy.md).

    A driver error is raised as SQLAlchemy would have raised it (``OperationalError`` and
    the rest of ``DBAPIError``'s tree, no parameters in it), so the store's retry rules see
    the same errors either way."""
    raw = conn.connection.dbapi_connection
    assert raw is not None  # an open connection
    base = conn.dialect.loaded_dbapi.Error
    cursor = raw.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    except base as exc:
        raise DBAPIError.instance(
            sql, None, exc, base, hide_parameters=True, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database to ``revision`` with Alembic (the same migrations on both engines)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def has_schema(engine: Engine) -> bool:
    return "records" in inspect(engine).get_table_names()


TRIGGERS = {
    "sqlite": ("records_no_update", "records_no_delete"),
    "postgresql": ("records_no_update", "records_no_delete", "records_no_truncate"),
}


def installed_triggers(engine: Engine) -> set[str]:
    """Names of the append-only triggers present on the records table."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            rows = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='records'"
            )
        else:
            rows = conn.exec_driver_sql(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'records'::regclass AND NOT tgisinternal"
            )
        return {r[0] for r in rows}
