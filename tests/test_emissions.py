"""Avoided emissions (ledger/emissions.py): an estimate by the avoided-burden, cut-off
method, checked on SQLite and PostgreSQL against hand-worked figures.

The network (every record at 2026-05-10):

* org:mill (recycler, CN-GD) collects lot:scrap, 800,000 g of post-consumer steel.hms1, and
  holds lot:pig, 200,000 g of virgin pig iron. It melts both into lot:billet, 950,000 g of
  steel.billet, loss 50,000 g. The billet's recovered grams when made: 950,000 x 800,000 /
  1,000,000 = 760,000 g (ISO 22095 proportional). Factor steel.scrap_eaf, 1,600,000 g
  CO2e/t: avoided 760,000 x 1,600,000 // 1,000,000 = 1,216,000 g.
* org:pet (recycler, CN-HN) collects lot:bottles, 100,000 g of PET bottles, and pelletises
  them into lot:pel, 90,000 g of plastics.rpet_pellet (loss 10,000), all recovered. Factor
  pet.mechanical, 1,700,000 g/t: avoided 90,000 x 1.7 = 153,000 g. It certifies 60,000 g of
  lot:pel (eu.packaging / plastic), which org:producer buys and retires: the producer's
  share is 60,000 x 1.7 = 102,000 g.
* org:cu (recycler, CN-GD) melts lot:wire, 50,000 g of bright copper, into lot:rod, 49,000 g
  of nonferrous.copper_rod (loss 1,000): no confirmed factor covers copper, so it is
  reported with no factor, 49,000 g unfactored and 0 g avoided.

Totals: output 950,000 + 90,000 + 49,000 = 1,089,000 g; recycled (recovered) 760,000 +
90,000 + 49,000 = 899,000 g; avoided 1,216,000 + 153,000 = 1,369,000 g CO2e.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import World
from read_network import Api

from ledger import emissions
from ledger.access import Ground, ReadScope, Viewer, read_scope
from ledger.emissions import EmissionFactorError, factor_for, parse_factors
from ledger.flows import FlowFilter
from ledger.queries import QueryRefused

AT = "2026-05-10T08:00:00Z"
MAY = datetime(2026, 5, 1, tzinfo=UTC)
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
ALL = ReadScope("org:regulator", True, frozenset(Ground))


def _rec(w: World, org: str, rtype: str, body: dict[str, Any], *lots: str) -> None:
    parents = w.heads(*lots) if lots else None
    w.ok(w.orgs[org].record(rtype, body, parents, at=AT))


def _melt(
    w: World, org: str, process: str, inputs: dict[str, int], out: tuple[str, str, int]
) -> None:
    lot, material, mass = out
    _rec(
        w,
        org,
        "transform",
        {
            "process": process,
            "inputs": [{"lot": x, "mass_g": g} for x, g in inputs.items()],
            "outputs": [{"lot": lot, "material": material, "mass_g": mass}],
            "loss_g": sum(inputs.values()) - mass,
        },
        *inputs,
    )


def build(w: World) -> None:
    """The network of the module docstring."""
    w.admit("org:mill", ["recycler"], "CN-GD")
    w.admit("org:pet", ["recycler"], "CN-HN")
    w.admit("org:cu", ["recycler"], "CN-GD")
    w.admit("org:producer", ["producer"], "CN-GD")
    for org, lot, material, mass, origin in [
        ("org:mill", "lot:scrap", "steel.hms1", 800_000, "post_consumer"),
        ("org:mill", "lot:pig", "steel.pig_iron", 200_000, "virgin"),
        ("org:pet", "lot:bottles", "plastics.pet", 100_000, "post_consumer"),
        ("org:cu", "lot:wire", "nonferrous.cu_bright", 50_000, "post_consumer"),
    ]:
        body = {"lot": lot, "material": material, "mass_g": mass, "origin": origin}
        _rec(w, org, "create", body)
    _melt(
        w,
        "org:mill",
        "melting",
        {"lot:scrap": 800_000, "lot:pig": 200_000},
        ("lot:billet", "steel.billet", 950_000),
    )
    _melt(
        w,
        "org:pet",
        "pelletising",
        {"lot:bottles": 100_000},
        ("lot:pel", "plastics.rpet_pellet", 90_000),
    )
    _melt(
        w, "org:cu", "melting", {"lot:wire": 50_000}, ("lot:rod", "nonferrous.copper_rod", 49_000)
    )
    cert = {
        "certificate": "cert:1",
        "scheme": "eu.packaging",
        "category": "plastic",
        "period": "2026",
        "lots": [{"lot": "lot:pel", "mass_g": 60_000}],
        "mass_g": 60_000,
    }
    _rec(w, "org:pet", "certify", cert)
    _rec(w, "org:pet", "certificate.transfer", {"certificate": "cert:1", "to": "org:producer"})
    _rec(w, "org:producer", "certificate.retire", {"certificate": "cert:1", "period": "2026"})


def _avoided(w: World, scope: ReadScope = ALL, **kw: Any) -> emissions.Avoided:
    with w.store.engine.connect() as conn:
        return emissions.avoided_emissions(conn, scope, FlowFilter(**kw))


def _rows(a: emissions.Avoided) -> dict[tuple[str, str], tuple[int, int, str | None, int]]:
    return {
        (r.material, r.org): (
            r.output_g,
            r.recycled_g,
            None if r.factor is None else r.factor.id,
            r.avoided_g,
        )
        for r in a.rows
    }


def test_hand_worked_network(world: World) -> None:
    build(world)
    a = _avoided(world, start=MAY, end=JUNE)
    assert _rows(a) == {
        ("steel.billet", "org:mill"): (950_000, 760_000, "steel.scrap_eaf", 1_216_000),
        ("plastics.rpet_pellet", "org:pet"): (90_000, 90_000, "pet.mechanical", 153_000),
        ("nonferrous.copper_rod", "org:cu"): (49_000, 49_000, None, 0),
    }
    assert (a.output_g, a.recycled_g, a.unfactored_g, a.avoided_g) == (
        1_089_000,
        899_000,
        49_000,
        1_369_000,
    )
    assert "avoided burden" in a.method and "cut-off" in a.method and "estimate" in a.method
    assert [(p.producer, p.material, p.certified_g, p.avoided_g) for p in a.producers] == [
        ("org:producer", "plastics.rpet_pellet", 60_000, 102_000)
    ]


def test_filters(world: World) -> None:
    build(world)
    assert _avoided(world, start=JUNE).rows == []
    assert _avoided(world, end=MAY).avoided_g == 0
    assert _avoided(world, material="steel").avoided_g == 1_216_000
    assert _avoided(world, material="plastics.rpet_pellet").producers[0].avoided_g == 102_000
    assert _avoided(world, material="paper").rows == []
    hn = _avoided(world, region="CN-HN")
    assert (hn.avoided_g, len(hn.producers)) == (153_000, 1)
    gd = _avoided(world, region="CN-GD")
    assert (gd.avoided_g, gd.unfactored_g, gd.producers) == (1_216_000, 49_000, [])
    assert _avoided(world, region="CN").avoided_g == 1_369_000


def test_a_voided_transform_avoided_nothing(world: World) -> None:
    """Voiding the copper melt takes lot:rod (and its 49,000 unfactored grams) out."""
    build(world)
    [melt] = [
        r for r in world.store.records() if r.type == "transform" and b"lot:rod" in r.canonical
    ]
    body = {"record": melt.hash, "reason": "entered twice"}
    world.ok(world.orgs["org:cu"].record("void", body, world.heads("lot:rod", "lot:wire"), at=AT))
    a = _avoided(world)
    assert ("nonferrous.copper_rod", "org:cu") not in _rows(a)
    assert (a.recycled_g, a.unfactored_g, a.avoided_g) == (850_000, 0, 1_369_000)


def test_recycled_output_recycled_again_is_not_credited_twice(world: World) -> None:
    """org:mill re-melts 100,000 g of lot:billet (760,000 / 950,000 = 80 % recovered) into
    lot:remelt, 98,000 g: 98,000 x 80 % = 78,400 g recovered, reported as rerecycled and
    not credited; the steel row's avoided figure stays 1,216,000 g."""
    build(world)
    body = {
        "process": "melting",
        "inputs": [{"lot": "lot:billet", "mass_g": 100_000}],
        "outputs": [{"lot": "lot:remelt", "material": "steel.billet", "mass_g": 98_000}],
        "loss_g": 2_000,
    }
    _rec(world, "org:mill", "transform", body, "lot:billet")
    a = _avoided(world, material="steel")
    [row] = a.rows
    assert (row.output_g, row.recycled_g, row.rerecycled_g, row.avoided_g) == (
        1_048_000,
        760_000,
        78_400,
        1_216_000,
    )
    assert (a.recycled_g, a.rerecycled_g) == (760_000, 78_400)


def test_participants_see_their_own(world: World) -> None:
    build(world)
    pet = _avoided(world, read_scope(Viewer("org:pet", frozenset({"recycler"}))))
    assert set(_rows(pet)) == {("plastics.rpet_pellet", "org:pet")}
    assert pet.avoided_g == 153_000
    assert pet.producers == []  # it sold the certificate: the share is the producer's
    producer = _avoided(world, read_scope(Viewer("org:producer", frozenset({"producer"}))))
    assert producer.rows == []  # it read no recycler's lots
    assert [(p.producer, p.avoided_g) for p in producer.producers] == [("org:producer", 102_000)]


def test_an_element_certificate_is_not_a_mass_share(sqlite_world: World) -> None:
    """_mass_category: categories counted in an element's grams are left out."""
    assert emissions._mass_category("eu.packaging", "plastic")
    assert not emissions._mass_category("eu.packaging", "no-such-category")
    assert not emissions._mass_category("no-such-scheme", "plastic")


def test_factor_matching_and_arithmetic() -> None:
    steel = factor_for("steel.billet", "melting")
    assert steel is not None and steel.id == "steel.scrap_eaf"
    assert factor_for("steel.billet", "pyrolysis") is None  # process-limited
    assert factor_for("elements.cobalt_sulfate", "hydrometallurgy") is None  # unconfirmed
    assert factor_for("paper.pulp_recycled", "pulping") is None  # unconfirmed
    assert emissions.avoided_g(760_000, steel) == 1_216_000
    assert emissions.avoided_g(1, steel) == 1  # 1 g x 1.6 = 1.6, floored
    assert emissions.avoided_g(5, None) == 0
    for f in emissions.default_factors():
        assert f.source and f.url.startswith("https://") and isinstance(f.g_per_t, int)
    # The most specific factor wins; at equal length the one naming the process.
    table = parse_factors(
        {
            "factors": [
                _factor("a", "steel", 1),
                _factor("b", "steel.billet", 2),
                _factor("c", "steel.billet", 3, processes=["melting"]),
            ]
        }
    )
    assert [factor_for("steel.billet", p, table).id for p in ("melting", "smelting")] == [  # type: ignore[union-attr]
        "c",
        "b",
    ]
    assert factor_for("steel.rebar", "smelting", table).id == "a"  # type: ignore[union-attr]


def _factor(fid: str, material: str, g: Any, **more: Any) -> dict[str, Any]:
    return {
        "id": fid,
        "material": material,
        "g_per_t": g,
        "baseline": "b",
        "route": "r",
        "source": "s",
        "url": "https://example.org",
    } | more


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (_factor("x", "steel", 1.5), "positive integer"),
        (_factor("x", "steel", True), "positive integer"),
        (_factor("x", "steel", 0), "positive integer"),
        (_factor("x", "unobtainium", 1), "materials.toml"),
        (_factor("x", "steel", 1, processes=["sorting"]), "recycling processes"),
        (_factor("x", "steel", 1, source=""), "source"),
    ],
)
def test_malformed_factors_are_refused(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(EmissionFactorError, match=words):
        parse_factors({"factors": [entry]})


def test_bad_arguments_are_refused(sqlite_world: World) -> None:
    with pytest.raises(QueryRefused) as exc:
        _avoided(sqlite_world, region="cn")
    assert exc.value.argument == "region"
    with pytest.raises(QueryRefused) as exc:
        _avoided(sqlite_world, start=JUNE, end=MAY)
    assert exc.value.argument == "to"


QUERY = """query($m: String, $r: String) {
  avoidedEmissions(from: "2026-05-01T00:00:00Z", to: "2026-06-01T00:00:00Z",
                   material: $m, region: $r) {
    estimate method outputG recycledG rerecycledG unfactoredG avoidedG
    rows { material org outputG recycledG rerecycledG factorGPerT avoidedG source method factorId }
    producers { producer material certifiedG factorGPerT avoidedG source }
  } }"""


def test_the_api_answers(sqlite_world: World) -> None:
    build(sqlite_world)
    sqlite_world.admit("org:regulator", ["regulator"], "CN")
    api = Api(sqlite_world)
    data = api.ok("org:regulator", QUERY)["avoidedEmissions"]
    assert data["estimate"] is True and "cut-off" in data["method"]
    assert "estimate" in data["method"].lower()
    assert (data["recycledG"], data["avoidedG"], data["unfactoredG"]) == (
        899_000,
        1_369_000,
        49_000,
    )
    steel = next(r for r in data["rows"] if r["material"] == "steel.billet")
    assert steel | {"source": "", "method": ""} == {
        "material": "steel.billet",
        "org": "org:mill",
        "outputG": 950_000,
        "recycledG": 760_000,
        "rerecycledG": 0,
        "factorGPerT": 1_600_000,
        "avoidedG": 1_216_000,
        "factorId": "steel.scrap_eaf",
        "source": "",
        "method": "",
    }
    assert "dialogue.earth" in steel["source"] and "avoided burden" in steel["method"].lower()
    copper = next(r for r in data["rows"] if r["material"] == "nonferrous.copper_rod")
    assert (copper["factorGPerT"], copper["source"], copper["avoidedG"]) == (None, None, 0)
    assert data["producers"][0]["avoidedG"] == 102_000
    mine = api.ok("org:pet", QUERY)["avoidedEmissions"]
    assert (mine["avoidedG"], mine["producers"]) == (153_000, [])
    answer = api.ask("org:regulator", QUERY, {"r": "xx"})
    assert answer.body["errors"][0]["extensions"]["argument"] == "region"
