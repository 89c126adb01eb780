"""Reading the refusals log (``refused_records``, ledger/tables.py): attempts that the rules
refused, signed by their actor — e.g. a certificate past its output's recovered mass.

Who reads what: regulators and the operator read every refusal; any other organisation
reads its own (the records it signed). Paged by the log's id, keyset, like the other reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledger.access import ReadScope
from ledger.queries import Page, page_size
from ledger.tables import refused_records


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused record: its id, hash, type, actor and time as signed; when it arrived;
    the rule it broke (``code``, ``path``, ``message``); and its signed bytes."""

    id: int
    record_id: str
    hash: str
    type: str
    actor: str
    at: str
    received_at: str
    code: str
    path: str | None
    message: str
    envelope: str
    signature: str


def refusals_page(
    conn: Connection,
    scope: ReadScope,
    actor: str | None = None,
    code: str | None = None,
    first: int | None = None,
    after: int | None = None,
) -> Page[Refusal]:
    """The refusals ``scope`` may read, oldest first, matching ``actor`` and ``code``."""
    n = page_size(first)
    t = refused_records
    q = select(t)
    if not scope.everything:
        q = q.where(t.c.actor == scope.org)
    if actor is not None:
        q = q.where(t.c.actor == actor)
    if code is not None:
        q = q.where(t.c.code == code)
    if after is not None:
        q = q.where(t.c.id > after)
    rows = conn.execute(q.order_by(t.c.id).limit(n + 1)).all()
    items = [
        Refusal(
            int(r.id),
            r.record_id,
            r.hash,
            r.type,
            r.actor,
            r.at,
            r.received_at,
            r.code,
            r.path,
            r.message,
            bytes(r.canonical).decode("utf-8"),
            r.sig,
        )
        for r in rows[:n]
    ]
    return Page(items, len(rows) > n)
