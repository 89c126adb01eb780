"""Core ledger: the append-only record log and its projections.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Append-only guard on the log. SQLite: RAISE in BEFORE triggers. PostgreSQL:
# one function behind BEFORE UPDATE/DELETE (per row) and BEFORE TRUNCATE.
SQLITE_TRIGGERS = [
    "CREATE TRIGGER records_no_update BEFORE UPDATE ON records "
    "BEGIN SELECT RAISE(ABORT, 'records are append-only'); END",
    "CREATE TRIGGER records_no_delete BEFORE DELETE ON records "
    "BEGIN SELECT RAISE(ABORT, 'records are append-only'); END",
]
POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'records are append-only (% refused)', TG_OP; END $$",
    "CREATE TRIGGER records_no_update BEFORE UPDATE ON records "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    "CREATE TRIGGER records_no_delete BEFORE DELETE ON records "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    "CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("canonical", sa.LargeBinary, nullable=False),
        sa.Column("sig", sa.String(128), nullable=False),
    )
    # Records are found by hash through its first 16 hex digits (see ledger/tables.py).
    op.create_index("ix_records_hash16", "records", [sa.text("substr(hash, 1, 16)")])
    op.create_table(
        "lots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
        sa.Column("remaining_g", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("created_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_seq", sa.BigInteger, nullable=False),
        sa.Column("elements", sa.Text, nullable=False),
        sa.Column("units", sa.Text, nullable=False),
        sa.Column("held_status", sa.String(32)),
        sa.Column("transit_from", sa.String(64)),
        sa.Column("transit_to", sa.String(64)),
        sa.Column("transit_g", sa.BigInteger),
        sa.Column("transit_loss_g", sa.BigInteger, nullable=False),
        sa.Column("disposed_g", sa.BigInteger, nullable=False),
        sa.Column("prev", sa.Text),
    )
    op.create_index("ix_lots_material", "lots", ["material"])
    op.create_index("ix_lots_custodian", "lots", ["custodian"])
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("added_seq", sa.BigInteger, nullable=False),
        sa.Column("valid_from", sa.String(32)),
        sa.Column("valid_until", sa.String(32)),
        sa.Column("revoked_seq", sa.BigInteger),
    )
    op.create_index("ix_keys_org", "keys", ["org"])
    op.create_table(
        "lot_edges",
        sa.Column("parent", sa.String(64), primary_key=True),
        sa.Column("child", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lot_edges_child", "lot_edges", ["child"])
    op.create_table(
        "ledger_meta",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO ledger_meta (id, seq) VALUES (1, 0)")
    bind = op.get_bind()
    for statement in SQLITE_TRIGGERS if bind.dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS records_no_truncate ON records")
    for table in ("ledger_meta", "lot_edges", "keys", "orgs", "lots", "records"):
        op.drop_table(table)
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
