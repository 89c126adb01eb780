"""Append throughput against the raw Ed25519 verification rate.

Not a test (pytest does not collect this folder): run it by hand::

    .venv/bin/python tests/benchmarks/append.py            # 100,000 records
    .venv/bin/python tests/benchmarks/append.py --quick    # 10,000 records
    .venv/bin/python tests/benchmarks/append.py --profile  # cProfile one run

The workload is fixed by ``--seed``: ~20 organisations with fixed keys, fixed
record ids and ``at`` times (2026-01-01T00:00:00Z plus one second a record),
and a mix of creates, transfers and receives (with small transit losses),
splits, merges, transforms, status changes and disposals. The client keeps
every lot's head as it builds records, so every ``parents`` is right. All
records are built and signed before the clock starts (signing is the
client's cost); only :meth:`Store.append`, in batches of ``--batch``, is
timed, each run on a fresh SQLite file.

The reference is cryptography's ``Ed25519PublicKey.verify`` on one thread
over the same records' bytes and signatures. The target (the issue):
appends reach at least 75 % of that rate: signature checking must dominate
the cost, not our own code.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ulid import ULID

from ledger.database import database_url, migrate
from ledger.signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    b64url_decode,
    load_public_key,
    public_key_bytes,
    record_hash,
)
from ledger.store import Appended, Signed, Store
from ledger.verify import verify_store
from producers.events import Signer

TARGET = 0.75
BASE_AT = datetime(2026, 1, 1, tzinfo=UTC)
RAW_SAMPLE = 20_000  # records per raw-verify measurement
RAW_REPEATS = 3


def _orgs(prefix: str, roles: list[str], regions: list[str]) -> list[tuple[str, list[str], str]]:
    return [(f"{prefix}-{i:02d}", roles, region) for i, region in enumerate(regions, 1)]


# (id suffix, roles, region): the operator admits these before the workload.
ORGS = [
    *_orgs(
        "collector",
        ["collector"],
        ["CN-GD", "CN-ZJ", "DE-BY", "DE-NW", "FR-IDF", "NL-NH", "PL-MZ", "IT-25"],
    ),
    *_orgs(
        "processor",
        ["processor", "recycler"],
        ["CN-GD", "DE-NW", "NL-ZH", "PL-SL", "ES-CT", "CN-JS"],
    ),
    *_orgs("recycler", ["recycler"], ["DE-BY", "FR-ARA", "CN-SH"]),
    *_orgs("maker", ["manufacturer", "producer"], ["DE-BW", "CN-GD"]),
    ("regulator-01", ["regulator"], "DE"),
]

# Collected materials: (code, lot mass range in grams, element grams per tonne).
COLLECTED: list[tuple[str, tuple[int, int], dict[str, int]]] = [
    ("steel.hms1", (2_000_000, 24_000_000), {}),
    ("paper.occ", (300_000, 12_000_000), {}),
    ("plastics.pet", (100_000, 3_000_000), {}),
    ("tyres.elt", (500_000, 10_000_000), {}),
    (
        "batteries.li_ion.nmc",
        (50_000, 2_000_000),
        {"Co": 40_000, "Ni": 120_000, "Li": 22_000, "Mn": 35_000, "Cu": 110_000, "Al": 70_000},
    ),
]
COLLECTED_WEIGHTS = [30, 25, 20, 15, 10]

# input material -> (process, [(output material, permille of input, element g/t)])
TRANSFORMS: dict[str, tuple[str, list[tuple[str, int, dict[str, int]]]]] = {
    "steel.hms1": ("shredding", [("steel.shredded", 950, {})]),
    "paper.occ": ("pulping", [("paper.pulp_recycled", 860, {})]),
    "plastics.pet": ("washing_flaking", [("plastics.pet_flake", 760, {})]),
    "plastics.pet_flake": ("pelletising", [("plastics.rpet_pellet", 970, {})]),
    "tyres.elt": ("granulating", [("tyres.granulate", 560, {}), ("tyres.steel_wire", 130, {})]),
    "batteries.li_ion.nmc": (
        "mechanical",
        [
            (
                "batteries.black_mass",
                420,
                {"Co": 95_000, "Ni": 280_000, "Li": 45_000, "Mn": 80_000, "Cu": 20_000},
            ),
            ("steel.shredded", 80, {}),
        ],
    ),
}

# Operation weights (a record type is tried in this proportion; an operation
# with no candidate lot falls back to a create).
MIX = {
    "create": 20,
    "transfer": 16,
    "receive": 16,
    "split": 9,
    "merge": 7,
    "transform": 14,
    "status": 10,
    "dispose": 8,
}
STATUSES = ["stored", "awaiting_treatment", "collected", "in_use"]
DISPOSAL = ["landfill", "incineration", "energy_recovery"]


def canonical(rec: Signed) -> bytes:
    return rec.envelope.encode("utf-8") if isinstance(rec.envelope, str) else rec.envelope


def fixed_key(name: str, seed: int) -> Ed25519PrivateKey:
    """A fixed key per name and seed (like tests/conftest.fixed_key)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"rledger-bench:{seed}:{name}".encode()).digest()
    )


# --- the workload -------------------------------------------------------------


class Pool:
    """A set with O(1) add, remove and random choice."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: str) -> None:
        self.index[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: str) -> None:
        i = self.index.pop(item)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def choice(self, rng: random.Random) -> str:
        return self.items[rng.randrange(len(self.items))]


@dataclass
class ClientLot:
    id: str
    material: str
    custodian: str
    remaining_g: int
    head: str
    in_transit_to: str | None = None


@dataclass
class Workload:
    setup: list[Signed]
    setup_hashes: list[str]
    records: list[Signed]
    hashes: list[str]
    key_ids: list[str]  # each record's signing key
    public_keys: dict[str, bytes]  # key id -> raw public key
    mix: Counter[str] = field(default_factory=Counter)


class Builder:
    """Builds and signs the records, keeping every lot's head client-side."""

    def __init__(self, seed: int, *, random_lot_ids: bool = False) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.random_lot_ids = random_lot_ids
        self.clock = 0
        self.operator = Signer("org:operator", fixed_key("operator", seed))
        self.signers = {
            f"org:{name}": Signer(f"org:{name}", fixed_key(name, seed)) for name, _, _ in ORGS
        }
        self.roles = {f"org:{name}": roles for name, roles, _ in ORGS}
        self.lots: dict[str, ClientLot] = {}
        self.held = Pool()  # lots a custodian may spend, move or relabel
        self.transit = Pool()  # lots waiting to be received
        self.by_group: dict[tuple[str, str], Pool] = {}  # (custodian, material) -> held lots
        self.transformable = Pool()  # "custodian|material" groups with a held lot to transform
        self.records: list[Signed] = []
        self.hashes: list[str] = []
        self.key_ids: list[str] = []
        self.setup_hashes: list[str] = []
        self.mix: Counter[str] = Counter()

    # ids and times
    def _ulid(self, at: datetime) -> str:
        ms = int(at.timestamp() * 1000)
        return str(ULID.from_int((ms << 80) | self.rng.getrandbits(80)))

    def _at(self) -> tuple[str, datetime]:
        t = BASE_AT + timedelta(seconds=self.clock)
        self.clock += 1
        return t.strftime("%Y-%m-%dT%H:%M:%SZ"), t

    def _sign(
        self, signer: Signer, rtype: str, body: dict[str, Any], parents: dict[str, str]
    ) -> str:
        at, t = self._at()
        env = signer.envelope(rtype, body, parents, record_id=self._ulid(t), at=at)
        signed = signer.sign_envelope(env)
        digest = record_hash(canonical(signed))
        self.records.append(signed)
        self.hashes.append(digest)
        self.key_ids.append(env["key"])
        return digest

    def setup(self) -> list[Signed]:
        """Genesis and admission of every organisation (like producers.bootstrap)."""
        op = self.operator
        body = {"org": op.actor, "name": "Operator", "roles": ["operator"], "region": "CN"}
        self._sign(op, "org.register", {**body, "public_key": op.public_key}, {})
        for name, roles, region in ORGS:
            org = f"org:{name}"
            self._sign(
                op, "org.register", {"org": org, "name": name, "roles": roles, "region": region}, {}
            )
            self._sign(op, "key.add", {"org": org, "public_key": self.signers[org].public_key}, {})
        setup, self.setup_hashes = self.records, self.hashes
        self.records, self.hashes, self.key_ids = [], [], []
        return setup

    # lot bookkeeping
    def _group(self, lot: ClientLot) -> tuple[str, str]:
        return lot.custodian, lot.material

    def _hold(self, lot: ClientLot) -> None:
        self.held.add(lot.id)
        group = self.by_group.setdefault(self._group(lot), Pool())
        group.add(lot.id)
        if len(group) == 1 and lot.material in TRANSFORMS:
            self.transformable.add("|".join(self._group(lot)))

    def _unhold(self, lot: ClientLot) -> None:
        self.held.remove(lot.id)
        group = self.by_group[self._group(lot)]
        group.remove(lot.id)
        if not group and lot.material in TRANSFORMS:
            self.transformable.remove("|".join(self._group(lot)))

    def _new_lot(self, material: str, custodian: str, mass_g: int, head: str, lot_id: str) -> None:
        lot = ClientLot(lot_id, material, custodian, mass_g, head)
        self.lots[lot_id] = lot
        self._hold(lot)

    def _lot_id(self) -> str:
        """A ULID made when the lot is (time-ordered, as a client's would be), or 128
        random bits with --random-lot-ids (the worst case for the lots index)."""
        if self.random_lot_ids:
            return "lot:" + str(ULID.from_int(self.rng.getrandbits(128)))
        return "lot:" + self._ulid(BASE_AT + timedelta(seconds=self.clock))

    def _elements(self, per_t: dict[str, int], mass_g: int) -> dict[str, int]:
        out = {sym: mass_g * g // 1_000_000 for sym, g in per_t.items()}
        return {k: v for k, v in out.items() if v}

    # operations: each returns False when it has no candidate
    def create(self) -> bool:
        collectors = [o for o, r in self.roles.items() if "collector" in r]
        actor = self.rng.choice(collectors)
        material, (lo, hi), per_t = self.rng.choices(COLLECTED, COLLECTED_WEIGHTS)[0]
        mass = self.rng.randrange(lo, hi) // 1000 * 1000
        lot_id = self._lot_id()
        body: dict[str, Any] = {
            "lot": lot_id,
            "material": material,
            "mass_g": mass,
            "origin": self.rng.choice(["post_consumer", "post_consumer", "pre_consumer"]),
        }
        if per_t:
            body["elements"] = self._elements(per_t, mass)
        head = self._sign(self.signers[actor], "create", body, {})
        self._new_lot(material, actor, mass, head, lot_id)
        return True

    def transfer(self) -> bool:
        if not self.held:
            return False
        lot = self.lots[self.held.choice(self.rng)]
        stage = (
            "processor"
            if lot.material in TRANSFORMS
            else self.rng.choice(["recycler", "manufacturer"])
        )
        dests = [o for o, r in self.roles.items() if stage in r and o != lot.custodian]
        to = self.rng.choice(dests)
        body = {"lot": lot.id, "to": to, "mass_g": lot.remaining_g}
        head = self._sign(self.signers[lot.custodian], "transfer", body, {lot.id: lot.head})
        self._unhold(lot)
        lot.head, lot.in_transit_to = head, to
        self.transit.add(lot.id)
        return True

    def receive(self) -> bool:
        if not self.transit:
            return False
        lot = self.lots[self.transit.choice(self.rng)]
        assert lot.in_transit_to is not None
        loss = lot.remaining_g * self.rng.randrange(0, 40) // 10_000  # 0 - 0.4 %
        weighed = max(1, lot.remaining_g - loss)
        actor = lot.in_transit_to
        head = self._sign(
            self.signers[actor], "receive", {"lot": lot.id, "mass_g": weighed}, {lot.id: lot.head}
        )
        self.transit.remove(lot.id)
        lot.head, lot.custodian, lot.remaining_g, lot.in_transit_to = head, actor, weighed, None
        self._hold(lot)
        return True

    def split(self) -> bool:
        if not self.held:
            return False
        lot = self.lots[self.held.choice(self.rng)]
        n = self.rng.randint(2, 4)
        if lot.remaining_g < n * 1000:
            return False
        cuts = sorted(self.rng.sample(range(1, lot.remaining_g // 1000), n - 1))
        masses = [(b - a) * 1000 for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
        masses.append(lot.remaining_g - sum(masses))
        parts = [{"lot": self._lot_id(), "mass_g": m} for m in masses]
        head = self._sign(
            self.signers[lot.custodian],
            "split",
            {"lot": lot.id, "parts": parts},
            {lot.id: lot.head},
        )
        self._unhold(lot)
        lot.head, lot.remaining_g = head, 0
        for p in parts:
            self._new_lot(lot.material, lot.custodian, p["mass_g"], head, p["lot"])
        return True

    def merge(self) -> bool:
        if not self.held:
            return False
        first = self.lots[self.held.choice(self.rng)]
        group = self.by_group[self._group(first)]
        if len(group) < 2:
            return False
        ids = {first.id}
        want = self.rng.randint(2, min(4, len(group)))
        while len(ids) < want:
            ids.add(group.choice(self.rng))
        lots = [self.lots[i] for i in sorted(ids)]
        total = sum(x.remaining_g for x in lots)
        into = self._lot_id()
        body = {"lots": [x.id for x in lots], "into": into, "mass_g": total}
        head = self._sign(
            self.signers[first.custodian], "merge", body, {x.id: x.head for x in lots}
        )
        for x in lots:
            self._unhold(x)
            x.head, x.remaining_g = head, 0
        self._new_lot(first.material, first.custodian, total, head, into)
        return True

    def transform(self) -> bool:
        if not self.transformable:
            return False
        custodian, material = self.transformable.choice(self.rng).split("|")
        group = self.by_group[(custodian, material)]
        ids: set[str] = set()
        for _ in range(self.rng.randint(1, 3)):
            ids.add(group.choice(self.rng))
        lots = [self.lots[i] for i in sorted(ids)]
        inputs = []
        for x in lots:
            whole = x.remaining_g < 200_000 or self.rng.random() < 0.7
            inputs.append({"lot": x.id, "mass_g": x.remaining_g if whole else x.remaining_g // 2})
        total_in = sum(i["mass_g"] for i in inputs)
        process, recipe = TRANSFORMS[material]
        outputs = []
        for out_material, permille, per_t in recipe:
            mass = total_in * (permille - self.rng.randrange(0, 15)) // 1000
            if mass <= 0:
                return False
            out: dict[str, Any] = {"lot": self._lot_id(), "material": out_material, "mass_g": mass}
            if per_t:
                out["elements"] = self._elements(per_t, mass)
            outputs.append(out)
        body = {
            "process": process,
            "inputs": inputs,
            "outputs": outputs,
            "loss_g": total_in - sum(o["mass_g"] for o in outputs),
        }
        head = self._sign(self.signers[custodian], "transform", body, {x.id: x.head for x in lots})
        for x, item in zip(lots, inputs, strict=True):
            x.head = head
            x.remaining_g -= item["mass_g"]
            if not x.remaining_g:
                self._unhold(x)
        for o in outputs:
            self._new_lot(o["material"], custodian, o["mass_g"], head, o["lot"])
        return True

    def status(self) -> bool:
        if not self.held:
            return False
        lot = self.lots[self.held.choice(self.rng)]
        body = {"lot": lot.id, "status": self.rng.choice(STATUSES)}
        lot.head = self._sign(self.signers[lot.custodian], "status", body, {lot.id: lot.head})
        return True

    def dispose(self) -> bool:
        if not self.held:
            return False
        lot = self.lots[self.held.choice(self.rng)]
        whole = lot.remaining_g < 10_000 or self.rng.random() < 0.4
        mass = lot.remaining_g if whole else self.rng.randrange(1, lot.remaining_g // 10)
        body = {"lot": lot.id, "mass_g": mass, "method": self.rng.choice(DISPOSAL)}
        lot.head = self._sign(self.signers[lot.custodian], "dispose", body, {lot.id: lot.head})
        lot.remaining_g -= mass
        if not lot.remaining_g:
            self._unhold(lot)
        return True

    def build(self, n: int) -> Workload:
        setup = self.setup()
        kinds, weights = list(MIX), list(MIX.values())
        while len(self.records) < n:
            kind = self.rng.choices(kinds, weights)[0]
            if not getattr(self, kind.replace(".", "_"))():
                kind = "create"
                self.create()
            self.mix[kind] += 1
        public = {
            s.key_id: public_key_bytes(s.private_key.public_key())
            for s in [self.operator, *self.signers.values()]
        }
        return Workload(
            setup, self.setup_hashes, self.records, self.hashes, self.key_ids, public, self.mix
        )


# --- measuring ---------------------------------------------------------------


def raw_items(work: Workload, limit: int) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    """(public key, signature, canonical bytes) of the first ``limit`` records."""
    loaded = {kid: load_public_key(raw) for kid, raw in work.public_keys.items()}
    out = []
    for rec, kid in zip(work.records[:limit], work.key_ids, strict=False):
        out.append((loaded[kid], b64url_decode(rec.signature), canonical(rec)))
    return out


def raw_verify_rate(items: Sequence[tuple[Ed25519PublicKey, bytes, bytes]]) -> float:
    """Single-thread Ed25519PublicKey.verify over the records' own bytes."""
    start = time.perf_counter()
    for pub, sig, data in items:
        pub.verify(sig, data)
    return len(items) / (time.perf_counter() - start)


@dataclass
class Run:
    label: str
    threads: int
    records: int
    seconds: float
    batch_ms: list[float]
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def batches(items: Sequence[Signed], size: int) -> Iterator[Sequence[Signed]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check(results: Sequence[Any], hashes: Sequence[str], what: str) -> None:
    """Every result must be a fresh Appended with the hash the client computed."""
    if len(results) != len(hashes):
        raise SystemExit(f"{what}: {len(results)} results for {len(hashes)} records")
    for i, (r, h) in enumerate(zip(results, hashes, strict=True)):
        if not isinstance(r, Appended) or r.existing or r.hash != h:
            raise SystemExit(f"{what}, record {i}: not appended as built: {r!r}")


def append_run(path: Path, work: Workload, threads: int, batch: int, *, profile: int = 0) -> Run:
    url = database_url(str(path))
    migrate(url)
    store = Store.open(url, verify_threads=threads)
    try:
        check(store.append(work.setup), work.setup_hashes, "setup")
        profiler = cProfile.Profile() if profile else None
        times: list[float] = []
        done = 0
        for chunk in batches(work.records, batch):
            if profiler:
                profiler.enable()
            t0 = time.perf_counter()
            results = store.append(chunk)
            times.append(time.perf_counter() - t0)
            if profiler:
                profiler.disable()
            check(results, work.hashes[done : done + len(chunk)], f"batch at {done}")
            done += len(chunk)
        if store.last_seq() != len(work.setup) + len(work.records):
            raise SystemExit(f"ledger holds {store.last_seq()} records, expected more")
    finally:
        store.close()
    label = f"append, verify_threads={threads}" + (" (cProfile)" if profile else "")
    run = Run(label, threads, done, sum(times), [t * 1000 for t in times])
    if profiler:
        run.profile = profile_text(profiler, profile)
    return run


def stream_run(path: Path, work: Workload, threads: int, batch: int, processes: int = 0) -> Run:
    """Store.append_stream: batch N+1's signatures are checked while batch N is written."""
    url = database_url(str(path))
    migrate(url)
    store = Store.open(url, verify_threads=threads, verify_processes=processes)
    try:
        check(store.append(work.setup), work.setup_hashes, "setup")
        chunks = list(batches(work.records, batch))
        done = 0
        t0 = time.perf_counter()
        last = t0
        times: list[float] = []
        for chunk, results in zip(chunks, store.append_stream(chunks), strict=True):
            now = time.perf_counter()
            times.append(now - last)
            last = now
            check(results, work.hashes[done : done + len(chunk)], f"batch at {done}")
            done += len(chunk)
        seconds = time.perf_counter() - t0
        if store.last_seq() != len(work.setup) + len(work.records):
            raise SystemExit(f"ledger holds {store.last_seq()} records, expected more")
    finally:
        store.close()
    how = f"verify_processes={processes}" if processes else f"verify_threads={threads}"
    run = Run(f"append_stream, {how}", threads, done, seconds, [])
    run.batch_ms = [t * 1000 for t in times]
    return run


def profile_text(profiler: cProfile.Profile, lines: int) -> str:
    out = io.StringIO()
    out.write("\n(cProfile inflates Python-level time: take rates from an unprofiled run)\n")
    for key in ("cumulative", "tottime"):
        out.write(f"\n--- top {lines} by {key} ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(lines)
    return out.getvalue()


def full_verify(path: Path) -> tuple[float, int]:
    store = Store.open(database_url(str(path)), verify_threads=1)
    try:
        t0 = time.perf_counter()
        report = verify_store(store)
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    if not report.ok:
        raise SystemExit(f"full verify failed: {report}")
    return seconds, report.records


# --- main ---------------------------------------------------------------------


def db_paths(db: str | None, threads: Sequence[int], tmp: str) -> list[Path]:
    if db is None:
        return [Path(tmp) / f"bench-t{t}.db" for t in threads]
    base = Path(db)
    paths = (
        [base]
        if len(threads) == 1
        else [base.with_name(f"{base.stem}-t{t}{base.suffix}") for t in threads]
    )
    for p in paths:
        if p.exists():
            raise SystemExit(f"{p} exists: the benchmark needs a fresh ledger file")
    return paths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--records", type=int, default=100_000, help="workload records (default 100000)"
    )
    ap.add_argument("--quick", action="store_true", help="10,000 records")
    ap.add_argument(
        "--random-lot-ids",
        action="store_true",
        help="lot ids of 128 random bits instead of time-ordered ULIDs (worst case)",
    )
    ap.add_argument(
        "--stream-processes",
        default="1",
        help="verify_processes values for Store.append_stream runs (default 1; empty: none)",
    )
    ap.add_argument(
        "--stream-threads",
        default="2",
        help="verify_threads values for Store.append_stream runs (default 2; empty: none)",
    )
    ap.add_argument("--batch", type=int, default=500, help="records per Store.append (default 500)")
    ap.add_argument("--db", help="SQLite file (must not exist; -tN is added per run when several)")
    ap.add_argument(
        "--threads",
        default="1,2",
        help="verify_threads values to run, comma-separated (default 1,2; 2 is Store's default)",
    )
    ap.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    ap.add_argument("--no-full-verify", action="store_true", help="skip ledger.verify.verify_store")
    ap.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=15,
        default=0,
        metavar="N",
        help="run cProfile over the appends of the first --threads run; print the top N (15)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.records = 10_000
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    args.stream_threads = [int(t) for t in args.stream_threads.split(",") if t.strip()]
    args.stream_processes = [int(t) for t in args.stream_processes.split(",") if t.strip()]
    if args.profile:
        args.threads = args.threads[:1]
    if not args.threads or min(args.threads) < 1 or args.records < 1 or args.batch < 1:
        ap.error("--threads, --records and --batch must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"building and signing {args.records:,} records (seed {args.seed}) ...", flush=True)
    t0 = time.perf_counter()
    work = Builder(args.seed, random_lot_ids=args.random_lot_ids).build(args.records)
    gc.collect()
    gc.freeze()  # the pre-built workload is not garbage: keep the collector off it
    build_s = time.perf_counter() - t0
    sizes = [len(r.envelope) for r in work.records]
    sample = raw_items(work, min(RAW_SAMPLE, len(work.records)))

    raws = [raw_verify_rate(sample)]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="rledger-bench-") as tmp:
        paths = db_paths(args.db, args.threads, tmp)
        for threads, path in zip(args.threads, paths, strict=True):
            print(f"appending, verify_threads={threads} -> {path} ...", flush=True)
            runs.append(append_run(path, work, threads, args.batch, profile=args.profile))
            raws.append(raw_verify_rate(sample))
        if not args.profile:
            for threads in args.stream_threads:
                path = Path(tmp) / f"bench-stream-t{threads}.db"
                print(f"append_stream, verify_threads={threads} -> {path} ...", flush=True)
                runs.append(stream_run(path, work, threads, args.batch))
                raws.append(raw_verify_rate(sample))
            for processes in args.stream_processes:
                path = Path(tmp) / f"bench-stream-p{processes}.db"
                print(f"append_stream, verify_processes={processes} -> {path} ...", flush=True)
                runs.append(stream_run(path, work, 1, args.batch, processes))
                raws.append(raw_verify_rate(sample))
        while len(raws) < RAW_REPEATS:
            raws.append(raw_verify_rate(sample))
        verified = None
        if not args.no_full_verify and not args.profile:
            print("full verify ...", flush=True)
            verified = full_verify(paths[0])
    raw = max(raws)

    print()
    print("Recovery Ledger append benchmark")
    print(
        f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, SQLite (WAL, synchronous=FULL)"
    )
    print(
        f"  {len(work.records):,} records (+{len(work.setup)} setup) over {len(ORGS)} orgs, "
        f"batch {args.batch}, built and signed in {build_s:.1f} s; lot ids: "
        + ("random" if args.random_lot_ids else "time-ordered ULIDs")
    )
    print(f"  record bytes: mean {statistics.fmean(sizes):.0f}, min {min(sizes)}, max {max(sizes)}")
    mix = ", ".join(f"{k} {100 * v / len(work.records):.1f}" for k, v in work.mix.most_common())
    print(f"  mix (%): {mix}")
    print(
        f"  raw Ed25519 verify, 1 thread, {len(sample):,} records: "
        + ", ".join(f"{r:,.0f}" for r in raws)
        + " rec/s (best is the reference)"
    )
    print()
    header = f"{'what':<34}{'seconds':>9}{'rec/s':>10}{'% raw':>8}{'batch ms p50':>14}{'max':>8}"
    print(header)
    print("-" * len(header))
    print(
        f"{'raw Ed25519 verify, 1 thread':<34}{len(sample) / raw:>9.2f}{raw:>10,.0f}{100.0:>7.1f}%"
    )
    for run in runs:
        print(
            f"{run.label:<34}{run.seconds:>9.2f}{run.rate:>10,.0f}{100 * run.rate / raw:>7.1f}%"
            f"{statistics.median(run.batch_ms):>14.1f}{max(run.batch_ms):>8.1f}"
        )
    if verified:
        seconds, count = verified
        label = "full verify (verify_store)"
        print(
            f"{label:<34}{seconds:>9.2f}{count / seconds:>10,.0f}{100 * count / seconds / raw:>7.1f}%"
        )
    print("-" * len(header))
    for run in runs:
        ratio = run.rate / raw
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(
            f"{run.label}: {run.rate:,.0f} rec/s = {100 * ratio:.1f} % "
            f"of raw verify (target ≥ {100 * TARGET:.0f} %: {verdict})"
        )
        if run.profile:
            print(run.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
