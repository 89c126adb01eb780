"""``recoveredContent`` and ``battery(code)`` latency through the GraphQL app.

Not a test (pytest does not collect this folder; tests/test_api_tracing.py runs ``--quick``
as a smoke test). Run it by hand::

    .venv/bin/python tests/benchmarks/tracing.py            # 1,420 packs: 10,000+ upstream records
    .venv/bin/python tests/benchmarks/tracing.py --quick    # 40 packs, fewer runs
    .venv/bin/python tests/benchmarks/tracing.py --url postgresql+psycopg://…  # another database

The ledger is fixed (fixed keys, record ids and times; ``--packs`` sets its size): an automaker
places ``--packs`` battery packs on the market (one GB/T 34014 code each), and each is marked
in use, retired, sent to the recycler and received (6 records a pack); the recycler dismantles
each (1), merges the modules 50 at a time and makes black mass of each batch, merges all the
black mass into one campaign, leaches it into cobalt sulfate, nickel sulfate and lithium
carbonate and sends those to a cathode maker, which makes ``lot:cathode`` with some virgin
cobalt. With 1,420 packs the cathode has 10,008 records upstream (its proof lists them all).
Then the cathode is made into cells, split, assembled into modules and a new pack: the first
pack's battery is followed 10 hops downstream (pack, module, batch, black mass, campaign,
salt, cathode, cells, cell part, module, new pack).

Timed: one request at a time through ``schema.app.create_app`` over httpx's ASGI transport
(no network), after ``--warmup`` requests; p50 and p95 over ``--runs``. Each query is run
as the regulator (reads everything) and as the automaker (a producer, which reads its
lineage: every lot here), and answers are checked (a complete proof listing every upstream
record; the battery reaching the new pack).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from ulid import ULID

from ledger.database import database_url, migrate
from ledger.rules import touched_lots
from ledger.signing import Ed25519PrivateKey, public_key_bytes, record_hash
from ledger.store import Appended, Signed, Store
from ledger.tokens import issue_token
from producers.bootstrap import admit, genesis
from producers.events import Signer
from schema.app import create_app

TARGET_CONTENT_MS = 100.0
TARGET_BATTERY_MS = 50.0
BASE_AT = datetime(2025, 1, 1, tzinfo=UTC)
AUTOMAKER, RECYCLER, CATHODE, REGULATOR = (
    "org:automaker",
    "org:recycler",
    "org:cathode-maker",
    "org:regulator",
)
ROLES = {
    AUTOMAKER: ["producer", "manufacturer"],
    RECYCLER: ["recycler"],
    CATHODE: ["manufacturer"],
    REGULATOR: ["regulator"],
}
PACK_G = 400_000
PACK_ELEMENTS = {"Co": 12_000, "Ni": 36_000, "Li": 6_000, "Mn": 12_000}
MODULES_PER_BATCH = 50


def pack_code(serial: int) -> str:
    """A GB/T 34014-2017 pack code (tests/battery_test_codes.py's form)."""
    return f"GZMPEA17K20001R6F{serial:07d}"


def fixed_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"rledger-bench-tracing:{name}".encode()).digest()
    )


class Chain:
    """Signs records with fixed ids and times, keeping each lot's head client-side."""

    def __init__(self) -> None:
        self.operator = Signer("org:operator", fixed_key("operator"))
        self.signers = {org: Signer(org, fixed_key(org)) for org in ROLES}
        self.records: list[Signed] = []
        self.heads: dict[str, str] = {}
        self.tick = 0

    def _stamp(self) -> tuple[str, str]:
        at = BASE_AT + timedelta(seconds=self.tick)
        ms = int(at.timestamp() * 1000)
        self.tick += 1
        return at.strftime("%Y-%m-%dT%H:%M:%SZ"), str(ULID.from_int((ms << 80) | self.tick))

    def add(self, signed: Signed) -> str:
        self.records.append(signed)
        env = signed.envelope
        return record_hash(env.encode() if isinstance(env, str) else env)

    def put(self, org: str, rtype: str, body: dict[str, Any]) -> str:
        existing, made = touched_lots(rtype, body)
        parents = {lot: self.heads[lot] for lot in existing}
        at, rid = self._stamp()
        signer = self.signers[org]
        digest = self.add(
            signer.sign_envelope(signer.envelope(rtype, body, parents, record_id=rid, at=at))
        )
        for lot in (*existing, *made):
            self.heads[lot] = digest
        return digest


def _scaled(elements: dict[str, int], permille: int) -> dict[str, int]:
    return {k: v * permille // 1000 for k, v in elements.items()}


def build(packs: int) -> Chain:
    c = Chain()
    c.add(genesis(c.operator, "Operator", "CN"))
    for org, roles in ROLES.items():
        key = public_key_bytes(c.signers[org].private_key.public_key())
        records, _ = admit(c.operator, org, org, roles, "CN-GD", key)
        for r in records:
            c.add(r)
    for i in range(packs):
        lot = f"lot:pack-{i:05d}"
        c.put(
            AUTOMAKER,
            "create",
            {
                "lot": lot,
                "material": "batteries.li_ion.nmc",
                "mass_g": PACK_G,
                "origin": "virgin",
                "elements": PACK_ELEMENTS,
                "units": [pack_code(i + 1)],
            },
        )
        for status in ("placed_on_market", "in_use", "retired"):
            c.put(AUTOMAKER, "status", {"lot": lot, "status": status})
        c.put(AUTOMAKER, "transfer", {"lot": lot, "to": RECYCLER, "mass_g": PACK_G})
        c.put(RECYCLER, "receive", {"lot": lot, "mass_g": PACK_G})
    for i in range(packs):
        c.put(
            RECYCLER,
            "transform",
            {
                "process": "dismantling",
                "inputs": [{"lot": f"lot:pack-{i:05d}", "mass_g": PACK_G}],
                "outputs": [
                    {
                        "lot": f"lot:mod-{i:05d}",
                        "material": "batteries.li_ion.module",
                        "mass_g": 300_000,
                        "elements": PACK_ELEMENTS,
                    }
                ],
                "loss_g": 100_000,
            },
        )
    black: list[str] = []
    for k, start in enumerate(range(0, packs, MODULES_PER_BATCH)):
        mods = [f"lot:mod-{i:05d}" for i in range(start, min(start + MODULES_PER_BATCH, packs))]
        batch, bm = f"lot:batch-{k:03d}", f"lot:bm-{k:03d}"
        if len(mods) > 1:
            c.put(RECYCLER, "merge", {"lots": mods, "into": batch})
        else:
            batch = mods[0]
        mass = 300_000 * len(mods)
        c.put(
            RECYCLER,
            "transform",
            {
                "process": "mechanical",
                "inputs": [{"lot": batch, "mass_g": mass}],
                "outputs": [
                    {
                        "lot": bm,
                        "material": "batteries.black_mass",
                        "mass_g": mass * 6 // 10,
                        "elements": _scaled(PACK_ELEMENTS, 970 * len(mods)),
                    }
                ],
                "loss_g": mass - mass * 6 // 10,
            },
        )
        black.append(bm)
    campaign_g = sum(
        300_000 * 6 // 10 * min(MODULES_PER_BATCH, packs - s)
        for s in range(0, packs, MODULES_PER_BATCH)
    )
    if len(black) > 1:
        c.put(RECYCLER, "merge", {"lots": black, "into": "lot:campaign"})
        campaign = "lot:campaign"
    else:
        campaign = black[0]
    pool = _scaled(PACK_ELEMENTS, 970 * packs)
    salts = {
        "lot:coso4": ("elements.cobalt_sulfate", {"Co": pool["Co"] * 9 // 10}),
        "lot:niso4": ("elements.nickel_sulfate", {"Ni": pool["Ni"] * 9 // 10}),
        "lot:li2co3": ("elements.lithium_carbonate", {"Li": pool["Li"] * 8 // 10}),
    }
    salt_g = {
        lot: campaign_g * share // 100 for lot, share in zip(salts, (20, 50, 20), strict=True)
    }
    c.put(
        RECYCLER,
        "transform",
        {
            "process": "hydrometallurgy",
            "inputs": [{"lot": campaign, "mass_g": campaign_g}],
            "outputs": [
                {"lot": lot, "material": m, "mass_g": salt_g[lot], "elements": el}
                for lot, (m, el) in salts.items()
            ],
            "loss_g": campaign_g - sum(salt_g.values()),
        },
    )
    for lot in salts:
        c.put(RECYCLER, "transfer", {"lot": lot, "to": CATHODE, "mass_g": salt_g[lot]})
        c.put(CATHODE, "receive", {"lot": lot, "mass_g": salt_g[lot]})
    virgin_co = pool["Co"] // 10
    c.put(
        CATHODE,
        "create",
        {
            "lot": "lot:co-virgin",
            "material": "elements.cobalt_sulfate",
            "mass_g": virgin_co * 5,
            "origin": "virgin",
            "elements": {"Co": virgin_co},
        },
    )
    inputs = [{"lot": lot, "mass_g": salt_g[lot]} for lot in salts]
    inputs.append({"lot": "lot:co-virgin", "mass_g": virgin_co * 5})
    in_g = sum(i["mass_g"] for i in inputs)  # type: ignore[misc]
    cathode_el = {
        "Co": salts["lot:coso4"][1]["Co"] + virgin_co,
        "Ni": salts["lot:niso4"][1]["Ni"],
        "Li": salts["lot:li2co3"][1]["Li"],
    }
    cathode_g = in_g // 2
    c.put(
        CATHODE,
        "transform",
        {
            "process": "cathode_synthesis",
            "inputs": inputs,
            "outputs": [
                {
                    "lot": "lot:cathode",
                    "material": "batteries.cathode.nmc",
                    "mass_g": cathode_g,
                    "elements": cathode_el,
                }
            ],
            "loss_g": in_g - cathode_g,
        },
    )
    # Four more hops: cells, a split, modules, a new pack.
    cells_g = cathode_g
    c.put(
        CATHODE,
        "transform",
        {
            "process": "cell_manufacture",
            "inputs": [{"lot": "lot:cathode", "mass_g": cathode_g}],
            "outputs": [
                {
                    "lot": "lot:cells",
                    "material": "batteries.li_ion.cell",
                    "mass_g": cells_g,
                    "elements": cathode_el,
                }
            ],
            "loss_g": 0,
        },
    )
    half = cells_g // 2
    c.put(
        CATHODE,
        "split",
        {
            "lot": "lot:cells",
            "parts": [
                {"lot": "lot:cells-a", "mass_g": half},
                {"lot": "lot:cells-b", "mass_g": cells_g - half},
            ],
        },
    )
    half_el = _scaled(cathode_el, 500)
    for rtype, src, dst, material in (
        ("transform", "lot:cells-a", "lot:new-modules", "batteries.li_ion.module"),
        ("transform", "lot:new-modules", "lot:new-pack", "batteries.li_ion.nmc"),
    ):
        c.put(
            CATHODE,
            rtype,
            {
                "process": "pack_assembly",
                "inputs": [{"lot": src, "mass_g": half}],
                "outputs": [
                    {"lot": dst, "material": material, "mass_g": half, "elements": half_el}
                ],
                "loss_g": 0,
            },
        )
    return c


CONTENT = """query($lot: ID!) { recoveredContent(lot: $lot) {
  lot massG recoveredG preConsumerG postConsumerG share shareBasisPoints
  elements { element massG recoveredG preConsumerG postConsumerG share shareBasisPoints }
  check(on: "2031-08-18") { __typename ... on RecycledContentCheck { meetsAll
    findings { element shareBasisPoints requiredBasisPoints meets } } }
} }"""

HASHES = """query($lot: ID!) { recoveredContent(lot: $lot) {
  lot massG recoveredG shareBasisPoints elements { element massG recoveredG shareBasisPoints }
  proof { complete truncated hiddenByAccess depth recordHashes }
} }"""

PROOF = """query($lot: ID!) { recoveredContent(lot: $lot) {
  lot massG recoveredG shareBasisPoints elements { element massG recoveredG shareBasisPoints }
  proof {
    complete truncated hiddenByAccess depth
    nodes { lot material origin massG recoveredG preConsumerG postConsumerG madeBy madeSeq }
    edges { parent child massG elements { element massG } seq recordHash }
    recordHashes
  }
} }"""

DOCUMENT = """query($lot: ID!) { recoveredContent(lot: $lot) {
  lot massG recoveredG shareBasisPoints elements { element massG recoveredG shareBasisPoints }
  proof { complete document }
} }"""

BATTERY = """query($code: String!) { battery(code: $code) {
  code scheme secondLifeCodes
  lots { seq lot { id material status } }
  events { seq hash type at stage lots status actor { id } }
  custodians { since lot organisation { id } }
  lastLot { id } unitsInLastLot
  downstream { lot { id material } massG remainingG elements { element massG remainingG } }
  elements { element initialG recoveredG heldNowG }
  complete truncated hiddenByAccess
} }"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    client: httpx.AsyncClient,
    token: str,
    query: str,
    variables: dict[str, Any],
    runs: int,
    warmup: int,
    check: Callable[[dict[str, Any]], None],
) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    payload = {"query": query, "variables": variables}
    times: list[float] = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        r = await client.post("/graphql", json=payload, headers=headers)
        elapsed = (time.perf_counter() - start) * 1000
        body = r.json()
        if r.status_code != 200 or body.get("errors"):
            raise SystemExit(f"query failed: {r.status_code} {body.get('errors')}")
        if i == 0:
            check(body["data"])
        if i >= warmup:
            times.append(elapsed)
    return times


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 packs, 20 runs: a smoke test")
    ap.add_argument("--packs", type=int, help="packs in the ledger (default 1420; quick 40)")
    ap.add_argument("--runs", type=int, help="timed requests per query (default 100; quick 20)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--db", type=Path, help="SQLite file to build (default: a temporary one)")
    ap.add_argument("--url", help="a database URL instead (e.g. an empty PostgreSQL database)")
    args = ap.parse_args(argv)
    packs = args.packs or (40 if args.quick else 1_420)
    runs = args.runs or (20 if args.quick else 100)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or database_url(str(args.db or Path(tmp) / "tracing.db"))
        t0 = time.perf_counter()
        chain = build(packs)
        t1 = time.perf_counter()
        migrate(url)
        store = Store.open(url)
        try:
            for start in range(0, len(chain.records), 500):
                answers = store.append(chain.records[start : start + 500], atomic=True)
                refused = [r for r in answers if not isinstance(r, Appended)]
                if refused:
                    first = next((r for r in refused if "batch.aborted" not in str(r)), refused[0])
                    raise SystemExit(f"refused while building the ledger: {first}")
            t2 = time.perf_counter()
            print(
                f"ledger: {len(chain.records):,} records ({packs:,} packs); signed in "
                f"{t1 - t0:.1f} s, appended in {t2 - t1:.1f} s"
            )
            tokens = {org: issue_token(store.engine, org) for org in (REGULATOR, AUTOMAKER)}
            results = anyio.run(_timed, store, tokens, packs, runs, args.warmup)
        finally:
            store.close()
    return results


async def _timed(
    store: Store, tokens: dict[str, str], packs: int, runs: int, warmup: int
) -> dict[str, tuple[float, float]]:
    upstream: list[int] = []

    def hashes_ok(data: dict[str, Any]) -> None:
        p = data["recoveredContent"]["proof"]
        if p["truncated"]:
            raise SystemExit("the proof is truncated")
        upstream.append(len(p["recordHashes"]))

    def proof_ok(data: dict[str, Any]) -> None:
        p = data["recoveredContent"]["proof"]
        if len(p["recordHashes"]) != upstream[-1] or len(p["edges"]) < len(p["nodes"]) - 1:
            raise SystemExit("the whole proof disagrees with its record hashes")

    def document_ok(data: dict[str, Any]) -> None:
        doc = json.loads(data["recoveredContent"]["proof"]["document"])
        if len(doc["recordHashes"]) != upstream[-1] or len(doc["flows"]) < len(doc["lots"]) - 1:
            raise SystemExit("the proof's document disagrees with its record hashes")

    def content_ok(data: dict[str, Any]) -> None:
        if data["recoveredContent"]["shareBasisPoints"] <= 0:
            raise SystemExit("the cathode shows no recovered content")

    def battery_ok(data: dict[str, Any]) -> None:
        b = data["battery"]
        reached = [d["lot"]["id"] for d in b["downstream"]]
        if "lot:new-pack" not in reached or b["truncated"]:
            raise SystemExit(f"the battery walk did not reach the new pack: {reached}")

    rows: list[tuple[str, str, list[float], float]] = []
    app = create_app(store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for who in (REGULATOR, AUTOMAKER):
            token = tokens[who]
            for name, query, variables, check, target in (
                (
                    "recoveredContent (shares + Art. 8 check)",
                    CONTENT,
                    {"lot": "lot:cathode"},
                    content_ok,
                    TARGET_CONTENT_MS,
                ),
                (
                    "recoveredContent + proof: record hashes",
                    HASHES,
                    {"lot": "lot:cathode"},
                    hashes_ok,
                    TARGET_CONTENT_MS,
                ),
                (
                    "recoveredContent + proof: lots, flows too",
                    PROOF,
                    {"lot": "lot:cathode"},
                    proof_ok,
                    TARGET_CONTENT_MS,
                ),
                (
                    "recoveredContent + proof: one JSON document",
                    DOCUMENT,
                    {"lot": "lot:cathode"},
                    document_ok,
                    TARGET_CONTENT_MS,
                ),
                (
                    "battery(code), 10 hops",
                    BATTERY,
                    {"code": pack_code(1)},
                    battery_ok,
                    TARGET_BATTERY_MS,
                ),
            ):
                times = await measure(client, token, query, variables, runs, warmup, check)
                rows.append((who, name, times, target))
    print(f"the cathode's proof (as the regulator) lists {upstream[0]:,} records")
    print(f"{'viewer':<16} {'query':<46} {'p50 ms':>8} {'p95 ms':>8} {'target':>8}")
    out: dict[str, tuple[float, float]] = {}
    for who, name, times, target in rows:
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        verdict = "ok" if p95 < target else "MISSED"
        print(f"{who:<16} {name:<46} {p50:8.1f} {p95:8.1f} {f'<{target:.0f}':>8} {verdict}")
        out[f"{who} {name}"] = (p50, p95)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
