"""Full verification of a stored ledger, and the replay that ``rebuild`` uses.

``verify`` trusts nothing in the database but the record bytes: for every
record in sequence order it re-checks that the stored bytes are canonical,
that the stored hash and columns match them, the signature, the key's
validity, the ``parents`` links and the mass balance (by replaying the rules
from an empty state), that the stored Merkle tree and checkpoints agree with
the record hashes, and finally that the stored projections equal the
replayed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import rules
from ledger.checkpoints import CheckpointError, verify_checkpoint
from ledger.envelope import Envelope, parse_at, parse_envelope
from ledger.errors import RecordRefused
from ledger.merkle_log import TreeChecker, all_checkpoints, rebuild_tree
from ledger.rows import (
    certificate_to_row,
    declaration_to_row,
    edge_to_row,
    key_to_row,
    lot_to_row,
    org_to_row,
    output_to_row,
    unit_to_row,
)
from ledger.signing import decode_signature, load_public_key, record_hash, verify
from ledger.state import MemoryState
from ledger.store import Store, StoredRecord
from ledger.tables import PROJECTIONS


@dataclass(frozen=True, slots=True)
class Report:
    ok: bool
    records: int
    bad_seq: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records} records verified"
        where = f"seq {self.bad_seq}: " if self.bad_seq is not None else ""
        return f"BROKEN at {where}{self.problem}"


class Broken(Exception):
    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem


def replay_record(state: MemoryState, rec: StoredRecord, *, check_signature: bool) -> None:
    """Apply one stored record to ``state``, re-checking it; raises :class:`Broken`."""
    if rec.seq != state.seq + 1:
        raise Broken(state.seq + 1, f"sequence gap: expected seq {state.seq + 1}, found {rec.seq}")
    try:
        env = parse_envelope(rec.canonical)
    except RecordRefused as exc:
        raise Broken(
            rec.seq, f"stored bytes are not a valid canonical envelope ({exc.code})"
        ) from None
    if record_hash(rec.canonical) != rec.hash:
        raise Broken(rec.seq, "stored hash does not match the record's bytes")
    columns = {"id": rec.id, "type": rec.type, "actor": rec.actor, "key": rec.key, "at": rec.at}
    for name, value in columns.items():
        if getattr(env, name) != value:
            raise Broken(rec.seq, f"stored column {name} disagrees with the signed envelope")
    if check_signature:
        _check_signature(state, rec, env)
    try:
        effects = rules.apply(env, state, rec.seq, parse_at(rec.recorded_at))
    except RecordRefused as exc:
        raise Broken(rec.seq, f"record breaks a rule on replay: {exc}") from None
    state.apply(effects, rules.past_record(env, rec.seq))


def _check_signature(state: MemoryState, rec: StoredRecord, env: Envelope) -> None:
    raw = rules.signing_key(env, state)
    if raw is None:
        raise Broken(rec.seq, "signed with a key the ledger never registered")
    try:
        sig = decode_signature(rec.sig)
        ok = verify(load_public_key(raw), sig, rec.canonical)
    except (RecordRefused, ValueError):
        ok = False
    if not ok:
        raise Broken(rec.seq, "signature does not verify")


def replay(store: Store, *, check_signatures: bool) -> MemoryState:
    state = MemoryState(record_loader=store.past_record, keep_records=False)
    for rec in store.records():
        replay_record(state, rec, check_signature=check_signatures)
    return state


def verify_store(store: Store, *, checkpoint_key: bytes | None = None) -> Report:
    """Re-check the whole ledger; name the first bad sequence number.

    The Merkle tree is recomputed from the records as they are replayed and must equal
    the stored one, and every stored checkpoint's root must equal the log's root at its
    size (ledger/merkle_log.py). ``checkpoint_key``: the ledger's public key (32 bytes);
    when given, every checkpoint's signatures are checked with it too.
    """
    state = MemoryState(record_loader=store.past_record, keep_records=False)
    tree = TreeChecker(store.engine)
    try:
        last_recorded = ""
        for rec in store.records():
            if rec.recorded_at < last_recorded:
                raise Broken(
                    rec.seq, "recorded before the record ahead of it: the log was reordered"
                )
            last_recorded = rec.recorded_at
            replay_record(state, rec, check_signature=True)
            if (problem := tree.add(rec.seq, rec.hash)) is not None:
                raise Broken(rec.seq, problem)
        if store.last_seq() != state.seq:
            raise Broken(
                state.seq + 1, f"ledger_meta says {store.last_seq()} records, log holds {state.seq}"
            )
        if (problem := tree.finish()) is not None:
            raise Broken(state.seq + 1, problem)
        if checkpoint_key is not None:
            _check_checkpoint_signatures(store, checkpoint_key)
        _compare_projections(store, state)
    except Broken as exc:
        return Report(False, max(state.seq, 0), exc.seq, exc.problem)
    return Report(True, state.seq)


def _check_checkpoint_signatures(store: Store, public_key: bytes) -> None:
    """Every stored checkpoint is signed (Ed25519 and timestamped) by this key, and its
    columns say what its note says."""
    for cp in all_checkpoints(store.engine):
        try:
            checked = verify_checkpoint(cp.note, public_key)
        except CheckpointError as exc:
            raise Broken(cp.size, f"checkpoint of size {cp.size}: {exc}") from None
        signed = (checked.checkpoint.size, checked.checkpoint.root.hex(), checked.time)
        if signed != (cp.size, cp.root, cp.time):
            raise Broken(
                cp.size, f"checkpoint of size {cp.size}: its columns disagree with its note"
            )


def _compare_projections(store: Store, state: MemoryState) -> None:
    """Every projection row must equal the one the replayed log gives."""
    expected: dict[str, list[tuple[dict[str, Any], int]]] = {
        "lots": [(lot_to_row(x), x.updated_seq) for x in state.lots.values()],
        "orgs": [(org_to_row(x), x.registered_seq) for x in state.orgs.values()],
        "keys": [(key_to_row(x), x.revoked_seq or x.added_seq) for x in state.keys.values()],
        "lot_edges": [(edge_to_row(x), x.seq) for x in state.edges],
        "lot_records": [({"lot": lot, "seq": seq}, seq) for lot, seq in state.lot_records],
        "lot_units": [(unit_to_row(x), x.seq) for x in state.unit_rows],
        "epr_outputs": [(output_to_row(x), x.seq) for x in state.outputs.values()],
        "certificates": [
            (certificate_to_row(x), x.updated_seq) for x in state.certificates.values()
        ],
        "declarations": [(declaration_to_row(x), x.seq) for x in state.declarations],
    }
    stored = store.projection_rows()
    for table in PROJECTIONS:
        names = [c.name for c in table.columns]
        key_cols = [c.name for c in table.primary_key.columns]
        want = {
            tuple(row[k] for k in key_cols): (tuple(row[n] for n in names), seq)
            for row, seq in expected[table.name]
        }
        have = {}
        for values in stored[table.name]:
            row = dict(
                zip(
                    names,
                    (bytes(v) if isinstance(v, memoryview) else v for v in values),
                    strict=True,
                )
            )
            have[tuple(row[k] for k in key_cols)] = tuple(row[n] for n in names)
        for pk in sorted(set(want) | set(have), key=lambda k: want.get(k, ((), 0))[1]):
            if pk not in have:
                problem = "lacks"
            elif pk not in want:
                problem = "has an extra row for"
            elif have[pk] != want[pk][0]:
                problem = "differs from the replayed log for"
            else:
                continue
            seq = want[pk][1] if pk in want else None
            ident = "/".join(str(x) for x in pk)
            raise Broken(seq, f"projection {table.name} {problem} {ident}; run `rledger rebuild`")


def rebuild(store: Store) -> MemoryState:
    """Replay the log into fresh projections (no signature checks: ``verify`` does those)."""
    state = replay(store, check_signatures=False)
    store.replace_projections(state)
    rebuild_tree(store.engine)  # the Merkle log too (ledger/merkle_log.py)
    return state
