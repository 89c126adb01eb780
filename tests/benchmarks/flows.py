"""``materialFlows`` latency for a year over a large ledger (target: p50 < 200 ms).

Not a test (pytest does not collect this folder). Run it by hand::

    .venv/bin/python tests/benchmarks/flows.py                 # 1,000,000 records
    .venv/bin/python tests/benchmarks/flows.py --records 200000
    .venv/bin/python tests/benchmarks/flows.py --quick         # 5,000 records, a smoke test

The ledger is tests/benchmarks/append.py's fixed workload (creates, transfers and receives,
splits, merges, transforms, status changes, disposals; ``at`` one second apart from
2026-01-01), appended once through :meth:`Store.append` into a SQLite file cached under
/tmp (``rledger-bench-flows-<records>-<seed>-<schema head>.db``; delete it to rebuild). Timed:
:func:`ledger.flows.material_flows` for the year 2026 as a regulator, grouped by stage, and
for one family (``--material``), each over ``--runs`` calls after one warm-up; p50 and p95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alembic.script import ScriptDirectory
from append import Builder, batches, check

from ledger import flows
from ledger.access import Ground, ReadScope
from ledger.database import alembic_config, database_url, migrate
from ledger.store import Store

REGULATOR = ReadScope("org:operator", True, frozenset(Ground))
YEAR = flows.FlowFilter(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def build(path: Path, n: int, seed: int, batch: int) -> None:
    work = Builder(seed).build(n)
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    url = database_url(str(tmp))
    migrate(url)
    store = Store.open(url)
    try:
        check(store.append(work.setup), work.setup_hashes, "setup")
        done = 0
        for chunk in batches(work.records, batch):
            check(store.append(chunk), work.hashes[done : done + len(chunk)], f"batch at {done}")
            done += len(chunk)
    finally:
        store.close()
    tmp.rename(path)


def timed(store: Store, where: flows.FlowFilter, runs: int) -> tuple[list[float], flows.Flows]:
    times: list[float] = []
    found = None
    with store.engine.connect() as conn:
        flows.material_flows(conn, REGULATOR, where)  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            found = flows.material_flows(conn, REGULATOR, where)
            times.append((time.perf_counter() - t0) * 1000)
    assert found is not None
    return times, found


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, -(-len(xs) * 95 // 100) - 1)]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="5,000 records, 3 runs")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--material", default="steel")
    ap.add_argument(
        "--db",
        type=Path,
        help="time an existing SQLite ledger instead (e.g. national.py's, migrated first)",
    )
    args = ap.parse_args(argv)
    n, runs = (5_000, 3) if args.quick else (args.records, args.runs)
    # The schema's head revision is in the name: a cached ledger of an older schema is rebuilt.
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    path = args.db or Path(f"/tmp/rledger-bench-flows-{n}-{args.seed}-{head}.db")
    if args.db is not None:
        migrate(database_url(str(path)))  # to the head: a file of an older schema is brought up
    elif not path.exists():
        t0 = time.perf_counter()
        build(path, n, args.seed, args.batch)
        print(f"built {n:,} records in {time.perf_counter() - t0:.0f} s: {path}")
    store = Store.open(database_url(str(path)))
    try:
        print(f"ledger: {store.last_seq():,} records")
        for label, where in (
            ("year, all materials", YEAR),
            (f"year, {args.material}", flows.FlowFilter(YEAR.start, YEAR.end, args.material)),
        ):
            times, found = timed(store, where, runs)
            print(
                f"materialFlows {label}: p50 {statistics.median(times):.1f} ms, "
                f"p95 {p95(times):.1f} ms over {runs} runs "
                f"(collected {found.stages['collected']:,} g, {len(found.links)} links)"
            )
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
