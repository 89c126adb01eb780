"""Storage behind a narrow interface: append a batch, read state, rebuild.

Appending (tessera's contract): :meth:`Store.append` returns, for each
record, its durable sequence number — or the refusal — once the batch is
committed; or it raises :class:`Overloaded` / :class:`StoreUnavailable` and
nothing of the batch was kept. The append path:

1. :meth:`Store.prepare`, outside any lock: canonical-JSON and shape checks,
   and Ed25519 signature checks (over threads — verification releases the
   GIL — or worker processes);
2. :meth:`Store.commit`, under the single writer lock (SQLite ``BEGIN
   IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` of the ``ledger_meta``
   row): load every lot, org, key and record the batch names in a handful of
   queries (projection rows are cached while no other writer has moved the
   sequence on), run the rules in order against an in-memory overlay, then
   write with the driver's ``executemany``.

:meth:`Store.append_stream` overlaps the two: batch N+1 is prepared while
batch N is committed. See docs/adr/0002-single-sequencer.md.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import Connection, RootTransaction, Row
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger import rules
from ledger.database import is_sqlite, make_engine
from ledger.envelope import Envelope, checked_envelope, parse_envelope
from ledger.errors import Overloaded, RecordRefused, StoreUnavailable
from ledger.merkle_log import append_leaves
from ledger.prepare import check_chunk, outcome_refusal
from ledger.rows import (
    Statements,
    add_flows,
    certificate_from_row,
    chunks,
    key_from_row,
    lot_from_row,
    org_from_row,
    output_from_row,
    public_keys_by_id,
    refusal_values,
    write_epr,
    write_projections,
)
from ledger.signing import (
    Ed25519PublicKey,
    b64url_decode,
    decode_signature,
    key_id,
    load_public_key,
    verify,
)
from ledger.state import (
    Certificate,
    Edge,
    Effects,
    FlowKey,
    Key,
    Lot,
    MemoryState,
    Org,
    Output,
    PastRecord,
)
from ledger.tables import (
    PROJECTIONS,
    by_hash_prefix,
    certificates,
    epr_outputs,
    keys,
    ledger_meta,
    lot_units,
    lots,
    orgs,
    records,
)

MAX_BATCH = 5_000
EPR_CERTIFICATE_TYPES = ("certify", "certificate.transfer", "certificate.retire")
LOCK_TIMEOUT_MS = 10_000
PARALLEL_VERIFY_MIN = 64  # below this, a thread pool costs more than it saves
LOT_CACHE_SIZE = 200_000  # lots kept in memory between batches
GROUP_RECORDS = 5_000  # records committed together at most, when batches queue (commit)


@dataclass(frozen=True, slots=True)
class Signed:
    """A record as submitted: its canonical JSON text and its signature."""

    envelope: bytes | str
    signature: str


@dataclass(frozen=True, slots=True)
class Appended:
    id: str
    hash: str
    seq: int
    existing: bool = False  # True when this id and these bytes were already stored


Result = Appended | RecordRefused


_WRITER_LINE = re.compile(
    r"writer: ([\d,]+) records from ([\d,]+) batches in ([\d,]+) transactions; "
    r"writer lock held ([\d.]+) s \(([\d.]+) s of it on the CPU\)"
)  # WriterStats.describe's text


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What this Store's writer did since it opened: how the serial section is spent.

    ``lock_seconds``: wall time inside the write transaction, writer lock held (rules,
    writes, commit); ``lock_cpu_seconds``: this thread's CPU time within it (the rest is
    waiting: fsync, the GIL, the CPU). Logged by ``rledger serve`` when it stops."""

    transactions: int = 0
    batches: int = 0
    records: int = 0  # appended (new) records
    lock_seconds: float = 0.0
    lock_cpu_seconds: float = 0.0

    def add(self, batches: int, records: int, wall: float, cpu: float) -> WriterStats:
        return WriterStats(
            self.transactions + 1,
            self.batches + batches,
            self.records + records,
            self.lock_seconds + wall,
            self.lock_cpu_seconds + cpu,
        )

    @staticmethod
    def parse_all(text: str) -> list[WriterStats]:
        """Every :meth:`describe` line in ``text`` (a server log), read back."""
        return [
            WriterStats(
                int(t.replace(",", "")),
                int(b.replace(",", "")),
                int(r.replace(",", "")),
                float(h),
                float(c),
            )
            for r, b, t, h, c in _WRITER_LINE.findall(text)
        ]

    def describe(self) -> str:
        per = f", {self.lock_seconds / self.records * 1e6:.0f} µs a record" if self.records else ""
        return (
            f"writer: {self.records:,} records from {self.batches:,} batches in "
            f"{self.transactions:,} transactions; writer lock held {self.lock_seconds:.1f} s "
            f"({self.lock_cpu_seconds:.1f} s of it on the CPU){per}"
        )


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    id: str
    hash: str
    type: str
    actor: str
    key: str
    at: str
    recorded_at: str
    canonical: bytes
    sig: str

    @staticmethod
    def from_row(r: Row[Any]) -> StoredRecord:
        return StoredRecord(
            int(r.seq),
            r.id,
            r.hash,
            r.type,
            r.actor,
            r.key,
            r.at,
            r.recorded_at,
            bytes(r.canonical),
            r.sig,
        )

    @staticmethod
    def from_columns(r: Sequence[Any]) -> StoredRecord:
        """From a driver's row of ``records``' columns in the table's order."""
        seq, id, hash, type, actor, key, at, recorded_at, canonical, sig = r
        return StoredRecord(
            int(seq), id, hash, type, actor, key, at, recorded_at, bytes(canonical), sig
        )


def now_utc() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    """The ledger's storage. Thread-safe to share; each call uses its own connection."""

    def __init__(
        self, engine: Engine, *, verify_threads: int = 2, verify_processes: int = 0
    ) -> None:
        """``verify_threads``: signature checks spread over this many threads (the
        caller's included). ``verify_processes``: over this many worker processes
        instead — best with :meth:`append_stream`, where the writer thread then
        never competes with verification for the GIL."""
        self.engine = engine
        self._threads = max(1, verify_threads)
        self._pool = ThreadPoolExecutor(self._threads - 1) if self._threads > 1 else None
        self._process_count = verify_processes
        self._processes = (
            ProcessPoolExecutor(verify_processes, mp_context=get_context("spawn"))
            if verify_processes > 0
            else None
        )
        if self._processes is not None:  # start the workers now, not on the first batch
            for f in [self._processes.submit(check_chunk, "", []) for _ in range(verify_processes)]:
                f.result()
        self._url = engine.url.render_as_string(hide_password=False)  # for the workers
        self._sql = Statements(engine)
        self._commit_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Waiting] = []  # plain batches waiting for the writer (commit)
        self._stats = WriterStats()  # updated under _commit_lock
        self._writer_conn: Connection | None = None  # used only under _commit_lock
        # Caches of projection rows, valid while the ledger's last seq is the
        # one this Store last wrote (any other writer moves it on).
        self._cache_seq = -1
        self._lot_cache: dict[str, Lot] = {}
        self._org_cache: dict[str, Org] = {}
        self._keyrow_cache: dict[str, Key] = {}
        self._key_cache: dict[str, Ed25519PublicKey] = {}

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Store:
        return cls(make_engine(url), **kwargs)

    def close(self) -> None:
        with self._commit_lock:
            self._drop_writer()
        if self._pool:
            self._pool.shutdown()
        if self._processes:
            self._processes.shutdown()
        self.engine.dispose()

    # --- appending ---------------------------------------------------------

    def append(
        self, batch: Sequence[Signed], *, atomic: bool = False, now: datetime | None = None
    ) -> list[Result]:
        """Append a batch; one result per record, in order.

        Non-atomic: each record stands or falls alone. ``atomic=True``: if any
        record is refused, none is written and the others answer
        ``batch.aborted``.
        """
        return self.commit(self.prepare(batch), atomic=atomic, now=now)

    def append_stream(
        self, batches: Iterable[Sequence[Signed]], *, atomic: bool = False
    ) -> Iterator[list[Result]]:
        """Append batches in order, checking batch N+1's signatures while N is written.

        Results come back batch by batch, in order. A batch may depend on the
        ones before it (a key it adds, a lot it creates): records whose key
        was not yet known when their signatures were checked are checked
        again under the writer lock.
        """
        it = iter(batches)
        first = next(it, None)
        if first is None:
            return
        with ThreadPoolExecutor(1) as ahead:
            pending: Future[Prepared] = ahead.submit(self.prepare, first)
            for batch in it:
                prepared = pending.result()
                pending = ahead.submit(self.prepare, batch)
                yield self.commit(prepared, atomic=atomic)
            yield self.commit(pending.result(), atomic=atomic)

    def prepare(self, batch: Sequence[Signed]) -> Prepared:
        """Everything that needs no lock: canonical-JSON and shape checks, signatures."""
        if len(batch) > MAX_BATCH:
            raise RecordRefused("batch.too_large", f"at most {MAX_BATCH} records per batch")
        if self._processes is not None and len(batch) >= PARALLEL_VERIFY_MIN:
            return self._prepare_in_workers(batch)
        prepared = Prepared(batch, [None] * len(batch), [b""] * len(batch), [None] * len(batch))
        envs, sigs, results = prepared.envs, prepared.sigs, prepared.results
        for i, item in enumerate(batch):
            parsed: Envelope | None = None
            try:
                parsed = envs[i] = parse_envelope(item.envelope)
                sigs[i] = decode_signature(item.signature)
            except RecordRefused as exc:
                results[i] = exc.for_record(parsed.id if parsed is not None else None)
        self._verify_signatures(prepared)
        return prepared

    def _prepare_in_workers(self, batch: Sequence[Signed]) -> Prepared:
        """:meth:`prepare` in the verify worker processes (ledger/prepare.py): this
        process only rebuilds the envelopes they accepted."""
        assert self._processes is not None
        n = len(batch)
        prepared = Prepared(batch, [None] * n, [b""] * n, [None] * n)
        datas = [
            item.envelope.encode("utf-8", "surrogatepass")
            if isinstance(item.envelope, str)
            else bytes(item.envelope)
            for item in batch
        ]
        size = -(-n // self._process_count)
        futures = [
            (
                start,
                self._processes.submit(
                    check_chunk,
                    self._url,
                    [(datas[i], batch[i].signature) for i in range(start, min(start + size, n))],
                ),
            )
            for start in range(0, n, size)
        ]
        for start, future in futures:
            for i, outcome in enumerate(future.result(), start):
                if outcome[0] == "refused":
                    prepared.results[i] = outcome_refusal(outcome)
                    continue
                env = prepared.envs[i] = checked_envelope(datas[i])
                if outcome[1] is None:  # checked here, under the lock: it needs the bytes
                    prepared.sigs[i] = decode_signature(batch[i].signature)
                    prepared.deferred.add(i)
                elif not outcome[1]:
                    prepared.results[i] = _bad_signature(env)
        return prepared

    def _public_keys(self, wanted: set[str]) -> dict[str, Ed25519PublicKey]:
        """Public keys by id. A key id is the hash of its key, so entries never go stale."""
        missing = wanted - self._key_cache.keys()
        if missing:
            with self.engine.connect() as conn:
                self._key_cache.update(public_keys_by_id(conn, missing))
        return {k: self._key_cache[k] for k in wanted if k in self._key_cache}

    def _verify_signatures(self, prepared: Prepared) -> None:
        """Check each signature whose key is already registered; defer the others."""
        envs, sigs, results = prepared.envs, prepared.sigs, prepared.results
        public = self._public_keys({e.key for e in envs if e is not None})
        todo: list[int] = []
        for i, env in enumerate(envs):
            if env is None or results[i] is not None:
                continue
            if env.key in public:
                todo.append(i)
            else:  # perhaps added earlier in this batch, or in a batch not yet written
                prepared.deferred.add(i)

        def check(chunk: Sequence[int]) -> list[tuple[int, RecordRefused]]:
            bad = []
            for i in chunk:
                env = envs[i]
                assert env is not None
                if not verify(public[env.key], sigs[i], env.canonical):
                    bad.append((i, _bad_signature(env)))
            return bad

        outcomes: list[tuple[int, RecordRefused]] = []
        if self._pool is not None and len(todo) >= PARALLEL_VERIFY_MIN:
            # One contiguous chunk per thread; the calling thread takes the last one.
            size = -(-len(todo) // self._threads)
            chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
            futures_t = [self._pool.submit(check, c) for c in chunks[:-1]]
            outcomes = check(chunks[-1])
            for f in futures_t:
                outcomes.extend(f.result())
        else:
            outcomes = check(todo)
        for i, refusal in outcomes:
            results[i] = refusal

    def commit(
        self, prepared: Prepared, *, atomic: bool = False, now: datetime | None = None
    ) -> list[Result]:
        """Under the writer lock: idempotency, rules, then one transaction of writes.

        Group commit: a plain (non-atomic) batch that finds the writer busy waits in a
        queue, and whichever thread takes the lock next commits every waiting batch in
        one transaction (one fsync, one set of statements), in arrival order. Each batch
        gets exactly the results it would have had alone, in that order; if the
        transaction fails, every batch in it gets the same retryable error and nothing
        of any of them was kept. An atomic batch, or one with its own clock, is
        committed alone.
        """
        envs, results = prepared.envs, prepared.results
        if atomic and any(r is not None for r in results):
            return _abort(envs, results)
        if atomic or now is not None:
            with self._commit_lock:
                return self._commit_group([_Waiting(prepared)], atomic, now)[0]
        me = _Waiting(prepared)
        with self._queue_lock:
            self._queue.append(me)
        with self._commit_lock:
            if me.results is None and me.error is None:  # nobody took it: lead a group
                with self._queue_lock:
                    group, self._queue = _take_group(self._queue, GROUP_RECORDS)
                self._commit_group(group, False, None)
        if me.error is not None:
            raise me.error
        assert me.results is not None
        return me.results

    def _commit_group(
        self, group: list[_Waiting], atomic: bool, now: datetime | None
    ) -> list[list[Result]]:
        """Under the commit lock: commit ``group`` in one transaction; set each one's
        results (or error) and return the results."""
        try:
            out = self._commit_safely(group, atomic, now)
        except BaseException as exc:
            error = _store_error(exc)
            for w in group:
                w.error = error
            if error is exc:
                raise
            raise error from None
        for w, results in zip(group, out, strict=True):
            w.results = results
        return out

    def _commit_safely(
        self, group: list[_Waiting], atomic: bool, now: datetime | None
    ) -> list[list[Result]]:
        try:
            return self._commit_locked([w.prepared for w in group], atomic, now)
        except _AtomicAbort as abort:
            if abort.entry is not None:
                self._log_refusal(abort.entry)
            prepared = group[0].prepared
            return [_abort(prepared.envs, prepared.results)]
        except BaseException:
            self._forget()  # the caches may hold what was rolled back
            raise

    def writer_stats(self) -> WriterStats:
        """What the writer did since this Store opened (see :class:`WriterStats`)."""
        return self._stats

    def _commit_locked(
        self, group: list[Prepared], atomic: bool, now: datetime | None
    ) -> list[list[Result]]:
        with self._locked_writer() as (conn, seq):
            held = time.perf_counter(), time.thread_time()  # the lock is ours from here
            # The clock is read under the writer lock, never before it: a batch that read
            # it and then waited for the lock would be overtaken by later batches, and
            # recorded_at would go back along seq (verify and import refuse that).
            now = now or now_utc()
            recorded_at = format_time(now)
            if seq != self._cache_seq:
                self._forget()
            state = MemoryState(record_loader=lambda h: self._past_record(conn, h))
            state.seq = seq
            self._resolve_ids(conn, group)
            self._preload(
                conn,
                state,
                [e for p in group for i, e in enumerate(p.envs) if e and p.results[i] is None],
            )
            stored_lots, stored_keys = set(state.lots), set(state.keys)
            stored_outputs, stored_certs = set(state.outputs), set(state.certificates)
            changed_outputs: dict[str, Output] = {}
            changed_certs: dict[str, Certificate] = {}
            flows: dict[FlowKey, int] = {}
            new_records: list[tuple[Any, ...]] = []
            changed_lots: dict[str, Lot] = {}
            new_orgs: list[Org] = []
            changed_keys: dict[str, Key] = {}
            new_edges: list[Edge] = []
            refused: list[tuple[Any, ...]] = []  # signed records the rules refused (the log)
            # Ids written by an earlier batch of this group: a later batch naming one
            # again is answered as if that batch had been committed first.
            written: dict[str, Appended] = {}
            for prepared in group:
                envs, results, batch = prepared.envs, prepared.results, prepared.batch
                for i, env in enumerate(envs):
                    if env is None or results[i] is not None:
                        continue
                    if env.id in written:
                        results[i] = _again(written[env.id], env)
                        continue
                    try:
                        if i in prepared.deferred:
                            _verify_deferred(env, prepared.sigs[i], state)
                    except RecordRefused as exc:
                        results[i] = exc.for_record(env.id)
                        if atomic:
                            raise _AtomicAbort() from None
                        continue
                    try:
                        effects = rules.apply(env, state, seq + 1, now)
                    except RecordRefused as exc:
                        results[i] = exc.for_record(env.id)
                        entry = refusal_values(env, batch[i].signature, exc, recorded_at)
                        if atomic:
                            raise _AtomicAbort(entry) from None  # rolls the transaction back
                        if entry is not None:
                            refused.append(entry)
                        continue
                    seq += 1
                    state.apply(effects, rules.past_record(env, seq))
                    _collect(effects, changed_lots, new_orgs, changed_keys, new_edges)
                    changed_outputs.update((x.lot, x) for x in effects.outputs)
                    changed_certs.update((x.id, x) for x in effects.certificates)
                    for flow, grams in effects.flows:
                        flows[flow] = flows.get(flow, 0) + grams
                    new_records.append(
                        (
                            seq,
                            env.id,
                            env.hash,
                            env.type,
                            env.actor,
                            env.key,
                            env.at,
                            recorded_at,
                            env.canonical,
                            batch[i].signature,
                        )
                    )
                    results[i] = written[env.id] = Appended(env.id, env.hash, seq)
            if new_records:
                sql = self._sql
                conn.exec_driver_sql(sql.insert_records, new_records)
                # The Merkle log: leaf seq - 1 for each record, in this transaction.
                append_leaves(conn, new_records[0][0] - 1, [r[2] for r in new_records])
                write_projections(
                    conn,
                    changed_lots.values(),
                    new_orgs,
                    changed_keys.values(),
                    new_edges,
                    state.lot_records,
                    state.unit_rows,
                    stored_lots=stored_lots,
                    stored_keys=stored_keys,
                    sql=sql,
                )
                add_flows(conn, flows, sql)
                write_epr(
                    conn,
                    changed_outputs.values(),
                    changed_certs.values(),
                    state.declarations,
                    stored_outputs=stored_outputs,
                    stored_certificates=stored_certs,
                )
                conn.exec_driver_sql(sql.set_seq, (seq,))
            if refused:
                conn.exec_driver_sql(self._sql.insert_refusals, refused)
        # Committed: what this batch wrote is now the database's state.
        self._stats = self._stats.add(
            len(group),
            len(new_records),
            time.perf_counter() - held[0],
            time.thread_time() - held[1],
        )
        self._remember(state, seq)
        return [[r for r in p.results if r is not None] for p in group]

    def _log_refusal(self, entry: tuple[Any, ...]) -> None:
        """Log an atomic batch's refused record after its rollback (best effort: the
        refusal is the answer either way)."""
        with suppress(DBAPIError), self.engine.begin() as conn:
            conn.exec_driver_sql(self._sql.insert_refusals, [entry])

    def _forget(self) -> None:
        self._lot_cache.clear()
        self._org_cache.clear()
        self._keyrow_cache.clear()
        self._cache_seq = -1

    def _remember(self, state: MemoryState, seq: int) -> None:
        if len(self._lot_cache) + len(state.lots) > LOT_CACHE_SIZE:
            self._lot_cache.clear()
        self._lot_cache.update(state.lots)
        self._org_cache.update(state.orgs)
        self._keyrow_cache.update(state.keys)
        self._cache_seq = seq

    @contextmanager
    def _locked_writer(self) -> Iterator[tuple[Connection, int]]:
        """The store's own write connection, in a transaction that holds the writer lock;
        and the last sequence number. Commits when the block ends.

        The connection is kept open from batch to batch: SQLite throws a connection's page
        cache away whenever another connection has written since its last transaction, so
        a writer that took whichever pooled connection came next started every batch with
        a cold cache of the indexes it writes. A failed write drops the connection (its
        state is unknown; the next batch opens a fresh one).
        """
        conn, trans, seq = self._open_locked()
        try:
            with trans:
                yield conn, seq
        except _AtomicAbort:
            raise  # rolled back as asked; the connection is fine
        except BaseException:
            self._drop_writer()
            raise

    def _open_locked(self) -> tuple[Connection, RootTransaction, int]:
        """Begin and take the writer lock. A kept connection the database dropped while it
        idled (a PostgreSQL restart, a proxy's timeout) fails at the lock statement, before
        anything is written: it is replaced, once, and the batch goes on."""
        for attempt in (1, 2):
            conn = self._writer_conn
            kept = conn is not None and not conn.closed and not conn.invalidated
            if conn is None or not kept:
                conn = self._writer_conn = self._write_connection()
            trans = conn.begin()
            try:
                return conn, trans, self._lock(conn)
            except DBAPIError as exc:
                with suppress(Exception):
                    trans.rollback()
                self._drop_writer()
                if not (kept and exc.connection_invalidated) or attempt == 2:
                    raise
        raise AssertionError("not reached")

    def _drop_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            with suppress(Exception):  # the connection may be the thing that failed
                conn.close()

    def _write_connection(self) -> Connection:
        conn = self.engine.connect()
        if is_sqlite(self.engine):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return conn

    def _lock(self, conn: Connection) -> int:
        """Take the writer lock; return the last sequence number."""
        if not is_sqlite(self.engine):
            # A writer that waits longer than this is told Overloaded (retryable).
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
            return int(conn.exec_driver_sql(self._sql.lock).scalar_one())
        return int(conn.exec_driver_sql(self._sql.read_seq).scalar_one())

    def _resolve_ids(self, conn: Connection, group: list[Prepared]) -> None:
        """Idempotency: a stored id with the same bytes answers with the stored record;
        an id twice in one batch is refused (ids repeated across a group's batches are
        answered in the rules loop, once the earlier one is written or refused)."""
        ids = [
            e.id
            for p in group
            for i, e in enumerate(p.envs)
            if e is not None and p.results[i] is None
        ]
        stored: dict[str, tuple[str, int]] = {}
        for chunk in chunks(sorted(set(ids)), 500):
            for rid, rhash, rseq in conn.execute(
                select(records.c.id, records.c.hash, records.c.seq).where(records.c.id.in_(chunk))
            ):
                stored[rid] = (rhash, int(rseq))
        for prepared in group:
            _resolve_batch(prepared.envs, prepared.results, stored)

    def _preload(self, conn: Connection, state: MemoryState, envs: list[Envelope]) -> None:
        """Load every lot, org, key and voided record the batch names (cached ones from memory)."""
        void_targets = [e.body["record"] for e in envs if e.type == "void"]
        rows = (
            conn.execute(select(records).where(by_hash_prefix(void_targets))).all()
            if void_targets
            else []
        )
        for row in rows:
            env = parse_envelope(bytes(row.canonical))
            state.records[row.hash] = PastRecord(
                env.hash, int(row.seq), env.type, env.actor, env.body, env.at
            )
        lot_ids: set[str] = set()
        org_ids: set[str] = set()
        key_ids: set[str] = set()
        for env in envs:
            existing, created = rules.touched_lots(env.type, env.body)
            lot_ids.update(existing, created, env.parents)
            org_ids.add(env.actor)
            key_ids.add(env.key)
            for name in ("org", "to"):
                if isinstance(env.body.get(name), str):
                    org_ids.add(env.body[name])
            if env.type == "key.revoke":
                key_ids.add(env.body["key"])
            if env.type == "key.add":
                key_ids.add(key_id(b64url_decode(env.body["public_key"])))
        for past in state.records.values():
            existing, created = rules.touched_lots(past.type, past.body)
            lot_ids.update(existing, created)
            org_ids.add(past.actor)
        # EPR: the outputs a certificate stands on (or a voided transform made), and the
        # certificates a record names; flows: how the lots a transform or disposal spends
        # were made (their class, ledger/stages.py).
        output_ids = {
            item["lot"] for env in envs if env.type == "certify" for item in env.body["lots"]
        }
        spenders = [(e.type, e.body) for e in envs]
        spenders += [(p.type, p.body) for p in state.records.values()]
        for rtype, body in spenders:
            if rtype == "transform":
                output_ids.update(i["lot"] for i in body["inputs"])
            elif rtype == "dispose":
                output_ids.add(body["lot"])
        for past in state.records.values():
            if past.type == "transform":
                output_ids.update(o["lot"] for o in past.body["outputs"])
        lot_ids.update(output_ids)
        for row in _select_in(conn, epr_outputs, epr_outputs.c.lot, output_ids):
            state.outputs[row.lot] = output_from_row(row)
        cert_ids = {env.body["certificate"] for env in envs if env.type in EPR_CERTIFICATE_TYPES}
        for row in _select_in(conn, certificates, certificates.c.id, cert_ids):
            state.certificates[row.id] = certificate_from_row(row)
        # Battery codes a record registers: which lots already hold them (duplicates).
        unit_keys = {key for env in envs for key in rules.registered_unit_keys(env)}
        if unit_keys:
            for row in _select_in(conn, lot_units, lot_units.c.unit, unit_keys):
                state.units.setdefault(row.unit, []).append(row.lot)
                lot_ids.add(row.lot)
        state.load(
            _cached(
                self._lot_cache,
                lot_ids,
                lambda ids: (lot_from_row(r) for r in _select_in(conn, lots, lots.c.id, ids)),
            ),
            _cached(
                self._org_cache,
                org_ids,
                lambda ids: (org_from_row(r) for r in _select_in(conn, orgs, orgs.c.id, ids)),
            ),
            _cached(
                self._keyrow_cache,
                key_ids,
                lambda ids: (key_from_row(r) for r in _select_in(conn, keys, keys.c.id, ids)),
            ),
        )

    # --- reading -------------------------------------------------------------

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(ledger_meta.c.seq)).scalar_one())

    def operator(self) -> str | None:
        """The operator's org id: the actor of the genesis record."""
        with self.engine.connect() as conn:
            actor = conn.execute(select(records.c.actor).where(records.c.seq == 1)).scalar()
            return str(actor) if actor is not None else None

    def key_owner(self, kid: str) -> str | None:
        with self.engine.connect() as conn:
            org = conn.execute(select(keys.c.org).where(keys.c.id == kid)).scalar()
            return str(org) if org is not None else None

    def lot(self, lot_id: str) -> Lot | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(lots).where(lots.c.id == lot_id)).first()
            return lot_from_row(row) if row else None

    def heads(self, lot_ids: Iterable[str]) -> dict[str, str]:
        """The latest record hash of each existing lot: what a client puts in ``parents``."""
        with self.engine.connect() as conn:
            return {r.id: r.head for r in _select_in(conn, lots, lots.c.id, set(lot_ids))}

    def org(self, org_id: str) -> Org | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(orgs).where(orgs.c.id == org_id)).first()
            return org_from_row(row) if row else None

    def past_record(self, record_hash: str) -> PastRecord | None:
        """What a ``void`` needs to know of a stored record, by its hash."""
        with self.engine.connect() as conn:
            return self._past_record(conn, record_hash)

    @staticmethod
    def _past_record(conn: Connection, record_hash: str) -> PastRecord | None:
        rows = conn.execute(
            select(records.c.seq, records.c.hash, records.c.canonical).where(
                by_hash_prefix([record_hash])
            )
        ).all()
        row = next((r for r in rows if r.hash == record_hash), None)
        if row is None:
            return None
        env = parse_envelope(bytes(row.canonical))
        return PastRecord(env.hash, int(row.seq), env.type, env.actor, env.body, env.at)

    def records(self, from_seq: int = 1, page: int = 2_000) -> Iterator[StoredRecord]:
        """Every stored record in sequence order, read a page at a time."""
        last = from_seq - 1
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(records).where(records.c.seq > last).order_by(records.c.seq).limit(page)
                ).all()
            yield from map(StoredRecord.from_row, rows)
            if len(rows) < page:
                return
            last = int(rows[-1].seq)

    def projection_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every projection table's rows, sorted: two equal ledgers give equal dicts."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for t in PROJECTIONS:
                out[t.name] = sorted(tuple(r) for r in conn.execute(select(t)))
        return out

    def replace_projections(self, state: MemoryState) -> None:
        """Swap every projection for ``state`` in one transaction (``rebuild``)."""
        with self._write_connection() as conn, conn.begin():
            self._lock(conn)
            for t in PROJECTIONS:
                conn.execute(delete(t))
            write_projections(
                conn,
                state.lots.values(),
                state.orgs.values(),
                state.keys.values(),
                state.edges,
                state.lot_records,
                state.unit_rows,
                sql=self._sql,
            )
            write_epr(conn, state.outputs.values(), state.certificates.values(), state.declarations)
            add_flows(conn, state.flow_days, self._sql)
        self._forget()


@dataclass
class Prepared:
    """A batch after the lock-free checks (see :meth:`Store.prepare`)."""

    batch: Sequence[Signed]
    envs: list[Envelope | None]
    sigs: list[bytes]
    results: list[Result | None]
    deferred: set[int] = field(default_factory=set)  # signatures to check under the lock


def _bad_signature(env: Envelope) -> RecordRefused:
    return RecordRefused(
        "signature.invalid",
        "the signature does not verify over the envelope's canonical bytes with this key",
        path="signature",
        record_id=env.id,
    )


def _verify_deferred(env: Envelope, sig: bytes, state: MemoryState) -> None:
    """Check a signature whose key was unknown before the lock (added in this batch,
    or the genesis record's own key)."""
    raw = rules.signing_key(env, state)
    if raw is None:
        raise RecordRefused(
            "key.unknown",
            "no key with this id is registered; register it with key.add",
            path="key",
            record_id=env.id,
        )
    if not verify(load_public_key(raw), sig, env.canonical):
        raise _bad_signature(env)


def _resolve_batch(
    envs: list[Envelope | None], results: list[Result | None], stored: dict[str, tuple[str, int]]
) -> None:
    first_in_batch: dict[str, int] = {}
    for i, env in enumerate(envs):
        if env is None or results[i] is not None:
            continue
        if env.id in stored:
            rhash, rseq = stored[env.id]
            results[i] = _again(Appended(env.id, rhash, rseq), env)
        elif env.id in first_in_batch:
            same = envs[first_in_batch[env.id]]
            assert same is not None
            results[i] = RecordRefused(
                "id.reused",
                "this id appears twice in the batch"
                + ("" if same.hash != env.hash else " (same bytes: send it once)"),
                path="id",
                record_id=env.id,
            )
        else:
            first_in_batch[env.id] = i


def _again(stored: Appended, env: Envelope) -> Result:
    """The answer to a record whose id is already written: the stored record if the
    bytes are the same, else ``id.reused``."""
    if stored.hash == env.hash:
        return Appended(env.id, stored.hash, stored.seq, existing=True)
    return RecordRefused(
        "id.reused",
        "this id was already used for a record with other bytes; choose a new id (a ULID)",
        path="id",
        record_id=env.id,
    )


@dataclass(slots=True)
class _Waiting:
    """A batch waiting for the writer: its results, or the error, once committed."""

    prepared: Prepared
    results: list[Result] | None = None
    error: BaseException | None = None


def _take_group(queue: list[_Waiting], limit: int) -> tuple[list[_Waiting], list[_Waiting]]:
    """The waiting batches to commit together (arrival order, at least one, at most
    ``limit`` records unless the first alone is larger), and those left waiting."""
    total = 0
    for n, w in enumerate(queue):
        total += len(w.prepared.batch)
        if n and total > limit:
            return queue[:n], queue[n:]
    return queue, []


def _store_error(exc: BaseException) -> BaseException:
    """A database failure as the store's own retryable errors (see the module docstring)."""
    if isinstance(exc, OperationalError):
        if _is_busy(exc):
            return Overloaded("the ledger is busy; retry the same batch shortly")
        return StoreUnavailable(
            "the database failed during the write; nothing of this batch was kept; retry it"
        )
    if isinstance(exc, DBAPIError):
        return StoreUnavailable(
            "the database refused the write; nothing of this batch was kept; retry it"
        )
    return exc


T = TypeVar("T", Lot, Org, Key)


def _cached(cache: dict[str, T], ids: set[str], load: Callable[[set[str]], Iterable[T]]) -> list[T]:
    found = [cache[i] for i in ids if i in cache]
    missing = {i for i in ids if i not in cache}
    if missing:
        found.extend(load(missing))
    return found


class _AtomicAbort(Exception):
    """Internal: unwinds an atomic batch's transaction (``entry``: the refusal to log)."""

    def __init__(self, entry: tuple[Any, ...] | None = None) -> None:
        super().__init__()
        self.entry = entry


def _collect(
    effects: Effects,
    changed_lots: dict[str, Lot],
    new_orgs: list[Org],
    changed_keys: dict[str, Key],
    new_edges: list[Edge],
) -> None:
    for lot in effects.lots:
        changed_lots[lot.id] = lot
    new_orgs.extend(effects.orgs)
    for key in effects.keys:
        changed_keys[key.id] = key
    new_edges.extend(effects.edges)


def _abort(envs: list[Envelope | None], results: list[Result | None]) -> list[Result]:
    out: list[Result] = []
    for env, result in zip(envs, results, strict=True):
        if isinstance(result, RecordRefused):
            out.append(result)
        else:
            out.append(
                RecordRefused(
                    "batch.aborted",
                    "not written: another record in this atomic batch was refused",
                    record_id=env.id if env else None,
                )
            )
    return out


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "lock timeout" in text or "busy" in text


def _select_in(conn: Connection, table: Any, column: Any, values: Iterable[str]) -> list[Row[Any]]:
    out: list[Row[Any]] = []
    for chunk in chunks(sorted(set(values)), 500):
        out.extend(conn.execute(select(table).where(column.in_(chunk))).all())
    return out


# --- rows <-> state ---------------------------------------------------------------
