"""materialFlows for everyone at once: flow_days without the actor.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

A projection kept by the same increments as ``flow_days`` (ledger/rows.py
``add_flows``). Filled here from ``flow_days`` (the same sums), so no rebuild
is needed; ``rledger verify`` compares it with the replayed log like any other.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_totals",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("target", sa.String(16), primary_key=True),
        sa.Column("material", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(32), primary_key=True),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO flow_totals (day, source, target, material, method, mass_g) "
        "SELECT day, source, target, material, method, SUM(mass_g) FROM flow_days "
        "GROUP BY day, source, target, material, method"
    )


def downgrade() -> None:
    op.drop_table("flow_totals")
