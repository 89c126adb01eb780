"""The Merkle log in the database: the stored tree, its proofs, and signed checkpoints.

The tree (docs/adr/0006-merkle-log.md) lives in ``merkle_hashes``: one row
per complete subtree, keyed by its stored-hash index (ledger/merkle.py).
Leaf ``i`` is the record at ``seq = i + 1``, and :func:`append_leaves` adds
a committed batch's leaves in the same transaction as its records (called
from ``Store._commit_locked``), so the tree always holds exactly one leaf per
record and its size is ``ledger_meta.seq``. A proof for any size up to the
current one reads at most about ``2 * log2(n)`` rows, in one statement.

Checkpoints (ledger/checkpoints.py) are signed by the ledger's own key and
kept in the append-only ``checkpoints`` table, one per tree size; a
:class:`Checkpointer` makes them — on demand, or on a schedule in ``rledger
serve`` — taking the writer lock so that the root it signs is the root of
exactly the records committed so far.

What part 2 (provenance bundles, ``rledger audit``) builds on:

- :func:`inclusion_for_record` / :func:`inclusion_at` / :func:`inclusions_at`
  (many leaves, one read) and :func:`consistency` — proofs as lists of 32-byte
  hashes, RFC 9162 order;
- :func:`root_at`, :func:`tree_size`;
- :func:`latest_checkpoint`, :func:`checkpoint_at`, :func:`checkpoint_covering`,
  :class:`Checkpointer` (``.checkpoint(min_size=…)`` signs one covering at least
  ``min_size`` unless one exists);
- :class:`TreeChecker`, :func:`rebuild_tree` (``verify`` and ``rebuild``).

Verification of what these return is pure: ledger/merkle.py and
ledger/checkpoints.py, with no database.
"""

from __future__ import annotations

import hashlib
import logging
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.engine import Connection

from ledger import merkle
from ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    check_key_name,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    verifier_key,
    verify_checkpoint,
)
from ledger.database import driver_rows, is_sqlite, placeholder
from ledger.errors import StoreUnavailable
from ledger.signing import key_id, public_key_bytes
from ledger.tables import checkpoints, ledger_meta, merkle_hashes, records

log = logging.getLogger("rledger.merkle")

_sha256 = hashlib.sha256
IN_CHUNK = 500
INSERT_CHUNK = 10_000
LOCK_TIMEOUT_MS = 10_000
DEFAULT_ORIGIN_PREFIX = "recovery-ledger/"


class TreeBroken(StoreUnavailable):
    """The stored tree does not fit the log (rows missing): nothing of the batch was kept;
    the operator runs ``rledger verify`` and ``rledger rebuild``."""


class ProofUnavailable(ValueError):
    """A proof or checkpoint the log cannot give (a size beyond it, sizes backwards, an
    empty ledger). ``argument``: the API argument at fault (``treeSize``, ``from``,
    ``to``), if any."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


# --- the stored tree ------------------------------------------------------------------


def _fetch(conn: Connection, ids: Sequence[int]) -> dict[int, bytes]:
    """On the driver's own cursor (:func:`~ledger.database.driver_rows`): this read is most
    of a proof's cost. PostgreSQL takes a chunk of ids as one array parameter."""
    found: dict[int, bytes] = {}
    sqlite = conn.dialect.name == "sqlite"
    for start in range(0, len(ids), IN_CHUNK):
        chunk = list(ids[start : start + IN_CHUNK])
        if sqlite:
            sql = f"SELECT id, hash FROM merkle_hashes WHERE id IN ({','.join('?' * len(chunk))})"
            rows = driver_rows(conn, sql, chunk)
        else:
            rows = driver_rows(
                conn, "SELECT id, hash FROM merkle_hashes WHERE id = ANY(%s)", [chunk]
            )
        for i, h in rows:
            found[int(i)] = bytes(h)
    return found


def _broken() -> TreeBroken:
    return TreeBroken(
        "the Merkle tree lacks stored hashes the log needs: run `rledger verify`, "
        "then `rledger rebuild`"
    )


def read_hashes(conn: Connection, ids: Sequence[int]) -> list[bytes]:
    """Stored hashes by stored-hash index, in the order asked; :class:`TreeBroken` if any
    is missing."""
    found = _fetch(conn, ids)
    try:
        return [found[i] for i in ids]
    except KeyError:
        raise _broken() from None


def _read_within(conn: Connection, size: int, ids: Sequence[int], what: str) -> dict[int, bytes]:
    """The stored hashes ``ids`` of the tree of ``size`` leaves, in one statement that also
    reads leaf ``size - 1``: its presence shows the log holds ``size`` records (hashes are
    committed with their records), so no separate read of the log's size is needed.
    :class:`ProofUnavailable` (naming ``what``) when ``size`` is beyond the log."""
    if size < 0:
        raise ProofUnavailable(f"{what} must be at least 0", what)
    want = sorted({*ids, merkle.stored_hash_index(0, size - 1)} if size else set(ids))
    found = _fetch(conn, want) if want else {}
    _require(conn, size, found, want, what)
    return found


def _require(
    conn: Connection, size: int, found: dict[int, bytes], want: Iterable[int], what: str
) -> None:
    """Fail closed when a stored hash in ``want`` is not in ``found``: the size is beyond
    the log (:class:`ProofUnavailable` naming ``what``), or else the tree is broken."""
    if not all(i in found for i in want):
        _within(conn, size, what)
        raise _broken()


def reader(conn: Connection) -> merkle.HashReader:
    """A :data:`ledger.merkle.HashReader` over ``conn``."""
    return lambda ids: read_hashes(conn, ids)


def _insert_sql(conn: Connection) -> str:
    mark = placeholder(conn)
    return f"INSERT INTO merkle_hashes (id, hash) VALUES ({mark}, {mark})"


def append_leaves(conn: Connection, size: int, record_hashes: Sequence[str]) -> None:
    """Add the leaves of ``record_hashes`` (hex) to the tree of ``size`` leaves, in the
    caller's transaction: the frontier's hashes in one read, the new ones in one
    ``executemany``. The append path calls this with each committed batch."""
    if not record_hashes:
        return
    ids = merkle.frontier_indexes(size)
    frontier = read_hashes(conn, ids) if ids else []
    # The append path's hashes are hashlib's own hexdigest(): no need to re-check them.
    leaves = [_sha256(b"\x00" + bytes.fromhex(h)).digest() for h in record_hashes]
    new, _ = merkle.append_hashes(frontier, size, leaves)
    start = merkle.stored_hash_count(size)
    conn.exec_driver_sql(_insert_sql(conn), [(start + i, h) for i, h in enumerate(new)])


def tree_size(conn: Connection) -> int:
    """The number of leaves: one per record (``ledger_meta.seq``)."""
    return int(conn.execute(select(ledger_meta.c.seq)).scalar_one())


def root_at(conn: Connection, size: int) -> bytes:
    """The root of the first ``size`` leaves (``size`` up to the tree's size)."""
    if size == 0:
        return merkle.EMPTY_ROOT
    plan = merkle.plan([(0, size)])
    found = _read_within(conn, size, plan.indexes, "size")
    return plan.assemble(lambda ids: [found[i] for i in ids])[0]


def _within(conn: Connection, size: int, what: str) -> int:
    current = tree_size(conn)
    if not 0 <= size <= current:
        raise ProofUnavailable(
            f"{what} {size} is beyond the log, which holds {current} records; ask for a "
            "size from the latest checkpoint",
            what,
        )
    return current


def inclusion_at(conn: Connection, leaf_index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``leaf_index`` (the record at seq ``leaf_index + 1``)
    in the tree of ``size`` leaves (RFC 9162 §2.1.3.1)."""
    _check_leaf(conn, leaf_index, size)
    plan = merkle.plan(merkle.inclusion_ranges(leaf_index, size))
    found = _read_within(conn, size, plan.indexes, "treeSize")
    return plan.assemble(lambda ids: [found[i] for i in ids])


def _check_leaf(conn: Connection, leaf_index: int, size: int) -> None:
    if not 0 <= leaf_index < size:
        _within(conn, size, "treeSize")
        raise ProofUnavailable(
            f"the record at seq {leaf_index + 1} is not among the first {size} records; "
            "ask for a larger tree size",
            "treeSize",
        )


# The stored-hash indexes of merkle.sibling_indexes(leaf, size), in PostgreSQL's SQL: the
# first %s is the highest level (size.bit_length() - 1), the second the size.
_SIBLINGS_PG = (
    "ARRAY(SELECT 2 * s.last - bit_count(s.last::bit(64)) + s.l FROM ("
    "SELECT l, (((({leaf} >> l) # 1) + 1) << l) - 1 AS last FROM generate_series(0, %s) AS l"
    ") AS s WHERE s.last < %s)"
)
# A record found by its hash (through ix_records_hash16, as in ledger.queries) and, in
# the same statement, the stored hashes its proof can need: its leaf's siblings, and the
# frontier of the tree of that size (the array parameter) with its last leaf.
_INCLUSION_BY_HASH_PG = (
    "SELECT r.seq, m.id, m.hash FROM records r LEFT JOIN merkle_hashes m ON m.id = ANY("
    + _SIBLINGS_PG.format(leaf="(r.seq - 1)")
    + " || %s::bigint[]) WHERE substr(r.hash, 1, 16) = %s AND r.hash = %s"
)
ONE_STATEMENT_SIZES = range(1, 2**53)  # within JSON's integers: no overflow in the SQL


def inclusion_by_record_hash_pg(conn: Connection, record_hash: str, size: int) -> Inclusion | None:
    """The proof of the record ``record_hash`` in the tree of ``size`` leaves (a size in
    :data:`ONE_STATEMENT_SIZES`), or None when no record has that hash, in one round trip
    to PostgreSQL: the record's seq and every stored hash its proof can need, from
    :data:`_INCLUSION_BY_HASH_PG`. No access check: for a reader of everything
    (ledger.queries.inclusion_by_hash). Fails closed as :func:`inclusion_at` does when
    the size is beyond the log or a needed hash is missing."""
    fixed = [*merkle.frontier_indexes(size), merkle.stored_hash_index(0, size - 1)]
    rows = driver_rows(
        conn,
        _INCLUSION_BY_HASH_PG,
        [size.bit_length() - 1, size, fixed, record_hash[:16], record_hash],
    )
    if not rows:
        return None
    leaf_index = int(rows[0][0]) - 1
    _check_leaf(conn, leaf_index, size)
    found = {int(i): bytes(h) for _, i, h in rows if i is not None}
    plan = merkle.plan(merkle.inclusion_ranges(leaf_index, size))
    _require(conn, size, found, [*plan.indexes, fixed[-1]], "treeSize")
    return Inclusion(
        record_hash, leaf_index, size, plan.assemble(lambda ids: [found[i] for i in ids])
    )


def inclusions_at(
    conn: Connection, leaf_indexes: Iterable[int], size: int
) -> dict[int, list[bytes]]:
    """Inclusion proofs of many leaves in the tree of ``size`` leaves, from one read of
    all the stored hashes they need (chunks of :data:`IN_CHUNK`): for a bundle of many
    records against one checkpoint."""
    wanted = sorted(set(leaf_indexes))
    for index in wanted:
        if not 0 <= index < size:
            _within(conn, size, "treeSize")
            raise ProofUnavailable(
                f"the record at seq {index + 1} is not among the first {size} records; "
                "ask for a larger tree size",
                "treeSize",
            )
    plans = {i: merkle.plan(merkle.inclusion_ranges(i, size)) for i in wanted}
    ids = sorted({x for p in plans.values() for x in p.indexes})
    found = _read_within(conn, size, ids, "treeSize")
    return {i: p.assemble(lambda ask: [found[x] for x in ask]) for i, p in plans.items()}


@dataclass(frozen=True, slots=True)
class Inclusion:
    """An inclusion proof for one record: leaf index ``seq - 1`` in the tree of ``tree_size``."""

    record_hash: str
    leaf_index: int
    tree_size: int
    hashes: list[bytes]

    @property
    def seq(self) -> int:
        return self.leaf_index + 1


def inclusion_for_record(conn: Connection, record_hash: str, seq: int, size: int) -> Inclusion:
    """The proof for the record ``record_hash`` stored at ``seq`` (the caller found it,
    with its own access check)."""
    return Inclusion(record_hash, seq - 1, size, inclusion_at(conn, seq - 1, size))


def consistency(conn: Connection, first: int, second: int) -> list[bytes]:
    """The consistency proof from size ``first`` to ``second`` (RFC 9162 §2.1.4.1)."""
    if first < 0:
        raise ProofUnavailable("from must be at least 0", "from")
    if first > second:
        raise ProofUnavailable(
            f"from ({first}) must not be larger than to ({second}): logs only grow", "from"
        )
    plan = merkle.plan(merkle.consistency_ranges(first, second))
    found = _read_within(conn, second, plan.indexes, "to")
    return plan.assemble(lambda ids: [found[i] for i in ids])


def rebuild_tree(engine: Engine) -> int:
    """Recompute the whole tree from the records, under the writer lock; returns its size.

    ``rledger rebuild`` runs it. It rewrites whatever the table held: a tree that
    disagrees with an earlier checkpoint stays caught by that checkpoint.
    """
    with _Locked(engine) as conn:
        size = int(conn.execute(select(ledger_meta.c.seq)).scalar_one())
        conn.execute(delete(merkle_hashes))
        frontier: list[bytes] = []
        done, next_id = 0, 0
        sql = _insert_sql(conn)
        for page in _record_hash_pages(conn, size):
            try:
                leaves = [merkle.record_leaf(h) for h in page]
            except merkle.ProofError:
                raise TreeBroken(
                    f"a record hash between seq {done + 1} and {done + len(page)} is not 64 "
                    "lowercase hex digits: run `rledger verify`"
                ) from None
            new, frontier = merkle.append_hashes(frontier, done, leaves)
            for start in range(0, len(new), INSERT_CHUNK):
                chunk = new[start : start + INSERT_CHUNK]
                conn.exec_driver_sql(sql, [(next_id + i, h) for i, h in enumerate(chunk)])
                next_id += len(chunk)
            done += len(page)
        if done != size:
            raise TreeBroken(f"the log holds {done} records but ledger_meta says {size}")
        return size


def _record_hash_pages(conn: Connection, size: int, page: int = 5_000) -> Iterator[list[str]]:
    last = 0
    while last < size:
        rows = conn.execute(
            select(records.c.seq, records.c.hash)
            .where(records.c.seq > last, records.c.seq <= size)
            .order_by(records.c.seq)
            .limit(page)
        ).all()
        if not rows:
            return
        for expected, row in enumerate(rows, last + 1):
            if int(row.seq) != expected:
                raise TreeBroken(f"the log has a gap before seq {int(row.seq)}")
        yield [r.hash for r in rows]
        last = int(rows[-1].seq)


class _Locked:
    """A write transaction holding the writer lock (as ``Store`` takes it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        conn = self.engine.connect()
        if is_sqlite(self.engine):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        self.conn = conn
        self.tx = conn.begin()
        if not is_sqlite(self.engine):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
            conn.exec_driver_sql("SELECT seq FROM ledger_meta WHERE id = 1 FOR UPDATE")
        return conn

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if kind is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()


# --- checking the tree against the log (verify) -----------------------------------


class TreeChecker:
    """Recomputes the tree from the records, in sequence order, and compares it with the
    stored hashes as it goes: :meth:`add` names the first record whose leaf (or a
    subtree it completes) differs. Also checks the stored checkpoints' roots."""

    def __init__(self, engine: Engine, page: int = 20_000) -> None:
        self.engine = engine
        self.size = 0
        self._frontier: list[bytes] = []
        self._page = page
        self._stored: list[bytes] = []
        self._stored_from = 0  # stored-hash index of self._stored[0]
        self._checkpoints = sorted(all_checkpoints(engine), key=lambda c: c.size, reverse=True)
        self.checkpoints_checked = 0

    def _stored_hash(self, index: int) -> bytes | None:
        offset = index - self._stored_from
        if offset >= len(self._stored):
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(merkle_hashes.c.id, merkle_hashes.c.hash)
                    .where(merkle_hashes.c.id >= index)
                    .order_by(merkle_hashes.c.id)
                    .limit(self._page)
                ).all()
            self._stored_from = index
            self._stored = []
            for expected, (i, h) in enumerate(rows, index):
                if int(i) != expected:
                    break
                self._stored.append(bytes(h))
            offset = 0
            if not self._stored:
                return None
        return self._stored[offset]

    def add(self, seq: int, record_hash: str) -> str | None:
        """Append the record at ``seq``; a problem (text) when the stored tree disagrees."""
        if seq != self.size + 1:
            return f"expected seq {self.size + 1} in the tree, found {seq}"
        start = merkle.stored_hash_count(self.size)
        try:
            leaf = merkle.record_leaf(record_hash)
        except merkle.ProofError:
            return "the record hash is not 64 lowercase hex digits"
        new, self._frontier = merkle.append_hashes(self._frontier, self.size, [leaf])
        self.size += 1
        for i, h in enumerate(new, start):
            stored = self._stored_hash(i)
            if stored is None:
                return "the Merkle tree lacks this record's leaf; run `rledger rebuild`"
            if stored != h:
                what = "leaf" if i == start else "a subtree hash this record completes"
                return f"the Merkle tree's {what} differs from the log; run `rledger rebuild`"
        return self._check_checkpoints()

    def _check_checkpoints(self) -> str | None:
        while self._checkpoints and self._checkpoints[-1].size <= self.size:
            cp = self._checkpoints.pop()
            if cp.size != self.size:  # a size-0 checkpoint, or one skipped: cannot happen
                return f"checkpoint of size {cp.size} does not fit the log"
            self.checkpoints_checked += 1
            root = merkle.fold(self._frontier)
            if root.hex() != cp.root:
                signed = datetime.fromtimestamp(cp.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                return (
                    f"the log's first {cp.size} records have root {root.hex()}, but the "
                    f"checkpoint signed at {signed} for that size says {cp.root}: records "
                    "up to here were changed after it was signed"
                )
        return None

    def finish(self) -> str | None:
        """After the last record: no extra stored hashes; no checkpoint beyond the log."""
        if self._stored_hash(merkle.stored_hash_count(self.size)) is not None:
            return "the Merkle tree holds more hashes than the log has records"
        if self._checkpoints:
            cp = self._checkpoints[0]
            return f"a checkpoint of size {cp.size} is larger than the log ({self.size} records)"
        return None

    def root(self) -> bytes:
        return merkle.fold(self._frontier) if self._frontier else merkle.EMPTY_ROOT


# --- checkpoints --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A row of ``checkpoints``: ``root`` lowercase hex, ``time`` POSIX seconds, ``note``
    the signed note, ``verifier_key`` the signed-note verifier key of the ledger key that
    signed it (``<origin>+<key ID>+<base64 key>``: what an auditor pins)."""

    size: int
    root: str
    time: int
    note: str
    verifier_key: str

    @property
    def origin(self) -> str:
        return parse_checkpoint(parse_note(self.note)[0]).origin


def _from_row(row: object) -> StoredCheckpoint:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredCheckpoint(int(r["size"]), r["root"], int(r["time"]), r["note"], r["verifier_key"])


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The checkpoint of the largest tree size, if any."""
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return _from_row(row) if row is not None else None


def checkpoint_at(conn: Connection, size: int) -> StoredCheckpoint | None:
    """The checkpoint of exactly this tree size, if one was signed."""
    row = conn.execute(select(checkpoints).where(checkpoints.c.size == size)).first()
    return _from_row(row) if row is not None else None


def checkpoint_covering(conn: Connection, size: int) -> StoredCheckpoint | None:
    """The smallest checkpoint whose tree holds at least ``size`` leaves, if any."""
    row = conn.execute(
        select(checkpoints).where(checkpoints.c.size >= size).order_by(checkpoints.c.size).limit(1)
    ).first()
    return _from_row(row) if row is not None else None


def all_checkpoints(engine: Engine) -> list[StoredCheckpoint]:
    with engine.connect() as conn:
        return [
            _from_row(r) for r in conn.execute(select(checkpoints).order_by(checkpoints.c.size))
        ]


def default_origin(engine: Engine) -> str:
    """``recovery-ledger/<first 16 hex digits of the genesis record's hash>``: names this
    ledger for as long as it lives, whatever key signs for it."""
    with engine.connect() as conn:
        genesis = conn.execute(select(records.c.hash).where(records.c.seq == 1)).scalar()
    if genesis is None:
        raise ProofUnavailable("the ledger is empty: nothing to checkpoint yet")
    return DEFAULT_ORIGIN_PREFIX + str(genesis)[:16]


class Checkpointer:
    """Signs checkpoints of one ledger with the ledger key (``rledger init`` writes it to
    ``<keys>/ledger.key``).

    ``origin``: the log's name in its checkpoints (and the key name of its
    signatures). By default, the origin of the checkpoints already stored, or
    :func:`default_origin`. A configured origin that differs from the stored one
    is refused: one log keeps one name.
    """

    def __init__(
        self,
        engine: Engine,
        private_key: Ed25519PrivateKey,
        *,
        origin: str | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        if origin is not None:
            check_key_name(origin, "the origin")
        self.engine = engine
        self.private_key = private_key
        self.public_key = public_key_bytes(private_key.public_key())
        self.key_id = key_id(self.public_key)
        self._origin = origin
        self._origin_checked = False
        self._clock = clock

    @classmethod
    def from_key_file(
        cls, engine: Engine, path: Path, *, origin: str | None = None
    ) -> Checkpointer:
        """With the ledger key from its PEM file (``rledger init``'s ``<keys>/ledger.key``)."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(engine, key, origin=origin)

    @property
    def origin(self) -> str:
        """The log's name; :class:`~ledger.checkpoints.CheckpointError` if a configured one
        differs from the stored checkpoints'."""
        if not self._origin_checked:
            with self.engine.connect() as conn:
                latest = latest_checkpoint(conn)
            stored = latest.origin if latest is not None else None
            if self._origin is None:
                self._origin = stored or default_origin(self.engine)
            elif stored is not None and stored != self._origin:
                raise CheckpointError(
                    f"this ledger's checkpoints name the log {stored!r}; configure that "
                    f"origin, not {self._origin!r}: one log keeps one name"
                )
            self._origin_checked = True
        assert self._origin is not None
        return self._origin

    @property
    def verifier_key(self) -> str:
        """The signed-note verifier key an auditor pins: ``<origin>+<key ID>+<key>``."""
        return verifier_key(self.origin, self.public_key)

    def checkpoint(self, *, min_size: int | None = None) -> StoredCheckpoint:
        """A checkpoint of the current tree: the latest stored one if the tree has not
        grown since (or, with ``min_size``, if it already covers ``min_size`` leaves),
        else a new one signed now. Raises :class:`ProofUnavailable` on an empty ledger."""
        origin = self.origin
        with self.engine.connect() as conn:  # the common case, without the writer lock
            latest = latest_checkpoint(conn)
            size = tree_size(conn)
        wanted = size if min_size is None else min(size, min_size)
        if latest is not None and latest.size >= wanted:
            return latest
        with _Locked(self.engine) as conn:
            size = tree_size(conn)
            latest = latest_checkpoint(conn)
            wanted = size if min_size is None else min(size, min_size)
            if latest is not None and latest.size >= wanted:
                return latest
            if size == 0:
                raise ProofUnavailable("the ledger is empty: nothing to checkpoint yet")
            if latest is not None and latest.origin != origin:
                raise CheckpointError(
                    f"this ledger's checkpoints name the log {latest.origin!r}; "
                    f"configure that origin, not {origin!r}"
                )
            root = merkle.tree_root(size, reader(conn))
            # Times only move forward: a clock set back signs the previous time again.
            now = max(int(self._clock()), latest.time if latest is not None else 0)
            note = sign_checkpoint(Checkpoint(origin, size, root), self.private_key, time=now)
            made = StoredCheckpoint(
                size, root.hex(), now, note, verifier_key(origin, self.public_key)
            )
            conn.execute(
                insert(checkpoints),
                [
                    {
                        "size": made.size,
                        "root": made.root,
                        "time": made.time,
                        "note": made.note,
                        "verifier_key": made.verifier_key,
                    }
                ],
            )
        log.info("signed checkpoint of %d records", size)
        return made

    def verify(self, stored: StoredCheckpoint) -> None:
        """Check a stored checkpoint's note against this key; raise
        :class:`~ledger.checkpoints.CheckpointError` unless it verifies and matches."""
        checked = verify_checkpoint(stored.note, self.public_key, origin=self.origin)
        if checked.checkpoint.size != stored.size or checked.checkpoint.root.hex() != stored.root:
            raise CheckpointError(f"checkpoint {stored.size}: its columns disagree with its note")
        if checked.time != stored.time:
            raise CheckpointError(f"checkpoint {stored.size}: its time disagrees with its note")


def checkpoint_if_grown(checkpointer: Checkpointer) -> StoredCheckpoint | None:
    """For the schedule: sign a checkpoint when the tree has grown since the last one
    (``None`` when it has not, or the ledger is empty); log and swallow failures (the
    next tick tries again)."""
    try:
        with checkpointer.engine.connect() as conn:
            latest = latest_checkpoint(conn)
            if tree_size(conn) == 0:
                return None
        made = checkpointer.checkpoint()
    except Exception:
        log.exception("scheduled checkpoint failed; will retry at the next tick")
        return None
    return None if latest is not None and made.size == latest.size else made
