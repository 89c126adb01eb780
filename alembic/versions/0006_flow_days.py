"""The materialFlows rollup (grams per UTC day), and lots by status (lots in transit or in second life).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

A projection: ``rledger rebuild`` fills it for a ledger that already holds records.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("target", sa.String(16), primary_key=True),
        sa.Column("actor", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(32), primary_key=True),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lots_status", "lots", ["status"])


def downgrade() -> None:
    op.drop_index("ix_lots_status", "lots")
    op.drop_table("flow_days")
