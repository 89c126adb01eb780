"""A synthetic regional recovery network, seeded through the normal signed path (``rledger demo``).

:func:`seed_demo` registers a dozen organisations in Guangdong (CN-GD), with
two collectors in Guangxi (CN-GX) and a board mill in Hunan (CN-HN), and
then simulates months of day-by-day trade in all six waste families:

* four collectors weigh in post-consumer lots (HMS, ELV hulks, copper and
  aluminium scrap, OCC, PET and mixed plastics, end-of-life tyres, Li-ion
  batteries), split oversize loads into truckloads and ship them; the
  receiver weighs each load the next day (a transit loss of a few per mille);
* the scrap processor shreds ELV hulks, sorts copper scrap, bales cans and
  merges each grade into shipment lots; shredded steel goes to the steel mill;
* the steel mill melts scrap with virgin pig iron into billets and rolls
  billets into rebar; the board mill pulps OCC and makes testliner with some
  virgin pulp; the PET recycler washes, flakes and pelletises PET and sorts
  mixed plastics (its residue is incinerated or landfilled); the tyre
  recycler granulates tyres into crumb, steel wire (to the steel mill) and
  textile fibre (energy recovery or incineration);
* the battery loop: the automaker places NMC packs (each with its GB/T
  34014-2017 code, made of virgin material) on the market; the packs go into
  use; every fortnight a lot of fleet packs is retired (it becomes
  post-consumer waste) and taken back to the battery recycler, which records
  it as collected. The second lot taken back goes to a second-life storage
  operator, which codes each pack anew and keeps the original code (GB/T
  34014 §4.2); the recycler dismantles the others into modules, makes black
  mass and, once a month, recovers cobalt sulfate, nickel sulfate, lithium
  carbonate and manganese sulfate by hydrometallurgy. It sells the salts to a
  cathode maker, which synthesises NMC cathode material from them and from
  virgin salts, so the cathode lot has a recovered share of each element that
  the ledger computes (Co about 20 %, Ni about 9 %, Li about 4.5 %: the Co and
  Ni shares meet the 2031 targets of Reg. (EU) 2023/1542 Art. 8, Li does not);
* once, a collector enters a weighbridge ticket twice and the regulator voids
  the duplicate;
* extended producer responsibility (:meth:`_Demo._epr`, on the last day, for the
  period that day falls in): two producers that sell packaged goods into the EU
  declare the plastic and paper packaging they placed on the market under
  ``eu.packaging``; the PET recycler certifies its pellets and the board mill
  its recycled pulp (the eligible outputs of ledger/data/epr_schemes.toml),
  transfers the certificates to the producers, and the producers retire them.
  The drinks maker retires more than it owes (compliant); the electronics maker
  retires less and holds one certificate it has not retired (short). The
  automaker declares the cobalt in its packs under ``eu.batteries.ev`` (no
  target before 2028), so its report carries its collection rate from its
  battery codes. Then the PET recycler tries to certify pellets it already
  certified, past their mass: the ledger refuses it
  (``certificate.exceeds_output``) and the refusal is logged. The PET recycler's
  registered capacity (40 t of pellets a year, its first line's permit) is below
  what it certifies, so the regulator's EPR flags show it (capacity).

Everything is deterministic in ``seed``: keys are derived from it, record
ids are ULIDs built from each record's time and a counter, and ``at`` times
come from the simulated calendar, so two runs on fresh ledgers produce
byte-identical records. The heads of lots are kept client-side (a record's
hash is the SHA-256 of its canonical bytes) and records go to
:meth:`ledger.store.Store.append` in atomic batches of :data:`BATCH`.

The demo mirrors each lot's element content with the ledger's own arithmetic
(:mod:`ledger.content`), so what it declares on a transform's outputs never
exceeds what the inputs gave (``element.exceeds_inputs``). It never declares
recovered shares: the ledger computes them from the origins and the flows.
"""

from __future__ import annotations

import calendar
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ulid import ULID

from ledger import content
from ledger.apportion import apportion
from ledger.epr_schemes import Category, default_schemes
from ledger.errors import RecordRefused
from ledger.materials import default_taxonomy
from ledger.signing import Ed25519PrivateKey, record_hash
from ledger.store import Appended, Signed, Store
from producers.events import Signer

__all__ = ["BATCH", "FAMILIES", "DemoSummary", "demo_key", "seed_demo"]

BATCH = 200
FAMILIES = ("steel", "nonferrous", "paper", "plastics", "tyres", "batteries")

_DAY_OPENS = time(0, 30)  # 08:30 China Standard Time
_STEP = timedelta(seconds=90)  # between two records of one day
_KG = 1000


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`seed_demo` wrote.

    ``records``: records submitted (every one appended); ``orgs``: the
    organisations it registered; ``lots``: lots it created (a voided lot
    counts: it stays in the ledger with status ``void``); ``by_family``:
    grams collected per family, i.e. post-consumer lots weighed in by
    collectors plus end-of-life battery packs handed to the recycler.

    The battery loop: ``cathode_lot`` is the first NMC cathode lot made from
    recovered salts; ``traced_battery`` the GB/T 34014 code of a pack whose
    lot was dismantled and whose material reached that cathode lot;
    ``second_life_lot`` the lot of packs that went to second life (each pack
    with its original and its new code). Each is ``None`` if the period was
    too short for it.

    EPR: ``epr_period`` the period of :data:`PACKAGING` the producers declared
    and retired certificates for; ``compliant_producer`` and ``short_producer``;
    ``certificates`` the ids issued; ``refused_certificate_record`` the id of
    the record of the double-counting attempt the ledger refused (it is in the
    refusals log, not in the ledger). ``None`` (empty) when the period made no
    pellets or no recycled pulp to certify.
    """

    records: int
    orgs: list[str]
    lots: int
    by_family: dict[str, int]
    cathode_lot: str | None = None
    traced_battery: str | None = None
    second_life_lot: str | None = None
    epr_period: str | None = None
    compliant_producer: str | None = None
    short_producer: str | None = None
    certificates: tuple[str, ...] = ()
    refused_certificate_record: str | None = None


def demo_key(seed: int, org: str) -> Ed25519PrivateKey:
    """The demo's private key of ``org`` for ``seed``."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}:{org}".encode()).digest())


def seed_demo(
    store: Store, operator: Signer, *, months: int = 6, seed: int = 2026, start: str = "2026-05-01"
) -> DemoSummary:
    """Register the demo network and record ``months`` of flows from ``start`` (a date, UTC).

    ``operator`` signs the registrations; every other record is signed by its
    organisation's key (see :func:`demo_key`). Raises :class:`ValueError` if
    the period does not end by today, and :class:`RuntimeError` naming the
    record and the refusal if the ledger refuses any record (the batch it
    was in is not written; earlier batches are).
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    first = date.fromisoformat(start)
    end = _add_months(first, months)
    if datetime.combine(end, time(), UTC) > datetime.now(UTC):
        raise ValueError(
            f"a {months}-month demo from {first} runs until {end}, which is in the future; "
            "records may not be dated ahead of the ledger's clock: choose an earlier start "
            "or fewer months"
        )
    demo = _Demo(store, operator, seed, first, end)
    demo.run()
    return demo.summary()


# --- the network ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Org:
    id: str
    name: str
    roles: tuple[str, ...]
    region: str
    capacity: tuple[tuple[str, int], ...] = ()  # permitted (material, grams a year)


GD_COLLECTOR_1 = "org:gd-collector-1"
GD_COLLECTOR_2 = "org:gd-collector-2"
GX_COLLECTOR_1 = "org:gx-collector-1"
GX_COLLECTOR_2 = "org:gx-collector-2"
PROCESSOR = "org:gd-scrap-processor"
STEEL_MILL = "org:baosteel-demo"
PAPER_MILL = "org:hn-board-mill"
PLASTICS = "org:gd-pet-recycler"
TYRES = "org:gd-tyre-recycler"
BATTERIES = "org:gd-battery-recycler"
AUTOMAKER = "org:gz-automaker-demo"
REGULATOR = "org:gd-eco-regulator"
STORAGE = "org:gd-energy-storage"
CATHODE = "org:gd-cathode-works"
DRINKS = "org:gd-drinks-demo"
ELECTRONICS = "org:sz-electronics-demo"
PACKAGING = "eu.packaging"  # the EPR scheme the packaging producers answer to
BATTERY_SCHEME = "eu.batteries.ev"
PET_PERMIT_G = 40_000 * _KG  # the PET recycler's registered capacity of pellets, g a year

_ORGS = (
    _Org(GD_COLLECTOR_1, "Guangzhou Baiyun Renewable Resources (demo)", ("collector",), "CN-GD"),
    _Org(GD_COLLECTOR_2, "Shenzhen Longgang Recycling Station (demo)", ("collector",), "CN-GD"),
    _Org(GX_COLLECTOR_1, "Nanning Scrap Collection (demo)", ("collector",), "CN-GX"),
    _Org(GX_COLLECTOR_2, "Liuzhou End-of-Life Vehicle Recovery (demo)", ("collector",), "CN-GX"),
    _Org(PROCESSOR, "Foshan Metal Scrap Processing (demo)", ("processor",), "CN-GD"),
    _Org(STEEL_MILL, "Zhanjiang Steel Works (demo)", ("manufacturer", "recycler"), "CN-GD"),
    _Org(PAPER_MILL, "Yueyang Board Mill (demo)", ("recycler", "manufacturer"), "CN-HN"),
    # Its permit, registered for its first line, allows 40 t of pellets a year: what it
    # certifies now is more, and the regulator's EPR flags say so (capacity).
    _Org(
        PLASTICS,
        "Dongguan PET Recycling (demo)",
        ("recycler",),
        "CN-GD",
        (("plastics.rpet_pellet", PET_PERMIT_G),),
    ),
    _Org(TYRES, "Qingyuan Tyre Recycling (demo)", ("recycler",), "CN-GD"),
    _Org(BATTERIES, "Zhaoqing Battery Recycling (demo)", ("recycler",), "CN-GD"),
    _Org(AUTOMAKER, "Guangzhou Motors (demo)", ("producer", "manufacturer"), "CN-GD"),
    _Org(REGULATOR, "Guangdong Ecology and Environment Dept. (demo)", ("regulator",), "CN-GD"),
    # A repurposer places the second-life battery on the market as a new product.
    _Org(STORAGE, "Huizhou Second-Life Energy Storage (demo)", ("manufacturer",), "CN-GD"),
    _Org(CATHODE, "Jiangmen Cathode Materials (demo)", ("manufacturer",), "CN-GD"),
    # Producers of packaged goods sold into the EU: EPR for their packaging (eu.packaging).
    _Org(DRINKS, "Guangzhou Drinks Co. (demo)", ("producer",), "CN-GD"),
    _Org(ELECTRONICS, "Shenzhen Home Electronics (demo)", ("producer", "manufacturer"), "CN-GD"),
)

# What each collector weighs in: (material, relative frequency).
_PORTFOLIO: dict[str, tuple[tuple[str, int], ...]] = {
    GD_COLLECTOR_1: (
        ("steel.hms1", 4),
        ("steel.hms2", 2),
        ("nonferrous.cu_no2", 1),
        ("nonferrous.al_ubc", 1),
        ("paper.occ", 3),
    ),
    GD_COLLECTOR_2: (
        ("paper.occ", 4),
        ("plastics.pet", 3),
        ("plastics.mixed", 1),
        ("nonferrous.al_ubc", 1),
        ("batteries.li_ion.nmc", 1),
    ),
    GX_COLLECTOR_1: (
        ("tyres.elt", 3),
        ("steel.hms1", 3),
        ("paper.occ", 2),
        ("plastics.pet", 1),
    ),
    GX_COLLECTOR_2: (
        ("steel.hms2", 3),
        ("tyres.elt", 2),
        ("batteries.li_ion.nmc", 1),
        ("nonferrous.cu_no2", 1),
        ("nonferrous.al_ubc", 1),
    ),
}
# A collected lot's mass in kg, (min, max).
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
_DESTINATION = {
    "steel.hms1": STEEL_MILL,
    "steel.hms2": PROCESSOR,
    "nonferrous.cu_no2": PROCESSOR,
    "nonferrous.al_ubc": PROCESSOR,
    "paper.occ": PAPER_MILL,
    "plastics.pet": PLASTICS,
    "plastics.mixed": PLASTICS,
    "tyres.elt": TYRES,
    "batteries.li_ion.nmc": BATTERIES,
}
# The largest transit loss (weighbridge difference, moisture), per mille of the declared mass.
_TRANSIT_LOSS_PERMILLE = {
    "steel": 5,
    "nonferrous": 3,
    "paper": 25,
    "plastics": 10,
    "tyres": 8,
    "batteries": 0,
    "elements": 0,
}
_PACK_KG = (420, 520)

# GB/T 34014-2017 codes (ledger/battery_codes.py): maker (3), product type, battery type
# (E: ternary, NCM), specification (2), traceability code (7), production year, month and day
# (1 each), serial (7). The maker codes are the demo's own; the standard's year table could
# not be read, so the demo writes the year as a VIN does (ISO 3779: 2010 = A … 2030 = Y,
# then 1-9 for 2031-2039; no I, O, Q, U, Z): all of them year codes the parser accepts.
_AUTOMAKER_CODE = "GZM"
_REPURPOSER_CODE = "HZS"
_VIN_YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"
_MONTH_CODES = "123456789ABC"
_DAY_CODES = "123456789ABCDEFGHJKLMNPRSTUVWXY"

# NMC622 cathode active material, LiNi0.6Mn0.2Co0.2O2 (IUPAC atomic weights: Li 6.94,
# Ni 58.693, Mn 54.938, Co 58.933, O 15.999; M = 96.93 g/mol), in g/t.
_NMC622_G_PER_T = {"Li": 71_600, "Ni": 363_300, "Mn": 113_400, "Co": 121_600}
# The salt each element of the cathode is made from.
_SALTS = {
    "Co": "elements.cobalt_sulfate",
    "Ni": "elements.nickel_sulfate",
    "Li": "elements.lithium_carbonate",
    "Mn": "elements.manganese_sulfate",
}
# The cathode maker's recipe: the share of each element it takes from recovered salts,
# per mille (the rest is virgin). Co and Ni meet the 2031 Art. 8 minimums (Co 16 %, Ni 6 %),
# Li (6 %) does not: lithium recovery lags.
_RECOVERED_PERMILLE = {"Co": 200, "Ni": 90, "Li": 45, "Mn": 100}


def _add_months(d: date, months: int) -> date:
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _family(material: str) -> str:
    return material.split(".", 1)[0]


def gbt_code(maker: str, trace: str, made: date, serial: int) -> str:
    """A 24-character GB/T 34014-2017 code of an NMC pack (see the codes' table above)."""
    assert len(maker) == 3 and len(trace) == 7 and 0 < serial < 10_000_000
    return (
        f"{maker}PEN6{trace}{_VIN_YEARS[(made.year - 2010) % 30]}"
        f"{_MONTH_CODES[made.month - 1]}{_DAY_CODES[made.day - 1]}{serial:07d}"
    )


def _part(lot: _Lot) -> content.Part:
    return content.Part(lot.elements, lot.recovered)


def _divided(lot: _Lot, drawn_g: int) -> tuple[content.Part, content.Part]:
    """(drawn, left) when ``drawn_g`` of ``lot`` goes into a transform, as the ledger divides it."""
    left_g = lot.remaining_g - drawn_g
    drawn, left = content.divide(lot.remaining_g, lot.elements, lot.recovered, [drawn_g, left_g])
    return drawn, left


def _fit(elements: dict[str, int], mass_g: int) -> dict[str, int]:
    """Drop empty entries; scale down so the elements never add up to more than the mass."""
    elements = {k: v for k, v in elements.items() if v > 0}
    total = sum(elements.values())
    if total > mass_g:
        elements = {k: v * mass_g // total for k, v in elements.items() if v * mass_g // total}
    return elements


# --- the simulation ---------------------------------------------------------------


@dataclass(eq=False)
class _Lot:
    """The client's picture of a lot: enough to write valid records about it.

    ``elements`` and ``recovered`` are the ledger's own (:mod:`ledger.content`) for the
    remaining mass, kept in step by the same arithmetic.
    """

    id: str
    material: str
    custodian: str
    remaining_g: int
    elements: dict[str, int]
    recovered: dict[str, int] = field(default_factory=dict)
    units: tuple[str, ...] = ()
    status: str = "active"
    to: str | None = None  # in transit to
    since: date | None = None  # the day it got its current status


@dataclass
class _Output:
    material: str
    mass_g: int
    elements: dict[str, int] = field(default_factory=dict)


class _Demo:
    def __init__(self, store: Store, operator: Signer, seed: int, first: date, end: date) -> None:
        self.store = store
        self.operator = operator
        self.seed = seed
        self.rng = random.Random(seed)
        self.first = first
        self.end = end
        self.day = first
        self.tick = 0
        self.taxonomy = default_taxonomy()
        self.signers = {o.id: Signer(o.id, demo_key(seed, o.id)) for o in _ORGS}
        self.signers[operator.actor] = operator
        self.heads: dict[str, str] = {}
        self.lots: dict[str, _Lot] = {}
        # custodian -> material -> lot ids held (a dict as an ordered set)
        self.held: dict[str, dict[str, dict[str, None]]] = {}
        self.graded: set[str] = set()  # lots already sorted or baled: not fed back in
        self.in_transit: list[_Lot] = []
        self.pending: list[tuple[Signed, str, str, str]] = []  # record, hash, type, actor
        self.submitted = 0
        self.counter = 0
        self.lot_numbers: dict[str, int] = {}
        self.pack_serial = 0
        self.second_life_serial = 0
        self.collected = dict.fromkeys(FAMILIES, 0)
        self.taken_back = 0  # lots of packs the recycler has received
        self.parents: dict[str, tuple[str, ...]] = {}  # lot -> the lots it was made from
        self.cathode_lot: str | None = None
        self.second_life_lot: str | None = None
        # EPR: (category, lot, recovered grams, period) of each output eligible under
        # PACKAGING, as made; the automaker's packs (period, units, Co grams).
        self.eligible: list[tuple[str, str, int, str]] = []
        self.packs_placed: list[tuple[str, int, int]] = []
        self.epr_period: str | None = None
        self.certificates: list[str] = []
        self.refused_certificate_record: str | None = None

    # --- records ---------------------------------------------------------------

    def _today(self) -> str:
        return f"{self.day.isoformat()}T12:00:00Z"

    def _at(self) -> datetime:
        when = datetime.combine(self.day, _DAY_OPENS, UTC) + self.tick * _STEP
        self.tick += 1
        return when

    def _record_id(self, when: datetime) -> str:
        self.counter += 1
        ms = int(when.timestamp() * 1000)
        tail = hashlib.sha256(f"{self.seed}:record:{self.counter}".encode()).digest()[:10]
        return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail))

    def _emit(
        self,
        actor: str,
        rtype: str,
        body: dict[str, Any],
        spends: Sequence[str] = (),
        creates: Sequence[str] = (),
    ) -> str:
        """Sign a record; it becomes the head of every lot it ``spends`` or ``creates``."""
        when = self._at()
        parents = {lot: self.heads[lot] for lot in spends}
        signed = self.signers[actor].record(
            rtype,
            body,
            parents,
            record_id=self._record_id(when),
            at=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        text = signed.envelope
        digest = record_hash(text.encode("utf-8") if isinstance(text, str) else text)
        for lot in (*spends, *creates):
            self.heads[lot] = digest
        self.pending.append((signed, digest, rtype, actor))
        if len(self.pending) >= BATCH:
            self._flush()
        return digest

    def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        results = self.store.append([signed for signed, *_ in batch], atomic=True)
        refusals = [
            (item, r)
            for item, r in zip(batch, results, strict=True)
            if isinstance(r, RecordRefused) and r.code != "batch.aborted"
        ]
        for (_, digest, rtype, actor), result in zip(batch, results, strict=True):
            if isinstance(result, Appended) and result.hash != digest:
                raise RuntimeError(
                    f"the ledger hashed the demo's {rtype} record by {actor} as {result.hash}, "
                    f"the demo as {digest}: its lot heads would be wrong"
                )
        if refusals or not all(isinstance(r, Appended) for r in results):
            if refusals:
                (_, _, rtype, actor), refusal = refusals[0]
                why = f"its {rtype} record signed by {actor} was refused: {refusal}"
            else:
                why = "the batch was aborted"
            raise RuntimeError(
                f"the demo could not seed the ledger: {why} "
                f"(the batch of {len(batch)} records after the first {self.submitted} "
                "was not written)"
            )
        self.submitted += len(batch)

    def _new_lot_id(self, org: str) -> str:
        n = self.lot_numbers.get(org, 0) + 1
        self.lot_numbers[org] = n
        return f"lot:{org.removeprefix('org:')}:{n:05d}"

    def _hold(self, lot: _Lot) -> None:
        self.lots[lot.id] = lot
        self.held.setdefault(lot.custodian, {}).setdefault(lot.material, {})[lot.id] = None

    def _release(self, lot: _Lot) -> None:
        self.held.get(lot.custodian, {}).get(lot.material, {}).pop(lot.id, None)

    def stock(self, org: str, material: str, *, graded: bool | None = None) -> list[_Lot]:
        """Lots of ``material`` that ``org`` holds, oldest first."""
        lots = [self.lots[i] for i in self.held.get(org, {}).get(material, {})]
        if graded is None:
            return lots
        return [lot for lot in lots if (lot.id in self.graded) == graded]

    def typical(self, material: str, mass_g: int) -> dict[str, int]:
        """Element content at the middle of the taxonomy's typical range."""
        entry = self.taxonomy.material(material)
        if entry is None:
            raise ValueError(f"{material} is not in the taxonomy")
        return _fit(
            {k: (lo + hi) // 2 * mass_g // 1_000_000 for k, (lo, hi) in entry.elements.items()},
            mass_g,
        )

    def create(
        self,
        org: str,
        material: str,
        mass_g: int,
        origin: str,
        *,
        elements: dict[str, int] | None = None,
        units: Sequence[str] = (),
    ) -> _Lot:
        lot = _Lot(self._new_lot_id(org), material, org, mass_g, {}, units=tuple(units))
        lot.since = self.day
        lot.elements = (
            self.typical(material, mass_g) if elements is None else _fit(elements, mass_g)
        )
        lot.recovered = content.at_origin(origin, mass_g, lot.elements)
        body: dict[str, Any] = {
            "lot": lot.id,
            "material": material,
            "mass_g": mass_g,
            "origin": origin,
        }
        if lot.elements:
            body["elements"] = lot.elements
        if units:
            body["units"] = list(units)
        self._emit(org, "create", body, creates=[lot.id])
        self._hold(lot)
        return lot

    def transfer(self, lot: _Lot, to: str) -> None:
        body = {"lot": lot.id, "to": to, "mass_g": lot.remaining_g}
        self._emit(lot.custodian, "transfer", body, spends=[lot.id])
        self._release(lot)
        lot.to = to
        self.in_transit.append(lot)

    def receive(self, lot: _Lot) -> None:
        assert lot.to is not None
        declared = lot.remaining_g
        worst = declared * _TRANSIT_LOSS_PERMILLE[_family(lot.material)] // 1000
        loss = self.rng.randint(0, worst) if worst and self.rng.random() < 0.7 else 0
        weighed = declared - loss
        self._emit(lot.to, "receive", {"lot": lot.id, "mass_g": weighed}, spends=[lot.id])
        kept = content.divide(declared, lot.elements, lot.recovered, [weighed, loss])[0]
        lot.elements, lot.recovered = kept.elements, kept.recovered
        lot.remaining_g, lot.custodian, lot.to, lot.since = weighed, lot.to, None, self.day
        self._hold(lot)

    def split(self, lot: _Lot, masses: Sequence[int]) -> list[_Lot]:
        assert sum(masses) == lot.remaining_g and not lot.units
        shares = content.divide(lot.remaining_g, lot.elements, lot.recovered, masses)
        parts = [
            _Lot(
                self._new_lot_id(lot.custodian),
                lot.material,
                lot.custodian,
                m,
                share.elements,
                share.recovered,
                since=self.day,
            )
            for m, share in zip(masses, shares, strict=True)
        ]
        body = {"lot": lot.id, "parts": [{"lot": p.id, "mass_g": p.remaining_g} for p in parts]}
        self._emit(lot.custodian, "split", body, spends=[lot.id], creates=[p.id for p in parts])
        for part in parts:
            self.parents[part.id] = (lot.id,)
            if lot.id in self.graded:
                self.graded.add(part.id)
            self._hold(part)
        self._consumed(lot)
        return parts

    def merge(self, lots: Sequence[_Lot]) -> _Lot:
        org = lots[0].custodian
        merged = content.add([_part(x) for x in lots])
        into = _Lot(
            self._new_lot_id(org),
            lots[0].material,
            org,
            sum(x.remaining_g for x in lots),
            merged.elements,
            merged.recovered,
            tuple(u for x in lots for u in x.units),
            since=self.day,
        )
        self.parents[into.id] = tuple(x.id for x in lots)
        body = {"lots": [x.id for x in lots], "into": into.id}
        self._emit(org, "merge", body, spends=[x.id for x in lots], creates=[into.id])
        if all(x.id in self.graded for x in lots):
            self.graded.add(into.id)
        for x in lots:
            self._consumed(x)
        self._hold(into)
        return into

    def transform(
        self, process: str, inputs: Sequence[tuple[_Lot, int]], outputs: Sequence[_Output]
    ) -> list[_Lot]:
        org = inputs[0][0].custodian
        outputs = [o for o in outputs if o.mass_g > 0]
        total = sum(m for _, m in inputs)
        loss = total - sum(o.mass_g for o in outputs)
        assert loss >= 0, f"{process}: outputs exceed inputs"
        declared = [_fit(o.elements, o.mass_g) for o in outputs]
        # What the ledger will compute (ledger/rules.py _transform, ledger/content.py).
        divided = [_divided(lot, m) for lot, m in inputs]
        shares = content.transform(
            total,
            content.add([drawn for drawn, _ in divided]),
            [o.mass_g for o in outputs],
            declared,
            loss,
        )
        if isinstance(shares, content.Shortfall):
            raise RuntimeError(
                f"the demo's {process} declares {shares.declared_g} g of {shares.symbol} but its "
                f"inputs hold {shares.available_g} g (a bug in the demo)"
            )
        made = [
            _Lot(
                self._new_lot_id(org),
                o.material,
                org,
                o.mass_g,
                share.elements,
                share.recovered,
                since=self.day,
            )
            for o, share in zip(outputs, shares, strict=True)
        ]
        body = {
            "process": process,
            "inputs": [{"lot": lot.id, "mass_g": m} for lot, m in inputs],
            "outputs": [
                {"lot": x.id, "material": x.material, "mass_g": x.remaining_g}
                | ({"elements": elements} if elements else {})
                for x, elements in zip(made, declared, strict=True)
            ],
            "loss_g": loss,
        }
        self._emit(
            org,
            "transform",
            body,
            spends=[lot.id for lot, _ in inputs],
            creates=[x.id for x in made],
        )
        for (lot, m), (_, left) in zip(inputs, divided, strict=True):
            lot.elements, lot.recovered = left.elements, left.recovered
            lot.remaining_g -= m
            if not lot.remaining_g:
                self._consumed(lot)
        for x in made:
            self.parents[x.id] = tuple(lot.id for lot, _ in inputs)
            self._hold(x)
        packaging = default_schemes()[PACKAGING]
        for x in made:
            for code, category in packaging.categories.items():
                if category.eligible_process(process) and category.eligible_output(x.material):
                    period = packaging.period_of(self._today())
                    self.eligible.append((code, x.id, content.recovered_g(x.recovered), period))
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
        self._emit(lot.custodian, "status", body, spends=[lot.id])
        lot.status, lot.since = status, self.day
        if status in content.END_OF_LIFE:  # the product is post-consumer waste now
            lot.recovered = content.end_of_life(lot.remaining_g, lot.elements)

    def dispose(self, lot: _Lot, method: str) -> None:
        body = {"lot": lot.id, "mass_g": lot.remaining_g, "method": method}
        self._emit(lot.custodian, "dispose", body, spends=[lot.id])
        self._consumed(lot)

    def _consumed(self, lot: _Lot) -> None:
        self._release(lot)
        lot.remaining_g, lot.elements, lot.recovered, lot.status = 0, {}, {}, "consumed"

    # --- helpers for processing -------------------------------------------------

    def pool(self, inputs: Sequence[tuple[_Lot, int]]) -> dict[str, int]:
        """The element content of what ``inputs`` spend, as the ledger divides it."""
        return content.add([_divided(lot, m)[0] for lot, m in inputs]).elements

    def draw(self, org: str, material: str, need_g: int) -> list[tuple[_Lot, int]]:
        """Up to ``need_g`` of ``org``'s stock of ``material``, oldest lots first."""
        taken: list[tuple[_Lot, int]] = []
        for lot in self.stock(org, material):
            if need_g <= 0:
                break
            take = min(need_g, lot.remaining_g)
            taken.append((lot, take))
            need_g -= take
        return taken

    def share(self, mass_g: int, lo: int, hi: int) -> int:
        """A part of ``mass_g`` between ``lo`` and ``hi`` per mille."""
        return mass_g * self.rng.randint(lo, hi) // 1000

    def run_process(
        self,
        process: str,
        inputs: Sequence[tuple[_Lot, int]],
        plan: Sequence[tuple[str, int, int, dict[str, int]]],
    ) -> list[_Lot]:
        """Transform ``inputs`` by ``plan``: (material, yield per mille lo, hi, element carry
        per mille of the inputs' content); the rest is the process loss."""
        total = sum(m for _, m in inputs)
        pool = self.pool(inputs)
        outputs = []
        for material, lo, hi, carry in plan:
            mass = self.share(total, lo, hi)
            elements = {k: pool.get(k, 0) * c // 1000 for k, c in carry.items()}
            outputs.append(_Output(material, mass, elements))
        return self.transform(process, inputs, outputs)

    # --- the calendar ------------------------------------------------------------

    def run(self) -> None:
        self._admit_all()
        self._opening_stock()
        day = self.first
        while day < self.end:
            if day != self.day:
                self.day, self.tick = day, 0
            self._deliveries()
            if day.day == 1 and day != self.first:
                self._month_start()
            self._collect()
            self._processor()
            self._steel_mill()
            self._board_mill()
            self._plastics()
            self._tyres()
            self._automaker()
            self._battery_recycler()
            self._cathode_maker()
            if (day - self.first).days == 9:
                self._duplicate_and_void()
            day += timedelta(days=1)
        self._epr()
        self._flush()

    def _admit_all(self) -> None:
        """``org.register`` + ``key.add`` for each organisation (as producers.bootstrap.admit
        writes them, with the demo's own record ids and times)."""
        for org in _ORGS:
            public = self.signers[org.id].public_key
            body: dict[str, Any] = {
                "org": org.id,
                "name": org.name,
                "roles": list(org.roles),
                "region": org.region,
            }
            if org.capacity:
                body["capacity"] = dict(org.capacity)
            self._emit(self.operator.actor, "org.register", body)
            self._emit(self.operator.actor, "key.add", {"org": org.id, "public_key": public})

    def _opening_stock(self) -> None:
        # Fleet packs in service since 2019-2021, and the mills' virgin stock.
        for i in range(8):
            made = date(2019 + i % 3, self.rng.randint(1, 12), self.rng.randint(1, 28))
            lot = self._packs(self.rng.randint(3, 6), made=made)
            self.status(lot, "placed_on_market", "fleet packs sold to the Guangzhou taxi fleet")
            self.status(lot, "in_use")
        self._month_start()

    def _month_start(self) -> None:
        # The mills' monthly deliveries of virgin material.
        self.create(STEEL_MILL, "steel.pig_iron", self.rng.randint(150, 250) * 1000 * _KG, "virgin")
        self.create(
            PAPER_MILL, "paper.pulp_virgin", self.rng.randint(25, 45) * 1000 * _KG, "virgin"
        )
        for lot in list(self.stock(AUTOMAKER, "batteries.pack")):
            if lot.status == "placed_on_market":
                self.status(lot, "in_use")
        for _ in range(2):
            made = self.day - timedelta(days=self.rng.randint(5, 40))
            lot = self._packs(self.rng.randint(4, 8), made=made)
            self.status(lot, "placed_on_market")
        # The processor merges each graded non-ferrous stock into one shipment lot.
        for material in (
            "nonferrous.al_ubc",
            "nonferrous.al_cast",
            "nonferrous.cu_bright",
            "nonferrous.brass",
            "nonferrous.cu_no2",
        ):
            lots = self.stock(PROCESSOR, material, graded=True)
            if len(lots) >= 2:
                self.merge(lots)
        pp = self.stock(PLASTICS, "plastics.pp")
        if len(pp) >= 2:
            self.merge(pp)
        # The tyre recycler ships its steel wire to the mill and sends fibre to energy recovery.
        wire = self.stock(TYRES, "tyres.steel_wire")
        if wire:
            self._ship(self.merge(wire) if len(wire) > 1 else wire[0], STEEL_MILL)
        fibre = self.stock(TYRES, "tyres.textile_fibre")
        if fibre:
            lot = self.merge(fibre) if len(fibre) > 1 else fibre[0]
            self.dispose(lot, "energy_recovery" if self.day.month % 2 else "incineration")
        residue = self.stock(PLASTICS, "plastics.mixed", graded=True)
        if residue:
            lot = self.merge(residue) if len(residue) > 1 else residue[0]
            self.dispose(lot, "incineration" if self.day.month % 2 else "landfill")

    def _packs(self, count: int, *, made: date) -> _Lot:
        """A lot of ``count`` new packs made on ``made``, of virgin material, each with its code.

        The serial runs on across the demo, so no two packs share a code (the ledger refuses
        a battery registered twice: ``battery_code.duplicate``).
        """
        codes, mass = [], 0
        trace = f"L{self.seed % 1_000_000:06d}"
        for _ in range(count):
            self.pack_serial += 1
            codes.append(gbt_code(_AUTOMAKER_CODE, trace, made, self.pack_serial))
            mass += self.rng.randint(*_PACK_KG) * _KG
        lot = self.create(AUTOMAKER, "batteries.pack", mass, "virgin", units=codes)
        period = default_schemes()[BATTERY_SCHEME].period_of(self._today())
        self.packs_placed.append((period, len(codes), lot.elements.get("Co", 0)))
        return lot

    def _deliveries(self) -> None:
        arriving = [
            lot for lot in self.in_transit if lot.since is not None and lot.since < self.day
        ]
        self.in_transit = [lot for lot in self.in_transit if lot not in arriving]
        for lot in arriving:
            self.receive(lot)
            if lot.material != "batteries.pack":
                continue
            if lot.custodian == BATTERIES:
                self.status(lot, "collected", "end-of-life packs from the automaker's take-back")
                self.taken_back += 1
                if self.taken_back == 2:
                    # The recycler's health check finds these packs fit for stationary storage.
                    self._ship(lot, STORAGE)
            elif lot.custodian == STORAGE:
                self._second_life(lot)

    def _second_life(self, lot: _Lot) -> None:
        """GB/T 34014-2017 §4.2: each repurposed pack gets a new code and keeps its original."""
        trace = f"R{self.seed % 1_000_000:06d}"
        recode = {}
        for unit in lot.units:
            self.second_life_serial += 1
            recode[unit] = gbt_code(_REPURPOSER_CODE, trace, self.day, self.second_life_serial)
        self.status(
            lot, "second_life", "repurposed as stationary storage at the Huadu depot", recode=recode
        )
        self.second_life_lot = self.second_life_lot or lot.id

    def _ship(self, lot: _Lot, to: str) -> None:
        lot.since = self.day
        self.transfer(lot, to)

    # --- collectors -----------------------------------------------------------------

    def _collect(self) -> None:
        if self.day.weekday() == 6:  # Sunday
            return
        for org, portfolio in _PORTFOLIO.items():
            materials = [m for m, _ in portfolio]
            weights = [w for _, w in portfolio]
            for _ in range(self.rng.choices((1, 2, 3), (5, 4, 1))[0]):
                material = self.rng.choices(materials, weights)[0]
                lo, hi = _LOT_KG[material]
                lot = self.create(org, material, self.rng.randint(lo, hi) * _KG, "post_consumer")
                self.collected[_family(material)] += lot.remaining_g
                if material == "plastics.mixed" and self.rng.random() < 0.08:
                    self.dispose(lot, "landfill")  # too contaminated to sort
                    continue
                truck = _TRUCK_KG.get(_family(material))
                loads = [lot]
                if truck and lot.remaining_g > truck * _KG:
                    n = -(-lot.remaining_g // (truck * _KG))
                    loads = self.split(lot, apportion(lot.remaining_g, [1] * n))
                for load in loads:
                    self._ship(load, _DESTINATION[material])

    # --- the processors and mills -------------------------------------------------------

    def _processor(self) -> None:
        wd = self.day.weekday()
        hulks = self.stock(PROCESSOR, "steel.hms2")
        if wd in (1, 4) and hulks:
            self.run_process(
                "shredding",
                [(x, x.remaining_g) for x in hulks],
                [
                    ("steel.shredded", 700, 760, {"Fe": 980, "Cu": 300}),
                    ("nonferrous.al_cast", 40, 60, {}),
                    ("nonferrous.cu_no2", 8, 15, {"Cu": 500}),
                ],
            )
        copper = self.stock(PROCESSOR, "nonferrous.cu_no2", graded=False)
        if wd == 2 and copper:
            made = self.run_process(
                "sorting",
                [(x, x.remaining_g) for x in copper],
                [
                    ("nonferrous.cu_bright", 250, 350, {"Cu": 330}),
                    ("nonferrous.brass", 80, 120, {"Cu": 60}),
                    ("nonferrous.cu_no2", 450, 500, {"Cu": 590}),
                ],
            )
            self.graded.update(x.id for x in made)
        cans = self.stock(PROCESSOR, "nonferrous.al_ubc", graded=False)
        if wd == 5 and cans:
            made = self.run_process(
                "baling",
                [(x, x.remaining_g) for x in cans],
                [("nonferrous.al_ubc", 993, 998, {"Al": 995, "Mn": 995})],
            )
            self.graded.update(x.id for x in made)
        for x in self.stock(PROCESSOR, "nonferrous.al_cast"):
            self.graded.add(x.id)
        if wd == 3:
            for x in self.stock(PROCESSOR, "steel.shredded"):
                self._ship(x, STEEL_MILL)

    def _steel_mill(self) -> None:
        wd = self.day.weekday()
        if wd in (0, 2, 4):
            scrap = [
                *self.stock(STEEL_MILL, "steel.hms1"),
                *self.stock(STEEL_MILL, "steel.shredded"),
                *self.stock(STEEL_MILL, "tyres.steel_wire"),
            ]
            total = sum(x.remaining_g for x in scrap)
            if total >= 40_000 * _KG:
                inputs = [(x, x.remaining_g) for x in scrap]
                inputs += self.draw(STEEL_MILL, "steel.pig_iron", self.share(total, 150, 250))
                self.run_process("melting", inputs, [("steel.billet", 880, 920, {"Fe": 930})])
        if wd == 5:
            billets = self.stock(STEEL_MILL, "steel.billet", graded=False)
            if billets and self.rng.random() < 0.3:
                # A part of the largest cast is kept back, to be sold as billet.
                big = max(billets, key=lambda x: x.remaining_g)
                kept = self.share(big.remaining_g, 200, 350)
                rolled, sold = self.split(big, [big.remaining_g - kept, kept])
                self.graded.add(sold.id)
                billets = [x for x in billets if x is not big] + [rolled]
            if billets:
                self.run_process(
                    "manufacturing",
                    [(x, x.remaining_g) for x in billets],
                    [("steel.rebar", 960, 980, {"Fe": 990})],
                )

    def _board_mill(self) -> None:
        wd = self.day.weekday()
        occ = self.stock(PAPER_MILL, "paper.occ")
        if wd in (1, 5) and occ:
            self.run_process(
                "pulping",
                [(x, x.remaining_g) for x in occ],
                [("paper.pulp_recycled", 820, 880, {})],
            )
        pulp = self.stock(PAPER_MILL, "paper.pulp_recycled")
        if wd in (2, 6) and pulp:
            inputs = [(x, x.remaining_g) for x in pulp]
            need = self.share(sum(m for _, m in inputs), 80, 120)
            inputs += self.draw(PAPER_MILL, "paper.pulp_virgin", need)
            self.run_process("papermaking", inputs, [("paper.testliner", 950, 975, {})])

    def _plastics(self) -> None:
        wd = self.day.weekday()
        pet = self.stock(PLASTICS, "plastics.pet")
        if wd in (0, 3) and pet:
            self.run_process(
                "washing_flaking",
                [(x, x.remaining_g) for x in pet],
                [("plastics.pet_flake", 720, 780, {}), ("plastics.pp", 60, 90, {})],
            )
        flake = self.stock(PLASTICS, "plastics.pet_flake")
        if wd == 4 and flake:
            self.run_process(
                "pelletising",
                [(x, x.remaining_g) for x in flake],
                [("plastics.rpet_pellet", 960, 980, {})],
            )
        mixed = self.stock(PLASTICS, "plastics.mixed", graded=False)
        if wd == 2 and mixed:
            made = self.run_process(
                "sorting",
                [(x, x.remaining_g) for x in mixed],
                [
                    ("plastics.hdpe", 250, 300, {}),
                    ("plastics.pp", 150, 200, {}),
                    ("plastics.mixed", 400, 470, {}),
                ],
            )
            self.graded.update(x.id for x in made if x.material == "plastics.mixed")
        hdpe = self.stock(PLASTICS, "plastics.hdpe")
        if wd == 5 and hdpe:
            self.run_process(
                "pelletising",
                [(x, x.remaining_g) for x in hdpe],
                [("plastics.hdpe_pellet", 950, 980, {})],
            )

    def _tyres(self) -> None:
        elt = self.stock(TYRES, "tyres.elt")
        if self.day.weekday() in (1, 4) and elt:
            self.run_process(
                "granulating",
                [(x, x.remaining_g) for x in elt],
                [
                    ("tyres.crumb", 660, 700, {"Zn": 900}),
                    ("tyres.steel_wire", 140, 170, {"Fe": 950}),
                    ("tyres.textile_fibre", 90, 120, {}),
                ],
            )

    # --- batteries ----------------------------------------------------------------------

    def _automaker(self) -> None:
        index = (self.day - self.first).days
        in_use = [x for x in self.stock(AUTOMAKER, "batteries.pack") if x.status == "in_use"]
        if index % 14 == 2 and in_use:
            lot = in_use[0]
            self.status(lot, "retired", "state of health below 70 %")
            self.collected["batteries"] += lot.remaining_g
            self._ship(lot, BATTERIES)

    def _battery_recycler(self) -> None:
        wd = self.day.weekday()
        packs = [x for x in self.stock(BATTERIES, "batteries.pack") if x.since != self.day]
        if wd == 0 and packs:
            self.run_process(
                "dismantling",
                [(x, x.remaining_g) for x in packs],
                [
                    (
                        "batteries.li_ion.module",
                        600,
                        650,
                        {"Co": 1000, "Ni": 1000, "Li": 1000, "Mn": 1000, "Cu": 600, "Al": 250},
                    ),
                    ("nonferrous.al_cast", 120, 150, {"Al": 700}),
                    ("steel.hms2", 70, 90, {"Fe": 900}),
                    ("nonferrous.cu_no2", 20, 30, {"Cu": 300}),
                ],
            )
        cells = [
            *self.stock(BATTERIES, "batteries.li_ion.module"),
            *self.stock(BATTERIES, "batteries.li_ion.nmc"),
        ]
        if wd == 2 and cells:
            self.run_process(
                "mechanical",
                [(x, x.remaining_g) for x in cells],
                [
                    (
                        "batteries.black_mass",
                        400,
                        450,
                        {"Co": 950, "Ni": 950, "Li": 930, "Mn": 950, "C": 700, "Cu": 50, "Al": 30},
                    ),
                    ("nonferrous.cu_no2", 80, 100, {"Cu": 800}),
                ],
            )
        if wd == 3:
            for material in ("steel.hms2", "nonferrous.al_cast", "nonferrous.cu_no2"):
                for x in self.stock(BATTERIES, material):
                    self._ship(x, PROCESSOR)
        black = self.stock(BATTERIES, "batteries.black_mass")
        if self.day.day == 15 and black:
            campaign = self.merge(black) if len(black) > 1 else black[0]
            self._hydrometallurgy(campaign)

    def _hydrometallurgy(self, lot: _Lot) -> None:
        """Leach, purify and crystallise; the outputs carry their stoichiometric element content.

        The ledger takes no reagents as inputs, so the salts (hydrated, heavier
        than the metal they carry) must weigh less than the black mass: the
        recovered element masses are scaled down to fit.
        """
        recovery = {"Co": 920, "Ni": 920, "Li": 850, "Mn": 900}
        products = {
            "Co": "elements.cobalt_sulfate",
            "Ni": "elements.nickel_sulfate",
            "Li": "elements.lithium_carbonate",
            "Mn": "elements.manganese_sulfate",
        }
        salts: dict[str, int] = {}
        for symbol, material in products.items():
            entry = self.taxonomy.material(material)
            assert entry is not None and entry.element_g_per_t
            metal = lot.elements.get(symbol, 0) * recovery[symbol] // 1000
            salts[material] = metal * 1_000_000 // entry.element_g_per_t
        cap = self.share(lot.remaining_g, 860, 920)
        total = sum(salts.values())
        outputs = []
        for material, mass in salts.items():
            mass = mass * cap // total if total > cap else mass
            entry = self.taxonomy.material(material)
            assert entry is not None and entry.element is not None and entry.element_g_per_t
            outputs.append(
                _Output(material, mass, {entry.element: mass * entry.element_g_per_t // 1_000_000})
            )
        made = self.transform("hydrometallurgy", [(lot, lot.remaining_g)], outputs)
        sold = []
        for salt in made:
            if salt.material == "elements.nickel_sulfate" and salt.remaining_g > 2:
                # Two customers' deliveries: the cathode maker's, and a plating works' (kept).
                first = self.share(salt.remaining_g, 400, 600)
                salt = self.split(salt, [first, salt.remaining_g - first])[0]
            sold.append(salt)
        for salt in sold:
            self._ship(salt, CATHODE)

    def _cathode_maker(self) -> None:
        """Once a week, NMC622 cathode material from all the recovered cobalt sulfate held.

        The recovered cobalt is :data:`_RECOVERED_PERMILLE` of the batch's cobalt, which sets
        the batch's mass; of each other element the maker draws that share from recovered
        salts (as far as it holds them) and buys the rest as virgin salt. The cathode declares
        the stoichiometric element content, never more than the inputs gave; the ledger
        computes its recovered share of each element.
        """
        if self.day.weekday() != 1:
            return
        recovered = {
            symbol: [x for x in self.stock(CATHODE, material) if x.recovered]
            for symbol, material in _SALTS.items()
        }
        cobalt = sum(x.elements.get("Co", 0) for x in recovered["Co"])
        if not cobalt:
            return
        cathode_co = cobalt * 1000 // _RECOVERED_PERMILLE["Co"]
        mass = cathode_co * 1_000_000 // _NMC622_G_PER_T["Co"]
        inputs: list[tuple[_Lot, int]] = []
        for symbol, material in _SALTS.items():
            need = mass * _NMC622_G_PER_T[symbol] // 1_000_000
            held_g = sum(x.remaining_g for x in recovered[symbol])
            held = sum(x.elements.get(symbol, 0) for x in recovered[symbol])
            want = need * _RECOVERED_PERMILLE[symbol] // 1000
            take_g = (
                held_g if symbol == "Co" or not held else min(held_g, -(-want * held_g // held))
            )
            taken: list[tuple[_Lot, int]] = []
            for lot in recovered[symbol]:
                if take_g <= 0:
                    break
                taken.append((lot, min(take_g, lot.remaining_g)))
                take_g -= taken[-1][1]
            inputs += taken
            short = need - self.pool(taken).get(symbol, 0)
            if short > 0:
                entry = self.taxonomy.material(material)
                assert entry is not None and entry.element_g_per_t
                salt_g = -(-short * 1_000_000 // entry.element_g_per_t)
                virgin = self.create(
                    CATHODE,
                    material,
                    salt_g,
                    "virgin",
                    elements={symbol: salt_g * entry.element_g_per_t // 1_000_000},
                )
                inputs.append((virgin, salt_g))
        pool = self.pool(inputs)
        elements = {
            symbol: min(mass * g // 1_000_000, pool.get(symbol, 0))
            for symbol, g in _NMC622_G_PER_T.items()
        }
        made = self.transform(
            "cathode_synthesis", inputs, [_Output("batteries.cathode.nmc", mass, elements)]
        )
        self.cathode_lot = self.cathode_lot or made[0].id

    # --- the mistake ------------------------------------------------------------------------

    def _duplicate_and_void(self) -> None:
        """gd-collector-1 enters a weighbridge ticket twice; the regulator's audit voids the copy."""
        original = self.create(GD_COLLECTOR_1, "steel.hms1", 18_460 * _KG, "post_consumer")
        self.collected["steel"] += original.remaining_g
        duplicate = self.create(GD_COLLECTOR_1, "steel.hms1", 18_460 * _KG, "post_consumer")
        reason = f"duplicate entry of the weighbridge ticket already recorded as {original.id}"
        self._emit(
            REGULATOR,
            "void",
            {"record": self.heads[duplicate.id], "reason": reason},
            spends=[duplicate.id],
        )
        self._release(duplicate)
        duplicate.remaining_g, duplicate.elements, duplicate.recovered = 0, {}, {}
        duplicate.status = "void"
        self._ship(original, STEEL_MILL)

    # --- extended producer responsibility ----------------------------------------------------

    def _epr(self) -> None:
        """Declarations, certificates and their retirement for the period of the last day;
        then one double-counting attempt, refused (see the module docstring)."""
        packaging = default_schemes()[PACKAGING]
        period = packaging.period_of(self._today())
        made = {
            code: [(lot, g) for c, lot, g, p in self.eligible if c == code and p == period and g]
            for code in ("plastic", "paper")
        }
        pellets, pulp = made["plastic"], made["paper"]
        if sum(g for _, g in pellets) < 10 * _KG or sum(g for _, g in pulp) < 10 * _KG:
            return
        self.epr_period = period
        plastic, paper = packaging.categories["plastic"], packaging.categories["paper"]
        pellets_g, pulp_g = sum(g for _, g in pellets), sum(g for _, g in pulp)
        left = {lot: g for lot, g in [*pellets, *pulp]}

        def kg(grams: int) -> int:
            return grams // _KG * _KG

        def certify(org: str, category: Category, grams: int) -> str:
            lots = made[category.code]
            prefix = f"cert:{org.removeprefix('org:')}:{period}:"
            cert = f"{prefix}{sum(c.startswith(prefix) for c in self.certificates) + 1}"
            backing, need = [], grams
            for lot, _ in lots:
                take = min(need, left[lot])
                if take:
                    backing.append({"lot": lot, "mass_g": take})
                    left[lot] -= take
                    need -= take
            body = {
                "certificate": cert,
                "scheme": PACKAGING,
                "category": category.code,
                "period": period,
                "lots": backing,
                "mass_g": grams - need,
            }
            self._emit(org, "certify", body)
            self.certificates.append(cert)
            return cert

        def hand_over(org: str, cert: str, producer: str, *, retire: bool = True) -> None:
            self._emit(org, "certificate.transfer", {"certificate": cert, "to": producer})
            if retire:
                self._emit(producer, "certificate.retire", {"certificate": cert, "period": period})

        def declare(
            producer: str, category: Category, obligation_g: int, unit_g: int | None = None
        ) -> None:
            # The largest placed-on-market mass whose obligation is at most obligation_g
            # (and, given the grams of one unit, how many units that is).
            target = category.target_for(period)
            declared = obligation_g * 10_000 // target if target else obligation_g
            body = {"scheme": PACKAGING, "category": category.code, "period": period}
            units = {} if unit_g is None else {"units": declared // unit_g}
            self._emit(producer, "declare", body | {"mass_g": declared} | units)

        # The drinks maker: 40 % of the pellets and 30 % of the pulp, 5 % more than it owes.
        pet_1, pulp_1 = kg(pellets_g * 40 // 100), kg(pulp_g * 30 // 100)
        declare(DRINKS, plastic, pet_1 * 95 // 100, unit_g=25)  # a 25 g PET bottle
        declare(DRINKS, paper, pulp_1 * 95 // 100)
        # The electronics maker: 25 % of the pellets and 20 % of the pulp, two thirds of what
        # it owes; it holds another 10 % of the pellets but has not retired them.
        pet_2, pulp_2, pet_3 = (
            kg(pellets_g * 25 // 100),
            kg(pulp_g * 20 // 100),
            kg(pellets_g * 10 // 100),
        )
        declare(ELECTRONICS, plastic, pet_2 * 3 // 2)
        declare(ELECTRONICS, paper, pulp_2 * 3 // 2)
        first = certify(PLASTICS, plastic, pet_1)
        hand_over(PLASTICS, first, DRINKS)
        hand_over(PAPER_MILL, certify(PAPER_MILL, paper, pulp_1), DRINKS)
        hand_over(PLASTICS, certify(PLASTICS, plastic, pet_2), ELECTRONICS)
        hand_over(PAPER_MILL, certify(PAPER_MILL, paper, pulp_2), ELECTRONICS)
        hand_over(PLASTICS, certify(PLASTICS, plastic, pet_3), ELECTRONICS, retire=False)
        # The automaker answers for the cobalt in the packs it placed on the market.
        packs = [(n, co) for p, n, co in self.packs_placed if p == period]
        if packs:
            body = {"scheme": BATTERY_SCHEME, "category": "co", "period": period}
            units, cobalt = sum(n for n, _ in packs), sum(co for _, co in packs)
            self._emit(AUTOMAKER, "declare", body | {"mass_g": cobalt, "units": units})
        self._flush()
        self._double_count(pellets[0][0], pellets[0][1], period)

    def _double_count(self, lot: str, recovered_g: int, period: str) -> None:
        """The PET recycler certifies a lot of pellets it already certified, for all its
        mass again: refused, alone, so it reaches the refusals log (nothing else is lost)."""
        when = self._at()
        record_id = self._record_id(when)
        body = {
            "certificate": f"cert:{PLASTICS.removeprefix('org:')}:{period}:again",
            "scheme": PACKAGING,
            "category": "plastic",
            "period": period,
            "lots": [{"lot": lot, "mass_g": recovered_g}],
            "mass_g": recovered_g,
        }
        signed = self.signers[PLASTICS].record(
            "certify", body, {}, record_id=record_id, at=when.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        [result] = self.store.append([signed])
        if not (isinstance(result, RecordRefused) and result.code == "certificate.exceeds_output"):
            raise RuntimeError(
                f"the demo's double-counting attempt on {lot} was not refused as "
                f"certificate.exceeds_output: {result}"
            )
        self.refused_certificate_record = record_id

    # --- the result ---------------------------------------------------------------------------

    def summary(self) -> DemoSummary:
        return DemoSummary(
            records=self.submitted,
            orgs=[o.id for o in _ORGS],
            lots=len(self.lots),
            by_family=dict(self.collected),
            cathode_lot=self.cathode_lot,
            traced_battery=self._traced_battery(),
            second_life_lot=self.second_life_lot,
            epr_period=self.epr_period,
            compliant_producer=DRINKS if self.epr_period else None,
            short_producer=ELECTRONICS if self.epr_period else None,
            certificates=tuple(self.certificates),
            refused_certificate_record=self.refused_certificate_record,
        )

    def _traced_battery(self) -> str | None:
        """The first code of the oldest pack lot upstream of the cathode lot."""
        if self.cathode_lot is None:
            return None
        seen: set[str] = set()
        todo = [self.cathode_lot]
        while todo:
            lot_id = todo.pop()
            if lot_id not in seen:
                seen.add(lot_id)
                todo.extend(self.parents.get(lot_id, ()))
        packs = sorted(x for x in seen if self.lots[x].units)
        return self.lots[packs[0]].units[0] if packs else None
