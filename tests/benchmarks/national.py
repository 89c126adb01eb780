"""National scale: a simulated 1,000,000-record ledger over HTTP on SQLite and PostgreSQL, one table.

Not a test (pytest does not collect this folder): run it by hand::

    .venv/bin/python tests/benchmarks/national.py --keep /var/tmp/rledger-national   # 1,000,000
    .venv/bin/python tests/benchmarks/national.py --quick                 # 20,000, a smoke run
    .venv/bin/python tests/benchmarks/national.py --records 100000 --engines sqlite

The workload is producers/simulate.py's national network (``simulate(records, seed)``):
its setup records (genesis, organisations, keys) are appended directly through
:class:`Store`, then its batches — one organisation each, in dependency order — are sent
as ``recordEvents`` requests from this process to ``rledger serve --workers N``
(tests/server_process.py), each organisation with its own API token, ``--in-flight``
requests at once. A batch is sent only once every batch holding a record it depends on
(a ``parents`` hash, or the first batch naming an id it names) has been answered. Before
any clock starts, every record is signed and every request body is on disk
(``<dir>/workload``; reused by a later run with the same records, seed and simulator).

For each engine (SQLite: a file in WAL mode; PostgreSQL: a throwaway server from
tests/postgres_server.py, set to fsync, full_page_writes and synchronous_commit on, as
durable as SQLite's synchronous=FULL) and each ``--workers`` count, a fresh ledger is
built over HTTP: records/s overall and per 100,000 records, p50/p99 latency of a batch,
the server's CPU and the peak RSS of the server process tree (/proc). On the ledger of
the last ``--workers`` count, with its server still running, one request at a time as a
regulator: ``lot``, ``lineage`` 10 hops up, ``recoveredContent`` (shares and Art. 8
check; then with the proof's record hashes), ``battery(code)``, ``materialFlows`` for a
year, ``eprReport`` and ``inclusionProof`` (p50/p95; ``inclusionProof`` is also timed
below GraphQL, in this process, as tests/benchmarks/proofs.py does, which is what its
target is about). The targets are picked from the ledger itself, deterministically (see
``pick_targets``). Then, with the server stopped: the database's size per record and a
full ``verify_store(processes=2)``. The reference is the raw single-core Ed25519 verify
rate over 20,000 of the workload's records, with cryptography and with libsodium
(PyNaCl; docs/adr/0007), measured before, between and after the runs (best used).

Every row is printed as soon as it is measured and saved to ``<dir>/results.json``; with
``--keep DIR`` a run that stopped is resumed (rows already measured are not measured
again; an ingest that was cut off starts afresh). The table at the end has each row
beside its target from the issues (``issues show 3`` to ``8``), "met" or "NOT met".
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # append.py, http_ingest.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: servers

from http_ingest import MUTATION, headers, post
from server_process import Server, running_server

from ledger.access import Viewer, read_scope
from ledger.database import database_url, make_engine, migrate
from ledger.signing import b64url_decode, key_id, load_public_key, record_hash
from ledger.store import Appended, Signed, Store, WriterStats
from ledger.tokens import issue_token

# --- targets (issue numbers as `issues show N`) ---------------------------------------------

INGEST_2W = 10_000  # rec/s with 2 server workers (issue 8)
INGEST_FLOOR = 5_000  # rec/s, every 100,000 records (issue 8)
INGEST_1W = 5_000  # rec/s with one server process (issue 3)
RC_MS = 100.0  # recoveredContent (issue 4)
BATTERY_MS = 50.0  # battery(code), 10 hops (issue 4)
FLOWS_MS = 200.0  # materialFlows for a year (issue 7)
INCLUSION_MS = 1.0  # inclusion proof p50 on the server (issue 6)
VERIFY_SHARE = 0.80  # of twice the raw rate (issue 6)

RAW_SAMPLE = 20_000
WINDOW = 100_000
QUICK = 20_000
WARMUP = 3
SAMPLE_IDS = 200  # lots and records cycled through by `lot` and `inclusionProof`

LOT_Q = (
    "query Q($id: ID!) { lot(id: $id) { id material massG remainingG status custodian { id } } }"
)
LINEAGE_Q = (
    "query Q($lot: ID!) { lineage(lot: $lot, direction: UPSTREAM, maxDepth: 10) {"
    " nodes { id material massG } edges { parent child massG } } }"
)
RC_FIELDS = (
    "lot shareBasisPoints recoveredG postConsumerG elements { element massG recoveredG"
    ' shareBasisPoints } check(on: "2031-08-18") { __typename ... on RecycledContentCheck'
    " { meetsAll } }"
)
RC_Q = "query Q($lot: ID!) { recoveredContent(lot: $lot) { " + RC_FIELDS + " } }"
RC_PROOF_Q = (
    "query Q($lot: ID!) { recoveredContent(lot: $lot) { "
    + RC_FIELDS
    + " proof { complete depth recordHashes } } }"
)
BATTERY_Q = (
    "query Q($code: String!) { battery(code: $code) { code complete lots { seq lot { id } }"
    " events { seq stage type } custodians { since organisation { id } }"
    " downstream { lot { id } massG remainingG } elements { element initialG recoveredG heldNowG } } }"
)
FLOWS_Q = (
    "query Q($from: DateTime!, $to: DateTime!) { materialFlows(from: $from, to: $to, groupBy: STAGE) {"
    " nodes { id kind massG } links { source target massG } stages { stage massG }"
    " recoveryRate { basisPoints } months { month stages { stage massG } } } }"
)
EPR_Q = (
    "query Q($p: ID!, $s: String!, $y: String!) { eprReport(producer: $p, scheme: $s, period: $y) {"
    " compliant totals { obligationG retiredG heldG gapG complianceBasisPoints }"
    " categories { category placedOnMarketG obligationG heldG retiredG gapG } } }"
)
INCLUSION_Q = (
    "query Q($h: String!, $n: Long!) { inclusionProof(hash: $h, treeSize: $n) {"
    " leafIndex treeSize hashes } }"
)


def say(*parts: object) -> None:
    print(*parts, flush=True)


# --- the workload: the simulator behind a small adapter ------------------------------------


@dataclass
class Source:
    name: str
    digest: str  # the generator's code: a changed simulator means a new workload
    setup: list[Signed]
    roles: dict[str, list[str]]  # org id -> roles
    operator: str
    batches: Iterator[tuple[str, list[Signed]]]


def _digest(*files: str) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def simulator_source(records: int, seed: int, size: int) -> Source:
    try:
        from producers import simulate as sim  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        raise SystemExit(
            f"producers/simulate.py is not importable ({exc}): the benchmark's workload is the "
            "simulator's; run with --workload builder for append.py's smaller workload instead"
        ) from exc
    s = sim.simulate(records, seed=seed)
    return Source(
        "producers/simulate.py",
        _digest(sim.__file__),
        list(s.setup),
        {o.id: list(o.roles) for o in s.orgs},
        s.operator,
        ((b.org, list(b.records)) for b in s.batches(size)),
    )


def builder_source(records: int, seed: int, size: int) -> Source:
    """append.py's workload (20 organisations, no EPR or battery codes) through
    http_ingest's scheduler: for developing this script without the simulator."""
    import append
    from http_ingest import OVERBUILD, org_batches

    work = append.Builder(seed).build(int(records * OVERBUILD) + 1000)
    planned = org_batches(work, size, records)
    return Source(
        "append.py Builder (NOT the simulator)",
        _digest(append.__file__),
        work.setup,
        {f"org:{name}": roles for name, roles, _ in append.ORGS},
        "org:operator",
        ((b.org, [work.records[i] for i in b.indices]) for b in planned),
    )


def _text(envelope: bytes | str) -> str:
    return envelope.decode() if isinstance(envelope, bytes) else envelope


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@dataclass
class Workload:
    """The prepared workload on disk: request bodies, expected hashes, batch order."""

    dir: Path
    meta: dict[str, Any]
    hashes: bytes  # 32 bytes a record, in send order

    @property
    def batches(self) -> list[list[Any]]:  # [org, records, after, offset, length]
        return self.meta["batches"]  # type: ignore[no-any-return]

    @property
    def records(self) -> int:
        return int(self.meta["records"])

    def setup(self) -> list[Signed]:
        lines = (self.dir / "setup.jsonl").read_text().splitlines()
        return [Signed(d["envelope"], d["signature"]) for d in map(json.loads, lines)]


def generator_digest(workload: str) -> str:
    """The generator's code (simulate.py, or append.py), hashed: a workload on disk made by
    other code is made again."""
    import importlib.util

    name = "producers.simulate" if workload == "simulator" else "append"
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(
            f"{name} is not importable: the benchmark's workload is producers/simulate.py's; "
            "--workload builder runs append.py's smaller workload instead"
        )
    return _digest(spec.origin)


def prepare(
    dir: Path, source: Callable[[], Source], digest: str, records: int, seed: int, size: int
) -> Workload:
    """Sign the whole workload and write every request body to ``dir`` (reused when its
    meta says it is complete for these records, seed, batch size and generator)."""
    meta_path = dir / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        same = (meta["records"], meta["seed"], meta["batch"], meta["digest"])
        if meta.get("complete") and same == (records, seed, size, digest):
            say(f"workload: reusing {dir} ({meta['records']:,} records, {meta['source']})")
            return Workload(dir, meta, (dir / "hashes.bin").read_bytes())
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    say(f"workload: simulating and signing {records:,} records (seed {seed}) ...")
    t0 = time.perf_counter()
    src = source()
    setup_lines = [
        json.dumps({"envelope": _text(r.envelope), "signature": r.signature}) for r in src.setup
    ]
    (dir / "setup.jsonl").write_text("\n".join(setup_lines) + "\n")
    keys: dict[str, str] = {}
    for r in src.setup:
        public = json.loads(_text(r.envelope)).get("body", {}).get("public_key")
        if isinstance(public, str):
            keys[key_id(b64url_decode(public))] = public
    produced: dict[str, int] = {}  # record hash -> batch
    first_named: dict[str, int] = {}  # any string a body names -> the first batch naming it
    batches: list[list[Any]] = []
    kinds: Counter[str] = Counter()
    sample: list[dict[str, str]] = []
    hashes = bytearray()
    env_bytes = 0
    done = 0
    offset = 0
    with (dir / "bodies.bin").open("wb") as bodies:
        for org, recs in src.batches:
            if done >= records:
                break
            recs = recs[: records - done]
            j = len(batches)
            after = -1
            events = []
            for rec in recs:
                env_text = _text(rec.envelope)
                raw = env_text.encode()
                env = json.loads(env_text)
                digest = record_hash(raw)
                for parent in env.get("parents", {}).values():
                    k = produced.get(parent, -1)
                    after = max(after, k if k < j else -1)
                for s in set(_strings(env.get("body", {}))):
                    k = first_named.setdefault(s, j)
                    after = max(after, k if k < j else -1)
                produced[digest] = j
                hashes += bytes.fromhex(digest)
                kinds[env["type"]] += 1
                env_bytes += len(raw)
                if len(sample) < RAW_SAMPLE:
                    sample.append({"key": env["key"], "sig": rec.signature, "env": env_text})
                events.append({"envelope": env_text, "signature": rec.signature})
            body = json.dumps(
                {"query": MUTATION, "variables": {"events": events}}, separators=(",", ":")
            ).encode()
            bodies.write(body)
            batches.append([org, len(recs), after, offset, len(body)])
            offset += len(body)
            done += len(recs)
            if j % 200 == 0:
                say(f"  {done:>10,} records signed ({time.perf_counter() - t0:.0f} s)")
    if done < records:
        raise SystemExit(f"the workload stopped at {done:,} records, {records:,} asked for")
    (dir / "hashes.bin").write_bytes(bytes(hashes))
    (dir / "sample.jsonl").write_text("\n".join(json.dumps(s) for s in sample) + "\n")
    regulators = sorted(o for o, roles in src.roles.items() if "regulator" in roles)
    meta = {
        "source": src.name,
        "digest": src.digest,
        "records": done,
        "seed": seed,
        "batch": size,
        "setup": len(src.setup),
        "orgs": len(src.roles),
        "senders": sorted({b[0] for b in batches}),
        "reader": regulators[0] if regulators else src.operator,
        "operator": src.operator,
        "keys": keys,
        "mix": dict(kinds.most_common()),
        "envelope_mean": env_bytes / max(done, 1),
        "seconds": time.perf_counter() - t0,
        "batches": batches,
        "complete": True,
    }
    meta_path.write_text(json.dumps(meta))
    serial = sum(1 for j, b in enumerate(batches) if b[2] == j - 1)
    say(
        f"workload: {done:,} records in {len(batches):,} batches from {len(meta['senders'])} "
        f"orgs, signed in {meta['seconds']:.0f} s; {serial:,} batches must wait for the one "
        "just before them"
    )
    return Workload(dir, meta, bytes(hashes))


# --- raw Ed25519 rates ------------------------------------------------------------------------


def raw_rates(work: Workload) -> tuple[float, float]:
    """Records/s of one thread verifying the sample's signatures: cryptography, libsodium."""
    from nacl.signing import VerifyKey

    keys = {k: b64url_decode(v) for k, v in work.meta["keys"].items()}
    items = []
    for line in (work.dir / "sample.jsonl").read_text().splitlines():
        d = json.loads(line)
        items.append((d["key"], b64url_decode(d["sig"]), d["env"].encode()))
    crypto = {k: load_public_key(raw) for k, raw in keys.items()}
    sodium = {k: VerifyKey(raw) for k, raw in keys.items()}
    t0 = time.perf_counter()
    for k, sig, data in items:
        crypto[k].verify(sig, data)
    c = len(items) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for k, sig, data in items:
        sodium[k].verify(data, sig)
    s = len(items) / (time.perf_counter() - t0)
    return c, s


# --- processes ----------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_cpu(root: int) -> float:
    return sum((st or (0, 0.0))[1] for st in map(_proc_stat, process_tree(root)))


class RssPeak:
    """Samples the summed RSS of a process tree twice a second in a thread."""

    def __init__(self, root: int) -> None:
        self.root, self.peak, self.processes = root, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = process_tree(self.root)
            self.peak = max(self.peak, rss_bytes(pids))
            self.processes = max(self.processes, len(pids))
            self._stop.wait(0.5)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- engines --------------------------------------------------------------------------------------


class Engine:
    """Where a ledger lives: fresh databases by name, their size, their removal."""

    name = ""

    def fresh(self, label: str) -> str:
        raise NotImplementedError

    def existing(self, label: str, records: int = 0) -> str | None:
        return None

    def size(self, url: str) -> dict[str, int]:
        raise NotImplementedError

    def drop(self, label: str) -> None:
        pass

    def describe(self) -> str:
        return ""


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self, dir: Path) -> None:
        self.dir = dir

    def path(self, label: str) -> Path:
        return self.dir / f"ledger-{label}.db"

    def drop(self, label: str) -> None:
        p = self.path(label)
        for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
            f.unlink(missing_ok=True)

    def fresh(self, label: str) -> str:
        self.drop(label)
        return database_url(str(self.path(label)))

    def existing(self, label: str, records: int = 0) -> str | None:
        """The ledger of an earlier run, if it holds ``records`` records."""
        if not self.path(label).exists():
            return None
        url = database_url(str(self.path(label)))
        store = Store.open(url, verify_threads=1)
        try:
            return url if store.last_seq() == records else None
        except Exception:
            return None
        finally:
            store.close()

    def size(self, url: str) -> dict[str, int]:
        path = Path(url.split("///", 1)[1])
        out = {"total": sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())}
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
                ).all()
            out.update({f"table:{name}": int(n) for name, n in rows})
        except Exception:
            pass
        finally:
            engine.dispose()
        return out

    def describe(self) -> str:
        return "SQLite (WAL, synchronous=FULL), a file in " + str(self.dir)


# The throwaway server's settings for this benchmark: as durable as the SQLite file
# (tests/postgres_server.py starts it with fsync, full_page_writes and synchronous_commit
# off, for fast tests; its options are given on the command line, which ALTER SYSTEM cannot
# override, so they are replaced before it starts: see postgres_options()).
PG_OPTIONS = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "shared_buffers": "512MB",
    "max_connections": "100",
}
DURABLE = ("fsync", "full_page_writes", "synchronous_commit")


def postgres_options() -> None:
    """Set tests/postgres_server.py's server options (read when it starts a server) to
    PG_OPTIONS, keeping its listen address."""
    import postgres_server

    options = {"listen_addresses": "'127.0.0.1'", **PG_OPTIONS}
    postgres_server.SERVER_OPTIONS = " ".join(f"-c {k}={v}" for k, v in options.items())


class PostgresEngine(Engine):
    name = "postgres"

    def __init__(self, admin_url: str) -> None:
        self.admin = admin_url
        engine = make_engine(admin_url)
        try:
            with engine.connect() as conn:
                self.settings = {
                    name: str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
                    for name in ("server_version", *PG_OPTIONS)
                }
        finally:
            engine.dispose()
        wrong = {k: v for k, v in PG_OPTIONS.items() if k in DURABLE and self.settings[k] != v}
        if wrong:
            raise SystemExit(f"PostgreSQL did not take the benchmark's settings: {wrong}")

    def drop(self, label: str) -> None:
        from postgres_server import drop_database

        drop_database(self.admin, f"national_{label}")

    def fresh(self, label: str) -> str:
        from postgres_server import create_database

        self.drop(label)
        return str(create_database(self.admin, f"national_{label}"))

    def size(self, url: str) -> dict[str, int]:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                out = {
                    "total": int(
                        conn.exec_driver_sql(
                            "SELECT pg_database_size(current_database())"
                        ).scalar_one()
                    )
                }
                rows = conn.exec_driver_sql(
                    "SELECT tablename, pg_total_relation_size(quote_ident(tablename)) "
                    "FROM pg_tables WHERE schemaname = 'public'"
                ).all()
                out.update({f"table:{name}": int(n) for name, n in rows})
        finally:
            engine.dispose()
        return out

    def settle(self, url: str) -> None:
        """``VACUUM (ANALYZE)`` after the load, as PostgreSQL's manual advises after a bulk
        load ("Populating a Database": run ANALYZE afterwards): fresh statistics and the
        visibility map, so the query rows are not measured while autovacuum catches up."""
        engine = make_engine(url, isolation_level="AUTOCOMMIT")
        t0 = time.perf_counter()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE)")
        finally:
            engine.dispose()
        say(f"postgres: VACUUM (ANALYZE) after the load took {time.perf_counter() - t0:.0f} s")

    def wal_lsn(self) -> str:
        engine = make_engine(self.admin)
        try:
            with engine.connect() as conn:
                lsn = conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar_one()
                return str(lsn)
        finally:
            engine.dispose()

    def wal_bytes(self, start: str) -> int:
        engine = make_engine(self.admin)
        try:
            with engine.connect() as conn:
                return int(
                    conn.exec_driver_sql(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    def describe(self) -> str:
        s = self.settings
        return (
            f"PostgreSQL {s['server_version'].split()[0]} (throwaway, same machine; "
            + ", ".join(f"{k} {v}" for k, v in s.items() if k != "server_version")
            + ")"
        )


# --- results --------------------------------------------------------------------------------------


class Results:
    """Rows by key, saved after each one (the resumable part)."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("config") == config:
                self.rows = saved["rows"]
                if self.rows:
                    say(f"resuming: {len(self.rows)} rows already measured in {path}")
            else:
                say(f"{path} is from another configuration: measuring afresh")
        self.config = config

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": self.config, "rows": self.rows}, indent=1))
        tmp.replace(self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)


# --- ingest ----------------------------------------------------------------------------------------


SETUP_CHUNK = 2_000
# The benchmark's reader sends hundreds of requests a second on one token: no rate limit.
UNLIMITED = {"RLEDGER_RATE_LIMIT": "0"}


def setup_ledger(url: str, work: Workload) -> dict[str, str]:
    """Migrate, append the setup records through the Store; a token per sending org and
    one for the reader (a regulator)."""
    migrate(url)
    store = Store.open(url)
    try:
        setup = work.setup()
        for start in range(0, len(setup), SETUP_CHUNK):  # the store's batch limit is 5,000
            chunk = setup[start : start + SETUP_CHUNK]
            for r, s in zip(store.append(chunk), chunk, strict=True):
                if not isinstance(r, Appended) or r.existing:
                    raise SystemExit(f"setup record refused: {r!r} ({_text(s.envelope)[:200]})")
        orgs = {*work.meta["senders"], work.meta["reader"]}
        return {o: issue_token(store.engine, o, label="national-bench") for o in sorted(orgs)}
    finally:
        store.close()


def ingest(
    server: Server, work: Workload, tokens: dict[str, str], in_flight: int
) -> dict[str, Any]:
    """Send every batch (``in_flight`` senders, one thread each, a new connection a batch); check each
    answer as it comes (Recorded, new, the hash the client computed, a seq of its own)."""
    batches = work.batches
    n = len(batches)
    hdrs = {org: headers(tok) for org, tok in tokens.items()}
    done = [threading.Event() for _ in range(n)]
    latency = [0.0] * n
    next_batch = iter(range(n))
    lock = threading.Lock()
    failures: list[str] = []
    seen = bytearray(work.records + work.meta["setup"] + 2)
    first_index = [0] * n
    acc = 0
    for j, b in enumerate(batches):
        first_index[j] = acc
        acc += b[1]
    mark: list[tuple[float, int]] = [(0.0, 0)]  # (seconds, records answered) at the last window
    windows: list[list[float]] = []  # [first record, last record, rec/s]
    answered = [0]
    window = WINDOW if work.records >= 2 * WINDOW else max(1_000, work.records // 10)
    fd = os.open(work.dir / "bodies.bin", os.O_RDONLY)

    def check(j: int, data: bytes) -> str | None:
        answer = json.loads(data)
        if answer.get("errors"):
            return f"batch {j}: errors {answer['errors']}"
        results = answer["data"]["recordEvents"]
        if len(results) != batches[j][1]:
            return f"batch {j}: {len(results)} results for {batches[j][1]} records"
        base = first_index[j]
        for k, r in enumerate(results):
            want = work.hashes[32 * (base + k) : 32 * (base + k + 1)].hex()
            if r["__typename"] != "Recorded" or r["existing"] or r["hash"] != want:
                return f"batch {j} ({batches[j][0]}), record {k}: not recorded as built: {r}"
            seq = r["seq"]
            if seq >= len(seen) or seen[seq]:
                return f"batch {j}: seq {seq} repeated or out of range"
            seen[seq] = 1
        return None

    def sender(conn: http.client.HTTPConnection) -> None:
        try:
            send_all(conn)
        except BaseException as exc:  # a thread's error must stop the others, not hang them
            failures.append(f"sender: {type(exc).__name__}: {exc}")
            for e in done:
                e.set()

    def send_all(conn: http.client.HTTPConnection) -> None:
        waited = -1
        while not failures:
            with lock:
                j = next(next_batch, None)
            if j is None:
                return
            org, count, after, offset, length = batches[j]
            for k in range(waited + 1, after + 1):
                done[k].wait()
            waited = max(waited, after)
            body = os.pread(fd, length, offset)
            # A new connection for each batch, as from separate firms. Kept alive, the
            # connections stay with whichever worker accepted them first (uvicorn's workers
            # share one listening socket): all four landed in one worker, which then did all
            # the writing (seen in its WriterStats log line, 200,000 records of 200,000).
            conn.close()
            conn.connect()
            t0 = time.perf_counter()
            status, data = post(conn, body, hdrs[org])
            t1 = time.perf_counter()
            problem = f"batch {j}: HTTP {status}: {data[:1500]!r}" if status != 200 else None
            problem = problem or check(j, data)
            if problem:
                failures.append(problem)
                for e in done:
                    e.set()
                return
            latency[j] = t1 - t0
            with lock:
                answered[0] += count
                now = answered[0]
                t_mark, n_mark = mark[0]
                if now // window > n_mark // window or now == work.records:
                    rate = (now - n_mark) / max(t1 - start - t_mark, 1e-9)
                    windows.append([n_mark + 1, now, rate])
                    mark[0] = (t1 - start, now)
                    say(
                        f"    {now:>10,} records  {now / (t1 - start):>8,.0f} rec/s so far, "
                        f"{rate:>8,.0f} rec/s over the last {now - n_mark:,}"
                    )
            done[j].set()

    conns = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=900) for _ in range(in_flight)
    ]
    for c in conns:
        c.connect()
    threads = [threading.Thread(target=sender, args=(c,)) for c in conns]
    root = server.process.pid
    cpu0 = tree_cpu(root)
    client0 = time.process_time()
    with RssPeak(root) as rss:
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
    cpu = tree_cpu(root) - cpu0
    client = time.process_time() - client0
    os.close(fd)
    for c in conns:
        c.close()
    if failures:
        raise SystemExit(failures[0])
    ms = sorted(x * 1000 for x in latency)
    return {
        "records": work.records,
        "seconds": seconds,
        "rate": work.records / seconds,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "windows": windows,
        "window": window,
        "server_cpu": cpu / seconds,
        "client_cpu": client / seconds,
        "rss_peak": rss.peak,
        "processes": rss.processes,
        "batches": n,
    }


# --- queries -----------------------------------------------------------------------------------------


def pick_targets(url: str, seed: int) -> dict[str, Any]:
    """What the queries ask about, chosen from the ledger the same way on every engine:
    the first lot (in log order) whose upstream lineage is at least 10 hops deep (else the
    deepest); for ``recoveredContent`` the lot with the largest upstream of the 20 deepest;
    the battery code whose lot leads furthest downstream; the year holding the middle
    record; the (producer, scheme, period) with the most declarations; ``SAMPLE_IDS`` lots
    and records at seeded random positions."""
    engine = make_engine(url)
    rng = random.Random(seed)
    try:
        with engine.connect() as conn:
            void = {r[0] for r in conn.exec_driver_sql("SELECT id FROM lots WHERE status = 'void'")}
            edges = conn.exec_driver_sql(
                "SELECT parent, child FROM lot_edges ORDER BY seq, parent, child"
            ).all()
            ups: dict[str, list[str]] = {}
            depth: dict[str, int] = {}
            order: list[str] = []
            for parent, child in edges:
                if parent in void or child in void:
                    continue
                ups.setdefault(child, []).append(parent)
                d = depth.get(parent, 0) + 1
                if d > depth.get(child, -1):
                    if child not in depth:
                        order.append(child)
                    depth[child] = d
            deep = next((lot for lot in order if depth[lot] >= 10), None)
            if deep is None and order:
                deep = max(order, key=lambda x: depth[x])
            downs: dict[str, int] = {}
            for parent, child in reversed(edges):
                if parent in void or child in void:
                    continue
                downs[parent] = max(downs.get(parent, 0), downs.get(child, 0) + 1)

            def upstream(lot: str, cap: int = 200_000) -> int:
                seen, todo = {lot}, [lot]
                while todo and len(seen) < cap:
                    for p in ups.get(todo.pop(), []):
                        if p not in seen:
                            seen.add(p)
                            todo.append(p)
                return len(seen)

            deepest = sorted(order, key=lambda x: -depth[x])[
                :20
            ]  # stable: log order within a depth
            rc = max(deepest, key=upstream) if deepest else deep
            units = conn.exec_driver_sql("SELECT unit, lot FROM lot_units ORDER BY seq, unit").all()
            code = None
            if units:
                code = max(units, key=lambda u: downs.get(u[1], 0))[0]
            last = int(conn.exec_driver_sql("SELECT MAX(seq) FROM records").scalar_one())
            middle = conn.exec_driver_sql(
                "SELECT at FROM records WHERE seq = " + str(max(1, last // 2))
            ).scalar_one()
            year = int(str(middle)[:4])
            epr = conn.exec_driver_sql(
                "SELECT producer, scheme, period, COUNT(*) AS n FROM declarations "
                "GROUP BY producer, scheme, period ORDER BY n DESC, producer, scheme, period LIMIT 1"
            ).first()
            lot_ids = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT id FROM lots WHERE status != 'void' ORDER BY created_seq, id"
                )
            ]
            lots = [
                lot_ids[i]
                for i in sorted(rng.sample(range(len(lot_ids)), min(SAMPLE_IDS, len(lot_ids))))
            ]
            seqs = sorted(rng.sample(range(1, last + 1), min(SAMPLE_IDS, last)))
            hashes = [
                conn.exec_driver_sql(f"SELECT hash FROM records WHERE seq = {s}").scalar_one()
                for s in seqs
            ]
    finally:
        engine.dispose()
    return {
        "lineage_lot": deep,
        "lineage_depth": depth.get(deep, 0) if deep else 0,
        "rc_lot": rc,
        "rc_upstream_lots": upstream(rc) if rc else 0,
        "code": code,
        "code_depth": max((downs.get(lot, 0) for unit, lot in units if unit == code), default=0),
        "year": year,
        "epr": list(epr[:3]) if epr else None,
        "lots": lots,
        "hashes": hashes,
        "seqs": seqs,
        "size": last,
    }


def timed_queries(
    server: Server, token: str, query: str, variables: Sequence[dict[str, Any]], runs: int
) -> tuple[list[float], dict[str, Any]]:
    """One request at a time over one keep-alive connection; ``variables`` cycled through.
    Every answer must be data without errors and without a null root field."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    hdrs = headers(token)
    out: list[float] = []
    first: dict[str, Any] = {}
    try:
        for i in range(WARMUP + runs):
            body = json.dumps({"query": query, "variables": variables[i % len(variables)]}).encode()
            t0 = time.perf_counter()
            status, data = post(conn, body, hdrs)
            t = time.perf_counter() - t0
            answer = json.loads(data)
            if (
                status != 200
                or answer.get("errors")
                or None in (answer.get("data") or {None: 0}).values()
            ):
                raise RuntimeError(f"HTTP {status}: {data[:400]!r}")
            if i == 0:
                first = answer["data"]
            if i >= WARMUP:
                out.append(t * 1000)
    finally:
        conn.close()
    return out, first


def inclusion_below_graphql(url: str, targets: dict[str, Any], runs: int) -> list[float]:
    """What ``inclusionProof`` costs below GraphQL: what its resolver calls
    (``ledger.queries.inclusion_by_hash``) for a regulator, who may read every record. On
    PostgreSQL that is one statement (the record by hash and its proof's hashes)."""
    from ledger.queries import inclusion_by_hash

    scope = read_scope(Viewer("org:regulator", frozenset({"regulator"})))
    engine = make_engine(url)
    out: list[float] = []
    hashes = targets["hashes"]
    n = targets["size"]
    try:
        with engine.connect() as conn:
            for i in range(200 + runs):
                h = hashes[i % len(hashes)]
                t0 = time.perf_counter()
                if inclusion_by_hash(conn, scope, h, n) is None:
                    raise SystemExit(f"no inclusion proof for record {h}")
                if i >= 200:
                    out.append((time.perf_counter() - t0) * 1000)
    finally:
        engine.dispose()
    return out


def p(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, -(-len(s) * int(q * 100) // 100) - 1)]


def query_rows(
    server: Server, url: str, token: str, targets: dict[str, Any], runs: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    t = targets
    year = t["year"]
    plan: list[tuple[str, str, str, list[dict[str, Any]], int]] = [
        ("lot", "lot(id), 200 lots in turn", LOT_Q, [{"id": x} for x in t["lots"]], runs),
    ]
    if t["lineage_lot"]:
        plan.append(
            (
                "lineage",
                "lineage, 10 hops up",
                LINEAGE_Q,
                [{"lot": t["lineage_lot"]}],
                runs,
            )
        )
    if t["rc_lot"]:
        plan.append(
            ("rc", "recoveredContent: shares + Art. 8 check", RC_Q, [{"lot": t["rc_lot"]}], runs)
        )
        plan.append(
            (
                "rc_proof",
                "recoveredContent + proof { recordHashes }",
                RC_PROOF_Q,
                [{"lot": t["rc_lot"]}],
                runs,
            )
        )
    if t["code"]:
        plan.append(
            (
                "battery",
                "battery(code), its life downstream",
                BATTERY_Q,
                [{"code": t["code"]}],
                runs,
            )
        )
    plan.append(
        (
            "flows",
            f"materialFlows {year}, by stage",
            FLOWS_Q,
            [{"from": f"{year}-01-01T00:00:00Z", "to": f"{year + 1}-01-01T00:00:00Z"}],
            runs,
        )
    )
    if t["epr"]:
        prod, scheme, period = t["epr"]
        plan.append(
            (
                "epr",
                f"eprReport {scheme} {period}",
                EPR_Q,
                [{"p": prod, "s": scheme, "y": period}],
                runs,
            )
        )
    plan.append(
        (
            "inclusion",
            "inclusionProof over HTTP, 200 records in turn",
            INCLUSION_Q,
            [{"h": h, "n": t["size"]} for h in t["hashes"]],
            runs,
        )
    )
    for key, label, query, variables, n in plan:
        say(f"  query {label}: {n} runs ...")
        try:
            ms, first = timed_queries(server, token, query, variables, n)
        except RuntimeError as exc:
            yield key, {"label": label, "error": str(exc)}
            continue
        extra = ""
        if key == "rc_proof":
            proof = first["recoveredContent"]["proof"]
            extra = (
                f"{len(proof['recordHashes']):,} record hashes, {t['rc_upstream_lots']:,} lots up"
            )
        elif key == "rc":
            extra = f"lot {t['rc_lot']}"
        elif key == "lineage":
            extra = (
                f"{len(first['lineage']['nodes']):,} lots; lot {t['lineage_lot']}, "
                f"{t['lineage_depth']} deep"
            )
        elif key == "battery":
            extra = (
                f"{t['code']}: {len(first['battery']['downstream']):,} lots downstream, "
                f"{t['code_depth']} hops"
            )
        elif key == "epr":
            extra = f"producer {t['epr'][0]}"
        yield (
            key,
            {
                "label": label,
                "p50": statistics.median(ms),
                "p95": p(ms, 0.95),
                "runs": n,
                "extra": extra,
            },
        )
    ms = inclusion_below_graphql(url, t, 2_000)
    yield (
        "inclusion_server",
        {
            "label": "inclusionProof below GraphQL (by hash)",
            "p50": statistics.median(ms),
            "p95": p(ms, 0.95),
            "runs": len(ms),
            "extra": "",
        },
    )


def verify_full(url: str, processes: int) -> dict[str, Any]:
    from ledger.verify import verify_store

    store = Store.open(url, verify_threads=1)
    try:
        t0 = time.perf_counter()
        report = verify_store(store, processes=processes)
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    row: dict[str, Any] = {"records": report.records, "seconds": seconds, "ok": report.ok}
    # A verify that stops at a break has not checked the whole ledger: no rate then.
    row["rate"] = report.records / seconds if report.ok else 0.0
    if not report.ok:
        row["error"] = str(report)
    return row


# --- the run --------------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_row(key: str, row: dict[str, Any], raw: float) -> None:
    """One measured row, at once."""
    if "rate" in row and "windows" in row:
        lows = min(w[2] for w in row["windows"])
        say(
            f"  => {row['rate']:,.0f} rec/s ({100 * row['rate'] / raw:.0f} % of raw), "
            f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms a batch, lowest window "
            f"{lows:,.0f}/s, server CPU {100 * row['server_cpu']:.0f} %, client CPU "
            f"{100 * row['client_cpu']:.0f} %, peak RSS {mib(row['rss_peak'])} "
            f"({row['processes']} processes)"
        )
    elif "p50" in row:
        say(f"  => {row['label']}: p50 {row['p50']:.2f} ms, p95 {row['p95']:.2f} ms {row['extra']}")
    elif "error" in row:
        say(f"  => {row['label']}: NOT measured: {row['error']}")


def run_engine(
    engine: Engine,
    args: argparse.Namespace,
    work: Workload,
    results: Results,
    raws: list[tuple[float, float]],
) -> None:
    name = engine.name
    post_keys = [f"{name}:queries", f"{name}:size", f"{name}:verify"]
    last = args.workers[-1]
    for w in args.workers:
        key = f"{name}:ingest:w{w}"
        final = w == last
        need_ledger = final and not all(k in results for k in post_keys)
        total = work.records + work.meta["setup"]
        if key in results and not (need_ledger and engine.existing(f"w{w}", total) is None):
            say(f"{name}, {w} worker(s): ingest already measured")
            continue
        if key in results and need_ledger:
            say(f"{name}: the ledger of the {w}-worker run is gone; building it again")
        url = engine.fresh(f"w{w}")
        tokens = setup_ledger(url, work)
        pg = engine if isinstance(engine, PostgresEngine) else None
        wal0 = pg.wal_lsn() if pg is not None else None
        say(
            f"{name}: rledger serve --workers {w}; {work.records:,} records, {args.in_flight} in flight ..."
        )
        with running_server(url, workers=w, log_dir=args.dir, env=UNLIMITED) as server:
            row = ingest(server, work, tokens, args.in_flight)
            if pg is not None and wal0 is not None:
                row["wal_bytes"] = pg.wal_bytes(wal0)
            raws.append(raw_rates(work))
            results.put(key, row)
            print_row(key, row, max(r[0] for r in raws))
            if final:
                post_ingest(engine, url, server, tokens, work, args, results)
        writer = writer_stats(server.log(), row)
        if writer:
            results.put(f"{key}:writer", writer)
            say(
                f"  => writer lock (the serial section): {writer['lock_us']:.0f} µs a record "
                f"held, {writer['cpu_us']:.0f} µs of it on the CPU; held {writer['busy']:.0%} "
                f"of the ingest; {writer['batches_per_tx']:.2f} batches a transaction"
            )
        if final:
            finish(engine, url, work, args, results, raws)
        else:
            size = engine.size(url)
            results.put(f"{name}:size:w{w}", size)
            engine.drop(f"w{w}")
    if all(k in results for k in post_keys):
        return
    url_kept = engine.existing(f"w{last}", work.records + work.meta["setup"])
    if url_kept is None:
        raise SystemExit(f"{name}: no ledger to query")
    tokens = reader_token(url_kept, work)
    with running_server(url_kept, workers=last, log_dir=args.dir, env=UNLIMITED) as server:
        post_ingest(engine, url_kept, server, tokens, work, args, results)
    finish(engine, url_kept, work, args, results, raws)


def writer_stats(log: str, ingest_row: dict[str, Any]) -> dict[str, float] | None:
    """The server processes' ``writer:`` lines (schema/app.py logs ledger.store.WriterStats
    when it stops), summed: how long the writer lock was held a record, how much of that
    on the CPU, and the share of the ingest's wall time it was held (by one process or
    another: the lock is one)."""
    found = WriterStats.parse_all(log)
    if not found:
        return None
    records = sum(w.records for w in found)
    batches, txs = sum(w.batches for w in found), sum(w.transactions for w in found)
    held, cpu = sum(w.lock_seconds for w in found), sum(w.lock_cpu_seconds for w in found)
    if not records:
        return None
    return {
        "records": records,
        "batches_per_tx": batches / txs,
        "lock_us": held / records * 1e6,
        "cpu_us": cpu / records * 1e6,
        "busy": held / ingest_row["seconds"],
    }


def reader_token(url: str, work: Workload) -> dict[str, str]:
    store = Store.open(url)
    try:
        return {
            work.meta["reader"]: issue_token(
                store.engine, work.meta["reader"], label="national-bench"
            )
        }
    finally:
        store.close()


def post_ingest(
    engine: Engine,
    url: str,
    server: Server,
    tokens: dict[str, str],
    work: Workload,
    args: argparse.Namespace,
    results: Results,
) -> None:
    key = f"{engine.name}:queries"
    if key in results:
        return
    if isinstance(engine, PostgresEngine):
        engine.settle(url)
    say(f"{engine.name}: picking query targets from the ledger ...")
    targets = pick_targets(url, args.seed)
    say(
        f"  lineage {targets['lineage_lot']} ({targets['lineage_depth']} deep), recoveredContent "
        f"{targets['rc_lot']} ({targets['rc_upstream_lots']:,} lots up), battery {targets['code']}, "
        f"year {targets['year']}, eprReport {targets['epr']}"
    )
    rows = {}
    for qkey, row in query_rows(server, url, tokens[work.meta["reader"]], targets, args.query_runs):
        rows[qkey] = row
        print_row(qkey, row, 1.0)
    results.put(
        key,
        {
            "targets": {k: v for k, v in targets.items() if k not in ("lots", "hashes", "seqs")},
            "rows": rows,
        },
    )


def finish(
    engine: Engine,
    url: str,
    work: Workload,
    args: argparse.Namespace,
    results: Results,
    raws: list[tuple[float, float]],
) -> None:
    name = engine.name
    if f"{name}:size" not in results:
        size = engine.size(url)
        results.put(f"{name}:size", size)
        say(
            f"  => database {mib(size['total'])}, {size['total'] / (work.records + work.meta['setup']):,.0f} bytes a record"
        )
    if f"{name}:verify" not in results:
        say(f"{name}: verify_store(processes={args.verify_processes}) over the whole ledger ...")
        row = verify_full(url, args.verify_processes)
        raws.append(raw_rates(work))
        results.put(f"{name}:verify", row)
        if row["ok"]:
            say(f"  => {row['rate']:,.0f} rec/s in {row['seconds']:.0f} s")
        else:
            say(f"  => the ledger did NOT verify, after {row['seconds']:.0f} s: {row['error']}")


def table(
    args: argparse.Namespace,
    work: Workload,
    results: Results,
    raws: list[tuple[float, float]],
    engines: list[Engine],
) -> None:
    raw = max(r[0] for r in raws)
    sodium = max(r[1] for r in raws)
    total = work.records + work.meta["setup"]
    full = sum(b[1] for b in work.batches if b[1] == args.batch)
    full_share = 100 * full / work.records
    say()
    say("Recovery Ledger national-scale benchmark")
    say(
        f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load after {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"workload {work.meta['source']} (seed {args.seed}): {work.records:,} records "
        f"(+{work.meta['setup']} setup) from {len(work.meta['senders'])} sending orgs of "
        f"{work.meta['orgs']}, {len(work.batches):,} batches of <= {args.batch} "
        f"(mean {work.records / len(work.batches):.0f}; {full_share:.0f} % of the records in full "
        f"batches), {args.in_flight} requests in flight; envelope mean "
        f"{work.meta['envelope_mean']:.0f} bytes"
    )
    mix = ", ".join(f"{k} {100 * v / work.records:.1f}" for k, v in work.meta["mix"].items())
    say(f"  mix (%): {mix}")
    for e in engines:
        say(f"  {e.name}: {e.describe()}")
    say(
        "  raw Ed25519 verify, 1 thread, 20,000 records: cryptography "
        + ", ".join(f"{r[0]:,.0f}" for r in raws)
        + "; libsodium "
        + ", ".join(f"{r[1]:,.0f}" for r in raws)
        + " rec/s (best used)"
    )
    w = 52
    head = f"{'what':<{w}}{'figure':>34}   target"
    say()
    say(head)
    say("-" * (len(head) + 40))

    def line(what: str, figure: str, target: str = "") -> None:
        say(f"{what:<{w}}{figure:>34}   {target}")

    line("raw Ed25519 verify, 1 core, cryptography", f"{raw:,.0f} rec/s", "(the ceiling per core)")
    line(
        "raw Ed25519 verify, 1 core, libsodium (PyNaCl)",
        f"{sodium:,.0f} rec/s",
        f"({sodium / raw:.2f} x cryptography)",
    )
    for e in engines:
        n = e.name
        say(f"-- {n} --")
        for wk in args.workers:
            row = results.get(f"{n}:ingest:w{wk}")
            if row is None:
                line(f"ingest over HTTP, {wk} worker(s)", "not measured")
                continue
            low = min(x[2] for x in row["windows"])
            if wk >= 2:
                target = (
                    f">= {INGEST_2W:,}/s and >= {INGEST_FLOOR:,}/s per {row['window']:,} (issue 8): "
                    + verdict(row["rate"] >= INGEST_2W and low >= INGEST_FLOOR)
                )
            else:
                target = f">= {INGEST_1W:,}/s, one process (issue 3): " + verdict(
                    row["rate"] >= INGEST_1W
                )
            line(
                f"ingest over HTTP, {wk} worker(s), rec/s",
                f"{row['rate']:,.0f} ({row['rate'] / raw:.2f} x raw)",
                target,
            )
            line("  p50 / p99 batch latency", f"{row['p50_ms']:,.0f} / {row['p99_ms']:,.0f} ms")
            rates = " ".join(f"{x[2] / 1000:.1f}k" for x in row["windows"])
            line(f"  rec/s per {row['window']:,} records", f"lowest {low:,.0f}", "")
            say(f"    {rates}")
            line(
                "  server CPU / client CPU",
                f"{100 * row['server_cpu']:.0f} % / {100 * row['client_cpu']:.0f} % of a core",
            )
            line(
                "  server RSS, peak (sum over its processes)",
                f"{mib(row['rss_peak'])} ({row['processes']} procs)",
            )
            if "wal_bytes" in row:
                line(
                    "  PostgreSQL WAL written",
                    f"{row['wal_bytes'] / row['records']:,.0f} B a record",
                )
        q = results.get(f"{n}:queries")
        if q is not None:
            rows = q["rows"]
            goals: dict[str, tuple[float | None, str]] = {
                "lot": (None, "no target set (issues 2, 3)"),
                "lineage": (None, "no target set (issues 2, 3)"),
                "rc": (RC_MS, "issue 4"),
                "rc_proof": (RC_MS, "issue 4"),
                "battery": (BATTERY_MS, "issue 4"),
                "flows": (FLOWS_MS, "issue 7"),
                "epr": (None, "no target set (issue 5)"),
                "inclusion": (None, "target is below GraphQL, next row"),
                "inclusion_server": (INCLUSION_MS, "p50, issue 6"),
            }
            for key, row in rows.items():
                if "error" in row:
                    line(row["label"][:w], "NOT measured", row["error"][:120])
                    continue
                goal, source = goals.get(key, (None, ""))
                if goal is None:
                    target = source
                elif key == "inclusion_server":
                    target = f"< {goal:g} ms {source}: {verdict(row['p50'] < goal)}"
                else:
                    target = (
                        f"< {goal:g} ms ({source}): p50 {verdict(row['p50'] < goal)}, "
                        f"p95 {verdict(row['p95'] < goal)}"
                    )
                fig = f"p50 {row['p50']:,.1f} / p95 {row['p95']:,.1f} ms"
                line(row["label"][:w], fig, target + (f"; {row['extra']}" if row["extra"] else ""))
        v = results.get(f"{n}:verify")
        if v is not None and not v.get("ok", True):
            line(
                f"full verify, {args.verify_processes} processes",
                "the ledger did NOT verify",
                f"issue 6: NOT met; {v['error']}",
            )
        elif v is not None:
            share = v["rate"] / (2 * raw)
            line(
                f"full verify, {args.verify_processes} processes",
                f"{v['rate']:,.0f} rec/s ({v['seconds']:.0f} s)",
                f">= {100 * VERIFY_SHARE:.0f} % of 2 x raw (issue 6): {100 * share:.0f} %, {verdict(share >= VERIFY_SHARE)}",
            )
        s = results.get(f"{n}:size")
        if s is not None:
            line(
                "database size",
                f"{mib(s['total'])}, {s['total'] / total:,.0f} B a record",
                "SQLite file + WAL" if n == "sqlite" else "pg_database_size",
            )
    say("-" * (len(head) + 40))
    say("(per-table sizes and every figure: " + str(results.path) + ")")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="default 1000000")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK:,} records, a smoke run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engines", default="sqlite,postgres", help="default sqlite,postgres")
    ap.add_argument("--workers", default="1,2", help="server workers per ingest run (1,2)")
    ap.add_argument("--in-flight", type=int, default=4, help="requests in flight (4)")
    ap.add_argument("--batch", type=int, default=500, help="records per request (500)")
    ap.add_argument("--query-runs", type=int, default=50, help="timed requests per query (50)")
    ap.add_argument("--verify-processes", type=int, default=2)
    ap.add_argument(
        "--workload",
        choices=["simulator", "builder"],
        default="simulator",
        help="builder: append.py's workload, for developing without the simulator",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        help="directory for the workload, ledgers and results "
        "(kept; a run stopped part-way resumes from it)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.records = QUICK
        args.query_runs = min(args.query_runs, 20)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.workers = [int(x) for x in args.workers.split(",") if x.strip()]
    if set(args.engines) - {"sqlite", "postgres"} or not args.engines:
        ap.error("--engines: sqlite, postgres or both")
    if args.records < 1 or not args.workers or min(args.workers) < 1 or args.in_flight < 1:
        ap.error("--records, --workers and --in-flight must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers (rledger, PostgreSQL) are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="rledger-national-")
        args.dir = Path(tmp.name)
    else:
        args.dir = args.keep.resolve()
        args.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        make = simulator_source if args.workload == "simulator" else builder_source
        work = prepare(
            args.dir / "workload",
            lambda: make(args.records, args.seed, args.batch),
            generator_digest(args.workload),
            args.records,
            args.seed,
            args.batch,
        )
        gc.collect()
        gc.freeze()
        config = {
            "records": args.records,
            "seed": args.seed,
            "batch": args.batch,
            "workload": work.meta["digest"],
            "in_flight": args.in_flight,
            "workers": args.workers,
            "verify_processes": args.verify_processes,
        }
        results = Results(args.dir / "results.json", config)
        raws = [raw_rates(work)]
        say(
            f"raw Ed25519 verify, 1 thread: cryptography {raws[0][0]:,.0f}/s, libsodium {raws[0][1]:,.0f}/s"
        )
        engines: list[Engine] = []
        for name in args.engines:
            if name == "sqlite":
                e: Engine = SqliteEngine(args.dir)
                engines.append(e)
                run_engine(e, args, work, results, raws)
            else:
                from postgres_server import running_postgres

                postgres_options()
                with running_postgres() as admin:
                    e = PostgresEngine(admin)
                    engines.append(e)
                    run_engine(e, args, work, results, raws)
        raws.append(raw_rates(work))
        table(args, work, results, raws, engines)
        say(f"(the whole run took {(time.perf_counter() - started) / 60:.1f} min)")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
