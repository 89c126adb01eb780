"""Recovered content on lots and edges; which lots held which battery.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

A ledger that already holds records gets the new columns' values and the
``lot_units`` rows from ``rledger rebuild`` (they are computed by the rules).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lots") as batch:
        for name in ("content", "recovered", "recoded"):
            batch.add_column(sa.Column(name, sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("lot_edges") as batch:
        batch.add_column(sa.Column("elements", sa.Text, nullable=False, server_default="{}"))
    op.create_table(
        "lot_units",
        sa.Column("unit", sa.String(160), primary_key=True),
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("original", sa.String(160)),
    )
    op.create_index("ix_lot_units_lot", "lot_units", ["lot"])


def downgrade() -> None:
    op.drop_table("lot_units")
    with op.batch_alter_table("lot_edges") as batch:
        batch.drop_column("elements")
    with op.batch_alter_table("lots") as batch:
        for name in ("recoded", "recovered", "content"):
            batch.drop_column(name)
