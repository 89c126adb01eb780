"""Full verification of a stored ledger, and the replay that ``rebuild`` uses.

``verify`` trusts nothing in the database but the record bytes: for every
record in sequence order it re-checks that the stored bytes are canonical,
that the stored hash and columns match them, the signature, the key's
validity, the ``parents`` links and the mass balance (by replaying the rules
from an empty state), that the stored Merkle tree and checkpoints agree with
the record hashes, and finally that the stored projections equal the
replayed ones.

With ``processes=N`` the checks that need no ledger state — reading the
records, their canonical form and shape, hash, columns and Ed25519 signature
— run in ``N`` worker processes, a chunk of records each
(ledger/record_checks.py), while this process replays the rules in sequence
order over the chunks already checked: reads, signature checks and the
replay overlap. The workers run at a lower priority: the replay is the
critical path. Either way the report is the same, naming the first bad
sequence number (tests/test_verify_parallel.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.types import LargeBinary

from ledger import rules
from ledger.checkpoints import CheckpointError, verify_checkpoint
from ledger.collector import paused_cycle_collector
from ledger.envelope import Envelope, parse_at
from ledger.errors import RecordRefused
from ledger.merkle_log import TreeChecker, all_checkpoints, rebuild_tree
from ledger.record_checks import (
    Checked,
    check_stored_range,
    check_stored_row,
    lower_priority,
    read_stored,
    warm_up,
)
from ledger.rows import (
    certificate_to_row,
    declaration_to_row,
    edge_to_row,
    edge_values,
    flow_to_row,
    flow_total_to_row,
    flow_totals_of,
    key_to_row,
    lot_to_row,
    lot_values,
    org_to_row,
    output_to_row,
    unit_to_row,
)
from ledger.signing import Ed25519PublicKey, decode_signature, key_id, load_public_key, verify
from ledger.state import MemoryState
from ledger.store import Store, StoredRecord
from ledger.tables import PROJECTIONS, records

CHUNK = 2_000  # records a worker reads and checks at a time
AHEAD = 3  # chunks in flight per worker process
PAGE = 2_000  # records read at a time without workers


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


class TreeCheck(Protocol):
    """What the replay hands each record's hash to (:class:`TreeChecker` for a stored
    ledger): ``add`` answers a problem's text or ``None``."""

    def add(self, seq: int, record_hash: str) -> str | None: ...


class Replayer:
    """The sequential half of verification: each checked record (ledger/record_checks.py),
    in sequence order, against the state of all the records before it.

    For each record, in this order: not recorded before the one ahead of it
    (``check_order``); the next seq; the checks a worker made (first problem);
    a key the ledger registered, and the signature under it; the rules; the
    Merkle tree (``tree``). A worker's signature verdict counts only if the key
    the state holds for the record hashes to the id the worker used; otherwise,
    or when the worker had no key, the signature is checked here.
    """

    def __init__(
        self,
        state: MemoryState,
        *,
        tree: TreeCheck | None = None,
        check_signatures: bool = True,
        check_order: bool = True,
    ) -> None:
        self.state = state
        self.tree = tree
        self.check_signatures = check_signatures
        self.check_order = check_order
        self.last_recorded = ""
        self._now_text = ""
        self._now: datetime | None = None
        self._ids: dict[bytes, str] = {}
        self._loaded: dict[bytes, Ed25519PublicKey] = {}

    def run(self, checked: Iterable[Checked]) -> None:
        with paused_cycle_collector():  # the state grows to millions of objects
            for item in checked:
                self.step(item)

    def step(self, item: Checked) -> None:
        seq, recorded_at, problem, verdict, signature, fields = item
        state = self.state
        if self.check_order:
            if recorded_at < self.last_recorded:
                raise Broken(seq, "recorded before the record ahead of it: the log was reordered")
            self.last_recorded = recorded_at
        if seq != state.seq + 1:
            raise Broken(state.seq + 1, f"sequence gap: expected seq {state.seq + 1}, found {seq}")
        if problem is not None or fields is None:
            raise Broken(seq, problem or "the record could not be checked")
        env = Envelope(*fields)
        if self.check_signatures:
            self._signature(seq, env, verdict, signature)
        if recorded_at != self._now_text:  # a batch shares one recorded_at
            self._now_text, self._now = recorded_at, parse_at(recorded_at)
        assert self._now is not None
        try:
            effects = rules.apply(env, state, seq, self._now)
        except RecordRefused as exc:
            raise Broken(seq, f"record breaks a rule on replay: {exc}") from None
        state.apply(effects, rules.past_record(env, seq))
        if self.tree is not None and (problem := self.tree.add(seq, env.hash)) is not None:
            raise Broken(seq, problem)

    def _signature(self, seq: int, env: Envelope, verdict: bool | None, signature: str) -> None:
        raw = rules.signing_key(env, self.state)
        if raw is None:
            raise Broken(seq, "signed with a key the ledger never registered")
        kid = self._ids.get(raw)
        if kid is None:
            kid = self._ids[raw] = key_id(raw)
        if verdict is None or kid != env.key:  # the worker had no key, or another one
            try:
                key = self._loaded.get(raw)
                if key is None:
                    key = self._loaded[raw] = load_public_key(raw)
                verdict = verify(key, decode_signature(signature), env.canonical)
            except (RecordRefused, ValueError):
                verdict = False
        if not verdict:
            raise Broken(seq, "signature does not verify")


def _as_row(rec: StoredRecord) -> tuple[Any, ...]:
    return (
        rec.seq,
        rec.id,
        rec.hash,
        rec.type,
        rec.actor,
        rec.key,
        rec.at,
        rec.recorded_at,
        rec.canonical,
        rec.sig,
    )


def replay_record(state: MemoryState, rec: StoredRecord, *, check_signature: bool) -> None:
    """Apply one stored record to ``state``, re-checking it; raises :class:`Broken`."""
    replayer = Replayer(state, check_signatures=check_signature, check_order=False)
    replayer.step(check_stored_row(_as_row(rec), signatures=False))


def replay(store: Store, *, check_signatures: bool) -> MemoryState:
    state = MemoryState(record_loader=store.past_record, keep_records=False)
    replayer = Replayer(state, check_signatures=check_signatures, check_order=False)
    replayer.run(_checked_here(store))
    return state


def _checked_here(store: Store, first: int = 1) -> Iterator[Checked]:
    """Every stored record from seq ``first`` on, checked in this process (the signature
    is left to the replay)."""
    while True:
        rows = read_stored(store.engine, first, PAGE)
        for row in rows:
            yield check_stored_row(row, signatures=False)
        if len(rows) < PAGE:
            return
        first = int(rows[-1][0]) + 1


def _last_stored_seq(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(records.c.seq), 0))).scalar_one())


Call = tuple[Callable[..., list[Checked]], tuple[Any, ...]]


def checked_in_order(
    processes: int, calls: Iterable[Call], *, pool: Executor | None = None
) -> Iterator[Checked]:
    """Run each ``(function, args)`` of ``calls`` — a chunk of records to check — in
    ``processes`` worker processes (or the caller's ``pool``, left running), up to
    ``AHEAD`` chunks per worker in flight, and hand their records on in order. ``calls``
    is read lazily, as room opens up: a call made late can carry what the replay has
    learnt meanwhile."""
    own = pool is None
    workers = pool or ProcessPoolExecutor(
        processes, mp_context=get_context("spawn"), initializer=lower_priority
    )
    pending: deque[Future[list[Checked]]] = deque()
    try:
        if own:  # start them all now, not one per chunk as the first ones come in
            for started in [workers.submit(warm_up) for _ in range(processes)]:
                started.result()
        todo = iter(calls)
        more = True
        while True:
            while more and len(pending) < processes * AHEAD:
                call = next(todo, None)
                if call is None:
                    more = False
                else:
                    pending.append(workers.submit(call[0], *call[1]))
            if not pending:
                return
            yield from pending.popleft().result()
    finally:
        if own:
            workers.shutdown(wait=True, cancel_futures=True)
        else:
            for future in pending:
                future.cancel()


def _stored_chunks(store: Store, chunk: int) -> Iterator[Call]:
    """Chunks of the stored log for the workers, until its last record. A chunk holds the
    rows from its first seq on: after a gap it runs into the next chunk's, and the replay
    stops at the gap."""
    url = store.engine.url.render_as_string(hide_password=False)
    first = 1
    while (end := _last_stored_seq(store)) >= first:  # again at the end: appended meanwhile?
        while first <= end:
            yield check_stored_range, (url, first, chunk)
            first += chunk


def verify_store(
    store: Store,
    *,
    checkpoint_key: bytes | None = None,
    processes: int = 0,
    chunk: int = CHUNK,
    pool: Executor | None = None,
) -> Report:
    """Re-check the whole ledger; name the first bad sequence number.

    The Merkle tree is recomputed from the records as they are replayed and must equal
    the stored one, and every stored checkpoint's root must equal the log's root at its
    size (ledger/merkle_log.py). ``checkpoint_key``: the ledger's public key (32 bytes);
    when given, every checkpoint's signatures are checked with it too.

    ``processes``: worker processes that read the records and check them (canonical
    form, hash, columns, signature) ``chunk`` records at a time while this process
    replays the rules; 0 (the default), or a ledger of no more than one chunk: all
    in this process. ``pool``: a process pool of that many workers to use instead of
    starting them (they keep nothing of one ledger that could mislead another: keys are
    cached by the id they hash to).
    """
    state = MemoryState(record_loader=store.past_record, keep_records=False)
    tree = TreeChecker(store.engine)
    replayer = Replayer(state, tree=tree)
    try:
        with paused_cycle_collector():  # the replay, and the comparison of its rows
            if processes > 0 and _last_stored_seq(store) > chunk:
                replayer.run(checked_in_order(processes, _stored_chunks(store, chunk), pool=pool))
            else:
                replayer.run(_checked_here(store))
            if store.last_seq() != state.seq:
                raise Broken(
                    state.seq + 1,
                    f"ledger_meta says {store.last_seq()} records, log holds {state.seq}",
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


def _expected_tuples(state: MemoryState, name: str, names: list[str]) -> list[tuple[Any, ...]]:
    """A table's replayed rows as tuples in column order (the fast comparison)."""
    if name == "lots":
        return [lot_values(x) for x in state.lots.values()]
    if name == "lot_edges":
        return [edge_values(x) for x in state.edges]
    if name == "lot_records":
        return list(state.lot_records)
    return [tuple(row[n] for n in names) for row, _ in _expected_rows(state, name)]


def _expected_rows(state: MemoryState, name: str) -> list[tuple[dict[str, Any], int]]:
    """A table's replayed rows, each with the seq that last made it."""
    if name == "lots":
        return [(lot_to_row(x), x.updated_seq) for x in state.lots.values()]
    if name == "orgs":
        return [(org_to_row(x), x.registered_seq) for x in state.orgs.values()]
    if name == "keys":
        return [(key_to_row(x), x.revoked_seq or x.added_seq) for x in state.keys.values()]
    if name == "lot_edges":
        return [(edge_to_row(x), x.seq) for x in state.edges]
    if name == "lot_records":
        return [({"lot": lot, "seq": seq}, seq) for lot, seq in state.lot_records]
    if name == "lot_units":
        return [(unit_to_row(x), x.seq) for x in state.unit_rows]
    if name == "epr_outputs":
        return [(output_to_row(x), x.seq) for x in state.outputs.values()]
    if name == "certificates":
        return [(certificate_to_row(x), x.updated_seq) for x in state.certificates.values()]
    if name == "declarations":
        return [(declaration_to_row(x), x.seq) for x in state.declarations]
    if name == "flow_days":
        return [(flow_to_row(k, g), 0) for k, g in state.flow_days.items()]
    if name == "flow_totals":
        totals = flow_totals_of(state.flow_days)
        return [(flow_total_to_row(k, g), 0) for k, g in totals.items()]
    raise AssertionError(f"no replayed rows for projection {name}")


def _stored_rows(store: Store, table: Any) -> list[tuple[Any, ...]]:
    """A projection table's rows as tuples in column order, straight from the driver's
    cursor (``fetchall`` in C: a third of the time of a row-by-row read at 1M records)."""
    names = ", ".join(c.name for c in table.columns)
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"SELECT {names} FROM {table.name}")
            rows = cursor.fetchall()
        finally:
            cursor.close()
    if any(isinstance(c.type, LargeBinary) for c in table.columns):
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
    return [tuple(r) for r in rows]


def _compare_projections(store: Store, state: MemoryState) -> None:
    """Every projection row must equal the one the replayed log gives.

    First the whole table at once (both sides' tuples in column order, sorted); only a
    table that differs is compared row by row, to name the first row (by the seq that made
    it) that differs."""
    for table in PROJECTIONS:
        names = [c.name for c in table.columns]
        have_rows = _stored_rows(store, table)
        want_rows = _expected_tuples(state, table.name, names)
        try:
            if len(want_rows) == len(have_rows) and sorted(want_rows) == sorted(have_rows):
                continue
        except TypeError:  # None beside a value in equal keys: compare row by row
            pass
        _compare_table(table, names, _expected_rows(state, table.name), have_rows)


def _compare_table(
    table: Any,
    names: list[str],
    expected: list[tuple[dict[str, Any], int]],
    stored: list[tuple[Any, ...]],
) -> None:
    key_cols = [c.name for c in table.primary_key.columns]
    want = {
        tuple(row[k] for k in key_cols): (tuple(row[n] for n in names), seq)
        for row, seq in expected
    }
    have = {}
    for values in stored:
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
