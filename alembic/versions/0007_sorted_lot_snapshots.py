"""Lot snapshots (``lots.prev``) with sorted keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

``Lot.snapshot()`` now sorts the keys of the lot's dicts, so that a lot gives
the same text whether the rules built it or it was read back from the database
(tests/test_bug_snapshot_key_order.py). This rewrites the stored snapshots the
same way: the values are unchanged, only the order of keys inside them, so
``verify`` reproduces every ``prev`` again. A projection, not a record: nothing
signed or hashed changes.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHUNK = 5_000


def upgrade() -> None:
    conn = op.get_bind()
    lots = sa.table("lots", sa.column("id", sa.String), sa.column("prev", sa.Text))
    after = ""
    while True:
        rows = conn.execute(
            sa.select(lots.c.id, lots.c.prev)
            .where(lots.c.id > after, lots.c.prev.is_not(None))
            .order_by(lots.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        changed = []
        for lot_id, prev in rows:
            text = json.dumps(json.loads(prev), separators=(",", ":"), sort_keys=True)
            if text != prev:
                changed.append({"lot_id": lot_id, "prev": text})
        if changed:
            conn.execute(
                lots.update().where(lots.c.id == sa.bindparam("lot_id")),
                changed,
            )
        after = rows[-1][0]


def downgrade() -> None:
    """Nothing to undo: the sorted text is a valid snapshot for the older code too."""
