"""Provenance bundles: a lot's upstream lineage as one self-contained, offline-checkable document.

A bundle (docs/bundle-format.md) holds, for one lot:

- every record its recovered content rests on — the records of the lots of its upstream
  lineage (ledger/tracing.py's proof walk: :func:`ledger.tracing.walk`,
  :func:`~ledger.tracing.proof_records`, :func:`~ledger.tracing.proof_lots`), each as its
  canonical envelope text, signature, seq and time of recording;
- every ``org.register``, ``key.add`` and ``key.revoke`` needed to check those records'
  keys (the genesis record first), so a verifier replays key validity itself;
- each lot's ``parents`` chain (its records' hashes in order), the lineage's lots and flows,
  and the server's claim: the lot's recovered content as stored;
- an RFC 9162 inclusion proof of every record against ONE signed checkpoint (the latest; one
  is signed on demand when none covers the records yet), in the shape of C2SP tlog-proof.

producers/verifier.py checks all of it with no database: signatures, key validity, chains,
mass balance, the recovered content replayed through ledger/rules.py, and inclusion.

**Which records.** The proof walk gives the records of every lineage lot up to the last flow
out of it, and every record of the lot itself. Replaying them needs more in two cases the
walk does not see, because no flow records them: an input of a transform that gave an output
no gram (largest-remainder rounding can give an input 0 g of a small output) and a lot merged
or transformed *together with* a lineage lot after the flow the walk followed. So the set is
closed: for every record in it, every lot the record changed must have all of its records up
to that one in the set (:func:`_close`). That usually adds nothing (one read shows it); when
it does, the added lots are access-checked like any other.

**Consistency.** Everything is bounded by the lot's ``updated_seq`` as read with its stored
content: a record that lands while the bundle is built is left out, so the claim and the
records always describe the same moment. Earlier records never change (the log is append-only).

**Access** (ledger/access.py): the lot must be readable and not void. A lineage lot the viewer
may not read is left out with its records, and the bundle says so (``complete: false``,
``hiddenByAccess: true``); regulators read everything, so theirs are complete. The registry
records (organisations and their public keys) are included for every viewer: they hold what
``organisations`` shows everyone plus the public keys that make the records checkable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledger import merkle_log, queries, tracing
from ledger.access import ReadScope
from ledger.merkle_log import StoredCheckpoint
from ledger.queries import IN_CHUNK, Direction
from ledger.rows import chunks
from ledger.signing import b64url_encode
from ledger.state import VOID, Lot
from ledger.store import StoredRecord
from ledger.tables import keys, lot_records, orgs, records
from ledger.tlog_proof import encode_hash

FORMAT = "recovery-ledger/provenance@v1"

CheckpointSigner = Callable[[int], StoredCheckpoint]
"""Signs (or finds) a checkpoint covering at least the given tree size:
``Checkpointer.checkpoint(min_size=…)`` (ledger/merkle_log.py)."""


class BundleUnavailable(ValueError):
    """No signed checkpoint covers the bundle's records and none can be signed here."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A provenance bundle: its summary and its JSON text (docs/bundle-format.md)."""

    lot: str
    complete: bool
    truncated: bool
    hidden: bool
    record_count: int
    lot_count: int
    checkpoint: StoredCheckpoint
    text: str


def provenance_bundle(
    conn: Connection,
    scope: ReadScope,
    lot_id: str,
    *,
    sign: CheckpointSigner | None = None,
    max_depth: int = tracing.DEFAULT_PROOF_DEPTH,
    max_lots: int = queries.LINEAGE_NODE_CAP,
) -> Bundle | None:
    """The bundle of ``lot_id``; None when the lot is missing, hidden from ``scope`` or void.

    ``sign``: how to get a checkpoint covering the records when the latest stored one does
    not (a server holding the ledger key); without it :class:`BundleUnavailable`.
    """
    lot = queries.lots_by_id(conn, scope, [lot_id]).get(lot_id)
    if lot is None or lot.status == VOID:
        return None
    found = tracing.walk(conn, scope, lot_id, Direction.UPSTREAM, max_depth, max_lots)
    made = tracing.proof_lots(conn, found.lots)
    seqs = {s for s, _ in tracing.proof_records(conn, found) if s <= lot.updated_seq}
    cutoff: dict[str, int] = {lot.id: lot.updated_seq}
    for step in found.steps:
        cutoff[step.parent] = max(cutoff.get(step.parent, 0), step.seq)
    closed = _close(conn, scope, seqs, cutoff, set(found.lots), max_lots)
    lineage = _fetch(conn, sorted(closed.seqs))
    registry = _registry(conn, lineage, lot.updated_seq)
    every = sorted({**lineage, **registry}.items())
    checkpoint = _checkpoint(conn, every[-1][0], sign)
    proofs = merkle_log.inclusions_at(conn, [s - 1 for s, _ in every], checkpoint.size)
    truncated = found.truncated or closed.truncated
    hidden = found.hidden or closed.hidden
    doc = {
        "format": FORMAT,
        "lot": lot.id,
        "complete": not (truncated or hidden),
        "truncated": truncated,
        "hiddenByAccess": hidden,
        "claim": _claim(lot),
        "checkpoint": {
            "note": checkpoint.note,
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root": checkpoint.root,
            "time": checkpoint.time,
            "verifierKey": checkpoint.verifier_key,
        },
        "records": [
            {
                "seq": seq,
                "hash": rec.hash,
                "recordedAt": rec.recorded_at,
                "envelope": rec.canonical.decode("utf-8"),
                "signature": rec.sig,
                "index": seq - 1,
                "inclusion": [encode_hash(h) for h in proofs[seq - 1]],
            }
            for seq, rec in every
        ],
        "chains": {
            name: [lineage[s].hash for s in sorted(at)] for name, at in sorted(closed.lots.items())
        },
        "keys": _keys(conn, registry, lot.updated_seq),
        "lots": [
            {
                "lot": x.id,
                "material": x.material,
                "origin": x.origin,
                "massG": x.mass_g,
                "madeSeq": x.made_seq,
                "madeBy": x.made_by,
            }
            for x in made
        ],
        "flows": [
            {
                "parent": s.parent,
                "child": s.child,
                "seq": s.seq,
                "massG": s.mass_g,
                "elements": s.elements,
                "recordHash": s.record_hash,
            }
            for s in found.steps
        ],
    }
    return Bundle(
        lot.id,
        not (truncated or hidden),
        truncated,
        hidden,
        len(every),
        len(made),
        checkpoint,
        json.dumps(doc, ensure_ascii=False, separators=(",", ":")),
    )


def _claim(lot: Lot) -> dict[str, Any]:
    """What the server says of the lot: its stored recovered content as made (the figures
    ``recoveredContent`` answers) and the head its records end in."""
    c = tracing.content_of(lot)
    return {
        "lot": lot.id,
        "material": lot.material,
        "massG": lot.mass_g,
        "recoveredG": c.recovered_g,
        "preConsumerG": c.pre_g,
        "postConsumerG": c.post_g,
        "content": dict(sorted(lot.content.items())),
        "head": lot.head,
        "updatedSeq": lot.updated_seq,
    }


# --- which records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Closed:
    seqs: set[int]
    lots: dict[str, set[int]]  # lot -> the seqs of the set that changed it (its chain)
    hidden: bool
    truncated: bool


def _close(
    conn: Connection,
    scope: ReadScope,
    seqs: set[int],
    cutoff: dict[str, int],
    readable: set[str],
    max_lots: int,
) -> _Closed:
    """Close ``seqs`` so that replaying it needs nothing more (module doc): every lot a
    record of the set changed gets all its records up to that one. ``cutoff``: lot -> the
    last seq already wanted of it; ``readable``: lots known readable (the walk's)."""
    have = set(seqs)
    chain: dict[str, set[int]] = {}
    hidden = truncated = False
    frontier = sorted(have)
    while frontier:
        raised: set[str] = set()
        for seq, lot in _lots_changed(conn, frontier):
            chain.setdefault(lot, set()).add(seq)
            if cutoff.get(lot, 0) < seq:
                cutoff[lot] = seq
                raised.add(lot)
        frontier = []
        if not raised:
            break
        missing: dict[str, list[int]] = {}
        for lot, seq in _records_of(conn, sorted(raised)):
            if seq <= cutoff[lot] and seq not in have:
                missing.setdefault(lot, []).append(seq)
        unknown = sorted(set(missing) - readable)
        if unknown:
            room = max(max_lots - len(readable), 0)
            truncated = truncated or len(unknown) > room
            visible = queries.lots_by_id(conn, scope, unknown[:room])
            hidden = hidden or len(visible) < min(len(unknown), room)
            readable |= set(visible)
        for lot, found in missing.items():
            if lot in readable:
                frontier.extend(found)
        frontier = sorted(set(frontier))
        have.update(frontier)
    return _Closed(have, chain, hidden, truncated)


def _lots_changed(conn: Connection, seqs: Sequence[int]) -> list[tuple[int, str]]:
    """(seq, lot) for every lot each record changed (``lot_records``)."""
    out: list[tuple[int, str]] = []
    q = select(lot_records.c.seq, lot_records.c.lot)
    for chunk in chunks(seqs, IN_CHUNK):
        out.extend((int(s), str(x)) for s, x in conn.execute(q.where(lot_records.c.seq.in_(chunk))))
    return out


def _records_of(conn: Connection, lots: Sequence[str]) -> list[tuple[str, int]]:
    """(lot, seq) of every record that changed each lot."""
    out: list[tuple[str, int]] = []
    q = select(lot_records.c.lot, lot_records.c.seq)
    for chunk in chunks(lots, IN_CHUNK):
        out.extend((str(x), int(s)) for x, s in conn.execute(q.where(lot_records.c.lot.in_(chunk))))
    return out


def _fetch(conn: Connection, seqs: Sequence[int]) -> dict[int, StoredRecord]:
    """Whole records by seq (no access filter: the caller chose them)."""
    out: dict[int, StoredRecord] = {}
    for chunk in chunks(seqs, IN_CHUNK):
        for row in conn.execute(select(records).where(records.c.seq.in_(chunk))):
            out[int(row.seq)] = StoredRecord.from_row(row)
    return out


def _registry(
    conn: Connection, lineage: dict[int, StoredRecord], upto: int
) -> dict[int, StoredRecord]:
    """The genesis record, and the ``org.register``, ``key.add`` and ``key.revoke`` records (up
    to seq ``upto``) of every organisation the lineage's records name — as actor, or as the
    receiver of a transfer — and of every organisation that signed one of those."""
    wanted = {rec.actor for rec in lineage.values()}
    for rec in lineage.values():
        if rec.type == "transfer":
            wanted.add(str(json.loads(rec.canonical)["body"]["to"]))
    found: dict[int, StoredRecord] = _fetch(conn, [1])
    done: set[str] = set()
    while wanted - done:
        batch = sorted(wanted - done)
        done |= wanted
        seqs: set[int] = set()
        for chunk in chunks(batch, IN_CHUNK):
            seqs.update(
                int(s)
                for s in conn.execute(
                    select(orgs.c.registered_seq).where(orgs.c.id.in_(chunk))
                ).scalars()
            )
            for added, revoked in conn.execute(
                select(keys.c.added_seq, keys.c.revoked_seq).where(keys.c.org.in_(chunk))
            ):
                seqs.add(int(added))
                if revoked is not None:
                    seqs.add(int(revoked))
        new = sorted(s for s in seqs if s <= upto and s not in found)
        found.update(_fetch(conn, new))
        wanted |= {found[s].actor for s in new}
    return found


def _keys(conn: Connection, registry: dict[int, StoredRecord], upto: int) -> list[dict[str, Any]]:
    """The keys the registry records register, as they stand at seq ``upto`` (a revocation
    after it is not shown: the bundle's records end there)."""
    added = sorted(s for s, r in registry.items() if r.type in ("key.add", "org.register"))
    out: list[dict[str, Any]] = []
    for chunk in chunks(added, IN_CHUNK):
        for row in conn.execute(select(keys).where(keys.c.added_seq.in_(chunk))):
            revoked = row.revoked_seq
            out.append(
                {
                    "key": row.id,
                    "org": row.org,
                    "publicKey": b64url_encode(bytes(row.public_key)),
                    "addedSeq": int(row.added_seq),
                    "validFrom": row.valid_from,
                    "validUntil": row.valid_until,
                    "revokedSeq": int(revoked) if revoked is not None and revoked <= upto else None,
                }
            )
    return sorted(out, key=lambda k: (k["addedSeq"], k["key"]))


def _checkpoint(conn: Connection, last_seq: int, sign: CheckpointSigner | None) -> StoredCheckpoint:
    """The latest checkpoint, if it covers seq ``last_seq``; else one signed now by ``sign``."""
    latest = merkle_log.latest_checkpoint(conn)
    if latest is not None and latest.size >= last_seq:
        return latest
    if sign is None:
        raise BundleUnavailable(
            f"no signed checkpoint covers this lot's records yet (they reach seq {last_seq}): "
            "the server signs one each minute when it holds the ledger key, or the operator "
            "runs `rledger checkpoint`; ask again then"
        )
    made = sign(last_seq)
    if made.size < last_seq:  # the signer's contract; fail closed if it broke it
        raise BundleUnavailable(f"the checkpoint signed covers {made.size} records, not {last_seq}")
    # The signer read the tree as it is now, on its own connection; this one may be reading
    # an older snapshot (SQLite reads in a transaction begun at the first read:
    # ledger/database.py), whose tree lacks records appended since. End it: the next read —
    # the proofs — sees the tree the checkpoint covers. Only reads came before.
    conn.rollback()
    return made
