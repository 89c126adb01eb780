"""Reads for the API: a lot's records, records by actor, and API tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A projection of the log: one row per lot each record changed.
    op.create_table(
        "lot_records",
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_index("ix_lot_records_seq", "lot_records", ["seq"])
    op.create_index("ix_lots_transit_to", "lots", ["transit_to"])
    # A ledger that already holds records gets its rows from `rledger rebuild`
    # (the rules decide which lots a record changed; SQL alone can't).
    op.create_index("ix_records_actor", "records", ["actor", "seq"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32)),
    )
    op.create_index("ix_api_tokens_org", "api_tokens", ["org"])


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index("ix_lots_transit_to", "lots")
    op.drop_index("ix_records_actor", "records")
    op.drop_table("lot_records")
