"""Merkle-log proof generation on the server: p50/p99 per proof at a given log size.

Not a test (pytest does not collect this folder): run it by hand::

    .venv/bin/python tests/benchmarks/proofs.py                 # 1,000,000 records, SQLite
    .venv/bin/python tests/benchmarks/proofs.py --quick         # 10,000 records (smoke test)
    .venv/bin/python tests/benchmarks/proofs.py --postgres      # a throwaway PostgreSQL too

What is measured is what the server does for ``inclusionProof(hash, treeSize)``
and ``consistencyProof(from, to)`` below GraphQL: ``ledger.merkle_log`` on one
connection — the log's size (one row), then every stored hash the proof needs
(one ``SELECT … WHERE id IN (…)`` of O(log n) rows), then the folds. The
"by hash" row is what the resolver calls, ``ledger.queries.inclusion_by_hash`` with a
regulator's read scope: the record found by its hash, then its proof (on PostgreSQL both
in one statement).

Setup (not timed): a fresh database migrated to head; ``--records`` record
rows with distinct, deterministic hashes (synthetic bytes: the tree only
reads hashes, and nothing here replays the rules), the tree appended in
batches of 5,000 through ``merkle_log.append_leaves`` (the append path's own
hook), and ``ledger_meta.seq`` set. Every proof's correctness is then checked
once against the pure verifier with the root from ``root_at``.

Each proof kind is timed over ``--samples`` random leaves (or size pairs), one
``time.perf_counter`` pair per call, after a warm-up of 200 calls; the table
gives p50, p99 and the mean. The target (issue 5/8): inclusion proof generation
under 1 ms p50 at 1,000,000 records.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: postgres_server

from sqlalchemy import Engine

from ledger import merkle, merkle_log
from ledger.access import Viewer, read_scope
from ledger.database import database_url, make_engine, migrate
from ledger.queries import inclusion_by_hash

TARGET_MS = 1.0
BATCH = 5_000
WARM_UP = 200


def record_hash_of(i: int) -> str:
    return hashlib.sha256(b"proof-benchmark:%d" % i).hexdigest()


def build(engine: Engine, n: int) -> None:
    """``n`` synthetic record rows and their tree, as the append path would write them."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    insert = (
        "INSERT INTO records (seq, id, hash, type, actor, key, at, recorded_at, canonical, sig) "
        f"VALUES ({', '.join([mark] * 10)})"
    )
    t0 = time.perf_counter()
    with engine.connect() as conn:
        for start in range(0, n, BATCH):
            with conn.begin():
                hashes = [record_hash_of(i) for i in range(start, min(start + BATCH, n))]
                rows = [
                    (
                        start + k + 1,
                        f"bench{start + k:020d}",
                        h,
                        "create",
                        "org:bench",
                        "0" * 64,
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:00.000000Z",
                        b"{}",
                        "sig",
                    )
                    for k, h in enumerate(hashes)
                ]
                conn.exec_driver_sql(insert, rows)
                merkle_log.append_leaves(conn, start, hashes)
                conn.exec_driver_sql(
                    f"UPDATE ledger_meta SET seq = {mark} WHERE id = 1", (start + len(hashes),)
                )
            if (start // BATCH) % 40 == 0:
                print(f"  {start + len(hashes):>10,} records", flush=True)
    print(f"built {n:,} records and their tree in {time.perf_counter() - t0:.1f} s", flush=True)


def timed(fn: Callable[[], object], samples: int) -> list[float]:
    for _ in range(min(WARM_UP, samples)):
        fn()
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def row(what: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{what:<44} {p50:>8.3f} {p99:>8.3f} {statistics.fmean(ms):>8.3f}"


def bench(url: str, n: int, samples: int, seed: int) -> float:
    migrate(url)
    engine = make_engine(url)
    try:
        build(engine, n)
        rng = random.Random(seed)
        scope = read_scope(Viewer("org:regulator", frozenset({"regulator"})))
        with engine.connect() as conn:
            root = merkle_log.root_at(conn, n)
            # Correctness, once: a few proofs checked with the pure verifier.
            for index in [0, n - 1, *rng.sample(range(n), min(20, n))]:
                proof = merkle_log.inclusion_at(conn, index, n)
                leaf = merkle.record_leaf(record_hash_of(index))
                assert merkle.verify_inclusion(index, n, leaf, proof, root), index
            first = n // 3
            proof = merkle_log.consistency(conn, first, n)
            old = merkle_log.root_at(conn, first)
            assert merkle.verify_consistency(first, n, old, root, proof)

            leaves = [rng.randrange(n) for _ in range(samples + WARM_UP)]
            it: Iterator[int] = iter(leaves)
            inclusion = timed(lambda: merkle_log.inclusion_at(conn, next(it), n), samples)

            it2 = iter(leaves)

            def by_hash() -> None:
                i = next(it2)
                if inclusion_by_hash(conn, scope, record_hash_of(i), n) is None:
                    raise SystemExit(f"no proof for leaf {i}")

            with_lookup = timed(by_hash, samples)
            sizes = [rng.randrange(1, n) for _ in range(samples + WARM_UP)]
            it3 = iter(sizes)
            consistency = timed(lambda: merkle_log.consistency(conn, next(it3), n), samples)
            it4 = iter(sizes)
            roots = timed(lambda: merkle_log.root_at(conn, next(it4)), samples)
    finally:
        engine.dispose()
    print()
    print(f"{engine.dialect.name}, {n:,} records, {samples:,} samples each (ms)")
    print(f"{'what':<44} {'p50':>8} {'p99':>8} {'mean':>8}")
    print(row("inclusion proof (leaf index, tree size)", inclusion))
    print(row("inclusion proof by record hash", with_lookup))
    print(row("consistency proof (random from, to = size)", consistency))
    print(row("root at a random size", roots))
    p50 = statistics.median(inclusion)
    verdict = "met" if p50 < TARGET_MS else "NOT met"
    print(
        f"target: inclusion proof p50 < {TARGET_MS} ms at 1,000,000 records: {verdict} ({p50:.3f} ms)"
    )
    return p50


@contextmanager
def postgres_url() -> Iterator[str]:
    from postgres_server import create_database, running_postgres

    with running_postgres() as admin:
        yield create_database(admin, "proofs_bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10,000 records, 2,000 samples")
    parser.add_argument("--samples", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", default=None, help="SQLite file to build (must not exist)")
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.samples = 10_000, 2_000
    with tempfile.TemporaryDirectory(prefix="rledger-proofs-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "proofs.db"
        if path.exists():
            parser.error(f"{path} exists; give a new file")
        bench(database_url(str(path)), args.records, args.samples, args.seed)
    if args.postgres:
        with postgres_url() as url:
            bench(url, args.records, args.samples, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
