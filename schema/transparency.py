"""The transparency log over GraphQL: ``checkpoint``, ``inclusionProof``, ``consistencyProof``.

Shapes (DESIGN.md "The API")::

    type Checkpoint { size: Long!  root: String!  note: String!  ... }
    type InclusionProof { leafIndex: Long!  treeSize: Long!  hashes: [String!]! }
    type ConsistencyProof { fromSize: Long!  toSize: Long!  hashes: [String!]! }

Hashes are lowercase hex; a proof's hashes are in RFC 9162 order (the leaf's
sibling first). A client checks them with nothing but the signed checkpoint
and ledger/merkle.py (or any RFC 9162 verifier): leaf = SHA-256(0x00 ‖
record hash bytes), leaf index = seq − 1.

Access: ``inclusionProof`` answers null for a record the token's
organisation may not read, exactly as for one that does not exist (like
``event(hash)``). Checkpoints and consistency proofs hold only hashes of
hashes and are open to every token.

``checkpoint`` answers a checkpoint of the whole log: when the server holds
the ledger key (``rledger serve`` finds ``<keys>/ledger.key``) and the log
has grown since the last checkpoint, it signs a new one first (so this query
may write a checkpoint row; at most one per tree size); without the key it
answers the latest stored checkpoint, or null if none was ever signed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import strawberry
from sqlalchemy.exc import DBAPIError

from ledger import merkle, merkle_log, queries
from ledger.errors import StoreUnavailable
from ledger.merkle_log import ProofUnavailable, StoredCheckpoint
from schema.context import Context
from schema.loaders import BadArgument
from schema.scalars import Long

Info = strawberry.Info[Context, None]


@strawberry.type(
    description="A signed tree head of the ledger's Merkle log, as a C2SP signed note "
    "(c2sp.org/tlog-checkpoint): origin, size and base64 root, signed by the ledger key with "
    "an Ed25519 note signature and a timestamped one (c2sp.org/tlog-cosignature)."
)
class Checkpoint:
    size: Long = strawberry.field(description="How many records the tree holds.")
    root: str = strawberry.field(description="The RFC 9162 root hash, lowercase hex.")
    note: str = strawberry.field(
        description="The signed note, verbatim: verify it, do not trust the other fields."
    )
    origin: str = strawberry.field(
        description="The log's name: the note's first line and its signatures' key name."
    )
    time: Long = strawberry.field(
        description="When it was signed: POSIX seconds, as the timestamped signature says."
    )
    signed_at: datetime = strawberry.field(description="time as a UTC date and time.")
    verifier_key: str = strawberry.field(
        description="The signed-note verifier key (<origin>+<key ID>+<base64 key>) of the "
        "ledger key that signed it. Pin it once, out of band (`rledger checkpoint "
        "--verifier-key`): a server that lies could send another."
    )

    @staticmethod
    def of(cp: StoredCheckpoint) -> Checkpoint:
        return Checkpoint(
            size=Long(cp.size),
            root=cp.root,
            note=cp.note,
            origin=cp.origin,
            time=Long(cp.time),
            signed_at=datetime.fromtimestamp(cp.time, UTC),
            verifier_key=cp.verifier_key,
        )


@strawberry.type(
    description="An RFC 9162 inclusion proof (audit path) of one record in the tree of "
    "treeSize records."
)
class InclusionProof:
    leaf_index: Long = strawberry.field(description="The record's leaf: seq - 1.")
    tree_size: Long
    hashes: list[str] = strawberry.field(
        description="The audit path, lowercase hex, the leaf's sibling first."
    )
    record_hash: str = strawberry.field(description="The record's hash (lowercase hex).")
    leaf_hash: str = strawberry.field(
        description="SHA-256(0x00 || record hash bytes), lowercase hex: the leaf the path "
        "starts from."
    )


@strawberry.type(
    description="An RFC 9162 consistency proof: the tree of fromSize records is a prefix of "
    "the tree of toSize records."
)
class ConsistencyProof:
    from_size: Long
    to_size: Long
    hashes: list[str] = strawberry.field(description="The proof, lowercase hex.")


def _read(info: Info, fn: Any, *args: Any) -> Any:
    """An indexed read on this request's connection; a size the log cannot serve is
    BAD_USER_INPUT naming the argument."""
    try:
        return info.context.loaders.lookup(fn, *args)
    except ProofUnavailable as exc:
        raise BadArgument(exc.argument or "treeSize", str(exc)) from None


async def checkpoint(info: Info) -> Checkpoint | None:
    signer = info.context.checkpointer
    if signer is not None:
        try:
            made = await anyio.to_thread.run_sync(signer.checkpoint)
        except ProofUnavailable:  # an empty ledger: nothing to sign yet
            return None
        except DBAPIError:  # e.g. the writer lock not had in time
            raise StoreUnavailable(
                "the database failed while signing a checkpoint; retry the query"
            ) from None
        return Checkpoint.of(made)
    found = _read(info, merkle_log.latest_checkpoint)
    return None if found is None else Checkpoint.of(found)


async def inclusion_proof(info: Info, hash: str, tree_size: Long) -> InclusionProof | None:
    loaders = info.context.loaders
    proof = _read(info, queries.inclusion_by_hash, loaders.scope, hash.lower(), int(tree_size))
    if proof is None:
        return None
    return InclusionProof(
        leaf_index=Long(proof.leaf_index),
        tree_size=Long(proof.tree_size),
        hashes=[h.hex() for h in proof.hashes],
        record_hash=proof.record_hash,
        leaf_hash=merkle.record_leaf(proof.record_hash).hex(),
    )


async def consistency_proof(
    info: Info, from_: Annotated[Long, strawberry.argument(name="from")], to: Long
) -> ConsistencyProof:
    hashes = _read(info, merkle_log.consistency, int(from_), int(to))
    return ConsistencyProof(
        from_size=Long(from_), to_size=Long(to), hashes=[h.hex() for h in hashes]
    )


CHECKPOINT = strawberry.field(
    resolver=checkpoint,
    description="A signed checkpoint of the whole log (signed now if the log has grown since "
    "the last one and the server holds the ledger key; else the latest stored). Null before "
    "any checkpoint exists.",
)
INCLUSION_PROOF = strawberry.field(
    resolver=inclusion_proof,
    description="The inclusion proof of the record with this hash in the tree of treeSize "
    "records (take treeSize from a checkpoint). Null when there is no such record or the "
    "token's organisation may not read it. treeSize beyond the log, or not covering the "
    "record, is BAD_USER_INPUT.",
)
CONSISTENCY_PROOF = strawberry.field(
    resolver=consistency_proof,
    description="The consistency proof from the tree of `from` records to the tree of `to` "
    "records (0 <= from <= to <= the log's size; BAD_USER_INPUT otherwise).",
)
