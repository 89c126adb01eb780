"""HTTP ingest throughput: signed records over GraphQL to ``rledger serve``.

Not a test (pytest does not collect this folder): run it by hand::

    .venv/bin/python tests/benchmarks/http_ingest.py            # 100,000 records
    .venv/bin/python tests/benchmarks/http_ingest.py --quick    # 10,000 records
    .venv/bin/python tests/benchmarks/http_ingest.py --quick --profile 25   # server under cProfile

This script is the client process; the server is ``rledger serve --workers N``
(``--workers``, default 1) in a subprocess (tests/server_process.py) on a fresh SQLite file. The workload
is append.py's (same builder, same seed): ~20 organisations, creates,
transfers and receives, splits, merges, transforms, status changes and
disposals. A token may only write as its own organisation, so the records are
grouped into batches of one organisation each (up to ``--batch``), in an
order that keeps every record after the records its ``parents`` name.

Before the clock starts: every record is signed, every batch's request body
(the ``recordEvents`` mutation with its variables) is serialised to bytes, and
the server is up. The timed loop only sends those bytes over one keep-alive
``http.client`` connection (``--in-flight N``: N connections, a request in
flight on each) and keeps the responses; they are checked after the clock
stops (every record must come back ``Recorded``, new, with the hash the
client computed). Then a trivial query's requests/s is measured with several
keep-alive connections in threads. ``--in-process`` also appends the same
batches in this process, through what the resolver calls, without HTTP or
GraphQL: the difference is the cost of the API layer.

The reference is the same run's raw single-core Ed25519 verify rate
(append.py's measurement over the same records' bytes, OpenSSL through
``cryptography``); the rate of ``ledger.signing.verify`` (libsodium after the
encoding checks, docs/adr/0007-ed25519-verifier.md) is printed beside it.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import http.client
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: server_process

from append import RAW_SAMPLE, Builder, Workload, raw_items, raw_verify_rate
from server_process import Server, running_server

from ledger.database import database_url, migrate
from ledger.signing import public_key_bytes, verify
from ledger.store import Appended, Store
from ledger.tokens import issue_token

TARGET = 5_000  # records/s with one server process (issue 2/8)
TARGET_2 = 10_000  # records/s with two server workers (issue 7/8) ...
TARGET_FLOOR = 5_000  # ... and never below this in any 100,000 records
WINDOW = 10_000  # records per reported window
# Records built per record sent: the end of a workload's dependency graph only
# yields small batches of one org (see org_batches), so build more and send a prefix.
OVERBUILD = 1.3

MUTATION = (
    "mutation Record($events: [SignedEvent!]!) { recordEvents(events: $events) {"
    " __typename ... on Recorded { hash seq existing } ... on Rejected { id code message path } } }"
)
TYPENAME_QUERY = "{ __typename }"
LOT_QUERY = "query Lot($id: ID!) { lot(id: $id) { id massG head custodian { id } } }"


# --- batches of one organisation each ------------------------------------------


@dataclass
class Batch:
    org: str
    indices: list[int]  # positions in Workload.records
    after: int = -1  # batches up to this index must be answered before this one is sent
    body: bytes = b""


def org_batches(work: Workload, size: int, limit: int, in_flight: int = 1) -> list[Batch]:
    """The first ``limit`` records, in batches of one actor each, parents before children.

    Kahn's algorithm over the ``parents`` edges, one ready-queue per actor: the
    next batch is taken from the actor with the most ready records, in workload
    order, and a record whose parents are all in this batch or in batches
    already answered joins the same batch (the ledger appends a batch in
    order). With ``in_flight`` requests at once, batch k is answered only
    before batch k + in_flight is sent, so a record may depend on batch k only
    from batch k + in_flight on. Near the end of a workload the ready queues
    run dry and batches shrink, so the caller builds more records than it
    sends (see OVERBUILD) and the schedule stops at ``limit``; what is left
    out is never a parent of what is sent.
    """
    produced = {h: i for i, h in enumerate(work.hashes)}
    actors: list[str] = []
    waiting: list[int] = []  # parents not yet in an answered batch
    children: list[list[int]] = [[] for _ in work.records]
    for i, rec in enumerate(work.records):
        env = json.loads(rec.envelope)
        actors.append(env["actor"])
        deps = {produced[h] for h in env["parents"].values() if h in produced}
        waiting.append(len(deps))
        for d in deps:
            children[d].append(i)
    ready: dict[str, list[int]] = {a: [] for a in sorted(set(actors))}
    for i, n in enumerate(waiting):
        if n == 0:
            ready[actors[i]].append(i)  # already in increasing order: a valid heap
    scheduled = [False] * len(work.records)
    unanswered: list[list[int]] = []  # batches sent but (in the worst case) not answered yet
    batches: list[Batch] = []
    total = 0
    answered = -1  # batches up to this index are answered before the next one is sent

    def answer(batch: list[int]) -> None:
        nonlocal answered
        answered += 1
        for i in batch:
            for c in children[i]:
                waiting[c] -= 1
                if waiting[c] == 0 and not scheduled[c]:
                    heapq.heappush(ready[actors[c]], c)

    while total < limit:
        if len(unanswered) >= in_flight:
            answer(unanswered.pop(0))
        org = max(ready, key=lambda a: len(ready[a]))
        queue = ready[org]
        if not queue:
            if unanswered:
                answer(unanswered.pop(0))
                continue
            break
        picked: list[int] = []
        here: list[int] = []  # this org's records whose last parents are in this batch
        in_batch: Counter[int] = Counter()  # parents of a record found in this batch
        while (queue or here) and len(picked) < min(size, limit - total):
            use = queue if queue and (not here or queue[0] < here[0]) else here
            i = heapq.heappop(use)
            picked.append(i)
            scheduled[i] = True
            for c in children[i]:
                if actors[c] == org:
                    in_batch[c] += 1
                    if in_batch[c] == waiting[c]:
                        heapq.heappush(here, c)
        batches.append(Batch(org, picked, answered))
        unanswered.append(picked)
        total += len(picked)
    if total != min(limit, len(work.records)):
        raise SystemExit("scheduling left records behind (a parents cycle?)")
    return batches


def request_body(work: Workload, batch: Batch) -> bytes:
    events = [
        {"envelope": work.records[i].envelope, "signature": work.records[i].signature}
        for i in batch.indices
    ]
    return json.dumps(
        {"query": MUTATION, "variables": {"events": events}}, separators=(",", ":")
    ).encode()


# --- the ledger the server starts on -------------------------------------------


def prepare_ledger(url: str, work: Workload) -> dict[str, str]:
    """Migrate, append the setup records (genesis, orgs, keys); a token per organisation."""
    migrate(url)
    store = Store.open(url)
    try:
        results = store.append(work.setup)
        for r, h in zip(results, work.setup_hashes, strict=True):
            if not isinstance(r, Appended) or r.hash != h:
                raise SystemExit(f"setup record refused: {r!r}")
        orgs = {json.loads(r.envelope)["actor"] for r in work.records}
        orgs.add("org:regulator-01")
        return {org: issue_token(store.engine, org, label="bench") for org in sorted(orgs)}
    finally:
        store.close()


# --- HTTP -------------------------------------------------------------------------


def headers(token: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {token}",
    }


def post(conn: http.client.HTTPConnection, body: bytes, hdrs: dict[str, str]) -> tuple[int, bytes]:
    """POST /graphql; retry on 503 (Retry-After) as a well-behaved client would."""
    for _ in range(10):
        conn.request("POST", "/graphql", body=body, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        if response.status != 503:
            return response.status, data
        time.sleep(float(response.getheader("Retry-After") or 1))
    return response.status, data


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server: every live process in its process group
    (uvicorn's workers and their verify workers; Linux /proc)."""
    total = 0
    found = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # the process group: the server runs in its own session
            found = True
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK") if found else float("nan")


def ledger_verify_rate(sample: Sequence[tuple[object, bytes, bytes]]) -> float:
    """Single-thread ``ledger.signing.verify`` (checks + libsodium) over the same bytes."""
    raw = [(public_key_bytes(k), sig, data) for k, sig, data in sample]  # type: ignore[arg-type]
    start = time.perf_counter()
    for pub, sig, data in raw:
        verify(pub, sig, data)
    return len(raw) / (time.perf_counter() - start)


@dataclass
class Ingest:
    records: int
    seconds: float
    batch_s: list[float]
    ends: list[float]  # seconds since start when each batch was answered
    sizes: list[int]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def ingest(
    server: Server,
    work: Workload,
    batches: Sequence[Batch],
    tokens: dict[str, str],
    in_flight: int = 1,
) -> Ingest:
    """Send every batch; ``in_flight`` keep-alive connections, one thread each,
    take the batches in order (each waits until the batches it may depend on
    are answered: ``Batch.after``)."""
    hdrs = {org: headers(tok) for org, tok in tokens.items()}
    n = len(batches)
    responses: list[bytes] = [b""] * n
    times = [0.0] * n
    ends = [0.0] * n
    done = [threading.Event() for _ in batches]
    next_batch = iter(range(n))
    lock = threading.Lock()
    failures: list[str] = []
    conns = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=300) for _ in range(in_flight)
    ]
    for conn in conns:
        conn.connect()

    def sender(conn: http.client.HTTPConnection) -> None:
        waited = -1  # batches up to here are known to be answered
        while not failures:
            with lock:
                j = next(next_batch, None)
            if j is None:
                return
            batch = batches[j]
            for k in range(waited + 1, batch.after + 1):
                done[k].wait()
            waited = max(waited, batch.after)
            t0 = time.perf_counter()
            status, data = post(conn, batch.body, hdrs[batch.org])
            t1 = time.perf_counter()
            if status != 200:
                failures.append(f"batch {j} of {batch.org}: HTTP {status}: {data[:2000]!r}")
                for event in done:
                    event.set()  # let the other senders stop
                return
            times[j], ends[j], responses[j] = t1 - t0, t1 - start, data
            done[j].set()

    threads = [threading.Thread(target=sender, args=(c,)) for c in conns]
    cpu0, client0 = cpu_seconds(server.process.pid), time.process_time()
    start = time.perf_counter()
    if in_flight == 1:
        sender(conns[0])  # no thread hand-offs on the common path
    else:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seconds = time.perf_counter() - start
    server_cpu = cpu_seconds(server.process.pid) - cpu0
    client_cpu = time.process_time() - client0
    for conn in conns:
        conn.close()
    if failures:
        raise SystemExit(failures[0])
    check(work, batches, responses)
    return Ingest(
        sum(len(b.indices) for b in batches),
        seconds,
        times,
        ends,
        [len(b.indices) for b in batches],
        server_cpu,
        client_cpu,
    )


def in_process(url: str, work: Workload, batches: Sequence[Batch]) -> Ingest:
    """The same batches through what the server's resolver calls (``append_as``), in
    this process, without HTTP or GraphQL: what the store alone costs."""
    from schema.mutations import append_as

    store = Store.open(url)
    try:
        times: list[float] = []
        ends: list[float] = []
        start = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            results = append_as(store, batch.org, [work.records[i] for i in batch.indices])
            t1 = time.perf_counter()
            times.append(t1 - t0)
            ends.append(t1 - start)
            for i, r in zip(batch.indices, results, strict=True):
                if not isinstance(r, Appended) or r.existing or r.hash != work.hashes[i]:
                    raise SystemExit(f"in-process, record {i}: not appended as built: {r!r}")
        seconds = time.perf_counter() - start
    finally:
        store.close()
    sizes = [len(b.indices) for b in batches]
    return Ingest(sum(sizes), seconds, times, ends, sizes, float("nan"), float("nan"))


def check(work: Workload, batches: Sequence[Batch], responses: Sequence[bytes]) -> None:
    """Every record Recorded, new, with the hash the client computed, each at its own seq."""
    seqs: set[int] = set()
    for batch, data in zip(batches, responses, strict=True):
        answer = json.loads(data)
        if answer.get("errors"):
            raise SystemExit(f"batch of {batch.org}: errors {answer['errors']}")
        results = answer["data"]["recordEvents"]
        if len(results) != len(batch.indices):
            raise SystemExit(f"{len(results)} results for a batch of {len(batch.indices)}")
        last_seq = 0
        for i, r in zip(batch.indices, results, strict=True):
            if r["__typename"] != "Recorded" or r["existing"] or r["hash"] != work.hashes[i]:
                raise SystemExit(f"record {i} ({batch.org}) not recorded as built: {r}")
            if r["seq"] <= last_seq or r["seq"] in seqs:
                raise SystemExit(f"record {i}: seq {r['seq']} out of order or repeated")
            last_seq = r["seq"]
            seqs.add(r["seq"])


class QueryFailed(Exception):
    """A query measured for requests/s was answered with an error."""


@dataclass
class QueryRun:
    label: str
    requests: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def query_rate(
    server: Server, label: str, body: bytes, token: str, connections: int, duration: float
) -> QueryRun:
    """``connections`` keep-alive connections in threads, each sending ``body`` in a loop."""
    hdrs = headers(token)
    # One warm-up request: the answer must be data (no error, no null field).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    status, data = post(conn, body, hdrs)
    conn.close()
    answer = json.loads(data)
    if status != 200 or answer.get("errors") or None in (answer.get("data") or {None: 0}).values():
        raise QueryFailed(f"{label}: HTTP {status}: {data[:300]!r}")
    counts = [0] * connections
    lats: list[list[float]] = [[] for _ in range(connections)]
    failures: list[str] = []
    go = threading.Event()
    stop_at = [0.0]

    def worker(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        c.connect()
        go.wait()
        try:
            while (t0 := time.perf_counter()) < stop_at[0]:
                c.request("POST", "/graphql", body=body, headers=hdrs)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(f"HTTP {r.status}")
                    return
                lats[k].append(time.perf_counter() - t0)
                counts[k] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    cpu0, client0 = cpu_seconds(server.process.pid), time.process_time()
    start = time.perf_counter()
    stop_at[0] = start + duration
    go.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if failures:
        raise QueryFailed(f"{label}: {failures[0]}")
    return QueryRun(
        label,
        sum(counts),
        seconds,
        [x for xs in lats for x in xs],
        cpu_seconds(server.process.pid) - cpu0,
        time.process_time() - client0,
    )


# --- report -----------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def windows(run: Ingest, size: int) -> list[tuple[int, int, float]]:
    """(first record, last record, rec/s) per ``size`` records, by batch boundaries."""
    out = []
    done = first = 0
    t_first = 0.0
    end = 0.0
    for n, answered in zip(run.sizes, run.ends, strict=True):
        end = max(end, answered)  # with several in flight, answers may come out of order
        done += n
        if done - first >= size or done == run.records:
            out.append((first + 1, done, (done - first) / (end - t_first)))
            first, t_first = done, end
    return out


def print_profile(path: Path, lines: int) -> None:
    print("\n(cProfile inflates Python-level time; take rates from a run without --profile)")
    for what, file in (
        ("event-loop thread (HTTP, JSON, GraphQL)", path),
        ("worker threads (Store.append via to_thread, token checks)", Path(f"{path}.threads")),
    ):
        if not file.exists():
            print(f"\n--- server {what}: no profile written ---")
            continue
        for key in ("tottime", "cumulative"):
            print(f"\n--- server {what}: top {lines} by {key} ---")
            pstats.Stats(str(file)).strip_dirs().sort_stats(key).print_stats(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="records (default 100000)")
    ap.add_argument("--quick", action="store_true", help="10,000 records")
    ap.add_argument("--batch", type=int, default=500, help="records per request (default 500)")
    ap.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    ap.add_argument(
        "--workers", type=int, default=1, help="`rledger serve --workers N` (default 1)"
    )
    ap.add_argument(
        "--db-dir", type=Path, help="directory for the SQLite file (default: a temp dir)"
    )
    ap.add_argument(
        "--in-flight",
        type=int,
        default=1,
        help="recordEvents requests in flight at once, one connection each (default 1)",
    )
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="also append the same batches in this process without HTTP (the store's share)",
    )
    ap.add_argument("--connections", type=int, default=4, help="query connections (default 4)")
    ap.add_argument(
        "--query-seconds", type=float, default=5.0, help="seconds per query measurement (5)"
    )
    ap.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=0,
        metavar="N",
        help="run the server under cProfile; print its top N functions (25)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.records = 10_000
    if (
        args.records < 1
        or not 1 <= args.batch <= 5000
        or min(args.connections, args.in_flight, args.workers) < 1
    ):
        ap.error(
            "--records, --connections, --in-flight and --workers must be positive, --batch 1..5000"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    built = int(args.records * OVERBUILD) + 1000
    print(
        f"building and signing {built:,} records (seed {args.seed}) to send {args.records:,} ...",
        flush=True,
    )
    t0 = time.perf_counter()
    work = Builder(args.seed).build(built)
    sign_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = org_batches(work, args.batch, args.records, args.in_flight)
    for b in batches:
        b.body = request_body(work, b)
    serialise_s = time.perf_counter() - t0
    sample = raw_items(work, min(RAW_SAMPLE, len(work.records)))
    gc.collect()
    gc.freeze()
    raws = [raw_verify_rate(sample)]
    sodiums = [ledger_verify_rate(sample)]

    with tempfile.TemporaryDirectory(prefix="rledger-http-bench-") as tmp:
        db_dir = args.db_dir or Path(tmp)
        db_dir.mkdir(parents=True, exist_ok=True)
        db_path = db_dir / "http-bench.db"
        for path in (db_path, db_dir / "in-process.db"):
            if path.exists():
                raise SystemExit(f"{path} exists: the benchmark needs a fresh ledger file")
        url = database_url(str(db_path))
        tokens = prepare_ledger(url, work)
        profile = Path(tmp) / "server.prof" if args.profile else None
        print(f"serving {db_path} (rledger serve --workers {args.workers}) ...", flush=True)
        with running_server(  # no per-token rate limit: the queries' rows send thousands a second
            url,
            workers=args.workers,
            profile=profile,
            log_dir=Path(tmp),
            env={"RLEDGER_RATE_LIMIT": "0"},
        ) as server:
            print(
                f"sending {len(batches)} batches, {args.in_flight} in flight "
                "(one keep-alive connection each) ...",
                flush=True,
            )
            run = ingest(server, work, batches, tokens, args.in_flight)
            raws.append(raw_verify_rate(sample))
            sodiums.append(ledger_verify_rate(sample))
            regulator = tokens["org:regulator-01"]
            first_lot = next(
                env["body"]["lot"]
                for env in (json.loads(work.records[i].envelope) for i in batches[0].indices)
                if env["type"] == "create"
            )
            queries: list[QueryRun] = []
            failed: list[str] = []
            for label, text, variables in (
                ("{ __typename }", TYPENAME_QUERY, None),
                ("lot(id) as regulator", LOT_QUERY, {"id": first_lot}),
            ):
                if profile is not None:
                    break  # the profile is of the ingest alone
                print(
                    f"query {label}: {args.connections} connections, {args.query_seconds:g} s ..."
                )
                payload: dict[str, object] = {"query": text}
                if variables:
                    payload["variables"] = variables
                body = json.dumps(payload).encode()
                try:
                    queries.append(
                        query_rate(
                            server, label, body, regulator, args.connections, args.query_seconds
                        )
                    )
                except QueryFailed as exc:
                    failed.append(str(exc))
                    print(f"  not measured: {exc}", flush=True)
            raws.append(raw_verify_rate(sample))
            sodiums.append(ledger_verify_rate(sample))
        local = None
        if args.in_process:
            local_url = database_url(str(db_dir / "in-process.db"))
            prepare_ledger(local_url, work)
            print("the same batches in-process (Store via append_as, no HTTP) ...", flush=True)
            local = in_process(local_url, work, batches)
            raws.append(raw_verify_rate(sample))
        if profile is not None:
            print_profile(profile, args.profile)
    raw = max(raws)
    sodium = max(sodiums)

    sizes = [len(work.records[i].envelope) for b in batches for i in b.indices]
    full = sum(1 for b in batches if len(b.indices) == args.batch)
    bodies = [len(b.body) for b in batches]
    print()
    print("Recovery Ledger HTTP ingest benchmark" + (" (server under cProfile)" if profile else ""))
    print(
        f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; `rledger serve "
        f"--workers {args.workers}` on SQLite (WAL, synchronous=FULL); this client in a "
        "separate process"
    )
    print(
        f"  {run.records:,} records (+{len(work.setup)} setup) from {len({b.org for b in batches})} "
        f"orgs ({built:,} built and signed in {sign_s:.1f} s); "
        f"record bytes mean {statistics.fmean(sizes):.0f}"
    )
    kinds = Counter(
        json.loads(work.records[i].envelope)["type"] for b in batches for i in b.indices
    )
    mix = ", ".join(f"{k} {100 * v / run.records:.1f}" for k, v in kinds.most_common())
    print(f"  mix (%): {mix}")
    print(
        f"  {len(batches)} batches of one org each (<= {args.batch}; {full} full, "
        f"mean {statistics.fmean(run.sizes):.0f}), request bodies mean "
        f"{statistics.fmean(bodies) / 1024:.0f} KiB, serialised in {serialise_s:.1f} s"
    )
    print(
        "  raw Ed25519 verify, 1 thread, "
        f"{len(sample):,} records: " + ", ".join(f"{r:,.0f}" for r in raws) + " rec/s (best used)"
    )
    print(
        "  ledger.signing.verify (checks + libsodium), 1 thread: "
        + ", ".join(f"{r:,.0f}" for r in sodiums)
        + f" rec/s; {sodium / raw:.2f} x OpenSSL"
    )
    print()
    print(f"records/s per {WINDOW:,} records:")
    for first, last, rate in windows(run, WINDOW):
        print(f"  {first:>7,} - {last:>7,}  {rate:>8,.0f}")
    per_100k = windows(run, 100_000)
    if run.records >= 100_000:
        print("records/s per 100,000 records:")
        for first, last, rate in per_100k:
            print(f"  {first:>9,} - {last:>9,}  {rate:>8,.0f}")
    print()
    print("requests/s of queries (keep-alive connections in threads):")
    for message in failed:
        print(f"  not measured: {message}")
    for q in queries:
        ms = [x * 1000 for x in q.latencies]
        print(
            f"  {q.label:<22} {q.rate:>8,.0f} req/s  p50 {statistics.median(ms):.1f} ms  "
            f"p99 {pct(ms, 0.99):.1f} ms  server CPU {100 * q.server_cpu / q.seconds:.0f} %  "
            f"client CPU {100 * q.client_cpu / q.seconds:.0f} %"
        )
    print()
    w = 52
    header = (
        f"{'what':<{w}}{'seconds':>9}{'rec/s':>9}{'% raw':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv CPU':>9}{'cli CPU':>9}"
    )
    print(header)
    print("-" * len(header))
    print(f"{'raw Ed25519 verify, 1 thread':<{w}}{len(sample) / raw:>9.2f}{raw:>9,.0f}{100:>7.0f}%")
    print(
        f"{'ledger.signing.verify, 1 thread':<{w}}{len(sample) / sodium:>9.2f}{sodium:>9,.0f}"
        f"{100 * sodium / raw:>7.0f}%"
    )
    ingests = [
        (
            f"HTTP recordEvents, {args.batch}/req, {args.in_flight} in flight, "
            f"{args.workers} worker{'s' if args.workers > 1 else ''}",
            run,
        )
    ]
    if local is not None:
        ingests.append(("same batches in-process, no HTTP", local))
    for label, r in ingests:
        ms = [t * 1000 for t in r.batch_s]
        cpu = (
            f"{100 * r.server_cpu / r.seconds:>8.0f}%{100 * r.client_cpu / r.seconds:>8.0f}%"
            if r is run
            else ""
        )
        print(
            f"{label:<{w}}{r.seconds:>9.2f}{r.rate:>9,.0f}{100 * r.rate / raw:>7.1f}%"
            f"{statistics.median(ms):>9.1f}{pct(ms, 0.99):>9.1f}{cpu}"
        )
    for q in queries:
        ms = [x * 1000 for x in q.latencies]
        print(
            f"{'query ' + q.label:<{w}}{q.seconds:>9.2f}{q.rate:>9,.0f}{'':>8}"
            f"{statistics.median(ms):>9.1f}{pct(ms, 0.99):>9.1f}"
            f"{100 * q.server_cpu / q.seconds:>8.0f}%{100 * q.client_cpu / q.seconds:>8.0f}%"
        )
    print("-" * len(header))
    target = TARGET if args.workers == 1 else TARGET_2
    floor = min(rate for _, _, rate in per_100k)
    verdict = "met" if run.rate >= target and floor >= TARGET_FLOOR else "NOT met"
    print(
        f"summary: {run.rate:,.0f} rec/s over HTTP = {run.rate / raw:.2f} x raw verify "
        f"({raw:,.0f}/s), {run.rate / sodium:.2f} x ledger.signing.verify ({sodium:,.0f}/s); "
        f"server CPU {1e6 * run.server_cpu / run.records:,.0f} µs a record (all its processes); "
        f"slowest 100,000: {floor:,.0f}; target >= {target:,} rec/s with {args.workers} "
        f"worker{'s' if args.workers > 1 else ''}, >= {TARGET_FLOOR:,} per 100,000: {verdict}"
        + (f"; in-process {local.rate:,.0f} rec/s" if local is not None else "")
        + "".join(f"; {q.label} {q.rate:,.0f} req/s" for q in queries)
        + (" (server under cProfile: rates not comparable)" if profile else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
