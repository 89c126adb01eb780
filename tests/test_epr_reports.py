"""The read side of EPR (ledger/epr_reports.py) on SQLite and PostgreSQL: reports, totals,
flags, certificates with their evidence, battery collection rates, and who may read them.

The packaging network (eu.packaging, period 2026, plastic target 50 %)::

    org:recycler (capacity: 50,000 g of plastics.rpet_pellet a year)
        100,000 g of PET bottles (post-consumer) -> pelletising -> lot:pel 90,000 g
        (10,000 g lost); certifies cert:1 50,000 g and cert:2 10,000 g on lot:pel and
        transfers both to org:producer, which retires cert:1 against 2026
    org:other-recycler
        50,000 g of bottles -> pelletising -> lot:pel-b 50,000 g (nothing lost: a yield of
        1000 per mille, above pelletising's highest plausible 990); certifies cert:3
        50,000 g, transfers it to org:producer2, which retires it
    org:producer   declares plastic 100,000 g (4,000 units) and 20,001 g (800 units)
    org:producer2  declares plastic 10,000 g

Hand-worked, org:producer's plastic line: placed 120,001 g and 4,800 units; obligation
120,001 x 50 % = 60,000.5 -> 60,001 g (rounded up); held 10,000 g (cert:2); retired
50,000 g (cert:1); gap 60,001 - 50,000 = 10,001 g; compliance 50,000 / 60,001 =
0.833319... -> 8,333 bp. Paper: nothing declared, obligation 0, compliance 10,000 bp.
Totals: compliance counts at most each obligation: 50,000 / 60,001 -> 8,333 bp; not
compliant. org:producer2: obligation 5,000 g, retired 50,000 g: 100,000 bp (10 times what it
owed); its totals count 5,000 of them: 10,000 bp, compliant.

Flags for 2026: org:other-recycler certified 50,000 g but its pelletising inputs were
50,000 g, which at 990 per mille give at most 49,500 g (yield, 500 g over); org:recycler
certified 60,000 g of plastics.rpet_pellet against a capacity of 50,000 g a year (capacity,
10,000 g over). org:recycler's yield is fine: 100,000 g in, at most 99,000 g out, 60,000 g
certified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from battery_test_codes import gbt_code
from click.testing import CliRunner
from conftest import World, fixed_key

from ledger import epr_reports as epr
from ledger import queries
from ledger.access import Viewer, read_scope
from ledger.database import database_url
from ledger.epr_schemes import parse_schemes
from ledger.queries import QueryRefused
from ledger.signing import public_key_bytes
from ledger.store import Store
from producers.bootstrap import admit
from producers.cli import main
from producers.events import Signer

SCHEME = "eu.packaging"
PERIOD = "2026"
AT = "2026-03-02T08:00:00Z"

RECYCLER = "org:recycler"
OTHER = "org:other-recycler"
PRODUCER = "org:producer"
PRODUCER2 = "org:producer2"
REGULATOR = "org:regulator"
STRANGER = "org:collector"
OPERATOR = "org:operator"

ROLES = {
    OTHER: ["recycler"],
    PRODUCER: ["producer"],
    PRODUCER2: ["producer"],
    REGULATOR: ["regulator"],
    STRANGER: ["collector"],
}


def scope_of(world: World, org: str) -> Any:
    found = world.store.org(org)
    assert found is not None
    return read_scope(Viewer(org, frozenset(found.roles)))


@dataclass
class Net:
    world: World
    s: dict[str, Signer]

    def read(self, fn: Any, *args: Any) -> Any:
        return queries.read(self.world.store.engine, fn, *args)

    def as_(self, org: str) -> Any:
        return scope_of(self.world, org)


def pelletise(w: World, who: Signer, lot: str, in_g: int, out_g: int) -> None:
    w.create(who, f"{lot}-in", in_g, "plastics.pet", "post_consumer")
    body = {
        "process": "pelletising",
        "inputs": [{"lot": f"{lot}-in", "mass_g": in_g}],
        "outputs": [{"lot": lot, "material": "plastics.rpet_pellet", "mass_g": out_g}],
        "loss_g": in_g - out_g,
    }
    w.ok(who.record("transform", body, w.heads(f"{lot}-in"), at=AT))


def certify(who: Signer, cert: str, lots: list[tuple[str, int]]) -> Any:
    body = {
        "certificate": cert,
        "scheme": SCHEME,
        "category": "plastic",
        "period": PERIOD,
        "lots": [{"lot": x, "mass_g": g} for x, g in lots],
        "mass_g": sum(g for _, g in lots),
    }
    return who.record("certify", body)


def declare(who: Signer, mass_g: int, **extra: int) -> Any:
    body = {"scheme": SCHEME, "category": "plastic", "period": PERIOD, "mass_g": mass_g}
    return who.record("declare", body | extra)


def admit_with_capacity(w: World, org: str, capacity: dict[str, int]) -> Signer:
    signer = Signer(org, fixed_key(org))
    records, _ = admit(
        w.operator,
        org,
        org,
        ["recycler"],
        "CN-GD",
        public_key_bytes(signer.private_key.public_key()),
        capacity=capacity,
    )
    w.ok(*records)
    return signer


@pytest.fixture
def net(world: World) -> Net:
    w = world
    s = {RECYCLER: admit_with_capacity(w, RECYCLER, {"plastics.rpet_pellet": 50_000})}
    s |= {org: w.admit(org, roles) for org, roles in ROLES.items()}
    rec, other, prod, prod2 = s[RECYCLER], s[OTHER], s[PRODUCER], s[PRODUCER2]
    pelletise(w, rec, "lot:pel", 100_000, 90_000)
    pelletise(w, other, "lot:pel-b", 50_000, 50_000)
    w.ok(
        declare(prod, 100_000, units=4_000),
        declare(prod, 20_001, units=800),
        declare(prod2, 10_000),
        certify(rec, "cert:1", [("lot:pel", 50_000)]),
        certify(rec, "cert:2", [("lot:pel", 10_000)]),
        certify(other, "cert:3", [("lot:pel-b", 50_000)]),
        rec.record("certificate.transfer", {"certificate": "cert:1", "to": PRODUCER}),
        rec.record("certificate.transfer", {"certificate": "cert:2", "to": PRODUCER}),
        other.record("certificate.transfer", {"certificate": "cert:3", "to": PRODUCER2}),
        prod.record("certificate.retire", {"certificate": "cert:1", "period": PERIOD}),
        prod2.record("certificate.retire", {"certificate": "cert:3", "period": PERIOD}),
    )
    return Net(w, s)


def test_a_producers_report_worked_by_hand(net: Net) -> None:
    report = net.read(epr.report, net.as_(PRODUCER), PRODUCER, SCHEME, PERIOD)
    assert report is not None and report.producer.id == PRODUCER
    lines = {c.category.code: c for c in report.categories}
    assert set(lines) == {"paper", "plastic"}
    plastic = lines["plastic"]
    assert (plastic.placed.mass_g, plastic.placed.units, plastic.placed.declarations) == (
        120_001,
        4_800,
        2,
    )
    assert plastic.target_bp == 5_000
    assert plastic.obligation_g == 60_001  # 60,000.5 rounded up
    assert [c.id for c in plastic.held] == ["cert:2"] and plastic.held_g == 10_000
    assert [c.id for c in plastic.retired] == ["cert:1"] and plastic.retired_g == 50_000
    assert (plastic.gap_g, plastic.compliance_bp) == (10_001, 8_333)
    paper = lines["paper"]
    assert (paper.placed.mass_g, paper.placed.units, paper.obligation_g) == (0, None, 0)
    assert (paper.gap_g, paper.compliance_bp) == (0, 10_000)
    assert (report.obligation_g, report.retired_g, report.held_g, report.gap_g) == (
        60_001,
        50_000,
        10_000,
        10_001,
    )
    assert (report.compliance_bp, report.compliant) == (8_333, False)
    assert report.collection is None  # not a battery scheme
    # The certificates it holds come from org:recycler, flagged for its capacity.
    assert [(f.kind, f.recycler) for f in report.flags] == [(epr.FlagKind.CAPACITY, RECYCLER)]
    assert set(report.views) == {"cert:1", "cert:2"}


def test_over_compliance_is_reported_but_does_not_hide_another_gap(net: Net) -> None:
    report = net.read(epr.report, net.as_(PRODUCER2), PRODUCER2, SCHEME, PERIOD)
    plastic = next(c for c in report.categories if c.category.code == "plastic")
    assert (plastic.obligation_g, plastic.retired_g, plastic.compliance_bp) == (
        5_000,
        50_000,
        100_000,
    )
    assert (report.counted_g, report.compliance_bp, report.compliant) == (5_000, 10_000, True)
    assert [(f.kind, f.recycler) for f in report.flags] == [(epr.FlagKind.YIELD, OTHER)]


def test_who_may_read_a_report(net: Net) -> None:
    """The producer, regulators and the operator; anyone else, like a missing producer: None."""
    for viewer in (PRODUCER, REGULATOR, OPERATOR):
        assert net.read(epr.report, net.as_(viewer), PRODUCER, SCHEME, PERIOD) is not None
    for viewer in (PRODUCER2, RECYCLER, STRANGER):
        assert net.read(epr.report, net.as_(viewer), PRODUCER, SCHEME, PERIOD) is None
    assert net.read(epr.report, net.as_(REGULATOR), "org:nobody", SCHEME, PERIOD) is None
    for viewer in (PRODUCER, RECYCLER, STRANGER):
        assert net.read(epr.totals, net.as_(viewer), SCHEME, PERIOD) is None
        assert net.read(epr.flags, net.as_(viewer), SCHEME, PERIOD) is None


def test_a_bad_scheme_or_period_names_the_argument(net: Net) -> None:
    cases = [
        (("nowhere", PERIOD), "scheme"),
        ((SCHEME, "2026-Q1"), "period"),  # eu.packaging counts by calendar year
        (("in.tyres", "2026"), "period"),  # an April-to-March year is written 2026-27
    ]
    for args, argument in cases:
        with pytest.raises(QueryRefused) as refused:
            net.read(epr.report, net.as_(REGULATOR), PRODUCER, *args)
        assert refused.value.argument == argument
        assert "eprSchemes" in refused.value.message or "counts by" in refused.value.message


def test_totals_for_regulators_keep_retired_le_certified_le_eligible(net: Net) -> None:
    totals = net.read(epr.totals, net.as_(REGULATOR), SCHEME, PERIOD)
    plastic = next(c for c in totals.categories if c.category.code == "plastic")
    assert (plastic.placed_g, plastic.placed_units, plastic.producers) == (130_001, 4_800, 2)
    assert plastic.obligation_g == 65_001
    assert (plastic.eligible_output_g, plastic.certified_g) == (140_000, 110_000)
    assert (plastic.held_g, plastic.retired_g, plastic.gap_g) == (10_000, 100_000, 10_001)
    assert plastic.retired_g <= plastic.certified_g <= plastic.eligible_output_g
    lines = {(r.recycler, r.category): r for r in totals.recyclers}
    assert set(lines) == {(RECYCLER, "plastic"), (OTHER, "plastic")}
    mine = lines[RECYCLER, "plastic"]
    assert (mine.eligible_output_g, mine.certified_g, mine.retired_g) == (90_000, 60_000, 50_000)
    producers = {(p.producer, p.category): p for p in totals.producers}
    assert producers[PRODUCER, "plastic"].gap_g == 10_001
    assert producers[PRODUCER2, "plastic"].compliance_bp == 100_000
    assert [f.kind for f in totals.flags] == [epr.FlagKind.YIELD, epr.FlagKind.CAPACITY]


def test_flags_say_what_was_compared_with_what_in_grams(net: Net) -> None:
    found = net.read(epr.flags, net.as_(REGULATOR), SCHEME, PERIOD)
    assert [(f.kind, f.recycler) for f in found] == [
        (epr.FlagKind.YIELD, OTHER),
        (epr.FlagKind.CAPACITY, RECYCLER),
    ]
    yielded, capacity = found
    assert (yielded.certified_g, yielded.input_g, yielded.allowed_g, yielded.excess_g) == (
        50_000,
        50_000,
        49_500,
        500,
    )
    assert dict(yielded.yield_permille) == {"pelletising": 990}
    assert "50000 g" in yielded.message and "49500 g" in yielded.message
    assert "990 ‰" in yielded.message
    assert (capacity.material, capacity.capacity_g_per_year, capacity.months) == (
        "plastics.rpet_pellet",
        50_000,
        12,
    )
    assert (capacity.certified_g, capacity.allowed_g, capacity.excess_g) == (60_000, 50_000, 10_000)
    assert "60000 g" in capacity.message and "50000 g" in capacity.message
    # Another period: nothing was certified, nothing is flagged.
    assert net.read(epr.flags, net.as_(REGULATOR), SCHEME, "2025") == []


def test_capacity_is_prorated_to_the_periods_length_rounded_up() -> None:
    """A quarter is 3 months: 1,000,001 g a year -> 250,000.25 -> 250,001 g; a half 6."""
    doc = {
        "schemes": [
            {
                "id": f"test.{kind}",
                "name": "test",
                "jurisdiction": "EU",
                "period": kind,
                "source": "test",
                "categories": [
                    {
                        "code": "plastic",
                        "name": "test",
                        "basis": "recycling",
                        "targets": {first: 5000},
                        "declared": ["plastics.pet"],
                        "processes": ["pelletising"],
                        "outputs": ["plastics.rpet_pellet"],
                    }
                ],
            }
            for kind, first in (
                ("quarter", "2026-Q1"),
                ("half", "2026-H1"),
                ("year_april", "2026-27"),
            )
        ]
    }
    schemes = parse_schemes(doc)
    assert epr.period_months(schemes["test.quarter"], "2026-Q4") == 3
    assert epr.period_months(schemes["test.half"], "2026-H2") == 6
    assert epr.period_months(schemes["test.year_april"], "2026-27") == 12
    assert epr.capacity_allowed_g(1_000_001, 3) == 250_001
    assert epr.capacity_allowed_g(1_000_000, 3) == 250_000
    assert epr.capacity_allowed_g(1_000_000, 12) == 1_000_000
    assert epr.yield_allowed_g(100_001, 990) == 99_001  # 99,000.99 rounded up


def test_a_certificate_and_its_evidence(net: Net) -> None:
    """cert:1 stands on lot:pel, made from lot:pel-in: its holder, which could not read
    either lot before, reads them through the certificate."""
    for viewer in (RECYCLER, PRODUCER, REGULATOR, OPERATOR):
        assert net.read(epr.certificate, net.as_(viewer), "cert:1") is not None
    for viewer in (PRODUCER2, OTHER, STRANGER):
        assert net.read(epr.certificate, net.as_(viewer), "cert:1") is None
    assert net.read(epr.certificate, net.as_(REGULATOR), "cert:none") is None

    view = net.read(epr.certificate, net.as_(PRODUCER), "cert:1")
    c = view.certificate
    assert (c.issuer, c.holder, c.mass_g, c.retired_period) == (RECYCLER, PRODUCER, 50_000, "2026")
    [backing] = view.backing
    assert (backing.lot, backing.mass_g) == ("lot:pel", 50_000)
    assert backing.output is not None
    assert (backing.output.process, backing.output.material) == (
        "pelletising",
        "plastics.rpet_pellet",
    )
    assert backing.output.recovered == {"mass": 90_000}
    assert backing.output.certified == {"mass": 60_000}
    assert net.read(queries.lots_by_id, net.as_(PRODUCER), ["lot:pel", "lot:pel-in"]) == {}
    found = net.read(epr.backing_lineage, view, "lot:pel", 5)
    assert [n.id for n in found.nodes] == ["lot:pel", "lot:pel-in"]
    assert [(e.parent, e.child, e.mass_g) for e in found.edges] == [
        ("lot:pel-in", "lot:pel", 90_000)
    ]
    # Only its own backing lots: not a door to any lot.
    assert net.read(epr.backing_lineage, view, "lot:pel-b", 5) is None


def test_the_schemes_as_data() -> None:
    found = {s.id: s for s in epr.schemes()}
    assert {"eu.packaging", "eu.batteries.portable", "eu.batteries.ev", "in.tyres"} <= set(found)
    assert epr.is_battery_scheme(found["eu.batteries.portable"])
    assert epr.is_battery_scheme(found["eu.batteries.ev"])
    assert not epr.is_battery_scheme(found["eu.packaging"])
    assert epr.unit_of(found["eu.batteries.ev"].categories["co"]) == "g of Co"


# --- battery collection rates ------------------------------------------------------------


MAKER = "org:maker"
FLEET = "org:fleet"
COLLECTOR = "org:coll"
BATTERY = "eu.batteries.ev"


def test_a_collection_rate_from_the_producers_own_codes(world: World) -> None:
    """org:maker registers 5 packs in 2025 (lots a: A1 A2, b: B1 B2, c: C1) and 2 in 2026
    (lot d: D1 D2).

    * lot a: retired 2025-11-01, sent to the collector 2025-11-02: collected in 2025;
    * lot b: sold to a fleet (sent and received in 2025: not waste yet, not collected); the
      fleet retires it 2026-03-01 and sends it to the collector 2026-03-02: collected 2026;
    * lot c: sent to the collector in 2025 unretired (not a collection); the collector
      records it "collected" on 2026-04-01: collected 2026;
    * lot d: retired 2026-06-01 and sent 2026-07-01, but that transfer is voided: not
      collected.

    2025: 5 registered, none collected before, 2 collected: 2 / 5 = 4,000 bp.
    2026: 7 registered, 2 collected before, 5 outstanding, 3 collected: 3 / 5 = 6,000 bp.
    """
    w = world
    maker = w.admit(MAKER, ["producer", "manufacturer"])
    fleet = w.admit(FLEET, ["collector"])
    coll = w.admit(COLLECTOR, ["collector"])
    codes = {
        name: gbt_code(i + 1) for i, name in enumerate(["A1", "A2", "B1", "B2", "C1", "D1", "D2"])
    }

    def put(who: Signer, rtype: str, body: dict[str, Any], at: str) -> None:
        parents = w.heads(body["lot"]) if rtype != "create" else {}
        w.ok(who.record(rtype, body, parents, at=at))

    for lot, names, at in (
        ("lot:a", ["A1", "A2"], "2025-03-01T08:00:00Z"),
        ("lot:b", ["B1", "B2"], "2025-03-01T08:01:00Z"),
        ("lot:c", ["C1"], "2025-03-01T08:02:00Z"),
        ("lot:d", ["D1", "D2"], "2026-02-01T08:00:00Z"),
    ):
        body = {
            "lot": lot,
            "material": "batteries.pack",
            "mass_g": 400_000 * len(names),
            "origin": "virgin",
            "units": [codes[n] for n in names],
        }
        put(maker, "create", body, at)
    put(maker, "status", {"lot": "lot:a", "status": "retired"}, "2025-11-01T08:00:00Z")
    put(
        maker,
        "transfer",
        {"lot": "lot:a", "to": COLLECTOR, "mass_g": 800_000},
        "2025-11-02T08:00:00Z",
    )
    put(coll, "receive", {"lot": "lot:a", "mass_g": 800_000}, "2025-11-03T08:00:00Z")
    put(maker, "transfer", {"lot": "lot:b", "to": FLEET, "mass_g": 800_000}, "2025-04-01T08:00:00Z")
    put(fleet, "receive", {"lot": "lot:b", "mass_g": 800_000}, "2025-04-02T08:00:00Z")
    put(fleet, "status", {"lot": "lot:b", "status": "retired"}, "2026-03-01T08:00:00Z")
    put(
        fleet,
        "transfer",
        {"lot": "lot:b", "to": COLLECTOR, "mass_g": 800_000},
        "2026-03-02T08:00:00Z",
    )
    put(coll, "receive", {"lot": "lot:b", "mass_g": 800_000}, "2026-03-03T08:00:00Z")
    put(
        maker,
        "transfer",
        {"lot": "lot:c", "to": COLLECTOR, "mass_g": 400_000},
        "2025-05-01T08:00:00Z",
    )
    put(coll, "receive", {"lot": "lot:c", "mass_g": 400_000}, "2025-05-02T08:00:00Z")
    put(coll, "status", {"lot": "lot:c", "status": "collected"}, "2026-04-01T08:00:00Z")
    put(maker, "status", {"lot": "lot:d", "status": "retired"}, "2026-06-01T08:00:00Z")
    put(
        maker,
        "transfer",
        {"lot": "lot:d", "to": COLLECTOR, "mass_g": 800_000},
        "2026-07-01T08:00:00Z",
    )
    head = w.heads("lot:d")["lot:d"]
    w.ok(
        maker.record(
            "void",
            {"record": head, "reason": "wrong truck"},
            w.heads("lot:d"),
            at="2026-07-02T08:00:00Z",
        )
    )

    scope = scope_of(w, MAKER)
    read = queries.read
    for period, want, bp in (
        ("2025", epr.CollectionRate(5, 0, 2), 4_000),
        ("2026", epr.CollectionRate(7, 2, 3), 6_000),
        ("2024", epr.CollectionRate(0, 0, 0), 0),
    ):
        report = read(w.store.engine, epr.report, scope, MAKER, BATTERY, period)
        assert report is not None and report.collection == want, period
        assert report.collection.rate_bp == bp
    # A collector's own report would have none of these: they are the maker's codes.
    store: Store = w.store
    assert read(
        store.engine, epr.collection_rate, COLLECTOR, epr.scheme_period(BATTERY, "2026"), "2026"
    ) == epr.CollectionRate(0, 0, 0)


def test_collected_at_is_the_first_collection_event() -> None:
    """Pure: a receive by the producer itself after retirement is no collection; a transfer
    before retirement is none; an event on a lot before the unit entered it is ignored."""
    e = epr.LifeEvent
    events = {
        "lot:x": [
            e(5, "lot:x", "transfer", "org:p", "2026-01-01T00:00:00Z"),  # before retirement
            e(7, "lot:x", "status", "org:p", "2026-02-01T00:00:00Z", "retired"),
            e(8, "lot:x", "receive", "org:p", "2026-02-02T00:00:00Z"),  # the producer itself
        ],
        "lot:y": [
            e(3, "lot:y", "status", "org:q", "2025-01-01T00:00:00Z", "collected"),  # before
            e(9, "lot:y", "receive", "org:q", "2026-03-01T00:00:00Z"),
        ],
    }
    assert epr.collected_at("org:p", [("lot:x", 1)], events) is None
    assert epr.collected_at("org:p", [("lot:x", 1), ("lot:y", 6)], events) == (
        "2026-03-01T00:00:00Z"
    )
    assert epr.collected_at("org:p", [("lot:y", 1)], events) == "2025-01-01T00:00:00Z"


# --- the CLI: org add --capacity -----------------------------------------------------------


def test_org_add_takes_capacities(tmp_path: Any) -> None:
    db = database_url(str(tmp_path / "ledger.db"))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, [*args], catch_exceptions=False)

    assert run("init", "--db", db, "--keys", str(tmp_path / "keys")).exit_code == 0
    key = str(tmp_path / "r.key")
    assert run("keygen", "--out", key).exit_code == 0
    base = ["org", "add", "org:r", "--role", "recycler", "--region", "CN-GD", "--key", key + ".pub"]
    base += ["--db", db, "--keys", str(tmp_path / "keys")]
    bad = run(*base, "--capacity", "plastics.rpet_pellet=12.5")
    assert bad.exit_code == 2 and "MATERIAL=GRAMS" in bad.output
    twice = run(*base, "--capacity", "plastics.pet=1", "--capacity", "plastics.pet=2")
    assert twice.exit_code == 2 and "twice" in twice.output
    unknown = run(*base, "--capacity", "plastics.nothing=5")
    assert unknown.exit_code != 0 and "material.unknown" in unknown.output
    done = run(
        *base,
        "--capacity",
        "plastics.rpet_pellet=5000000000",
        "--capacity",
        "plastics.hdpe_pellet=1000000",
    )
    assert done.exit_code == 0, done.output
    store = Store.open(db)
    try:
        org = store.org("org:r")
        assert org is not None
        assert org.capacity == {
            "plastics.rpet_pellet": 5_000_000_000,
            "plastics.hdpe_pellet": 1_000_000,
        }
    finally:
        store.close()
