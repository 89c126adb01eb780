"""GraphQL for provenance bundles: ``provenance(lot)`` (ledger/provenance.py).

The bundle is one JSON text (docs/bundle-format.md) — every record of the lot's upstream
lineage with its signature, the registry records that make the signatures checkable, the
lots' parents chains, the server's claimed recovered content, and an inclusion proof of each
record against one signed checkpoint — plus a few summary fields. ``rledger verify-bundle``
(producers/verifier.py) checks it offline, with nothing but the ledger's verifier key.

Access: null for a lot the token's organisation may not read, exactly as for a missing or
void one. Upstream lots it may not read are left out and the bundle says so
(``complete: false``, ``hiddenByAccess: true``).

Like ``checkpoint``, this query may sign a checkpoint first (when the server holds the ledger
key and no stored checkpoint covers the records yet).
"""

from __future__ import annotations

import strawberry
from sqlalchemy.engine import Connection

from ledger import provenance as bundles
from ledger.access import ReadScope
from schema.loaders import BadArgument
from schema.scalars import Long
from schema.types import Info


@strawberry.type(
    description="A self-contained, offline-checkable bundle of a lot's upstream lineage "
    "(docs/bundle-format.md): check it with `rledger verify-bundle FILE --verifier-key KEY`."
)
class Provenance:
    lot: strawberry.ID
    complete: bool = strawberry.field(
        description="The bundle holds the whole upstream lineage: neither truncated nor hidden."
    )
    truncated: bool = strawberry.field(
        description="The lineage is deeper or wider than one bundle holds (50 levels, 5,000 "
        "lots): ask for a bundle of a lot at its edge."
    )
    hidden_by_access: bool = strawberry.field(
        description="Some upstream lots are not readable by the token's organisation: they and "
        "what lies beyond them are left out (a regulator's bundle is complete)."
    )
    record_count: int = strawberry.field(description="Records in the bundle.")
    lot_count: int = strawberry.field(description="Lots of the lineage in the bundle.")
    tree_size: Long = strawberry.field(
        description="The size of the signed checkpoint every record is proven against."
    )
    root: str = strawberry.field(description="That checkpoint's root hash, lowercase hex.")
    bundle: str = strawberry.field(
        description="The bundle, one JSON text (format recovery-ledger/provenance@v1)."
    )


async def provenance(info: Info, lot: strawberry.ID) -> Provenance | None:
    loaders = info.context.loaders
    signer = info.context.checkpointer
    sign = None if signer is None else (lambda size: signer.checkpoint(min_size=size))
    try:
        found = await loaders.read(_bundle, loaders.scope, str(lot), sign)
    except bundles.BundleUnavailable as exc:
        raise BadArgument("lot", str(exc)) from None
    if found is None:
        return None
    return Provenance(
        lot=strawberry.ID(found.lot),
        complete=found.complete,
        truncated=found.truncated,
        hidden_by_access=found.hidden,
        record_count=found.record_count,
        lot_count=found.lot_count,
        tree_size=Long(found.checkpoint.size),
        root=found.checkpoint.root,
        bundle=found.text,
    )


def _bundle(
    conn: Connection, scope: ReadScope, lot: str, sign: bundles.CheckpointSigner | None
) -> bundles.Bundle | None:
    return bundles.provenance_bundle(conn, scope, lot, sign=sign)


PROVENANCE = strawberry.field(
    resolver=provenance,
    description="A provenance bundle of the lot: every record of its upstream lineage with "
    "signatures, the public keys and key records to check them, each lot's parents chain, the "
    "claimed recovered content, and inclusion proofs against one signed checkpoint (signed now "
    "if none covers the records yet and the server holds the ledger key). Null when the lot is "
    "missing, not readable or void. BAD_USER_INPUT when no checkpoint covers the records yet "
    "and the server cannot sign one.",
)
