"""EPR: transform outputs that certificates stand on, certificates and declarations.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Projections of the log (``rledger rebuild`` fills them for a ledger that already
holds transforms).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(sa.Column("capacity", sa.Text, nullable=False, server_default="{}"))
    op.create_table(
        "epr_outputs",
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("process", sa.String(64), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("recovered", sa.Text, nullable=False),
        sa.Column("certified", sa.Text, nullable=False),
    )
    op.create_index("ix_epr_outputs_actor", "epr_outputs", ["actor", "at"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
        sa.Column("lots", sa.Text, nullable=False),
        sa.Column("issued_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_seq", sa.BigInteger, nullable=False),
        sa.Column("retired_period", sa.String(16)),
    )
    op.create_index("ix_certificates_holder", "certificates", ["holder", "scheme", "period"])
    op.create_index("ix_certificates_issuer", "certificates", ["issuer", "scheme", "period"])
    op.create_table(
        "declarations",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("producer", sa.String(64), nullable=False),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("mass_g", sa.BigInteger, nullable=False),
        sa.Column("units", sa.BigInteger),
    )
    op.create_index("ix_declarations_producer", "declarations", ["producer", "scheme", "period"])


    # Not a projection: the refusals log (ledger/tables.py RefusedRow).
    op.create_table(
        "refused_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("path", sa.String(200)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("canonical", sa.LargeBinary, nullable=False),
        sa.Column("sig", sa.String(128), nullable=False),
    )
    op.create_index("ix_refused_records_actor", "refused_records", ["actor", "id"])


def downgrade() -> None:
    op.drop_table("refused_records")
    op.drop_table("declarations")
    op.drop_table("certificates")
    op.drop_table("epr_outputs")
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("capacity")
