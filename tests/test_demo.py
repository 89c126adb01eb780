"""The synthetic regional network of `rledger demo` (producers/demo.py), on a real SQLite ledger."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import World, make_world

from ledger.database import database_url
from ledger.materials import default_taxonomy
from ledger.store import Store
from ledger.verify import rebuild, verify_store
from producers.demo import FAMILIES, DemoSummary, seed_demo


def demo_records(store: Store) -> list[tuple[str, dict[str, object]]]:
    """(hash, envelope) of every record after the genesis (which the fixture dates "now")."""
    return [(r.hash, json.loads(r.canonical)) for r in store.records(from_seq=2)]


@pytest.fixture
def seeded(sqlite_world: World) -> tuple[World, DemoSummary]:
    return sqlite_world, seed_demo(sqlite_world.store, sqlite_world.operator, months=2)


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
            assert all(len(u) == 24 for u in body.get("units", []))
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
    } <= processes
    # Every `at` lies within the two months, in the format of the contract.
    ats = [str(env["at"]) for env in envelopes]
    assert min(ats) >= "2026-05-01T00:00:00Z" and max(ats) < "2026-07-01T00:00:00Z"
    assert all(len(at) == 20 and at.endswith("Z") for at in ats)


def test_batteries_are_traced_to_recovered_salts(seeded: tuple[World, DemoSummary]) -> None:
    world, _ = seeded
    lots = {row[0]: row for row in world.store.projection_rows()["lots"]}
    salts = [row for row in lots.values() if str(row[1]).startswith("elements.") and row[4]]
    assert {row[1] for row in salts} >= {
        "elements.cobalt_sulfate",
        "elements.nickel_sulfate",
        "elements.lithium_carbonate",
    }
    for row in salts:
        elements = json.loads(row[10])
        assert elements and sum(elements.values()) <= row[3]
    statuses = {row[5] for row in lots.values() if row[1] == "batteries.pack"}
    assert {"second_life", "consumed"} <= statuses
    assert "void" in {row[5] for row in lots.values()}


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
