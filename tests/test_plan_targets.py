"""National plan targets (ledger/plan_targets.py) and recorded progress towards them, on
SQLite and PostgreSQL.

The network: tests/test_emissions.py's (May 2026), plus org:paper (recycler, CN-GD) pulping
300,000 g of collected OCC into recycled pulp (loss 30,000) in May 2026; org:mill melting
100,000 g of collected HMS 1 into billet at 2025-12-31T23:00Z (a 2025 record) and
re-melting 100,000 g of its May billet on 2026-05-20 (recycled output recycled again: not
scrap utilised a second time).

Hand-worked, CN-GD, 2026:
* scrap steel utilised (recycling_input, steel): inputs of non-virgin steel lots into
  recycling transforms: lot:scrap 800,000 g (the 200,000 g of virgin pig iron melted with
  it are not scrap, nor is the re-melted billet; the 2025 melt is another year) = 800,000 g;
* waste paper utilised (recycling_input, paper): 300,000 g;
* recycled non-ferrous output (recycled_output): lot:rod, 49,000 g recovered copper rod.
Against the real targets (320 Mt, 60 Mt, 20 Mt) every share is 0 bp; against 1 t targets:
800,000 x 10,000 // 1,000,000 = 8,000 bp, 3,000 bp and 490 bp. CN-HN (org:pet's PET
pellets) has none of these: 0 g each. CN-GD in 2025: 100,000 g of scrap steel.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from conftest import World
from read_network import Api
from test_emissions import build

from ledger.plan_targets import (
    PlanTargetError,
    Progress,
    Target,
    default_targets,
    parse_targets,
    plan_progress,
)
from ledger.queries import QueryRefused

STEEL, PAPER, NONFERROUS = (
    "CN-14FYP-CE-2025-scrap-steel",
    "CN-14FYP-CE-2025-waste-paper",
    "CN-14FYP-CE-2025-recycled-nonferrous",
)


def _network(w: World) -> None:
    build(w)
    paper = w.admit("org:paper", ["recycler"], "CN-GD")
    at = "2026-05-12T08:00:00Z"
    create = {
        "lot": "lot:occ",
        "material": "paper.occ",
        "mass_g": 300_000,
        "origin": "post_consumer",
    }
    w.ok(paper.record("create", create, at=at))
    pulp = {
        "process": "pulping",
        "inputs": [{"lot": "lot:occ", "mass_g": 300_000}],
        "outputs": [{"lot": "lot:pulp", "material": "paper.pulp_recycled", "mass_g": 270_000}],
        "loss_g": 30_000,
    }
    w.ok(paper.record("transform", pulp, w.heads("lot:occ"), at=at))
    mill = w.orgs["org:mill"]
    late = "2025-12-31T23:00:00Z"
    old = {"lot": "lot:old", "material": "steel.hms1", "mass_g": 100_000, "origin": "post_consumer"}
    w.ok(mill.record("create", old, at=late))
    melt = {
        "process": "melting",
        "inputs": [{"lot": "lot:old", "mass_g": 100_000}],
        "outputs": [{"lot": "lot:old-billet", "material": "steel.billet", "mass_g": 95_000}],
        "loss_g": 5_000,
    }
    w.ok(mill.record("transform", melt, w.heads("lot:old"), at=late))
    again = {
        "process": "melting",
        "inputs": [{"lot": "lot:billet", "mass_g": 100_000}],
        "outputs": [{"lot": "lot:remelt", "material": "steel.billet", "mass_g": 98_000}],
        "loss_g": 2_000,
    }
    w.ok(mill.record("transform", again, w.heads("lot:billet"), at="2026-05-20T08:00:00Z"))


def _progress(w: World, region: str, year: int, targets: Any = None) -> dict[str, Progress]:
    with w.store.engine.connect() as conn:
        return {p.target.id: p for p in plan_progress(conn, region, year, targets)}


def _one_tonne() -> tuple[Target, ...]:
    return tuple(replace(t, mass_t=1) for t in default_targets())


def test_the_shipped_targets_are_the_plan_s() -> None:
    got = {t.id: (t.country, t.year, t.measure, t.target_g) for t in default_targets()}
    assert got == {
        STEEL: ("CN", 2025, "recycling_input", 320_000_000 * 1_000_000),
        PAPER: ("CN", 2025, "recycling_input", 60_000_000 * 1_000_000),
        NONFERROUS: ("CN", 2025, "recycled_output", 20_000_000 * 1_000_000),
    }
    for t in default_targets():
        assert "NDRC" in t.plan and t.source and t.url.startswith("https://")


def test_hand_worked_progress(world: World) -> None:
    _network(world)
    real = _progress(world, "CN-GD", 2026)
    assert {k: (p.recorded_g, p.share_bp) for k, p in real.items()} == {
        STEEL: (800_000, 0),
        PAPER: (300_000, 0),
        NONFERROUS: (49_000, 0),
    }
    small = _progress(world, "CN-GD", 2026, _one_tonne())
    assert {k: p.share_bp for k, p in small.items()} == {
        STEEL: 8_000,
        PAPER: 3_000,
        NONFERROUS: 490,
    }
    assert {k: p.recorded_g for k, p in _progress(world, "CN", 2026).items()} == {
        STEEL: 800_000,
        PAPER: 300_000,
        NONFERROUS: 49_000,
    }
    assert {p.recorded_g for p in _progress(world, "CN-HN", 2026).values()} == {0}
    assert _progress(world, "CN-GD", 2025)[STEEL].recorded_g == 100_000
    assert _progress(world, "DE", 2026) == {}  # no German targets shipped


def test_bad_arguments_are_refused(sqlite_world: World) -> None:
    with pytest.raises(QueryRefused) as exc:
        _progress(sqlite_world, "cn-gd", 2026)
    assert exc.value.argument == "region"
    with pytest.raises(QueryRefused) as exc:
        _progress(sqlite_world, "CN", 20261)
    assert exc.value.argument == "year"


def _target(**over: Any) -> dict[str, Any]:
    return {
        "id": "t",
        "country": "CN",
        "year": 2025,
        "name": "n",
        "measure": "recycling_input",
        "materials": ["steel"],
        "mass_t": 1,
        "plan": "p",
        "source": "s",
        "url": "https://example.org",
    } | over


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"measure": "collected"}, "measure"),
        ({"materials": ["steel", "steel.hms1"]}, "lies within"),
        ({"materials": ["unobtainium"]}, "materials.toml"),
        ({"mass_t": 1.5}, "mass_t"),
        ({"year": True}, "year"),
        ({"country": "China"}, "ISO 3166-1"),
        ({"source": ""}, "source"),
    ],
)
def test_malformed_targets_are_refused(over: dict[str, Any], words: str) -> None:
    with pytest.raises(PlanTargetError, match=words):
        parse_targets({"targets": [_target(**over)]})


QUERY = """query($r: String!, $y: Int!) { planProgress(region: $r, year: $y) {
  region year recordedG shareBasisPoints sharePercent
  target { id country year name measure materials targetG plan source url } } }"""


def test_the_api_answers(sqlite_world: World) -> None:
    _network(sqlite_world)
    sqlite_world.admit("org:regulator", ["regulator"], "CN")
    api = Api(sqlite_world)
    rows = api.ok("org:regulator", QUERY, r="CN-GD", y=2026)["planProgress"]
    steel = next(x for x in rows if x["target"]["id"] == STEEL)
    assert (steel["recordedG"], steel["shareBasisPoints"], steel["sharePercent"]) == (
        800_000,
        0,
        0.0,
    )
    assert steel["target"]["targetG"] == 320_000_000_000_000
    assert steel["target"]["materials"] == ["steel"]
    assert api.ok("org:mill", QUERY, r="CN-GD", y=2026)["planProgress"] is None
    answer = api.ask("org:regulator", QUERY, {"r": "CN-GD", "y": 1900})
    assert answer.body["errors"][0]["extensions"]["argument"] == "year"
