"""Migrations, on both engines: every revision keeps the append-only triggers,
the migrated schema is exactly ``ledger.tables.metadata``, and the migrations
go down to base and up again.

Alembic runs SQLite migrations in batch mode (``render_as_batch``), which
rebuilds a table by copying it and silently drops its triggers; the step-by-step
test is there so that a future migration that does that to ``records`` fails
here rather than quietly making the log mutable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pprint import pformat

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import make_world
from sqlalchemy import Engine, inspect

from ledger.database import (
    TRIGGERS,
    alembic_config,
    has_schema,
    installed_triggers,
    make_engine,
    migrate,
)
from ledger.tables import metadata
from ledger.verify import verify_store

TABLES = {
    "records",
    "lots",
    "orgs",
    "keys",
    "lot_edges",
    "lot_records",
    "lot_units",
    "epr_outputs",
    "certificates",
    "declarations",
    "flow_days",
    "flow_totals",
    "ledger_meta",
    "api_tokens",
    "refused_records",
    "merkle_hashes",
    "checkpoints",
}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def revisions(url: str) -> list[str]:
    """Every revision id, base first (walk_revisions goes from the heads down)."""
    script = ScriptDirectory.from_config(alembic_config(url))
    ids = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert ids, "no migrations found"
    assert script.get_heads() == [ids[-1]], "expected a single head"
    return ids


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def assert_triggers(engine: Engine, where: str) -> None:
    wanted = set(TRIGGERS[engine.dialect.name])
    have = installed_triggers(engine)
    assert have >= wanted, f"{where}: records lost its append-only triggers {wanted - have}"


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_every_revision_keeps_the_append_only_triggers(db_url: str, engine: Engine) -> None:
    cfg = alembic_config(db_url)
    steps = revisions(db_url)
    assert current(engine) is None
    for rev in steps:
        command.upgrade(cfg, rev)
        assert current(engine) == rev
        assert_triggers(engine, f"after upgrading to {rev}")
    # Down again one step at a time: every revision above base still has them.
    for rev in reversed(steps[:-1]):
        command.downgrade(cfg, rev)
        assert current(engine) == rev
        assert_triggers(engine, f"after downgrading to {rev}")


def test_the_models_and_the_migrations_agree(db_url: str, engine: Engine) -> None:
    migrate(db_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert set(metadata.tables) == TABLES, "a model without a migration, or the reverse"
    differences = schema_differences(engine)
    assert not differences, "ledger.tables and the migrations disagree:\n" + pformat(differences)


def test_down_to_base_and_up_again(db_url: str, engine: Engine) -> None:
    # A ledger with records in it, so the downgrade drops real data, triggers and all.
    world = make_world(db_url)
    collector = world.admit("org:collector", ["collector"])
    world.create(collector, "lot:a", 1_000)
    world.store.close()

    command.downgrade(alembic_config(db_url), "base")
    assert current(engine) is None
    assert not has_schema(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            functions = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname = 'ledger_append_only'"
            ).scalar_one()
        assert functions == 0

    migrate(db_url)
    assert current(engine) == revisions(db_url)[-1]
    assert_triggers(engine, "after upgrading again")
    assert not schema_differences(engine)
    # An empty ledger again, and a working one.
    world = make_world(db_url)
    try:
        assert world.store.last_seq() == 1
        world.admit("org:collector", ["collector"])
        assert verify_store(world.store).ok
        assert world.store.lot("lot:a") is None
    finally:
        world.store.close()


def test_migrate_is_idempotent(db_url: str, engine: Engine) -> None:
    migrate(db_url)
    migrate(db_url)
    assert current(engine) == revisions(db_url)[-1]
    assert_triggers(engine, "after migrating twice")


def test_sqlite_runs_in_wal_mode_with_full_sync(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()
    # WAL is a property of the file: a plain connection sees it too.
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
