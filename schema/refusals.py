"""The refusals log over GraphQL: ``refusals(filter, first, after)``.

Regulators and the operator read every refused (signed) record; any other organisation
reads its own. See ledger/refusals.py for what is logged.
"""

from __future__ import annotations

import strawberry

from ledger import queries
from ledger.refusals import Refusal as LedgerRefusal
from ledger.refusals import refusals_page
from schema.loaders import BadArgument
from schema.types import Info, PageInfo, _decode, _encode, _page_info

_KIND = "refusal"


@strawberry.type(
    description="A signed record the ledger refused: nothing of it entered the ledger, but the "
    "attempt stays on record, attributable to the key that signed it."
)
class Refusal:
    record_id: strawberry.ID = strawberry.field(description="The record's id (its ULID).")
    hash: str = strawberry.field(description="SHA-256 of its canonical bytes, lowercase hex.")
    type: str
    actor: strawberry.ID
    at: str = strawberry.field(description="The time the actor signed into the record.")
    received_at: str = strawberry.field(description="When the ledger received and refused it.")
    code: str = strawberry.field(description="The rule it broke (ledger/errors.py CODES).")
    path: str | None = strawberry.field(description="The offending field in the envelope.")
    message: str
    envelope: str = strawberry.field(description="The signed canonical JSON text.")
    signature: str = strawberry.field(description="Its Ed25519 signature, base64url.")

    @staticmethod
    def of(x: LedgerRefusal) -> Refusal:
        return Refusal(
            record_id=strawberry.ID(x.record_id),
            hash=x.hash,
            type=x.type,
            actor=strawberry.ID(x.actor),
            at=x.at,
            received_at=x.received_at,
            code=x.code,
            path=x.path,
            message=x.message,
            envelope=x.envelope,
            signature=x.signature,
        )


@strawberry.type
class RefusalEdge:
    node: Refusal
    cursor: str


@strawberry.type
class RefusalConnection:
    edges: list[RefusalEdge]
    page_info: PageInfo


@strawberry.input(description="Narrow the refusals: all given fields must match.")
class RefusalFilter:
    actor: strawberry.ID | None = None
    code: str | None = None


async def refusals(
    info: Info,
    filter: RefusalFilter | None = None,
    first: int | None = queries.DEFAULT_PAGE,
    after: str | None = None,
) -> RefusalConnection:
    key = _decode(_KIND, after)
    if key is not None and not key.isdigit():
        raise BadArgument("after", "after is not a cursor of this list: pass pageInfo.endCursor")
    where = filter or RefusalFilter()
    page = await info.context.loaders.read(
        refusals_page,
        info.context.loaders.scope,
        None if where.actor is None else str(where.actor),
        where.code,
        first,
        None if key is None else int(key),
    )
    cursors = [_encode(_KIND, str(x.id)) for x in page.items]
    return RefusalConnection(
        edges=[
            RefusalEdge(node=Refusal.of(x), cursor=c)
            for x, c in zip(page.items, cursors, strict=True)
        ],
        page_info=_page_info(cursors, page.has_next),
    )


REFUSALS = strawberry.field(
    resolver=refusals,
    description=f"Signed records the ledger refused (not routine conflicts), oldest first: "
    f"regulators and the operator read all, others their own; first at most {queries.MAX_PAGE}.",
)
