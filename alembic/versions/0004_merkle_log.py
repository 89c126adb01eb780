"""The Merkle log: stored subtree hashes and signed checkpoints.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

``merkle_hashes`` holds one hash per complete subtree of the RFC 9162 tree
over the record hashes, keyed by stored-hash index (ledger/merkle.py,
docs/adr/0006-merkle-log.md). A ledger that already holds records gets its
tree here, computed from the records in sequence order, so the tree always
has exactly one leaf per record. ``checkpoints`` is append-only: triggers
refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), as on ``records``.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    "CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
]
POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION ledger_checkpoints_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'checkpoints are append-only (% refused)', TG_OP; END $$",
    "CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints "
    "FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_append_only()",
    "CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints "
    "FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_append_only()",
    "CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_checkpoints_append_only()",
]
PAGE = 5_000


def upgrade() -> None:
    op.create_table(
        "merkle_hashes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("verifier_key", sa.String(256), nullable=False),
    )
    bind = op.get_bind()
    for statement in SQLITE_TRIGGERS if bind.dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)
    _backfill(bind)


def _backfill(bind: sa.engine.Connection) -> None:
    """The tree of the records already stored (RFC 9162: leaf = SHA-256(0x00 || record
    hash), node = SHA-256(0x01 || left || right)); hashes in stored-hash order."""
    hashes = sa.table("merkle_hashes", sa.column("id"), sa.column("hash"))
    frontier: list[bytes] = []
    size = next_id = 0
    last = 0
    while True:
        rows = bind.execute(
            sa.text("SELECT seq, hash FROM records WHERE seq > :last ORDER BY seq LIMIT :n"),
            {"last": last, "n": PAGE},
        ).all()
        if not rows:
            return
        out = []
        for seq, record_hash in rows:
            if seq != size + 1:
                raise RuntimeError(f"records has a gap before seq {seq}; repair the log first")
            leaf = hashlib.sha256(b"\x00" + bytes.fromhex(record_hash)).digest()
            out.append(leaf)
            frontier.append(leaf)
            n = size
            while n & 1:
                right = frontier.pop()
                frontier[-1] = hashlib.sha256(b"\x01" + frontier[-1] + right).digest()
                out.append(frontier[-1])
                n >>= 1
            size += 1
        bind.execute(
            sa.insert(hashes), [{"id": next_id + i, "hash": h} for i, h in enumerate(out)]
        )
        next_id += len(out)
        last = int(rows[-1][0])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS checkpoints_no_truncate ON checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("merkle_hashes")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_checkpoints_append_only()")
