"""Export and import of a whole ledger: the archive format of docs/ledger-archive.md.

An archive is JSON Lines (UTF-8, one object a line, each ending in a
newline): a header ``{format, version, origin, size, root, checkpoints,
exported_at}``, then the signed checkpoints of sizes up to ``size``, one a
line, in increasing size, then every record in sequence order ``{seq,
recorded_at, hash, envelope, signature}`` — ``envelope`` is the record's
canonical bytes as text, exactly as signed. It holds only what the ledger
signs or derives from signed bytes; the projections, the refusals log and API
tokens are not in it (import rebuilds the first; the others are operational).

:func:`export_ledger` streams a stored ledger out. :func:`import_ledger` puts
an archive into an *empty* ledger in two passes over the file:

1. check, writing nothing: every line's form; the checkpoints' signatures
   (under the verifier key each names, or the one the caller pins) and that
   they name the header's origin; then the records as ``verify`` checks a
   stored ledger (ledger/verify.py: canonical bytes, hash, signature, key
   validity, parents, mass balance by replaying the rules, sequence numbers
   from 1 without a gap, ``recorded_at`` never going back), recomputing the
   Merkle tree as it goes: each checkpoint's root must be the root at its
   size, and the header's root the root of all ``size`` records;
2. write: the records again, through the normal append path
   (:meth:`Store.prepare` and :meth:`Store.commit`), so every signature,
   rule and projection is checked once more by the code that guards live
   appends. Records that share a ``recorded_at`` (a batch, when they were
   first appended) go in one atomic batch committed with that time as the
   ledger's clock: rules that look at the clock (a record dated in the future)
   decide as they did, and each record keeps its ``recorded_at``. Each must
   come back with its archived seq and hash. Then the stored tree's root must
   be the header's, and the checkpoints are stored.

A refused archive leaves the target as it was (pass 1 refuses before
anything is written; a SQLite file that did not exist is not created). Pass 2
can fail only if the append path disagrees with pass 1, or the database
fails: then :class:`ArchiveError` says which seq the target holds up to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, insert
from sqlalchemy.engine import make_url

from ledger import merkle
from ledger.checkpoints import CheckpointError, parse_verifier_key, verify_checkpoint
from ledger.database import has_schema, make_engine, migrate
from ledger.envelope import checked_envelope
from ledger.errors import LedgerError, RecordRefused
from ledger.merkle_log import (
    all_checkpoints,
    default_origin,
    latest_checkpoint,
    root_at,
    tree_size,
)
from ledger.record_checks import Checked, check_archived, read_stored
from ledger.state import MemoryState, PastRecord
from ledger.store import MAX_BATCH, Appended, Prepared, Signed, Store, format_time
from ledger.tables import checkpoints as checkpoints_table
from ledger.verify import CHUNK, Broken, Call, Replayer, checked_in_order

FORMAT = "rledger-archive"
VERSION = 1
HEADER_FIELDS = frozenset(
    {"format", "version", "origin", "size", "root", "checkpoints", "exported_at"}
)
RECORD_FIELDS = frozenset({"seq", "recorded_at", "hash", "envelope", "signature"})
CHECKPOINT_FIELDS = frozenset({"size", "root", "time", "note", "verifier_key"})
RECORDED_AT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
PAGE = 2_000


class ArchiveError(LedgerError):
    """An archive that can't be exported, read or imported; says what and where."""


@dataclass(frozen=True, slots=True)
class Header:
    origin: str | None
    size: int
    root: str  # lowercase hex
    checkpoints: int
    exported_at: str


@dataclass(frozen=True, slots=True)
class ArchivedCheckpoint:
    size: int
    root: str
    time: int
    note: str
    verifier_key: str


@dataclass(frozen=True, slots=True)
class Summary:
    """What an export wrote or an import stored."""

    records: int
    root: str
    checkpoints: int
    origin: str | None


# --- export -------------------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def export_ledger(store: Store, out: IO[bytes]) -> Summary:
    """Write the whole ledger to ``out`` as an archive, streaming (a page of records at a
    time). The records, tree and checkpoints up to the size read first never change, so
    appends made meanwhile are simply not in it. On :class:`ArchiveError` what was
    written is incomplete: discard it."""
    engine = store.engine
    with engine.connect() as conn:
        size = tree_size(conn)
        root = root_at(conn, size).hex()
        latest = latest_checkpoint(conn)
    origin = latest.origin if latest is not None else default_origin(engine) if size else None
    cps = [c for c in all_checkpoints(engine) if c.size <= size]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "origin": origin,
        "size": size,
        "root": root,
        "checkpoints": len(cps),
        "exported_at": format_time(datetime.now(UTC)),
    }
    out.write(_line(header))
    for c in cps:
        item = {"size": c.size, "root": c.root, "time": c.time, "note": c.note}
        out.write(_line({"checkpoint": {**item, "verifier_key": c.verifier_key}}))
    frontier: list[bytes] = []
    done = 0
    while done < size:
        rows = read_stored(engine, done + 1, min(PAGE, size - done))
        if not rows:
            break
        for seq, _, rhash, _, _, _, _, recorded_at, canonical, sig in rows:
            if int(seq) != done + 1:
                raise ArchiveError(
                    f"the ledger has no record at seq {done + 1}: run `rledger verify`"
                )
            try:
                text = bytes(canonical).decode("utf-8")
                leaf = merkle.record_leaf(rhash)
            except (UnicodeDecodeError, merkle.ProofError):
                raise ArchiveError(
                    f"the record at seq {seq} is damaged (bytes or hash): run `rledger verify`"
                ) from None
            _, frontier = merkle.append_hashes(frontier, done, [leaf])
            record = {"seq": int(seq), "recorded_at": recorded_at, "hash": rhash}
            out.write(_line({**record, "envelope": text, "signature": sig}))
            done += 1
    if done != size:
        raise ArchiveError(f"the ledger holds {done} records, not {size}: run `rledger verify`")
    if (merkle.fold(frontier) if frontier else merkle.EMPTY_ROOT).hex() != root:
        raise ArchiveError(
            "the stored Merkle tree's root is not the records' root: run `rledger verify`"
        )
    return Summary(size, root, len(cps), origin)


# --- reading an archive -------------------------------------------------------------


class _Lines:
    """An archive's lines, numbered from 1, each a JSON object; :class:`ArchiveError`
    names the line of any that is not."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.number = 0
        self.offset = 0  # where the line last read starts

    def next(self, what: str) -> dict[str, Any] | None:
        self.offset = self.f.tell()
        raw = self.f.readline()
        if not raw:
            return None
        self.number += 1
        if not raw.endswith(b"\n"):
            raise ArchiveError(f"line {self.number}: the archive ends mid-line (truncated?)")
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise ArchiveError(f"line {self.number}: not a JSON object ({what})") from None
        if not isinstance(obj, dict):
            raise ArchiveError(f"line {self.number}: not a JSON object ({what})")
        return obj

    def fail(self, message: str) -> ArchiveError:
        return ArchiveError(f"line {self.number}: {message}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(lines: _Lines) -> Header:
    obj = lines.next("the header")
    if obj is None:
        raise ArchiveError("the archive is empty: no header line")
    if obj.get("format") != FORMAT:
        raise lines.fail(f"not a ledger archive (the header's format must be {FORMAT!r})")
    if obj.get("version") != VERSION or not _is_int(obj.get("version")):
        raise lines.fail(f"archive version {obj.get('version')!r}; this ledger reads {VERSION}")
    if set(obj) != HEADER_FIELDS:
        raise lines.fail(f"the header holds exactly {', '.join(sorted(HEADER_FIELDS))}")
    size, count, root = obj["size"], obj["checkpoints"], obj["root"]
    if not _is_int(size) or not 0 <= size <= merkle.MAX_TREE_SIZE:
        raise lines.fail("the header's size must be a whole number of records, at least 0")
    if not _is_int(count) or count < 0:
        raise lines.fail("the header's checkpoints must be a count, at least 0")
    if not isinstance(root, str) or not HEX64_RE.fullmatch(root):
        raise lines.fail("the header's root must be 64 lowercase hex digits")
    origin = obj["origin"]
    if not (origin is None and size == 0) and not isinstance(origin, str):
        raise lines.fail("the header's origin must name the log")
    if not isinstance(obj["exported_at"], str):
        raise lines.fail("the header's exported_at must be a time")
    return Header(origin, size, root, count, obj["exported_at"])


def _read_checkpoint(lines: _Lines, header: Header, pinned: str | None) -> ArchivedCheckpoint:
    obj = lines.next("a checkpoint")
    if obj is None:
        raise ArchiveError(f"the header names {header.checkpoints} checkpoints; the file ends")
    item = obj.get("checkpoint")
    if set(obj) != {"checkpoint"} or not isinstance(item, dict) or set(item) != CHECKPOINT_FIELDS:
        raise lines.fail(
            "expected a checkpoint line {checkpoint: {size, root, time, note, verifier_key}} "
            f"(the header names {header.checkpoints})"
        )
    cp = ArchivedCheckpoint(
        item["size"], item["root"], item["time"], item["note"], item["verifier_key"]
    )
    if not isinstance(cp.verifier_key, str) or not isinstance(cp.note, str):
        raise lines.fail("a checkpoint's note and verifier_key are text")
    if pinned is not None and cp.verifier_key != pinned:
        raise lines.fail(
            f"the checkpoint of size {cp.size} is signed for verifier key {cp.verifier_key!r}, "
            "not the one given"
        )
    try:
        name, public_key = parse_verifier_key(cp.verifier_key)
        checked = verify_checkpoint(cp.note, public_key, name=name, origin=header.origin)
    except CheckpointError as exc:
        raise lines.fail(f"checkpoint does not verify: {exc}") from None
    signed = (checked.checkpoint.size, checked.checkpoint.root.hex(), checked.time)
    if signed != (cp.size, cp.root, cp.time):
        raise lines.fail(f"checkpoint of size {cp.size}: its fields disagree with its note")
    return cp


def read_checkpoints(
    lines: _Lines, header: Header, pinned: str | None
) -> dict[int, ArchivedCheckpoint]:
    """The header's count of checkpoints, each verified, sizes increasing up to the
    archive's size, times never going back."""
    found: dict[int, ArchivedCheckpoint] = {}
    last: ArchivedCheckpoint | None = None
    for _ in range(header.checkpoints):
        cp = _read_checkpoint(lines, header, pinned)
        if not 1 <= cp.size <= header.size:
            raise lines.fail(
                f"a checkpoint of size {cp.size} does not fit an archive of {header.size} records"
            )
        if last is not None and (cp.size <= last.size or cp.time < last.time):
            raise lines.fail("checkpoints must grow in size, and their times never go back")
        found[cp.size] = last = cp
    return found


Row = tuple[int, str, str, bytes, str]  # seq, recorded_at, hash, envelope bytes, signature


def _record(lines: _Lines, obj: dict[str, Any]) -> Row:
    if set(obj) != RECORD_FIELDS:
        raise lines.fail(f"a record line holds exactly {', '.join(sorted(RECORD_FIELDS))}")
    seq, recorded_at, rhash = obj["seq"], obj["recorded_at"], obj["hash"]
    envelope, signature = obj["envelope"], obj["signature"]
    if not _is_int(seq) or seq < 1:
        raise lines.fail("a record's seq is a whole number from 1")
    if not isinstance(recorded_at, str) or not _recorded_at_ok(recorded_at):
        raise lines.fail(
            f"seq {seq}: recorded_at must be UTC with microseconds, e.g. 2026-05-01T08:00:00.000000Z"
        )
    if not isinstance(rhash, str) or not isinstance(signature, str):
        raise lines.fail(f"seq {seq}: hash and signature are text")
    if not isinstance(envelope, str):
        raise lines.fail(f"seq {seq}: envelope is the record's canonical JSON as text")
    try:
        data = envelope.encode("utf-8")
    except UnicodeEncodeError:
        raise lines.fail(f"seq {seq}: the envelope is not valid UTF-8 text") from None
    return seq, recorded_at, rhash, data, signature


def _recorded_at_ok(text: str) -> bool:
    if not RECORDED_AT_RE.fullmatch(text):
        return False
    try:
        return format_time(_clock(text)) == text
    except ValueError:
        return False


def _clock(recorded_at: str) -> datetime:
    return datetime.strptime(recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _rows(lines: _Lines, on_row: Callable[[Row, int], None] | None = None) -> Iterator[Row]:
    """The record lines to the end of the file (``on_row``: each with its line's offset)."""
    while (obj := lines.next("a record")) is not None:
        row = _record(lines, obj)
        if on_row is not None:
            on_row(row, lines.offset)
        yield row


# --- pass 1: check, writing nothing ---------------------------------------------------


class _ArchiveTree:
    """The Merkle tree of the archive's records, recomputed as they are replayed; each
    archived checkpoint's root must be the root at its size."""

    def __init__(self, cps: dict[int, ArchivedCheckpoint]) -> None:
        self.cps = cps
        self.size = 0
        self.frontier: list[bytes] = []

    def add(self, seq: int, record_hash: str) -> str | None:
        _, self.frontier = merkle.append_hashes(
            self.frontier, self.size, [merkle.record_leaf(record_hash)]
        )
        self.size += 1
        cp = self.cps.get(self.size)
        if cp is not None and (root := self.root()) != cp.root:
            signed = datetime.fromtimestamp(cp.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return (
                f"the archive's first {cp.size} records have root {root}, but its checkpoint "
                f"signed at {signed} for that size says {cp.root}: records up to here were "
                "changed after it was signed"
            )
        return None

    def root(self) -> str:
        return (merkle.fold(self.frontier) if self.frontier else merkle.EMPTY_ROOT).hex()


class _PastRecords:
    """What a ``void`` needs of an earlier record, read back from the archive by hash
    (only the offsets are kept in memory)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.offsets: dict[str, int] = {}

    def note(self, row: Row, offset: int) -> None:
        self.offsets[row[2]] = offset

    def load(self, record_hash: str) -> PastRecord | None:
        offset = self.offsets.get(record_hash)
        if offset is None:
            return None
        here = self.f.tell()
        try:
            self.f.seek(offset)
            obj = json.loads(self.f.readline())
        finally:
            self.f.seek(here)
        env = checked_envelope(obj["envelope"].encode("utf-8"))
        if env.hash != record_hash:
            return None
        return PastRecord(env.hash, int(obj["seq"]), env.type, env.actor, env.body, env.at)


def _archived_here(rows: Iterator[Row]) -> Iterator[Checked]:
    for chunk in _chunks(rows, PAGE):
        yield from check_archived(chunk, [], signatures=False)


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _archived_calls(rows: Iterator[Row], state: MemoryState, chunk: int) -> Iterator[Call]:
    """Chunks for the workers, each with the public keys the replay knows by then."""
    for rows_chunk in _chunks(rows, chunk):
        yield check_archived, (rows_chunk, [k.public_key for k in state.keys.values()])


def check_archive(
    f: IO[bytes], *, verifier_key: str | None = None, processes: int = 0, chunk: int = CHUNK
) -> tuple[Header, dict[int, ArchivedCheckpoint]]:
    """Pass 1: check the whole archive in ``f`` (seekable), writing nothing; raise
    :class:`ArchiveError` naming the first problem."""
    f.seek(0)
    lines = _Lines(f)
    header = read_header(lines)
    cps = read_checkpoints(lines, header, verifier_key)
    past = _PastRecords(f)  # read back from where the lines are read (one thread)
    state = MemoryState(record_loader=past.load, keep_records=False)
    tree = _ArchiveTree(cps)
    replayer = Replayer(state, tree=tree)
    rows = _rows(lines, past.note)
    try:
        if processes > 0:
            replayer.run(checked_in_order(processes, _archived_calls(rows, state, chunk)))
        else:
            replayer.run(_archived_here(rows))
    except Broken as exc:
        where = f"seq {exc.seq}: " if exc.seq is not None else ""
        raise ArchiveError(f"{where}{exc.problem}") from None
    if state.seq != header.size:
        raise ArchiveError(
            f"the header says {header.size} records; the archive holds {state.seq} "
            "(records missing at the end, or extra ones)"
        )
    if tree.root() != header.root:
        raise ArchiveError(
            f"the archive's {header.size} records have Merkle root {tree.root()}, but its "
            f"header says {header.root}"
        )
    return header, cps


# --- pass 2: write, through the append path ------------------------------------------


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        return Path(parsed.database)
    return None


def target_records(url: str) -> int:
    """How many records the target holds (0 for a database or SQLite file that is not
    there yet: nothing is created to find out)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return 0
    engine = make_engine(url)
    try:
        if not has_schema(engine):
            return 0
        with engine.connect() as conn:
            return tree_size(conn)
    finally:
        engine.dispose()


def _batches(rows: Iterator[Row]) -> Iterator[list[Row]]:
    """Consecutive records that share a ``recorded_at``, at most ``MAX_BATCH`` each."""
    batch: list[Row] = []
    for row in rows:
        if batch and (row[1] != batch[0][1] or len(batch) >= MAX_BATCH):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _commit(store: Store, prepared: Prepared, batch: list[Row]) -> None:
    results = store.commit(prepared, atomic=True, now=_clock(batch[0][1]))
    for (seq, _, rhash, _, _), result in zip(batch, results, strict=True):
        if not isinstance(result, Appended) or result.existing:
            why = str(result) if isinstance(result, RecordRefused) else "already stored"
            raise ArchiveError(
                f"seq {seq}: the append path refused it ({why}); the target holds the records "
                f"before seq {batch[0][0]}: start again with an empty database"
            )
        if result.seq != seq or result.hash != rhash:
            raise ArchiveError(
                f"seq {seq}: appended as seq {result.seq} with hash {result.hash}; the target "
                "was written to meanwhile: start again with an empty database"
            )


def _write(store: Store, lines: _Lines) -> None:
    """Every record through :meth:`Store.prepare` and :meth:`Store.commit`, the next batch
    prepared (signatures checked) while the one before is committed."""
    with ThreadPoolExecutor(1) as ahead:
        pending: tuple[Future[Prepared], list[Row]] | None = None
        for batch in _batches(_rows(lines)):
            signed = [Signed(data, sig) for _, _, _, data, sig in batch]
            future = ahead.submit(store.prepare, signed)
            if pending is not None:
                _commit(store, pending[0].result(), pending[1])
            pending = (future, batch)
        if pending is not None:
            _commit(store, pending[0].result(), pending[1])


def _store_checkpoints(engine: Engine, cps: dict[int, ArchivedCheckpoint]) -> None:
    if not cps:
        return
    with engine.begin() as conn:
        conn.execute(
            insert(checkpoints_table),
            [
                {
                    "size": c.size,
                    "root": c.root,
                    "time": c.time,
                    "note": c.note,
                    "verifier_key": c.verifier_key,
                }
                for c in sorted(cps.values(), key=lambda c: c.size)
            ],
        )


def import_ledger(
    url: str,
    source: Path | IO[bytes],
    *,
    verifier_key: str | None = None,
    processes: int = 0,
    chunk: int = CHUNK,
) -> Summary:
    """Put the archive ``source`` (a path, or a seekable binary file) into the empty
    ledger at ``url`` (migrated first if it has no schema); see the module docstring.

    ``verifier_key``: the ledger's signed-note verifier key (``rledger checkpoint
    --verifier-key``); when given, every checkpoint must be signed by it, not merely by
    the key it names. ``processes``: worker processes for the signature checks of both
    passes (0: this process and a thread). Raises :class:`ArchiveError`.
    """
    if isinstance(source, Path):
        with source.open("rb") as f:
            return import_ledger(
                url, f, verifier_key=verifier_key, processes=processes, chunk=chunk
            )
    held = target_records(url)
    if held:
        raise ArchiveError(
            f"the target ledger already holds {held} records: import only into an empty one"
        )
    header, cps = check_archive(source, verifier_key=verifier_key, processes=processes, chunk=chunk)
    migrate(url)
    store = Store.open(url, verify_processes=processes)
    try:
        if store.last_seq() != 0:
            raise ArchiveError("the target ledger was written to meanwhile: nothing imported")
        source.seek(0)
        lines = _Lines(source)
        read_header(lines)
        for _ in range(header.checkpoints):
            lines.next("a checkpoint")
        _write(store, lines)
        with store.engine.connect() as conn:
            size = tree_size(conn)
            root = root_at(conn, size).hex()
        if (size, root) != (header.size, header.root):
            raise ArchiveError(
                f"after import the ledger holds {size} records with root {root}, not "
                f"{header.size} with root {header.root}"
            )
        _store_checkpoints(store.engine, cps)
    finally:
        store.close()
    return Summary(header.size, header.root, len(cps), header.origin)
