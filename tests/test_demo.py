"""The synthetic regional network of `rledger demo` (producers/demo.py), on a real SQLite ledger."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import World, make_world
from sqlalchemy import select

from ledger import epr_reports as epr
from ledger import queries
from ledger.access import Viewer, read_scope
from ledger.battery_codes import parse_gbt34014
from ledger.content import element_recovered_g
from ledger.database import database_url
from ledger.materials import default_taxonomy
from ledger.recycled_content import check_recycled_content
from ledger.store import Store
from ledger.tables import lot_edges, lot_units, lots, refused_records
from ledger.verify import rebuild, verify_store
from producers.demo import (
    AUTOMAKER,
    BATTERIES,
    BATTERY_SCHEME,
    CATHODE,
    DRINKS,
    ELECTRONICS,
    FAMILIES,
    PACKAGING,
    PAPER_MILL,
    PET_PERMIT_G,
    PLASTICS,
    REGULATOR,
    STORAGE,
    DemoSummary,
    _Demo,
    seed_demo,
)


def demo_records(store: Store) -> list[tuple[str, dict[str, object]]]:
    """(hash, envelope) of every record after the genesis (which the fixture dates "now")."""
    return [(r.hash, json.loads(r.canonical)) for r in store.records(from_seq=2)]


def envelopes(store: Store) -> list[dict[str, Any]]:
    """The demo's records (after the genesis), parsed."""
    return [env for _, env in demo_records(store)]


@pytest.fixture
def seeded(sqlite_world: World) -> tuple[World, DemoSummary]:
    return sqlite_world, seed_demo(sqlite_world.store, sqlite_world.operator, months=2)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, DemoSummary]]:
    """One two-month demo, read (never written) by the battery-loop tests."""
    w = make_world(database_url(str(tmp_path_factory.mktemp("loop") / "loop.db")))
    yield w, seed_demo(w.store, w.operator, months=2)
    w.store.close()


@pytest.fixture
def other_world(tmp_path: Path) -> Iterator[World]:
    w = make_world(database_url(str(tmp_path / "other.db")))
    yield w
    w.store.close()


def test_two_months_seed_every_family_and_verify(seeded: tuple[World, DemoSummary]) -> None:
    world, summary = seeded
    store = world.store
    assert store.last_seq() == 1 + summary.records
    assert 1_000 <= summary.records <= 2_500
    assert set(summary.by_family) == set(FAMILIES)
    assert all(summary.by_family[f] > 0 for f in FAMILIES), summary.by_family
    assert summary.lots == len(store.projection_rows()["lots"])
    for org in summary.orgs:
        registered = store.org(org)
        assert registered is not None and registered.region in ("CN-GD", "CN-GX", "CN-HN")
    assert {"CN-GD", "CN-GX", "CN-HN"} == {o.region for o in map(store.org, summary.orgs) if o}
    report = verify_store(store)
    assert report.ok, str(report)


def test_the_flows_use_every_record_type_and_real_codes(
    seeded: tuple[World, DemoSummary],
) -> None:
    world, _ = seeded
    envelopes = [env for _, env in demo_records(world.store)]
    types = Counter(env["type"] for env in envelopes)
    for rtype in (
        "org.register",
        "key.add",
        "create",
        "transfer",
        "receive",
        "split",
        "merge",
        "transform",
        "status",
        "dispose",
    ):
        assert types[rtype] > 0, rtype
    assert types["void"] == 1
    taxonomy = default_taxonomy()
    processes: set[str] = set()
    for env in envelopes:
        body = env["body"]
        assert isinstance(body, dict)
        if env["type"] == "transform":
            processes.add(body["process"])
            for out in body["outputs"]:
                assert taxonomy.material(out["material"]) is not None
                assert sum(out.get("elements", {}).values()) <= out["mass_g"]
        if env["type"] == "create":
            assert taxonomy.material(body["material"]) is not None
            for unit in body.get("units", []):
                assert parse_gbt34014(unit).product_kind == "pack"
    assert {
        "shredding",
        "sorting",
        "melting",
        "pulping",
        "washing_flaking",
        "pelletising",
        "granulating",
        "dismantling",
        "mechanical",
        "hydrometallurgy",
        "cathode_synthesis",
    } <= processes
    # Every `at` lies within the two months, in the format of the contract.
    ats = [str(env["at"]) for env in envelopes]
    assert min(ats) >= "2026-05-01T00:00:00Z" and max(ats) < "2026-07-01T00:00:00Z"
    assert all(len(at) == 20 and at.endswith("Z") for at in ats)


def test_batteries_are_traced_to_recovered_salts(loop: tuple[World, DemoSummary]) -> None:
    world, _ = loop
    with world.store.engine.connect() as conn:
        rows = list(conn.execute(select(lots)).mappings())
    salts = [r for r in rows if r["material"].startswith("elements.")]
    assert {r["material"] for r in salts} >= {
        "elements.cobalt_sulfate",
        "elements.nickel_sulfate",
        "elements.lithium_carbonate",
        "elements.manganese_sulfate",
    }
    for r in salts:
        made = json.loads(r["content"])
        element = default_taxonomy().material(r["material"])
        assert element is not None and element.element is not None
        assert 0 < made[element.element] <= r["mass_g"]
    statuses = {r["status"] for r in rows if r["material"] == "batteries.pack"}
    assert {"placed_on_market", "in_use", "second_life", "consumed"} <= statuses
    assert "void" in {r["status"] for r in rows}


def test_every_battery_code_is_a_valid_gbt34014_code_registered_once(
    loop: tuple[World, DemoSummary],
) -> None:
    """Every pack the automaker makes has its own 24-character GB/T 34014-2017 code: P (pack),
    E (ternary, NMC), a serial that is not all zeros; so does each second-life pack's new
    code, which differs from every other code in the ledger."""
    world, _ = loop
    records = envelopes(world.store)
    packs = [u for env in records if env["type"] == "create" for u in env["body"].get("units", [])]
    second_life = [
        new
        for env in records
        if env["type"] == "status" and "recode" in env["body"]
        for new in env["body"]["recode"].values()
    ]
    assert len(packs) >= 50 and second_life
    for code in packs + second_life:
        parsed = parse_gbt34014(code)
        assert (parsed.product_type, parsed.battery_type) == ("P", "E")
        assert int(parsed.serial) > 0
    assert len(set(packs + second_life)) == len(packs) + len(second_life)
    with world.store.engine.connect() as conn:
        registered = Counter(conn.execute(select(lot_units.c.unit)).scalars())
    assert set(registered) == set(packs + second_life)
    assert set(registered.values()) == {1}


def test_one_batch_of_retired_packs_goes_to_second_life_with_both_codes(
    loop: tuple[World, DemoSummary],
) -> None:
    """GB/T 34014-2017 §4.2: the storage operator codes each repurposed pack anew and the lot
    keeps the original codes beside the new ones."""
    world, summary = loop
    assert summary.second_life_lot is not None
    lot = world.store.lot(summary.second_life_lot)
    assert lot is not None
    assert (lot.status, lot.custodian, lot.material) == ("second_life", STORAGE, "batteries.pack")
    assert lot.units and set(lot.recoded) == set(lot.units)
    assert lot.content["post"] == lot.mass_g  # retired first: post-consumer, all of it
    for original, new in lot.recoded.items():
        assert new != original and new.startswith("HZSPE")
    with world.store.engine.connect() as conn:
        rows = {r.unit: r for r in conn.execute(select(lot_units).where(lot_units.c.lot == lot.id))}
    for original, new in lot.recoded.items():
        assert rows[original].original is None
        assert rows[new].original == original
    # It was retired by the automaker and collected by the recycler before.
    statuses = [
        env["body"]["status"]
        for env in envelopes(world.store)
        if env["type"] == "status" and env["body"]["lot"] == lot.id
    ]
    assert statuses == ["placed_on_market", "in_use", "retired", "collected", "second_life"]


def test_a_pack_is_traced_to_a_cathode_lot_with_computed_recovered_shares(
    loop: tuple[World, DemoSummary],
) -> None:
    """The loop: packs (virgin) -> retired (post-consumer) -> collected -> dismantling ->
    modules -> mechanical -> black mass -> hydrometallurgy -> CoSO4, NiSO4, Li2CO3, MnSO4 ->
    cathode_synthesis with virgin salts -> NMC622 cathode.

    The cathode maker's recipe: all its recovered cobalt sulfate carries c g of Co (every
    gram post-consumer: the packs were retired), which is 20 % of the batch's cobalt, so the
    batch holds 5c g of Co and weighs 5c / 0.1216 g (NMC622 is 12.16 % Co); it takes 9 % of
    the nickel, 4.5 % of the lithium and 10 % of the manganese from recovered salts and buys
    the rest virgin. The ledger's shares, computed from the records alone, come out at
    20.0 %, 9.0 %, 4.5 % and 10.0 % (to the gram's rounding), so by Reg. (EU) 2023/1542
    Art. 8 (from 18 Aug 2031: Co 16 %, Ni 6 %, Li 6 %) Co and Ni meet the minimum and Li
    misses it.
    """
    world, summary = loop
    assert summary.cathode_lot is not None and summary.traced_battery is not None
    cathode = world.store.lot(summary.cathode_lot)
    assert cathode is not None
    assert (cathode.material, cathode.custodian) == ("batteries.cathode.nmc", CATHODE)
    made = cathode.content
    assert "pre" not in made and 0 < made["post"] < cathode.mass_g
    want = {"Co": 200, "Ni": 90, "Li": 45, "Mn": 100}
    permille = {e: element_recovered_g(made, e) * 1000 // made[e] for e in want}
    assert all(abs(permille[e] - want[e]) <= 1 for e in want), permille
    findings = check_recycled_content(
        date(2031, 8, 18),
        {e: (made[e], element_recovered_g(made, e)) for e in ("Co", "Ni", "Li")},
    )
    assert {f.element: f.meets for f in findings} == {"Co": True, "Ni": True, "Li": False}

    # The traced pack: registered on an automaker lot that the recycler dismantled, and the
    # ledger's own edges lead from that lot to the cathode lot.
    with world.store.engine.connect() as conn:
        holders = list(
            conn.execute(
                select(lot_units.c.lot).where(lot_units.c.unit == summary.traced_battery)
            ).scalars()
        )
        edges = list(conn.execute(select(lot_edges.c.parent, lot_edges.c.child)))
    assert len(holders) == 1 and holders[0].startswith("lot:gz-automaker-demo:")
    pack = world.store.lot(holders[0])
    assert pack is not None and pack.status == "consumed" and pack.custodian == BATTERIES
    created = [
        env
        for env in envelopes(world.store)
        if env["type"] == "create" and env["body"]["lot"] == pack.id
    ]
    assert [(env["actor"], env["body"]["origin"]) for env in created] == [(AUTOMAKER, "virgin")]
    assert pack.content["post"] == pack.mass_g  # retired: all post-consumer
    dismantled = [
        env
        for env in envelopes(world.store)
        if env["type"] == "transform" and any(i["lot"] == pack.id for i in env["body"]["inputs"])
    ]
    assert [env["body"]["process"] for env in dismantled] == ["dismantling"]
    assert dismantled[0]["actor"] == BATTERIES
    children: dict[str, list[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
    reached, todo = {pack.id}, [pack.id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in reached:
                reached.add(child)
                todo.append(child)
    assert cathode.id in reached


def test_the_demo_predicts_what_the_ledger_computes(sqlite_world: World) -> None:
    """The demo mirrors each lot's element and recovered grams with ledger/content.py; after a
    month, its picture of every lot is the ledger's to the gram."""
    demo = _Demo(
        sqlite_world.store, sqlite_world.operator, 2026, date(2026, 5, 1), date(2026, 6, 1)
    )
    demo.run()
    with sqlite_world.store.engine.connect() as conn:
        stored = {r["id"]: r for r in conn.execute(select(lots)).mappings()}
    assert set(stored) == set(demo.lots)
    for lot_id, mine in demo.lots.items():
        row = stored[lot_id]
        assert (mine.remaining_g, mine.elements, mine.recovered) == (
            row["remaining_g"],
            json.loads(row["elements"]),
            json.loads(row["recovered"]),
        ), lot_id


def test_same_seed_same_records_other_seed_other_records(
    seeded: tuple[World, DemoSummary], other_world: World
) -> None:
    world, summary = seeded
    again = seed_demo(other_world.store, other_world.operator, months=2)
    assert again == summary
    first, second = demo_records(world.store), demo_records(other_world.store)
    assert [h for h, _ in first] == [h for h, _ in second]
    assert first[-1][0] == second[-1][0]


def test_another_seed_gives_another_ledger(sqlite_world: World, other_world: World) -> None:
    a = seed_demo(sqlite_world.store, sqlite_world.operator, months=1, seed=1)
    b = seed_demo(other_world.store, other_world.operator, months=1, seed=2)
    assert a.by_family != b.by_family
    assert demo_records(sqlite_world.store)[-1][0] != demo_records(other_world.store)[-1][0]


def test_rebuild_reproduces_the_projections(seeded: tuple[World, DemoSummary]) -> None:
    world, _ = seeded
    before = world.store.projection_rows()
    rebuild(world.store)
    assert world.store.projection_rows() == before


def test_rerun_is_idempotent_and_a_refusal_is_named(seeded: tuple[World, DemoSummary]) -> None:
    world, summary = seeded
    last = world.store.last_seq()
    # The same seed again: every record is already stored with the same bytes.
    assert seed_demo(world.store, world.operator, months=2) == summary
    assert world.store.last_seq() == last
    # Another seed: the organisations exist already, and the error says so.
    with pytest.raises(RuntimeError, match=r"org\.register .*org\.exists"):
        seed_demo(world.store, world.operator, months=2, seed=7)
    assert world.store.last_seq() == last


def test_a_period_ending_in_the_future_is_refused_up_front(sqlite_world: World) -> None:
    with pytest.raises(ValueError, match="future"):
        seed_demo(sqlite_world.store, sqlite_world.operator, months=6, start="2099-01-01")
    assert sqlite_world.store.last_seq() == 1


def test_epr_one_producer_compliant_one_short_and_a_refused_double_count(
    loop: tuple[World, DemoSummary],
) -> None:
    """Two producers declare eu.packaging for 2026; the PET recycler and the board mill
    certify their own pellets and recycled pulp and hand the certificates over; the drinks
    maker retires more than it owes, the electronics maker two thirds of it (and holds one
    certificate it has not retired). The recycler's attempt to certify pellets again, past
    their mass, is refused and logged, not recorded."""
    world, summary = loop
    assert summary.epr_period == "2026"
    assert (summary.compliant_producer, summary.short_producer) == (DRINKS, ELECTRONICS)
    assert summary.certificates == (
        "cert:gd-pet-recycler:2026:1",
        "cert:hn-board-mill:2026:1",
        "cert:gd-pet-recycler:2026:2",
        "cert:hn-board-mill:2026:2",
        "cert:gd-pet-recycler:2026:3",
    )
    regulator = read_scope(Viewer(REGULATOR, frozenset({"regulator"})))
    engine = world.store.engine
    good = queries.read(engine, epr.report, regulator, DRINKS, PACKAGING, "2026")
    short = queries.read(engine, epr.report, regulator, ELECTRONICS, PACKAGING, "2026")
    assert good is not None and short is not None
    assert good.compliant and not short.compliant
    for line in good.categories:  # 5 % more than it owes, in both categories
        assert line.retired_g > line.obligation_g > 0 and line.gap_g == 0
        assert 10_400 <= line.compliance_bp <= 10_600
    for line in short.categories:
        assert 0 < line.retired_g < line.obligation_g
        assert 6_600 <= line.compliance_bp <= 6_700 and line.gap_g > 0
    plastic = next(c for c in short.categories if c.category.code == "plastic")
    assert [c.id for c in plastic.held] == ["cert:gd-pet-recycler:2026:3"]
    # Scheme-wide: retired <= certified <= the recovered output of the eligible transforms.
    totals = queries.read(engine, epr.totals, regulator, PACKAGING, "2026")
    assert totals is not None
    for c in totals.categories:
        assert 0 < c.retired_g <= c.certified_g <= c.eligible_output_g
    assert {(r.recycler, r.category) for r in totals.recyclers} == {
        (PLASTICS, "plastic"),
        (PAPER_MILL, "paper"),
    }
    # The demo's yields are all plausible; the PET recycler's registered capacity is not.
    [flag] = totals.flags
    assert (flag.kind, flag.recycler, flag.material) == (
        epr.FlagKind.CAPACITY,
        PLASTICS,
        "plastics.rpet_pellet",
    )
    assert flag.allowed_g == PET_PERMIT_G and flag.certified_g > PET_PERMIT_G
    # The double-counting attempt: refused, so not in the ledger, but in the refusals log.
    attempt = summary.refused_certificate_record
    assert attempt is not None
    assert all(env["id"] != attempt for env in envelopes(world.store))
    with engine.connect() as conn:
        logged = conn.execute(
            select(refused_records).where(refused_records.c.record_id == attempt)
        ).all()
    assert [(r.actor, r.type, r.code) for r in logged] == [
        (PLASTICS, "certify", "certificate.exceeds_output")
    ]
    # The automaker's report for its packs carries a collection rate from its codes.
    automaker = queries.read(engine, epr.report, regulator, AUTOMAKER, BATTERY_SCHEME, "2026")
    assert automaker is not None
    rate = automaker.collection
    assert rate is not None and rate.registered >= 50 and 0 < rate.collected < rate.registered
    assert rate.collected_before == 0  # the demo's packs are all registered in 2026
