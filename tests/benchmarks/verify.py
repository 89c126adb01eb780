"""Full ``rledger verify`` against the raw Ed25519 verification rate, with 1 and 2 processes.

Not a test (pytest does not collect this folder; tests/test_verify_parallel.py
runs ``--quick`` as a smoke test). Run it by hand::

    .venv/bin/python tests/benchmarks/verify.py             # 1,000,000 records
    .venv/bin/python tests/benchmarks/verify.py --quick     # 5,000 records
    .venv/bin/python tests/benchmarks/verify.py --db /tmp/other.db --records 200000

The ledger is append.py's workload (its ``Builder`` and ``--seed``: 20
organisations with fixed keys; creates, transfers, receives, splits,
merges, transforms, status changes and disposals), built and signed
``CHUNK`` records at a time and appended through ``Store.append_stream``
with a verify worker process. Building a million records takes a while
(about 20 minutes on the 2-core machine), so the file is kept: by default
``/tmp/rledger-verify-bench-<records>-s<seed>.db``, reused when it holds
that many records (``--db PATH`` names another file, ``--rebuild`` builds it
afresh).

Then, in the same run: the raw single-core Ed25519 rate — cryptography's
``Ed25519PublicKey.verify`` on one thread over ``RAW_SAMPLE`` records' own
bytes and signatures, read from the ledger — measured before, between and
after the verify runs (the best is the reference), and
``ledger.verify.verify_store`` over the whole file with each of
``--processes`` (default 1 and 2: what ``rledger verify --processes N``
runs). Each run must report the ledger ok. It prints each run's records/s,
its share of the raw rate and its share of twice the raw rate. The target
(issue 5/8): with both cores, at least 80 % of twice the raw rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # append.py's workload

from append import MIX, Builder
from sqlalchemy import inspect

from ledger import verify as verify_module
from ledger.database import database_url, has_schema, make_engine, migrate
from ledger.signing import (
    Ed25519PublicKey,
    b64url_decode,
    load_public_key,
)
from ledger.store import Appended, Signed, Store
from ledger.tables import PROJECTIONS
from ledger.verify import rebuild, verify_store

TARGET = 0.80
RAW_SAMPLE = 20_000
CHUNK = 20_000  # records built and signed at a time
BATCH = 500


def default_path(records: int, seed: int) -> Path:
    return Path("/tmp") / f"rledger-verify-bench-{records}-s{seed}.db"


# --- building the ledger ----------------------------------------------------------------


def workload(seed: int, n: int) -> Iterator[tuple[list[Signed], list[str]]]:
    """append.py's workload: the setup records, then ``n`` more, ``CHUNK`` at a time
    (records, their hashes)."""
    b = Builder(seed)
    yield b.setup(), b.setup_hashes
    kinds, weights = list(MIX), list(MIX.values())
    done = 0
    while done < n:
        b.records, b.hashes, b.key_ids = [], [], []
        while len(b.records) < min(CHUNK, n - done):
            kind = b.rng.choices(kinds, weights)[0]
            if not getattr(b, kind)():
                b.create()
        keep = min(len(b.records), n - done)  # an operation may sign a record too many
        yield b.records[:keep], b.hashes[:keep]
        done += keep


def batches(
    chunks: Iterator[tuple[list[Signed], list[str]]], hashes: list[list[str]]
) -> Iterator[list[Signed]]:
    for records, chunk_hashes in chunks:
        for start in range(0, len(records), BATCH):
            hashes.append(chunk_hashes[start : start + BATCH])
            yield records[start : start + BATCH]


def build(path: Path, n: int, seed: int) -> None:
    """The workload appended to a fresh file at ``path`` (written beside it, then renamed)."""
    partial = path.with_name(path.name + ".building")
    for p in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        p.unlink(missing_ok=True)
    url = database_url(str(partial))
    migrate(url)
    store = Store.open(url, verify_processes=1)
    t0 = time.perf_counter()
    done = 0
    try:
        expected: list[list[str]] = []
        stream = store.append_stream(batches(workload(seed, n), expected))
        for k, results in enumerate(stream):
            for r, h in zip(results, expected[k], strict=True):
                if not isinstance(r, Appended) or r.existing or r.hash != h:
                    raise SystemExit(f"building the ledger: a record was not appended: {r!r}")
            done += len(results)
            if k % 200 == 0:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                print(f"  {done:>10,} records ({rate:,.0f} rec/s)", flush=True)
    finally:
        store.close()
    partial.rename(path)
    print(f"built {done:,} records in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)


def ledger_size(path: Path) -> int:
    if not path.exists():
        return -1
    store = Store.open(database_url(str(path)), verify_threads=1)
    try:
        return store.last_seq() if has_schema(store.engine) else -1
    finally:
        store.close()


def refresh(path: Path) -> None:
    """A file kept from before a migration added a projection: migrate it, then replay the
    log into the projections (``rledger rebuild``), so that verify compares like with like."""
    url = database_url(str(path))
    engine = make_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    migrate(url)  # to the head (a no-op when it is there; 0007 rewrites lot snapshots)
    if {t.name for t in PROJECTIONS} <= present:
        return
    print("  the file predates a migration that added a projection: rebuilding them ...")
    store = Store.open(url, verify_threads=1)
    try:
        rebuild(store)
    finally:
        store.close()


# --- measuring ----------------------------------------------------------------------------


def raw_items(path: Path, limit: int) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    """(public key, signature, canonical bytes) of ``limit`` records, from the ledger."""
    engine = make_engine(database_url(str(path)))
    try:
        with engine.connect() as conn:
            keys = {
                kid: load_public_key(bytes(raw))
                for kid, raw in conn.exec_driver_sql("SELECT id, public_key FROM keys")
            }
            rows = conn.exec_driver_sql(
                "SELECT key, sig, canonical FROM records ORDER BY seq LIMIT ?", (limit,)
            ).all()
    finally:
        engine.dispose()
    return [(keys[k], b64url_decode(sig), bytes(data)) for k, sig, data in rows]


def raw_verify_rate(items: Sequence[tuple[Ed25519PublicKey, bytes, bytes]]) -> float:
    """Single-thread Ed25519PublicKey.verify over the records' own bytes."""
    start = time.perf_counter()
    for pub, sig, data in items:
        pub.verify(sig, data)
    return len(items) / (time.perf_counter() - start)


def verify_run(path: Path, processes: int) -> tuple[float, int, float]:
    """One full verify: its seconds, records, and the seconds of its last step (comparing
    the stored projections with the replayed ones, after the replay)."""
    compare = verify_module._compare_projections
    spent = [0.0]

    def timed(store: Store, state: Any) -> None:
        t = time.perf_counter()
        try:
            compare(store, state)
        finally:
            spent[0] += time.perf_counter() - t

    store = Store.open(database_url(str(path)), verify_threads=1)
    verify_module._compare_projections = timed
    try:
        t0 = time.perf_counter()
        report = verify_store(store, processes=processes)
        seconds = time.perf_counter() - t0
    finally:
        verify_module._compare_projections = compare
        store.close()
    if not report.ok:
        raise SystemExit(f"verify with {processes} process(es) failed: {report}")
    return seconds, report.records, spent[0]


def load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="default 1000000")
    ap.add_argument("--quick", action="store_true", help="5,000 records")
    ap.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    ap.add_argument("--db", type=Path, help="SQLite file to build or reuse")
    ap.add_argument("--rebuild", action="store_true", help="build the file afresh")
    ap.add_argument(
        "--build-only", action="store_true", help="build (or check) the file, then stop"
    )
    ap.add_argument("--processes", default="1,2", help="verify processes per run (default 1,2)")
    args = ap.parse_args(argv)
    if args.quick:
        args.records = 5_000
    args.processes = [int(p) for p in args.processes.split(",") if p.strip()]
    if args.records < 1 or not args.processes or min(args.processes) < 0:
        ap.error("--records must be positive and --processes at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run it; returns the figures (``raw``, ``p<N>`` rates, ``ratio``: the largest
    process count's rate over twice the raw rate)."""
    args = parse_args(argv)
    path: Path = args.db or default_path(args.records, args.seed)
    setup = len(Builder(args.seed).setup())
    if args.rebuild or ledger_size(path) != setup + args.records:
        if path.exists():
            if not args.rebuild:
                raise SystemExit(
                    f"{path} exists but does not hold {setup + args.records:,} records; "
                    "pass --rebuild to replace it or --db another file"
                )
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
        print(f"building {args.records:,} records (seed {args.seed}) into {path} ...", flush=True)
        build(path, args.records, args.seed)
    else:
        print(f"reusing {path} ({setup + args.records:,} records)", flush=True)
        refresh(path)
    if args.build_only:
        return {}

    sample = raw_items(path, RAW_SAMPLE)
    raws = [raw_verify_rate(sample)]
    runs: list[tuple[int, float, int, float, str]] = []
    for processes in args.processes:
        print(f"verify_store(processes={processes}) ...", flush=True)
        seconds, count, compare = verify_run(path, processes)
        runs.append((processes, seconds, count, compare, load()))
        raws.append(raw_verify_rate(sample))
    raw = max(raws)

    print()
    print("Recovery Ledger full-verify benchmark")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, SQLite; {path}")
    print(
        f"  raw Ed25519 verify, 1 thread, {len(sample):,} records: "
        + ", ".join(f"{r:,.0f}" for r in raws)
        + " rec/s (best is the reference)"
    )
    header = (
        f"{'what':<34}{'seconds':>9}{'rec/s':>10}{'% raw':>8}{'% 2x raw':>10}"
        f"{'compare s':>11}  load after"
    )
    print()
    print(header)
    print("-" * len(header))
    print(f"{'raw Ed25519 verify, 1 thread':<34}{'':>9}{raw:>10,.0f}{100.0:>7.1f}%{50.0:>9.1f}%")
    figures = {"raw": raw}
    for processes, seconds, count, compare, after in runs:
        rate = count / seconds
        figures[f"p{processes}"] = rate
        label = f"verify_store(processes={processes})"
        print(
            f"{label:<34}{seconds:>9.2f}{rate:>10,.0f}{100 * rate / raw:>7.1f}%"
            f"{50 * rate / raw:>9.1f}%{compare:>11.2f}  {after}"
        )
    print("-" * len(header))
    top = max(p for p, *_ in runs)
    ratio = figures[f"p{top}"] / (2 * raw)
    figures["ratio"] = ratio
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"verify with {top} processes: {figures[f'p{top}']:,.0f} rec/s = {100 * ratio:.1f} % "
        f"of twice the raw rate (target ≥ {100 * TARGET:.0f} %: {verdict})"
    )
    return figures


if __name__ == "__main__":
    main()
