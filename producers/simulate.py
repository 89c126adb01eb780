"""A deterministic national recovery network, as signed records (``rledger simulate``).

:func:`simulate` sizes a Chinese national network by the number of records
wanted — about one collector per 330 records (at least 300), hundreds of scrap
processors and recyclers, steel mills, non-ferrous smelters, automakers,
second-life storage operators, cathode makers, producers of packaged goods and
regulators, spread over twenty provinces (ISO 3166-2:CN, the region codes the
rest of the ledger uses) — and simulates ten months of trade in all six
families, from 2026-01-01:

* collectors weigh in post-consumer lots (HMS, ELV hulks, copper and aluminium
  scrap, OCC, PET and mixed plastics, end-of-life tyres, Li-ion batteries),
  split heavy loads into truckloads, gather light ones and merge them into a
  shipment, store batteries (status ``stored``), landfill contaminated mixed
  plastics, and ship to a regular buyer, most often in their own province;
  the buyer weighs each load on arrival (a transit loss of a few per mille,
  under ledger/data/anomaly_thresholds.toml's tolerances);
* scrap processors shred ELV hulks, sort copper, bale cans and ship shredded
  steel to mills and graded non-ferrous scrap to smelters; paper mills pulp
  OCC and make testliner with some virgin pulp; plastics recyclers wash, flake
  and pelletise PET, sort mixed plastics and incinerate or landfill the
  residue; tyre recyclers granulate tyres into crumb, steel wire (to the
  mills) and textile fibre (energy recovery); mills melt scrap with virgin pig
  iron into billets and roll rebar; smelters make aluminium ingot and copper
  rod. Every yield lies inside its process's plausible range
  (ledger/data/materials.toml), so ledger/anomalies.py stays quiet;
* the battery loop: automakers (GB/T 34014-2017 codes on every pack they
  create) place packs on the market and put them in use; fleet packs retire
  (split off by units), go to a battery recycler, which sends some lots to a
  storage operator for second life (each pack coded anew, its original code
  kept) and dismantles the rest into modules, makes black mass, and recovers
  cobalt, nickel, lithium and manganese salts by hydrometallurgy; cathode
  makers synthesise NMC622 from them and virgin salts (a fifth of the cobalt
  recovered);
* EPR: each quarter, paper mills and plastics recyclers certify 85 % of their
  recycled pulp and pellets under ``eu.packaging``, battery recyclers 85 % of
  the cobalt and nickel in their salts under ``eu.batteries.ev`` (all of it
  recovered: the inputs were collected waste and retired packs); certificates
  go to producers and automakers, which declare what they placed on the market
  and retire them (most comply, some fall short); regulators void the duplicate
  weighbridge tickets a few collectors enter.

Records are signed as they are generated (each organisation's fixed key is
derived from the seed) and come out organisation by organisation, in stages:
collectors and automakers first, then processors and recyclers, then mills,
smelters and storage operators, then cathode makers, then the EPR records. No
organisation depends on a later stage, so each :class:`SimBatch` holds one
organisation's records (one token writes it over the API) and every record
comes after the records its ``parents`` name. The count is exact: the network
is sized to a little under ``records``, and the rest are the mills' and
converters' dispatches of finished goods (splits into customer deliveries);
for very small counts the stream is cut short instead.

Deterministic: one ``random.Random(seed)``, fixed keys, ULIDs made from each
record's ``at`` and that generator, ``at`` times on the simulated calendar
(2026-01-01 to 2026-10-27, before any ledger clock that runs today). The same
``(records, seed)`` gives byte-identical records, however the batches are cut.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from random import Random
from typing import Any

from ledger.apportion import apportion
from ledger.canonical import canonical_bytes_unchecked
from ledger.epr_schemes import default_schemes
from ledger.materials import default_taxonomy
from ledger.signing import (
    Ed25519PrivateKey,
    b64url_encode,
    key_id,
    public_key_bytes,
    sign,
)
from ledger.store import Signed
from producers.demo import gbt_code
from producers.keyfiles import write_private_key

__all__ = [
    "BASE_AT",
    "DAYS",
    "SimBatch",
    "SimOrg",
    "Simulation",
    "org_key",
    "simulate",
]

BASE_AT = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 300  # the simulated calendar: 2026-01-01 .. 2026-10-27
_SHIP_DAYS = DAYS - 5  # nothing is shipped later: every load arrives within the calendar
_DAY = 86_400
_OPENS = 7 * 3600  # 07:00 UTC
_STEP = 23  # seconds between two records of one organisation
_KG = 1000
_PERIOD = "2026"  # the EPR period (both schemes used count by calendar year)
PACKAGING = "eu.packaging"
BATTERY_SCHEME = "eu.batteries.ev"

# Collection events per record asked for, by records asked for (interpolated on log N):
# calibrated so that the network's own records are about 93 % of the count, the rest
# filled with dispatches. Larger networks need more collections per record: the mills'
# and recyclers' batch processes (a few a week) grow more slowly than their receipts.
_COLLECTIONS_PER_RECORD: tuple[tuple[int, float], ...] = (
    (3_000, 0.110),
    (10_000, 0.142),
    (30_000, 0.164),
    (100_000, 0.2009),
    (300_000, 0.2307),
    (1_000_000, 0.2311),
)
_BATTERY_RECORD_SHARE = 0.035  # of the records, the automakers' own pack events

# --- the network --------------------------------------------------------------------


@dataclass(frozen=True)
class SimOrg:
    """An organisation of the simulated network (admitted by the setup records)."""

    id: str
    roles: list[str]
    region: str
    name: str
    kind: str = ""  # collector, processor, paper_mill, ... (the simulator's own)


@dataclass(frozen=True)
class SimBatch:
    """Records of one organisation, in order; ``hashes[i]`` is ``records[i]``'s hash."""

    org: str
    records: list[Signed]
    hashes: list[str] = field(default_factory=list)


# (code, weight, cities): provinces by weight of their recycling industry.
REGIONS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("CN-GD", 12, ("Guangzhou", "Shenzhen", "Foshan", "Dongguan")),
    ("CN-JS", 10, ("Nanjing", "Suzhou", "Wuxi", "Changzhou")),
    ("CN-ZJ", 9, ("Hangzhou", "Ningbo", "Taizhou", "Wenzhou")),
    ("CN-SD", 9, ("Jinan", "Qingdao", "Zibo", "Linyi")),
    ("CN-HE", 6, ("Shijiazhuang", "Tangshan", "Handan")),
    ("CN-HA", 6, ("Zhengzhou", "Luoyang", "Xinxiang")),
    ("CN-SC", 5, ("Chengdu", "Mianyang", "Yibin")),
    ("CN-HB", 5, ("Wuhan", "Xiangyang", "Yichang")),
    ("CN-HN", 4, ("Changsha", "Zhuzhou", "Yueyang")),
    ("CN-FJ", 4, ("Xiamen", "Fuzhou", "Quanzhou")),
    ("CN-AH", 4, ("Hefei", "Wuhu", "Maanshan")),
    ("CN-SH", 4, ("Shanghai",)),
    ("CN-BJ", 3, ("Beijing",)),
    ("CN-TJ", 3, ("Tianjin",)),
    ("CN-CQ", 3, ("Chongqing",)),
    ("CN-LN", 3, ("Shenyang", "Dalian", "Anshan")),
    ("CN-SN", 2, ("Xian", "Baoji")),
    ("CN-JX", 2, ("Nanchang", "Ganzhou")),
    ("CN-GX", 2, ("Nanning", "Liuzhou")),
    ("CN-YN", 1, ("Kunming",)),
)
_REGION_CODES = [r[0] for r in REGIONS]
_REGION_WEIGHTS = [r[1] for r in REGIONS]
_CITIES = {r[0]: r[2] for r in REGIONS}

# kind -> (id prefix, roles, what the name says, stage)
_KINDS: dict[str, tuple[str, tuple[str, ...], str, int]] = {
    "collector": ("col", ("collector",), "Renewable Resources Recycling Station", 0),
    "automaker": ("auto", ("producer", "manufacturer"), "New Energy Vehicles", 0),
    "processor": ("proc", ("processor",), "Metal Scrap Processing", 1),
    "paper_mill": ("paper", ("recycler", "manufacturer"), "Paperboard Mill", 1),
    "plastics": ("plast", ("recycler",), "Plastics Recycling", 1),
    "tyres": ("tyre", ("recycler",), "Tyre Recycling", 1),
    "battery": ("batt", ("recycler",), "Battery Recycling", 1),
    "steel_mill": ("steel", ("manufacturer", "recycler"), "Iron and Steel Works", 2),
    "smelter": ("smelt", ("recycler", "manufacturer"), "Non-Ferrous Metals Smelter", 2),
    "storage": ("store", ("manufacturer",), "Second-Life Energy Storage", 2),
    "cathode": ("cath", ("manufacturer",), "Cathode Materials", 3),
    "producer": ("prod", ("producer",), "Consumer Goods", 4),
    "regulator": ("reg", ("regulator",), "Ecology and Environment Department", 4),
}


def _counts(records: int) -> dict[str, int]:
    """How many organisations of each kind a network of ``records`` records has."""
    n = records
    return {
        "collector": max(300, n // 330),
        "automaker": max(4, n // 80_000),
        "processor": max(40, n // 8_000),
        "paper_mill": max(15, n // 25_000),
        "plastics": max(15, n // 20_000),
        "tyres": max(10, n // 40_000),
        "battery": max(8, n // 40_000),
        "steel_mill": max(8, n // 40_000),
        "smelter": max(6, n // 60_000),
        "storage": max(3, n // 200_000),
        "cathode": max(3, n // 150_000),
        "producer": max(10, n // 20_000),
        "regulator": 6,
    }


# Collector kinds: (share of collectors, portfolio of (material, weight)).
_COLLECTOR_KINDS: tuple[tuple[int, tuple[tuple[str, int], ...]], ...] = (
    (
        40,
        (
            ("steel.hms1", 4),
            ("steel.hms2", 3),
            ("nonferrous.cu_no2", 1),
            ("nonferrous.al_ubc", 2),
            ("paper.occ", 2),
        ),
    ),
    (30, (("paper.occ", 5), ("plastics.pet", 3), ("plastics.mixed", 2), ("nonferrous.al_ubc", 1))),
    (15, (("steel.hms2", 3), ("tyres.elt", 4), ("nonferrous.cu_no2", 1))),
    (15, (("batteries.li_ion.nmc", 4), ("nonferrous.cu_no2", 2), ("plastics.mixed", 1))),
)
_PORTFOLIOS = [p for _, p in _COLLECTOR_KINDS]
_PORTFOLIO_WEIGHTS = [w for w, _ in _COLLECTOR_KINDS]
# A collected lot's mass in kg, (min, max) (as producers/demo.py).
_LOT_KG = {
    "steel.hms1": (6_000, 34_000),
    "steel.hms2": (4_000, 22_000),
    "nonferrous.cu_no2": (150, 900),
    "nonferrous.al_ubc": (500, 3_000),
    "paper.occ": (3_000, 18_000),
    "plastics.pet": (1_000, 6_000),
    "plastics.mixed": (800, 4_000),
    "tyres.elt": (3_000, 14_000),
    "batteries.li_ion.nmc": (300, 1_800),
}
# One truckload, kg: heavier lots are split before they are shipped.
_TRUCK_KG = {"steel": 25_000, "paper": 12_000, "tyres": 10_000}
# Light materials are gathered until this much (kg) is held, then merged and shipped.
_GATHER_KG = {"nonferrous": 2_000, "plastics": 6_000, "batteries": 2_500}
_BUYER = {
    "steel.hms1": "steel_mill",
    "steel.hms2": "processor",
    "nonferrous.cu_no2": "processor",
    "nonferrous.al_ubc": "processor",
    "paper.occ": "paper_mill",
    "plastics.pet": "plastics",
    "plastics.mixed": "plastics",
    "tyres.elt": "tyres",
    "batteries.li_ion.nmc": "battery",
}
# The largest transit loss, in 1/10,000 of the declared mass (weighbridge accuracy,
# moisture, dust), well under the anomaly tolerances of ledger/data/anomaly_thresholds.toml.
_TRANSIT_LOSS = {"steel": 40, "nonferrous": 20, "paper": 150, "plastics": 60, "tyres": 80}

# Products that leave the network as goods: the dispatches that top the count up split them.
_FINISHED = frozenset(
    {
        "steel.rebar",
        "steel.billet",
        "nonferrous.al_ingot",
        "nonferrous.copper_rod",
        "nonferrous.brass",
        "paper.testliner",
        "plastics.rpet_pellet",
        "plastics.hdpe_pellet",
        "plastics.pp",
        "tyres.crumb",
        "batteries.cathode.nmc",
    }
)
_PACK_KG = (420, 520)
_TRACE = "L{:06d}"
_SECOND_LIFE_TRACE = "R{:06d}"
# NMC622 cathode active material (as producers/demo.py), g/t.
_NMC622_G_PER_T = {"Li": 71_600, "Ni": 363_300, "Mn": 113_400, "Co": 121_600}
_SALTS = {
    "Co": "elements.cobalt_sulfate",
    "Ni": "elements.nickel_sulfate",
    "Li": "elements.lithium_carbonate",
    "Mn": "elements.manganese_sulfate",
}
_HYDRO_RECOVERY = {"Co": 900, "Ni": 900, "Li": 830, "Mn": 880}  # per mille of the element
_CATHODE_RECOVERED_CO = 200  # per mille of the cathode's cobalt from recovered salts

# A ULID: 48 bits of milliseconds then 80 random bits, as 26 characters of Crockford's
# base32 (the top two of its 130 bits zero), written here ten bits (two characters) at a time.
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _B32 for b in _B32]


def _ulid(ms: int, r: int) -> str:
    p = _PAIRS
    return (
        p[ms >> 40]
        + p[(ms >> 30) & 1023]
        + p[(ms >> 20) & 1023]
        + p[(ms >> 10) & 1023]
        + p[ms & 1023]
        + p[r >> 70]
        + p[(r >> 60) & 1023]
        + p[(r >> 50) & 1023]
        + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023]
        + p[(r >> 20) & 1023]
        + p[(r >> 10) & 1023]
        + p[r & 1023]
    )


def _collections_per_record(records: int) -> float:
    table = _COLLECTIONS_PER_RECORD
    if records <= table[0][0]:
        return table[0][1]
    for (n0, c0), (n1, c1) in pairwise(table):
        if records <= n1:
            x = (math.log(records) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return c0 + (c1 - c0) * x
    return table[-1][1]


def org_key(seed: int, org: str) -> Ed25519PrivateKey:
    """The fixed private key of ``org`` in the network of ``seed``: anyone who knows the
    seed can sign as any simulated organisation (a simulated ledger is for measuring only)."""
    digest = hashlib.sha256(f"rledger-simulate:{seed}:{org}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


def _typical(material: str) -> dict[str, int]:
    """Element grams per tonne at the middle of the taxonomy's typical range."""
    entry = default_taxonomy().material(material)
    if entry is None:
        raise ValueError(f"{material} is not in the taxonomy")
    return {k: (lo + hi) // 2 for k, (lo, hi) in entry.elements.items()}


def _fit(elements: dict[str, int], mass_g: int) -> dict[str, int]:
    """Drop empty entries; scale down so the elements hold at most 98 % of the mass."""
    out = {k: v for k, v in elements.items() if v > 0}
    total = sum(out.values())
    cap = mass_g * 98 // 100
    if total > cap:
        out = {k: v * cap // total for k, v in out.items() if v * cap // total > 0}
    return out


def _share(elements: dict[str, int], part: int, whole: int) -> dict[str, int]:
    """A lower bound of the element grams the ledger gives ``part`` of ``whole`` grams.

    The ledger divides each element by the largest-remainder method, per recovered
    bucket (ledger/content.py): a part may get a few grams less than the proportional
    floor; taking 3 g off keeps what the simulator declares downstream within it.
    """
    if part == whole:
        return dict(elements)
    out = {}
    for k, v in elements.items():
        w = v * part // whole - 3
        if w > 0:
            out[k] = w
    return out


class _Lot:
    __slots__ = (
        "el",
        "graded",
        "head",
        "id",
        "made",
        "made_el",
        "mass",
        "material",
        "since",
        "status",
        "units",
    )

    def __init__(
        self,
        lot_id: str,
        material: str,
        mass: int,
        el: dict[str, int],
        head: str,
        since: int,
        units: list[tuple[str, int]] | None = None,
    ) -> None:
        self.id = lot_id
        self.material = material
        self.mass = mass
        self.el = el
        self.head = head
        self.units = units  # battery codes with each pack's grams
        self.since = since  # the day it got here
        self.graded = False  # already sorted or baled: not fed back into that process
        self.status = "active"
        self.made = 0  # grams when a transform made it (what a certificate may stand on)
        self.made_el: dict[str, int] = {}


# --- the simulation ---------------------------------------------------------------


class Simulation:
    """A simulated network: ``setup`` first, then :meth:`batches`.

    ``keys``: each organisation's (and the operator's) private key, derived from the
    seed (:func:`org_key`); ``ledger_key`` a fresh key for the ledger's checkpoints
    (:meth:`write_keys` writes it and the operator's as ``rledger init`` does);
    ``setup_hashes[i]`` is ``setup[i]``'s record hash.
    """

    def __init__(self, records: int, seed: int) -> None:
        if records < 0:
            raise ValueError("records must be at least 0")
        self.records = records
        self.seed = seed
        self.operator = "org:operator"
        rng = Random(seed)
        self.orgs = _make_orgs(records, rng)
        self.keys: dict[str, Ed25519PrivateKey] = {
            o.id: org_key(seed, o.id) for o in [_OPERATOR, *self.orgs]
        }
        # The key checkpoints are signed with signs no record: a fresh one, not derived
        # from the (public) seed like the organisations' keys.
        self.ledger_key = Ed25519PrivateKey.generate()
        gen = _Generator(self, rng)
        self.setup: list[Signed] = gen.setup()
        self.setup_hashes: list[str] = [h for _, h in gen.out]
        self._state = rng.getstate()

    @property
    def operator_key(self) -> Ed25519PrivateKey:
        return self.keys[self.operator]

    def batches(self, size: int = 500) -> Iterator[SimBatch]:
        """Exactly ``records`` records after the setup, in batches of one organisation
        each, at most ``size`` records, every record after the records its parents name.
        Generated (and signed) lazily; every call yields the same records."""
        if size < 1:
            raise ValueError("size must be at least 1")
        rng = Random()
        rng.setstate(self._state)
        left = self.records
        for org, items in _Generator(self, rng).stream():
            for start in range(0, len(items), size):
                if left <= 0:
                    return
                chunk = items[start : start + min(size, left)]
                left -= len(chunk)
                yield SimBatch(org, [s for s, _ in chunk], [h for _, h in chunk])
            if left <= 0:
                return

    def chunks(self, size: int = 500) -> Iterator[SimBatch]:
        """The same records as :meth:`batches`, in the same order, in chunks of ``size``
        (the last one smaller) that may span organisations: for appending straight to a
        store, where a batch of a few records per commit would be slow. ``org`` is the
        first record's organisation."""
        records: list[Signed] = []
        hashes: list[str] = []
        org = ""
        for batch in self.batches(size):
            if not records:
                org = batch.org
            records += batch.records
            hashes += batch.hashes
            while len(records) >= size:
                yield SimBatch(org, records[:size], hashes[:size])
                records, hashes = records[size:], hashes[size:]
                org = batch.org
        if records:
            yield SimBatch(org, records, hashes)

    def write_keys(self, keys_dir: Path) -> None:
        """``ledger.key`` and ``operator.key`` (PKCS#8, mode 0600, with .pub beside them),
        as ``rledger init`` writes them; refuses to overwrite a key."""
        write_private_key(keys_dir / "ledger.key", self.ledger_key)
        write_private_key(keys_dir / "operator.key", self.operator_key)


def simulate(records: int, seed: int = 1) -> Simulation:
    """The network for ``records`` records (beyond the setup) and ``seed``."""
    return Simulation(records, seed)


_OPERATOR = SimOrg("org:operator", ["operator"], "CN", "National Recovery Ledger Operator", "")


def _make_orgs(records: int, rng: Random) -> list[SimOrg]:
    orgs: list[SimOrg] = []
    for kind, count in _counts(records).items():
        prefix, roles, what, _ = _KINDS[kind]
        for i in range(1, count + 1):
            if kind == "regulator":
                region = "CN" if i == 1 else _REGION_CODES[i - 2]
                name = (
                    "Ministry of Ecology and Environment"
                    if i == 1
                    else f"{_CITIES[region][0]} {what}"
                )
            else:
                region = rng.choices(_REGION_CODES, _REGION_WEIGHTS)[0]
                name = f"{rng.choice(_CITIES[region])} {what} No. {i}"
            short = region.split("-")[-1].lower()
            orgs.append(SimOrg(f"org:{prefix}-{short}-{i:04d}", list(roles), region, name, kind))
    return orgs


class _Generator:
    """Builds and signs the records: one organisation's year at a time, stage by stage."""

    def __init__(self, sim: Simulation, rng: Random) -> None:
        self.sim = sim
        self.rng = rng
        self.seed = sim.seed
        self.signers = {org: (key, key_id(key.public_key())) for org, key in sim.keys.items()}
        self.out: list[tuple[Signed, str]] = []
        self._day_text = [
            (BASE_AT + timedelta(days=d)).strftime("%Y-%m-%dT") for d in range(-2, DAYS + 60)
        ]
        self.by_kind: dict[str, list[SimOrg]] = {}
        self.by_kind_region: dict[tuple[str, str], list[SimOrg]] = {}
        for o in sim.orgs:
            self.by_kind.setdefault(o.kind, []).append(o)
            self.by_kind_region.setdefault((o.kind, o.region), []).append(o)
        self.orgs = {o.id: o for o in sim.orgs}
        self.partners: dict[tuple[str, str], list[str]] = {}
        self.inbound: dict[str, list[tuple[int, int, _Lot]]] = {}
        self.shipments = 0
        self.end_t: dict[str, int] = {}
        self.finished: dict[str, list[_Lot]] = {}
        self.certs: dict[str, list[tuple[str, str, str, int]]] = {}  # holder -> certs
        self.voids: list[tuple[int, str, str, str, str]] = []  # (t, region, lot, head, why)
        self.packs_placed: dict[str, list[int]] = {}  # automaker -> [units, Co g, Ni g]
        self.taxonomy = default_taxonomy()
        self.typical = {m: _typical(m) for m in (*_LOT_KG, "batteries.pack")}

    # --- signing ---------------------------------------------------------------

    def at_text(self, t: int) -> str:
        d, s = divmod(t, _DAY)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        return f"{self._day_text[d + 2]}{h:02d}:{m:02d}:{s:02d}Z"

    def emit(
        self, actor: str, t: int, rtype: str, body: dict[str, Any], parents: dict[str, str]
    ) -> str:
        key, kid = self.signers[actor]
        ms = (_BASE_TS + t) * 1000
        env = {
            "v": 1,
            "id": _ulid(ms, self.rng.getrandbits(80)),
            "type": rtype,
            "actor": actor,
            "key": kid,
            "at": self.at_text(t),
            "parents": parents,
            "body": body,
        }
        # RFC 8785 bytes (ledger/canonical.py). canonical_bytes would first walk the envelope
        # for floats and integers beyond ±(2^53-1): every number here is an integer count of
        # grams or units this module computed, so that walk (a sixth of the time) is skipped.
        data = canonical_bytes_unchecked(env)
        digest = hashlib.sha256(data).hexdigest()
        self.out.append((Signed(data.decode("ascii"), sign(key, data)), digest))
        return digest

    def lot_id(self, t: int) -> str:
        return "lot:" + _ulid((_BASE_TS + t) * 1000, self.rng.getrandbits(80))

    # --- setup -----------------------------------------------------------------

    def setup(self) -> list[Signed]:
        """Genesis, then ``org.register`` + ``key.add`` of every organisation (2025-12-31)."""
        op = self.sim.operator
        t = -_DAY
        key = self.sim.keys[op]
        public = b64url_encode(public_key_bytes(key.public_key()))
        body: dict[str, Any] = {
            "org": op,
            "name": _OPERATOR.name,
            "roles": ["operator"],
            "region": "CN",
            "public_key": public,
        }
        self.emit(op, t, "org.register", body, {})
        for o in self.sim.orgs:
            t += 4
            reg = {"org": o.id, "name": o.name, "roles": list(o.roles), "region": o.region}
            self.emit(op, t, "org.register", reg, {})
            pub = b64url_encode(public_key_bytes(self.sim.keys[o.id].public_key()))
            self.emit(op, t + 2, "key.add", {"org": o.id, "public_key": pub}, {})
        return [s for s, _ in self.out]

    # --- the stream --------------------------------------------------------------

    def stream(self) -> Iterator[tuple[str, list[tuple[Signed, str]]]]:
        """(organisation, its records) runs, in an order that keeps parents first."""
        n = self.sim.records
        done = 0
        collections = max(0, round(n * _collections_per_record(n)))
        collectors = self.by_kind["collector"]
        weights = [self.rng.randint(1, 6) ** 2 for _ in collectors]  # a few big yards
        per_collector = apportion(collections, weights) if collectors else []
        automakers = self.by_kind["automaker"]
        battery_events = max(1, round(n * _BATTERY_RECORD_SHARE / max(1, len(automakers)) / 4))
        stages: list[list[tuple[SimOrg, Any]]] = [[] for _ in range(5)]
        for o, k in zip(collectors, per_collector, strict=True):
            stages[0].append((o, lambda r, k=k: self.collector(r, k)))
        for o in automakers:
            stages[0].append((o, lambda r: self.automaker(r, battery_events)))
        plans = {
            "processor": self.processor,
            "paper_mill": self.paper_mill,
            "plastics": self.plastics,
            "tyres": self.tyres,
            "battery": self.battery,
            "steel_mill": self.steel_mill,
            "smelter": self.smelter,
            "storage": self.storage,
            "cathode": self.cathode,
        }
        for kind, plan in plans.items():
            stage = _KINDS[kind][3]
            for o in self.by_kind.get(kind, []):
                stages[stage].append((o, plan))
        for o in [*self.by_kind.get("producer", []), *automakers]:
            stages[4].append((o, self.compliance))
        for o in self.by_kind["regulator"]:
            stages[4].append((o, self.regulate))
        for todo in stages:
            for o, plan in todo:
                run = _Run(self, o)
                plan(run)
                self.end_t[o.id] = run.t
                if run.d >= 0:
                    held = [x for x in run.all_held() if x.material in _FINISHED and not x.units]
                    if held:
                        self.finished[o.id] = held
                if self.out:
                    items, self.out = self.out, []
                    done += len(items)
                    yield o.id, items
                if done >= n:
                    return
        yield from self.dispatches(n - done)

    # --- who buys from whom --------------------------------------------------------

    def buyer(self, seller: SimOrg, kind: str) -> str | None:
        """One of the seller's one or two regular buyers of ``kind`` (most often in its
        own province)."""
        key = (seller.id, kind)
        found = self.partners.get(key)
        if found is None:
            local = self.by_kind_region.get((kind, seller.region), [])
            everyone = self.by_kind.get(kind, [])
            pool = local if local and self.rng.random() < 0.75 else everyone
            found = [o.id for o in pool]
            if found:
                found = [self.rng.choice(found) for _ in range(self.rng.randint(1, 2))]
            self.partners[key] = found
        return self.rng.choice(found) if found else None

    def transit_days(self, a: str, b: str) -> int:
        return 1 if self.orgs[a].region == self.orgs[b].region else self.rng.randint(2, 3)

    # --- stage 0: collectors ----------------------------------------------------------

    def collector(self, run: _Run, collections: int) -> None:
        rng = self.rng
        portfolio = rng.choices(_PORTFOLIOS, _PORTFOLIO_WEIGHTS)[0]
        materials = [m for m, _ in portfolio]
        mweights = [w for _, w in portfolio]
        days = sorted(rng.randrange(_SHIP_DAYS) for _ in range(collections))
        for d in days:
            run.day(d)
            material = rng.choices(materials, mweights)[0]
            lo, hi = _LOT_KG[material]
            mass = rng.randint(lo, hi) * _KG
            family = material.split(".", 1)[0]
            lot = run.create(material, mass, "post_consumer", self.elements(material, mass))
            if rng.random() < 0.002:  # the weighbridge ticket entered twice
                dup = run.create(material, mass, "post_consumer", dict(lot.el))
                run.release(dup)
                why = f"duplicate entry of the weighbridge ticket already recorded as {lot.id}"
                self.voids.append(
                    (run.t + rng.randint(3, 20) * _DAY, run.org.region, dup.id, dup.head, why)
                )
            if material == "plastics.mixed" and rng.random() < 0.08:
                run.dispose(lot, lot.mass, "landfill")  # too contaminated to sort
                continue
            if family == "batteries":
                run.status(lot, "stored", "in the fire-safe battery store until collected")
            truck = _TRUCK_KG.get(family)
            if truck:
                loads = [lot]
                if lot.mass > truck * _KG:
                    n = -(-lot.mass // (truck * _KG))
                    loads = run.split(lot, apportion(lot.mass, [1] * n))
                for load in loads:
                    run.ship(load, _BUYER[material])
            self.gather(run, d)
        if days:
            self.gather(run, days[-1], final=True)

    def gather(self, run: _Run, d: int, *, final: bool = False) -> None:
        """Ship light stock that is heavy enough (or waited three weeks), merged into one lot."""
        for material in list(run.held):
            lots = run.stock(material)
            if not lots:
                continue
            family = material.split(".", 1)[0]
            limit = _GATHER_KG.get(family)
            if limit is None:
                continue
            total = sum(x.mass for x in lots)
            if total >= limit * _KG or lots[0].since <= d - 21 or final:
                lot = run.merge(lots) if len(lots) > 1 else lots[0]
                run.ship(lot, _BUYER[material])

    def elements(self, material: str, mass: int) -> dict[str, int]:
        per_t = self.typical.get(material)
        if not per_t:
            return {}
        return _fit({k: mass * g // 1_000_000 for k, g in per_t.items()}, mass)

    # --- stage 0: automakers -------------------------------------------------------------

    def automaker(self, run: _Run, events: int) -> None:
        """Fleet packs in use since 2018-2021 retire (some split off by units) and go to a
        battery recycler; new packs are placed on the market and put in use."""
        rng = self.rng
        index = next(i for i, o in enumerate(self.by_kind["automaker"]) if o.id == run.org.id)
        maker = "A" + _PAIRS[index % 1024].replace("0", "Z").replace("1", "Y")
        trace = _TRACE.format(self.seed % 1_000_000)
        serial = 0
        placed = self.packs_placed.setdefault(run.org.id, [0, 0, 0])

        def packs(count: int, made: date) -> list[tuple[str, int]]:
            nonlocal serial
            out = []
            for _ in range(count):
                serial += 1
                out.append((gbt_code(maker, trace, made, serial), rng.randint(*_PACK_KG) * _KG))
            return out

        retirements = sorted(rng.randrange(3, _SHIP_DAYS) for _ in range(max(1, events // 2)))
        production = sorted(rng.randrange(0, _SHIP_DAYS) for _ in range(max(1, events // 2)))
        run.day(0)
        fleet: list[_Lot] = []
        for _ in range(max(1, -(-len(retirements) // 3))):
            made = date(rng.randint(2018, 2021), rng.randint(1, 12), rng.randint(1, 28))
            lot = run.create_packs(packs(rng.randint(8, 24), made))
            run.status(lot, "placed_on_market", "sold to a municipal taxi fleet")
            run.status(lot, "in_use")
            fleet.append(lot)
        placed_lots: list[_Lot] = []
        events_by_day = sorted([(d, 1) for d in retirements] + [(d, 0) for d in production])
        for d, what in events_by_day:
            run.day(d)
            for lot in placed_lots:
                if lot.since <= d - 7:
                    run.status(lot, "in_use")
            placed_lots = [x for x in placed_lots if x.status != "in_use"]
            if what == 0:
                made = (BASE_AT + timedelta(days=d - rng.randint(5, 40))).date()
                lot = run.create_packs(packs(rng.randint(4, 12), made))
                run.status(lot, "placed_on_market")
                placed_lots.append(lot)
                assert lot.units is not None
                placed[0] += len(lot.units)
                placed[1] += lot.el.get("Co", 0)
                placed[2] += lot.el.get("Ni", 0)
                continue
            fleet = [x for x in fleet if x.units]
            if not fleet:
                continue
            lot = fleet[rng.randrange(len(fleet))]
            assert lot.units is not None
            if len(lot.units) > 6:
                k = rng.randint(2, 5)
                retired, rest = run.split_units(lot, [lot.units[:k], lot.units[k:]])
                run.status(rest, "in_use")
                fleet = [x for x in fleet if x is not lot] + [rest]
                lot = retired
            else:
                fleet.remove(lot)
            run.status(lot, "retired", "state of health below 70 %")
            run.ship(lot, "battery")

    # --- stage 1: processors and recyclers --------------------------------------------------

    def processor(self, run: _Run) -> None:
        for d in run.calendar():
            wd = d % 7
            if wd in (1, 4) and (hulks := run.stock("steel.hms2")):
                run.process(
                    "shredding",
                    hulks,
                    [
                        ("steel.shredded", 700, 760, {"Fe": 950, "Cu": 300}),
                        ("nonferrous.al_cast", 40, 60, {}),
                        ("nonferrous.cu_no2", 8, 15, {"Cu": 500}),
                    ],
                    graded=True,
                )
            if wd == 2 and (copper := run.stock("nonferrous.cu_no2", graded=False)):
                run.process(
                    "sorting",
                    copper,
                    [
                        ("nonferrous.cu_bright", 250, 350, {"Cu": 330}),
                        ("nonferrous.brass", 80, 120, {"Cu": 60}),
                        ("nonferrous.cu_no2", 450, 500, {"Cu": 580}),
                    ],
                    graded=True,
                )
            if wd == 5 and (cans := run.stock("nonferrous.al_ubc", graded=False)):
                run.process(
                    "baling",
                    cans,
                    [("nonferrous.al_ubc", 993, 998, {"Al": 990, "Mn": 990})],
                    graded=True,
                )
            if wd == 3 and d < _SHIP_DAYS:
                run.ship_stock("steel.shredded", "steel_mill", truck_kg=25_000)
                for material in (
                    "nonferrous.al_cast",
                    "nonferrous.al_ubc",
                    "nonferrous.cu_bright",
                    "nonferrous.brass",
                    "nonferrous.cu_no2",
                ):
                    run.ship_stock(material, "smelter", graded=True, min_kg=3_000)

    def paper_mill(self, run: _Run) -> None:
        eligible: list[_Lot] = []
        for d in run.calendar():
            wd = d % 7
            if wd in (1, 5) and (occ := run.stock("paper.occ")):
                eligible += run.process("pulping", occ, [("paper.pulp_recycled", 820, 880, {})])
            if wd in (2, 6) and (pulp := run.stock("paper.pulp_recycled")):
                total = sum(x.mass for x in pulp)
                need = total * self.rng.randint(80, 120) // 1000
                virgin = run.draw(
                    "paper.pulp_virgin", need, lambda: self.rng.randint(100, 300) * 1000 * _KG
                )
                run.process("papermaking", pulp, [("paper.testliner", 950, 975, {})], extra=virgin)
            if d % 91 == 90 and eligible:
                self.certify(run, PACKAGING, "paper", eligible, "producer")
                eligible = []
        if eligible:
            self.certify(run, PACKAGING, "paper", eligible, "producer")

    def plastics(self, run: _Run) -> None:
        eligible: list[_Lot] = []
        for d in run.calendar():
            wd = d % 7
            if wd in (0, 3) and (pet := run.stock("plastics.pet")):
                run.process(
                    "washing_flaking",
                    pet,
                    [("plastics.pet_flake", 720, 770, {}), ("plastics.pp", 40, 60, {})],
                )
            if wd == 4 and (flake := run.stock("plastics.pet_flake")):
                eligible += run.process(
                    "pelletising", flake, [("plastics.rpet_pellet", 960, 980, {})]
                )
            if wd == 2 and (mixed := run.stock("plastics.mixed", graded=False)):
                run.process(
                    "sorting",
                    mixed,
                    [
                        ("plastics.hdpe", 250, 300, {}),
                        ("plastics.pp", 150, 200, {}),
                        ("plastics.mixed", 400, 470, {}),
                    ],
                    graded=True,
                )
            if wd == 5 and (hdpe := run.stock("plastics.hdpe")):
                eligible += run.process(
                    "pelletising", hdpe, [("plastics.hdpe_pellet", 955, 980, {})]
                )
            if d % 30 == 29:
                residue = run.stock("plastics.mixed", graded=True)
                if residue:
                    lot = run.merge(residue) if len(residue) > 1 else residue[0]
                    run.dispose(lot, lot.mass, "incineration" if d % 60 == 29 else "landfill")
                pp = run.stock("plastics.pp")
                if len(pp) > 1:
                    run.merge(pp)
            if d % 91 == 90 and eligible:
                self.certify(run, PACKAGING, "plastic", eligible, "producer")
                eligible = []
        if eligible:
            self.certify(run, PACKAGING, "plastic", eligible, "producer")

    def tyres(self, run: _Run) -> None:
        for d in run.calendar():
            wd = d % 7
            if wd in (1, 4) and (elt := run.stock("tyres.elt")):
                run.process(
                    "granulating",
                    elt,
                    [
                        ("tyres.crumb", 480, 520, {"Zn": 900}),
                        ("tyres.steel_wire", 130, 150, {"Fe": 950}),
                        ("tyres.textile_fibre", 40, 60, {}),
                    ],
                )
            if wd == 3 and d < _SHIP_DAYS:
                run.ship_stock("tyres.steel_wire", "steel_mill", min_kg=5_000)
            if d % 30 == 29:
                fibre = run.stock("tyres.textile_fibre")
                if fibre:
                    lot = run.merge(fibre) if len(fibre) > 1 else fibre[0]
                    run.dispose(lot, lot.mass, "energy_recovery")
                crumb = run.stock("tyres.crumb")
                if len(crumb) > 1:
                    run.merge(crumb)

    def battery(self, run: _Run) -> None:
        salts: list[_Lot] = []
        for d in run.calendar(on_receive=self._battery_received):
            wd = d % 7
            packs = [x for x in run.stock("batteries.pack") if x.since < d]
            if wd == 0 and packs:
                run.process(
                    "dismantling",
                    packs,
                    [
                        (
                            "batteries.li_ion.module",
                            540,
                            580,
                            {"Co": 950, "Ni": 950, "Li": 950, "Mn": 950, "Cu": 500, "Al": 250},
                        ),
                        ("nonferrous.al_cast", 100, 120, {"Al": 500}),
                        ("steel.hms2", 55, 65, {"Fe": 600}),
                        ("nonferrous.cu_no2", 15, 20, {"Cu": 150}),
                    ],
                )
            cells = [*run.stock("batteries.li_ion.module"), *run.stock("batteries.li_ion.nmc")]
            if wd == 2 and cells:
                run.process(
                    "mechanical",
                    cells,
                    [
                        (
                            "batteries.black_mass",
                            390,
                            430,
                            {
                                "Co": 950,
                                "Ni": 950,
                                "Li": 930,
                                "Mn": 950,
                                "C": 700,
                                "Cu": 50,
                                "Al": 30,
                            },
                        ),
                        ("nonferrous.cu_no2", 70, 90, {"Cu": 800}),
                    ],
                )
            black = run.stock("batteries.black_mass")
            if d % 30 == 14 and black:
                campaign = run.merge(black) if len(black) > 1 else black[0]
                made = self.hydrometallurgy(run, campaign)
                salts += made
                if d < _SHIP_DAYS:
                    for salt in made:
                        to = self.buyer(run.org, "cathode")
                        if to is not None:
                            run.transfer(salt, to)
            if wd == 3 and d < _SHIP_DAYS:
                run.ship_stock("steel.hms2", "steel_mill", min_kg=1_000)
                run.ship_stock("nonferrous.al_cast", "smelter", min_kg=1_000)
                run.ship_stock("nonferrous.cu_no2", "smelter", min_kg=500)
            if d % 91 == 90 and salts:
                self.certify_salts(run, salts)
                salts = []
        if salts:
            self.certify_salts(run, salts)

    def _battery_received(self, run: _Run, lot: _Lot) -> None:
        if lot.material != "batteries.pack":
            return
        run.status(lot, "collected", "end-of-life packs taken back from the automaker")
        if self.rng.random() < 0.15 and run.d < _SHIP_DAYS and self.by_kind.get("storage"):
            run.ship(lot, "storage")  # fit for stationary storage

    def hydrometallurgy(self, run: _Run, lot: _Lot) -> list[_Lot]:
        """Leach, purify, crystallise: salts with their stoichiometric element content,
        lighter in all than the black mass (the ledger takes no reagents as inputs)."""
        outputs: list[tuple[str, int, dict[str, int]]] = []
        for symbol, material in _SALTS.items():
            entry = self.taxonomy.material(material)
            assert entry is not None and entry.element_g_per_t
            metal = lot.el.get(symbol, 0) * _HYDRO_RECOVERY[symbol] // 1000
            outputs.append((material, metal * 1_000_000 // entry.element_g_per_t, {}))
        cap = lot.mass * self.rng.randint(860, 900) // 1000
        total = sum(m for _, m, _ in outputs)
        fitted = []
        for material, mass, _ in outputs:
            mass = mass * cap // total if total > cap else mass
            if mass <= 0:
                continue
            entry = self.taxonomy.material(material)
            assert entry is not None and entry.element is not None and entry.element_g_per_t
            fitted.append(
                (material, mass, {entry.element: mass * entry.element_g_per_t // 1_000_000})
            )
        if not fitted:
            return []
        return run.transform("hydrometallurgy", [(lot, lot.mass)], fitted)

    def certify(
        self, run: _Run, scheme: str, category: str, lots: list[_Lot], holder_kind: str
    ) -> None:
        """A certificate on 85 % of each lot's recovered output (all of it recovered: the
        inputs were collected waste), handed to a producer."""
        backing = [{"lot": x.id, "mass_g": x.made * 85 // 100} for x in lots if x.made >= 100]
        if not backing:
            return
        self.issue(run, scheme, category, backing, holder_kind)

    def certify_salts(self, run: _Run, salts: list[_Lot]) -> None:
        for category, symbol in (("co", "Co"), ("ni", "Ni")):
            backing = [
                {"lot": x.id, "mass_g": x.made_el.get(symbol, 0) * 85 // 100}
                for x in salts
                if x.material == _SALTS[symbol] and x.made_el.get(symbol, 0) >= 100
            ]
            if backing:
                self.issue(run, BATTERY_SCHEME, category, backing, "automaker")

    def issue(
        self,
        run: _Run,
        scheme: str,
        category: str,
        backing: list[dict[str, Any]],
        holder_kind: str,
    ) -> None:
        run.certificates += 1
        cert = f"cert:{run.org.id[4:]}:{_PERIOD}:{run.certificates:04d}"
        mass = sum(b["mass_g"] for b in backing)
        body = {
            "certificate": cert,
            "scheme": scheme,
            "category": category,
            "period": _PERIOD,
            "lots": backing,
            "mass_g": mass,
        }
        run.emit("certify", body, {})
        holders = self.by_kind.get(holder_kind, [])
        if holders:
            to = holders[self.rng.randrange(len(holders))].id
            run.emit("certificate.transfer", {"certificate": cert, "to": to}, {})
            self.certs.setdefault(to, []).append((cert, scheme, category, mass))

    # --- stage 2: mills, smelters, storage -----------------------------------------------

    def steel_mill(self, run: _Run) -> None:
        rng = self.rng
        scrap_grades = ("steel.hms1", "steel.hms2", "steel.shredded", "tyres.steel_wire")
        for d in run.calendar():
            wd = d % 7
            if wd in (0, 2, 4):
                scrap = [x for m in scrap_grades for x in run.stock(m)]
                total = sum(x.mass for x in scrap)
                if total >= 60_000 * _KG or (scrap and d % 14 == 0):
                    need = total * rng.randint(150, 250) // 1000
                    pig = run.draw(
                        "steel.pig_iron", need, lambda: rng.randint(100, 300) * 1000 * _KG
                    )
                    run.process(
                        "melting", scrap, [("steel.billet", 880, 920, {"Fe": 930})], extra=pig
                    )
            if wd == 5 and (billets := run.stock("steel.billet", graded=False)):
                if rng.random() < 0.3:  # part of the largest cast is sold as billet
                    big = max(billets, key=lambda x: x.mass)
                    if big.mass >= 10 * _KG:
                        kept = big.mass * rng.randint(200, 350) // 1000
                        rolled, sold = run.split(big, [big.mass - kept, kept])
                        sold.graded = True
                        billets = [x for x in billets if x is not big] + [rolled]
                run.process("manufacturing", billets, [("steel.rebar", 960, 980, {"Fe": 980})])

    def smelter(self, run: _Run) -> None:
        for d in run.calendar():
            wd = d % 7
            aluminium = [*run.stock("nonferrous.al_cast"), *run.stock("nonferrous.al_ubc")]
            if wd == 1 and aluminium:
                run.process(
                    "smelting",
                    aluminium,
                    [("nonferrous.al_ingot", 860, 910, {"Al": 880, "Cu": 800, "Mn": 500})],
                )
            copper = [*run.stock("nonferrous.cu_bright"), *run.stock("nonferrous.cu_no2")]
            if wd == 3 and copper:
                run.process("refining", copper, [("nonferrous.copper_rod", 955, 985, {"Cu": 970})])
            brass = run.stock("nonferrous.brass")
            if d % 30 == 29 and len(brass) > 1:
                run.merge(brass)

    def storage(self, run: _Run) -> None:
        """GB/T 34014-2017 §4.2: each repurposed pack gets a new code and keeps its original."""
        index = next(i for i, o in enumerate(self.by_kind["storage"]) if o.id == run.org.id)
        maker = "S" + _PAIRS[index % 1024].replace("0", "Z").replace("1", "Y")
        trace = _SECOND_LIFE_TRACE.format(self.seed % 1_000_000)
        serial = 0

        def second_life(r: _Run, lot: _Lot) -> None:
            nonlocal serial
            assert lot.units is not None
            made = (BASE_AT + timedelta(days=r.d)).date()
            recode = {}
            for code, _ in lot.units:
                serial += 1
                recode[code] = gbt_code(maker, trace, made, serial)
            r.status(lot, "second_life", "repurposed as stationary storage", recode=recode)

        for _ in run.calendar(on_receive=second_life):
            pass

    # --- stage 3: cathode makers ------------------------------------------------------------

    def cathode(self, run: _Run) -> None:
        """Weekly NMC622 from all the recovered cobalt sulfate held, a fifth of the cobalt;
        the other elements from recovered salts as held, the rest bought virgin."""
        for d in run.calendar():
            if d % 7 != 1:
                continue
            recovered = {s: run.stock(m) for s, m in _SALTS.items()}
            cobalt = sum(x.el.get("Co", 0) for x in recovered["Co"])
            if cobalt < 1000:
                continue
            cathode_co = cobalt * 1000 // _CATHODE_RECOVERED_CO
            mass = cathode_co * 1_000_000 // _NMC622_G_PER_T["Co"]
            inputs: list[tuple[_Lot, int]] = []
            have: dict[str, int] = {}
            for symbol, material in _SALTS.items():
                need = mass * _NMC622_G_PER_T[symbol] // 1_000_000
                got = 0
                for lot in recovered[symbol]:
                    if got >= need and symbol != "Co":
                        break
                    inputs.append((lot, lot.mass))
                    got += lot.el.get(symbol, 0)
                short = need - got
                if short > 0:
                    entry = self.taxonomy.material(material)
                    assert entry is not None and entry.element_g_per_t
                    salt_g = -(-short * 1_000_000 // entry.element_g_per_t) + 1000
                    virgin = run.create(
                        material,
                        salt_g,
                        "virgin",
                        {symbol: salt_g * entry.element_g_per_t // 1_000_000},
                    )
                    inputs.append((virgin, virgin.mass))
                    got += virgin.el[symbol]
                have[symbol] = got
            elements = {
                s: min(mass * g // 1_000_000, have[s] - 5) for s, g in _NMC622_G_PER_T.items()
            }
            run.transform(
                "cathode_synthesis",
                inputs,
                [("batteries.cathode.nmc", mass, {k: v for k, v in elements.items() if v > 0})],
            )

    # --- stage 4: EPR compliance and the regulators ------------------------------------------

    def compliance(self, run: _Run) -> None:
        """Declarations for the period and the retirement of every certificate held: most
        producers declare so that their certificates cover the obligation, some more."""
        rng = self.rng
        run.day(DAYS - 2)
        held = self.certs.get(run.org.id, [])
        schemes = default_schemes()
        if run.org.kind == "automaker":
            units, cobalt, nickel = self.packs_placed.get(run.org.id, [0, 0, 0])
            for category, grams in (("co", cobalt), ("ni", nickel)):
                if grams > 0:
                    body = {
                        "scheme": BATTERY_SCHEME,
                        "category": category,
                        "period": _PERIOD,
                        "mass_g": grams,
                        "units": units,
                    }
                    run.emit("declare", body, {})
        else:
            short = rng.random() < 0.3
            for category in ("paper", "plastic"):
                certified = sum(m for _, s, c, m in held if s == PACKAGING and c == category)
                target = schemes[PACKAGING].categories[category].target_for(_PERIOD)
                if certified:
                    owed = certified * 3 // 2 if short else certified * 95 // 100
                else:
                    owed = rng.randint(5, 50) * 1000 * _KG
                declared = owed * 10_000 // target if target else owed
                body = {
                    "scheme": PACKAGING,
                    "category": category,
                    "period": _PERIOD,
                    "mass_g": max(1, declared),
                }
                run.emit("declare", body, {})
        for cert, _, _, _ in held:
            run.emit("certificate.retire", {"certificate": cert, "period": _PERIOD}, {})

    def regulate(self, run: _Run) -> None:
        """A regulator voids the duplicate tickets its audits find (the national one those
        of provinces without their own)."""
        regulators = self.by_kind["regulator"]
        by_region = {o.region: o.id for o in regulators}
        for t, region, lot, head, why in sorted(self.voids):
            if by_region.get(region, regulators[0].id) != run.org.id:
                continue
            run.t = max(run.t, min(t, (DAYS - 1) * _DAY))
            run.emit("void", {"record": head, "reason": why}, {lot: head})

    # --- the dispatches that make the count exact ----------------------------------------------

    def dispatches(self, missing: int) -> Iterator[tuple[str, list[tuple[Signed, str]]]]:
        """``missing`` splits of finished goods into customer deliveries, by their makers
        (and, if no goods are held, stock-takes by collectors)."""
        if missing <= 0:
            return
        owners = sorted(self.finished)
        quotas = apportion(missing, [len(self.finished[o]) for o in owners]) if owners else []
        left = missing
        for org_id, quota in zip(owners, quotas, strict=True):
            run = _Run(self, self.orgs[org_id])
            run.t = self.end_t.get(org_id, 0)
            run.d = DAYS - 1
            queue = deque(self.finished[org_id])
            made = 0
            while made < quota and queue:
                lot = queue.popleft()
                if lot.mass < 2:
                    continue
                first = max(1, lot.mass * self.rng.randint(300, 700) // 1000)
                queue.extend(run.split(lot, [first, lot.mass - first]))
                made += 1
            left -= made
            if self.out:
                items, self.out = self.out, []
                yield org_id, items
        collectors = self.by_kind["collector"]
        i = 0
        while left > 0:
            o = collectors[i % len(collectors)]
            run = _Run(self, o)
            run.t = max(self.end_t.get(o.id, 0), (DAYS - 1) * _DAY + _OPENS)
            count = min(left, 50)
            for _ in range(count):
                mass = self.rng.randint(500, 5_000) * _KG
                run.create("steel.hms1", mass, "post_consumer", self.elements("steel.hms1", mass))
            self.end_t[o.id] = run.t
            left -= count
            i += 1
            items, self.out = self.out, []
            yield o.id, items


_BASE_TS = int(BASE_AT.timestamp())


class _Run:
    """One organisation's records over the year: its clock, stock and operations."""

    def __init__(self, gen: _Generator, org: SimOrg) -> None:
        self.gen = gen
        self.org = org
        self.actor = org.id
        self.t = -_DAY
        self.d = -1
        self.held: dict[str, dict[str, _Lot]] = {}
        self.certificates = 0
        self.offset = gen.rng.randrange(0, 3 * 3600)

    # clock and records
    def day(self, d: int) -> None:
        start = d * _DAY + _OPENS + self.offset
        if self.t < start:
            self.t = start
        self.d = d

    def emit(self, rtype: str, body: dict[str, Any], parents: dict[str, str]) -> str:
        self.t += _STEP
        return self.gen.emit(self.actor, self.t, rtype, body, parents)

    def calendar(self, on_receive: Any = None) -> Iterator[int]:
        """Every day of the year; the loads arriving that day are received first."""
        inbound = sorted(self.gen.inbound.pop(self.actor, []), key=lambda x: (x[0], x[1]))
        if not inbound:
            return
        i = 0
        for d in range(inbound[0][0], DAYS):
            self.day(d)
            while i < len(inbound) and inbound[i][0] <= d:
                lot = inbound[i][2]
                i += 1
                self.receive(lot)
                if on_receive is not None:
                    on_receive(self, lot)
            yield d

    # stock
    def hold(self, lot: _Lot) -> None:
        self.held.setdefault(lot.material, {})[lot.id] = lot

    def release(self, lot: _Lot) -> None:
        self.held.get(lot.material, {}).pop(lot.id, None)

    def stock(self, material: str, *, graded: bool | None = None) -> list[_Lot]:
        lots = list(self.held.get(material, {}).values())
        if graded is None:
            return lots
        return [x for x in lots if x.graded == graded]

    def all_held(self) -> list[_Lot]:
        return [x for lots in self.held.values() for x in lots.values()]

    def draw(self, material: str, need: int, delivery: Any) -> list[tuple[_Lot, int]]:
        """``need`` g of held ``material``, oldest lots first (a virgin delivery if short)."""
        lots = self.stock(material)
        if sum(x.mass for x in lots) < need:
            mass = max(delivery(), need)
            lots.append(self.create(material, mass, "virgin", self.gen.elements(material, mass)))
        taken: list[tuple[_Lot, int]] = []
        for lot in lots:
            if need <= 0:
                break
            take = min(need, lot.mass)
            taken.append((lot, take))
            need -= take
        return taken

    # operations
    def create(self, material: str, mass: int, origin: str, el: dict[str, int]) -> _Lot:
        lot_id = self.gen.lot_id(self.t)
        body: dict[str, Any] = {
            "lot": lot_id,
            "material": material,
            "mass_g": mass,
            "origin": origin,
        }
        if el:
            body["elements"] = el
        head = self.emit("create", body, {})
        lot = _Lot(lot_id, material, mass, el, head, self.d)
        self.hold(lot)
        return lot

    def create_packs(self, packs: list[tuple[str, int]]) -> _Lot:
        mass = sum(g for _, g in packs)
        el = self.gen.elements("batteries.pack", mass)
        lot_id = self.gen.lot_id(self.t)
        body = {
            "lot": lot_id,
            "material": "batteries.pack",
            "mass_g": mass,
            "origin": "virgin",
            "elements": el,
            "units": [c for c, _ in packs],
        }
        head = self.emit("create", body, {})
        lot = _Lot(lot_id, "batteries.pack", mass, el, head, self.d, packs)
        self.hold(lot)
        return lot

    def transfer(self, lot: _Lot, to: str) -> None:
        body = {"lot": lot.id, "to": to, "mass_g": lot.mass}
        lot.head = self.emit("transfer", body, {lot.id: lot.head})
        self.release(lot)
        gen = self.gen
        gen.shipments += 1
        arrive = self.d + gen.transit_days(self.actor, to)
        gen.inbound.setdefault(to, []).append((arrive, gen.shipments, lot))

    def ship(self, lot: _Lot, kind: str) -> None:
        to = self.gen.buyer(self.org, kind)
        if to is not None and self.d < _SHIP_DAYS:
            self.transfer(lot, to)

    def ship_stock(
        self,
        material: str,
        kind: str,
        *,
        graded: bool | None = None,
        min_kg: int = 0,
        truck_kg: int = 0,
    ) -> None:
        lots = self.stock(material, graded=graded)
        if not lots or sum(x.mass for x in lots) < min_kg * _KG:
            return
        lot = self.merge(lots) if len(lots) > 1 else lots[0]
        loads = [lot]
        if truck_kg and lot.mass > truck_kg * _KG:
            n = -(-lot.mass // (truck_kg * _KG))
            loads = self.split(lot, apportion(lot.mass, [1] * n))
        for load in loads:
            self.ship(load, kind)

    def receive(self, lot: _Lot) -> None:
        family = lot.material.split(".", 1)[0]
        worst = _TRANSIT_LOSS.get(family, 0)
        rng = self.gen.rng
        loss = lot.mass * rng.randint(0, worst) // 10_000 if worst and rng.random() < 0.7 else 0
        weighed = lot.mass - loss
        lot.head = self.emit("receive", {"lot": lot.id, "mass_g": weighed}, {lot.id: lot.head})
        lot.el = _share(lot.el, weighed, lot.mass)
        lot.mass = weighed
        lot.since = self.d
        lot.graded = False
        self.hold(lot)

    def split(self, lot: _Lot, masses: list[int]) -> list[_Lot]:
        parts = [
            _Lot(self.gen.lot_id(self.t), lot.material, m, _share(lot.el, m, lot.mass), "", self.d)
            for m in masses
        ]
        body = {"lot": lot.id, "parts": [{"lot": p.id, "mass_g": p.mass} for p in parts]}
        head = self.emit("split", body, {lot.id: lot.head})
        self.release(lot)
        for p in parts:
            p.head = head
            p.graded = lot.graded
            self.hold(p)
        return parts

    def split_units(self, lot: _Lot, groups: list[list[tuple[str, int]]]) -> list[_Lot]:
        masses = [sum(g for _, g in group) for group in groups]
        parts = [
            _Lot(
                self.gen.lot_id(self.t),
                lot.material,
                m,
                _share(lot.el, m, lot.mass),
                "",
                self.d,
                group,
            )
            for m, group in zip(masses, groups, strict=True)
        ]
        body = {
            "lot": lot.id,
            "parts": [
                {"lot": p.id, "mass_g": p.mass, "units": [c for c, _ in p.units or []]}
                for p in parts
            ],
        }
        head = self.emit("split", body, {lot.id: lot.head})
        self.release(lot)
        lot.units = []
        for p in parts:
            p.head = head
            self.hold(p)
        return parts

    def merge(self, lots: list[_Lot]) -> _Lot:
        into_id = self.gen.lot_id(self.t)
        el: dict[str, int] = {}
        for x in lots:
            for k, v in x.el.items():
                el[k] = el.get(k, 0) + v
        mass = sum(x.mass for x in lots)
        body = {"lots": [x.id for x in lots], "into": into_id, "mass_g": mass}
        head = self.emit("merge", body, {x.id: x.head for x in lots})
        for x in lots:
            self.release(x)
            x.head = head
        into = _Lot(into_id, lots[0].material, mass, el, head, self.d)
        into.graded = all(x.graded for x in lots)
        self.hold(into)
        return into

    def process(
        self,
        process: str,
        lots: list[_Lot],
        plan: list[tuple[str, int, int, dict[str, int]]],
        *,
        graded: bool = False,
        extra: Sequence[tuple[_Lot, int]] = (),
    ) -> list[_Lot]:
        """Transform the whole of ``lots`` (and ``extra``: (lot, grams drawn)) by ``plan``:
        (material, yield per mille lo, hi, element carry per mille of the inputs' content);
        the rest is the process loss."""
        inputs = [(x, x.mass) for x in lots] + list(extra)
        total = sum(m for _, m in inputs)
        if total < 10 * _KG:
            return []
        pool: dict[str, int] = {}
        for x, m in inputs:
            for k, v in _share(x.el, m, x.mass).items():
                pool[k] = pool.get(k, 0) + v
        rng = self.gen.rng
        outputs = []
        for material, lo, hi, carry in plan:
            mass = total * rng.randint(lo, hi) // 1000
            el = _fit({k: pool.get(k, 0) * c // 1000 for k, c in carry.items()}, mass)
            outputs.append((material, mass, el))
        made = self.transform(process, inputs, outputs)
        for x in made:
            x.graded = graded
        return made

    def transform(
        self,
        process: str,
        inputs: list[tuple[_Lot, int]],
        outputs: list[tuple[str, int, dict[str, int]]],
    ) -> list[_Lot]:
        total = sum(m for _, m in inputs)
        made = [
            _Lot(self.gen.lot_id(self.t), material, mass, el, "", self.d)
            for material, mass, el in outputs
            if mass > 0
        ]
        outs = []
        for x in made:
            out: dict[str, Any] = {"lot": x.id, "material": x.material, "mass_g": x.mass}
            if x.el:
                out["elements"] = x.el
            outs.append(out)
        body = {
            "process": process,
            "inputs": [{"lot": lot.id, "mass_g": m} for lot, m in inputs],
            "outputs": outs,
            "loss_g": total - sum(x.mass for x in made),
        }
        head = self.emit("transform", body, {lot.id: lot.head for lot, _ in inputs})
        for lot, m in inputs:
            lot.head = head
            left = lot.mass - m
            lot.el = _share(lot.el, left, lot.mass) if left else {}
            lot.mass = left
            if not left:
                self.release(lot)
        for x in made:
            x.head = head
            x.made = x.mass
            x.made_el = dict(x.el)
            self.hold(x)
        return made

    def status(
        self,
        lot: _Lot,
        status: str,
        note: str | None = None,
        *,
        recode: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {"lot": lot.id, "status": status}
        if note:
            body["note"] = note
        if recode:
            body["recode"] = recode
        lot.head = self.emit("status", body, {lot.id: lot.head})
        lot.status = status

    def dispose(self, lot: _Lot, mass: int, method: str) -> None:
        body = {"lot": lot.id, "mass_g": mass, "method": method}
        lot.head = self.emit("dispose", body, {lot.id: lot.head})
        left = lot.mass - mass
        lot.el = _share(lot.el, left, lot.mass) if left else {}
        lot.mass = left
        if not left:
            self.release(lot)
