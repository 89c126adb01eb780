"""``recordEvents``: a batch of signed records in, one typed result per record out.

The path of a batch (DESIGN.md "Records"; ledger/store.py):

1. the resolver checks the batch size (BATCH_TOO_LARGE: a GraphQL error,
   nothing is looked at);
2. :func:`append_as`, in a worker thread (the append blocks on the database
   and on signature checks; the event loop keeps serving meanwhile):
   ``Store.prepare`` parses each envelope once (canonical JSON, shape) and
   checks its signature; a record whose actor is not the token's
   organisation is then refused ``actor.not_authorised`` — the token may
   write only as its own organisation; ``Store.commit`` applies the rules
   and writes, all or nothing per record (or per batch with ``atomic``);
3. each result becomes ``Recorded`` or ``Rejected``, in the order sent.

Refused records are data (``Rejected`` with the ledger's stable code from
ledger/errors.py CODES, its message and the path of the offending field);
``Overloaded`` / ``StoreUnavailable`` propagate and become retryable 503s
(schema/errors.py).

``SignedEvent`` stays flat — two strings — because coercing each input
object costs per field, and a batch holds thousands of them. Measured per
event in a batch of 500 (CPU, this 2-core machine): graphql-core's variable
coercion 2.2 µs; strawberry's conversion to ``SignedEvent`` 19 µs with its
generic path, 6 µs with the ``from_input`` hook below; the whole GraphQL
layer of ``recordEvents`` (coercion, resolver, completing the four result
fields and ``__typename``) about 45 µs — against a few hundred µs for the
append itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import anyio.to_thread
import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionNode
from strawberry.types.base import get_object_definition

from ledger.access import write_refusal
from ledger.store import Appended, Result, Signed, Store
from schema.context import Context
from schema.errors import ApiError
from schema.scalars import Long


@strawberry.input(
    description="One signed record: the envelope as canonical JSON text (RFC 8785) and "
    "the Ed25519 signature over its UTF-8 bytes, base64url (RFC 4648 §5)."
)
class SignedEvent:
    envelope: str
    signature: str


def _signed_event_from_input(
    cls: type[SignedEvent], value: Mapping[str, Any], _context: object
) -> SignedEvent:
    """Build a SignedEvent straight from graphql-core's coerced value (both fields
    are required strings, already checked), skipping strawberry's generic per-field
    conversion: measured 19 µs → 6 µs per event in a batch of 500."""
    return cls(envelope=value["envelope"], signature=value["signature"])


# strawberry's hook for building an input value ("from_input", documented on
# StrawberryObjectDefinition for integrations such as strawberry.pydantic).
get_object_definition(SignedEvent, strict=True).from_input = _signed_event_from_input


@strawberry.type(description="The record is in the ledger (now, or already before).")
class Recorded:
    id: strawberry.ID
    hash: str = strawberry.field(description="SHA-256 of the canonical bytes, lowercase hex.")
    seq: Long = strawberry.field(description="The record's position in the ledger.")
    existing: bool = strawberry.field(
        description="True when this id with these bytes was already stored (a safe retry)."
    )


@strawberry.type(description="The record was not written; code says which rule it broke.")
class Rejected:
    id: strawberry.ID | None = strawberry.field(
        description="The record's id, when the envelope could be read. Selected beside "
        "Recorded.id (ID!) it needs an alias, e.g. ... on Rejected { rejectedId: id }: "
        "GraphQL does not merge fields of different nullability under one name."
    )
    code: str = strawberry.field(
        description="A stable code from the ledger's list (e.g. conflict, signature.invalid, "
        "actor.not_authorised, batch.aborted)."
    )
    message: str
    path: str | None = strawberry.field(
        description="The offending field inside the envelope, e.g. body.inputs[1].mass_g."
    )


RecordResult = Annotated[Recorded | Rejected, strawberry.union("RecordResult")]


def append_as(
    store: Store, org: str, batch: Sequence[Signed], *, atomic: bool = False
) -> list[Result]:
    """Append ``batch`` on behalf of ``org``: records signed as another actor are refused.

    With ``atomic``, one refused record (this check's included) means none is
    written and the others answer ``batch.aborted``.
    """
    prepared = store.prepare(batch)
    for i, env in enumerate(prepared.envs):
        if env is not None and prepared.results[i] is None:
            prepared.results[i] = write_refusal(org, env.actor, env.id)
    return store.commit(prepared, atomic=atomic)


def as_result(result: Result) -> Recorded | Rejected:
    if isinstance(result, Appended):
        return Recorded(
            id=strawberry.ID(result.id),
            hash=result.hash,
            seq=Long(result.seq),
            existing=result.existing,
        )
    return Rejected(
        id=strawberry.ID(result.record_id) if result.record_id is not None else None,
        code=result.code,
        message=result.message,
        path=result.path,
    )


def _record_fields(info: strawberry.Info[Context, None]) -> int:
    """How many recordEvents fields the operation's root selection holds (aliases and
    root-level fragments included)."""
    raw = info._raw_info
    seen: set[str] = set()

    def count(selections: Sequence[SelectionNode]) -> int:
        n = 0
        for node in selections:
            if isinstance(node, FieldNode):
                n += node.name.value == "recordEvents"
            elif isinstance(node, InlineFragmentNode):
                n += count(node.selection_set.selections)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
                seen.add(node.name.value)
                fragment = raw.fragments.get(node.name.value)
                if fragment is not None:
                    n += count(fragment.selection_set.selections)
        return n

    return count(raw.operation.selection_set.selections)


async def record_events(
    info: strawberry.Info[Context, None],
    events: list[SignedEvent],
    atomic: bool | None = False,
) -> list[RecordResult]:
    ctx = info.context
    if _record_fields(info) > 1:
        # Aliases would otherwise multiply the batch limit (found in review): refuse
        # before any of them writes (every such field checks this before it awaits).
        raise ApiError(
            "BAD_REQUEST",
            "one recordEvents per request: put all the events in one list (at most "
            f"{ctx.limits.max_batch}), or send several requests",
        )
    if len(events) > ctx.limits.max_batch:
        raise ApiError(
            "BATCH_TOO_LARGE",
            f"the batch holds {len(events)} events; at most {ctx.limits.max_batch} "
            "are allowed per call: split it into several calls",
        )
    batch = [Signed(e.envelope, e.signature) for e in events]
    results = await anyio.to_thread.run_sync(
        lambda: append_as(ctx.store, ctx.viewer.org, batch, atomic=bool(atomic))
    )
    return [as_result(r) for r in results]


@strawberry.type
class Mutation:
    record_events: list[RecordResult] = strawberry.mutation(
        resolver=record_events,
        description="Append signed records; one result per record, in the order sent. "
        "Each record stands alone unless atomic is true (then all are written or none). "
        "Resending a record (same id, same bytes) answers Recorded with existing: true.",
    )
