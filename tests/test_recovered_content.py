"""Recovered content computed at write time: hand-worked examples and the refusals of issue 3/8.

Every example is worked by hand in its docstring, in tonnes where that reads easier
(1 t = 1,000,000 g); the test checks the ledger's integer grams against those figures,
on SQLite and PostgreSQL, and that ``verify`` replays the log to the same numbers.
"""

from __future__ import annotations

from typing import Any

import pytest
from battery_test_codes import gbt_code
from conftest import World

from ledger.content import element_recovered_g, recovered_g
from ledger.state import Lot
from ledger.verify import verify_store
from producers.events import Signer

T = 1_000_000  # grams in a tonne
KG = 1_000


@pytest.fixture
def mill(world: World) -> Signer:
    return world.admit("org:mill", ["recycler", "manufacturer"])


def lot(world: World, lot_id: str) -> Lot:
    found = world.store.lot(lot_id)
    assert found is not None
    return found


def transform(
    world: World,
    who: Signer,
    process: str,
    inputs: list[tuple[str, int]],
    outputs: list[dict[str, Any]],
    loss_g: int,
) -> None:
    body = {
        "process": process,
        "inputs": [{"lot": x, "mass_g": m} for x, m in inputs],
        "outputs": outputs,
        "loss_g": loss_g,
    }
    world.ok(who.record("transform", body, world.heads(*(x for x, _ in inputs))))


def test_a_billet_melted_from_70_t_scrap_and_30_t_pig_iron_is_70_percent_recovered(
    world: World, mill: Signer
) -> None:
    """70 t of collected scrap (post-consumer: 100 % recovered) and 30 t of pig iron
    (virgin: 0 %) are melted into 95 t of billet; 5 t is lost as slag and dust.

    Proportional model: the billet is 70/100 recovered, 95 t x 0.7 = 66.5 t
    = 66,500,000 g, all post-consumer; the loss takes 5 t x 0.7 = 3.5 t of it.
    """
    world.create(mill, "lot:scrap", 70 * T, "steel.hms1", "post_consumer")
    world.create(mill, "lot:pig", 30 * T, "steel.pig_iron", "virgin")
    transform(
        world,
        mill,
        "melting",
        [("lot:scrap", 70 * T), ("lot:pig", 30 * T)],
        [{"lot": "lot:billet", "material": "steel.billet", "mass_g": 95 * T}],
        5 * T,
    )
    billet = lot(world, "lot:billet")
    assert billet.content == {"post": 66_500_000}
    assert recovered_g(billet.recovered) == 66_500_000
    assert recovered_g(billet.content) * 100 == 70 * billet.mass_g
    assert lot(world, "lot:scrap").recovered == {}  # all of it was used
    assert verify_store(world.store).ok


def test_the_same_through_a_merge_a_split_and_a_second_melt(world: World, mill: Signer) -> None:
    """Scrap arrives as 40 t post-consumer (end-of-life steel) and 30 t pre-consumer
    (stamping offcuts).

    1. merge -> 70 t: pre 30 t, post 40 t (buckets add).
    2. split 35 t + 35 t -> each pre 15 t, post 20 t (half of each bucket).
    3. first melt: part A 35 t + pig iron 15 t -> 50 t billet, no loss:
       pre 15 t, post 20 t (35/50 = 70 % recovered).
    4. second melt: that billet 50 t + part B 35 t + pig iron 15 t = 100 t in, 98 t out,
       2 t lost: pool pre 30 t, post 40 t, virgin 30 t; out 98 t x 0.3 = 29.4 t pre,
       98 t x 0.4 = 39.2 t post: 68.6 t recovered, still 70 %.
    """
    world.create(mill, "lot:eol", 40 * T, "steel.hms1", "post_consumer")
    world.create(mill, "lot:offcuts", 30 * T, "steel.hms1", "pre_consumer")
    world.ok(
        mill.record(
            "merge",
            {"lots": ["lot:eol", "lot:offcuts"], "into": "lot:mix"},
            world.heads("lot:eol", "lot:offcuts"),
        )
    )
    assert lot(world, "lot:mix").content == {"pre": 30 * T, "post": 40 * T}
    world.ok(
        mill.record(
            "split",
            {
                "lot": "lot:mix",
                "parts": [{"lot": "lot:a", "mass_g": 35 * T}, {"lot": "lot:b", "mass_g": 35 * T}],
            },
            world.heads("lot:mix"),
        )
    )
    assert (
        lot(world, "lot:a").content
        == lot(world, "lot:b").content
        == {"pre": 15 * T, "post": 20 * T}
    )
    world.create(mill, "lot:pig1", 15 * T, "steel.pig_iron", "virgin")
    transform(
        world,
        mill,
        "melting",
        [("lot:a", 35 * T), ("lot:pig1", 15 * T)],
        [{"lot": "lot:billet1", "material": "steel.billet", "mass_g": 50 * T}],
        0,
    )
    assert lot(world, "lot:billet1").content == {"pre": 15 * T, "post": 20 * T}
    world.create(mill, "lot:pig2", 15 * T, "steel.pig_iron", "virgin")
    transform(
        world,
        mill,
        "melting",
        [("lot:billet1", 50 * T), ("lot:b", 35 * T), ("lot:pig2", 15 * T)],
        [{"lot": "lot:billet2", "material": "steel.billet", "mass_g": 98 * T}],
        2 * T,
    )
    billet = lot(world, "lot:billet2")
    assert billet.content == {"pre": 29_400_000, "post": 39_200_000}
    assert recovered_g(billet.content) * 100 == 70 * billet.mass_g
    assert verify_store(world.store).ok


def test_rounding_is_largest_remainder_and_never_creates_recovered_mass(
    world: World, mill: Signer
) -> None:
    """A 10 g lot, 5 g of it pre-consumer (a 5 g pre-consumer lot merged with 5 g of
    virgin material is not allowed — merges need one material — so: 5 g pre-consumer
    offcuts and 5 g pig iron melted into a 10 g button, no loss), split 4 + 3 + 3 g.

    Exact shares: 5 x 4/10 = 2.0, 5 x 3/10 = 1.5, 1.5. Floors 2, 1, 1 = 4: one gram
    left, for the largest remainder (0.5, 0.5 — a tie, to the earliest): 2, 2, 1.
    The parts hold 5 g between them: the 5 g that were there, none created.
    """
    world.create(mill, "lot:off", 5, "steel.hms1", "pre_consumer")
    world.create(mill, "lot:pig", 5, "steel.pig_iron", "virgin")
    transform(
        world,
        mill,
        "melting",
        [("lot:off", 5), ("lot:pig", 5)],
        [{"lot": "lot:button", "material": "steel.billet", "mass_g": 10}],
        0,
    )
    world.ok(
        mill.record(
            "split",
            {
                "lot": "lot:button",
                "parts": [
                    {"lot": "lot:p1", "mass_g": 4},
                    {"lot": "lot:p2", "mass_g": 3},
                    {"lot": "lot:p3", "mass_g": 3},
                ],
            },
            world.heads("lot:button"),
        )
    )
    assert [lot(world, f"lot:p{i}").content.get("pre", 0) for i in (1, 2, 3)] == [2, 2, 1]


def test_element_content_and_its_recovered_share_follow_the_declared_outputs(
    world: World, mill: Signer
) -> None:
    """Hydrometallurgy, then a cathode made of recovered and virgin cobalt.

    1. 1 t of black mass (post-consumer) holding 100 kg Co and 30 kg Li is leached into
       cobalt sulfate holding 90 kg Co (600 kg of salt) and lithium carbonate holding
       27 kg Li (150 kg); 250 kg is lost. All of the pool's Co and Li is post-consumer, so
       the salts' Co and Li are 100 % recovered: 90 kg and 27 kg. Their mass: the pool is
       100 % recovered, so 600 kg and 150 kg are too.
    2. The salt (600 kg, Co 90 kg recovered) and 1,400 kg of virgin cobalt sulfate
       (Co 360 kg) make a cathode of 1,900 kg (100 kg lost) declaring Co 400 kg.
       Pool Co 450 kg, 90 kg of it recovered (20 %); the cathode's 400 kg of Co is 20 %
       recovered = 80 kg. By mass: pool 2,000 kg, 600 kg recovered (30 %):
       1,900 kg x 0.3 = 570 kg.
    """
    world.create(
        mill,
        "lot:bm",
        1 * T,
        "batteries.black_mass",
        "post_consumer",
        elements={"Co": 100 * KG, "Li": 30 * KG},
    )
    transform(
        world,
        mill,
        "hydrometallurgy",
        [("lot:bm", 1 * T)],
        [
            {
                "lot": "lot:coso4",
                "material": "elements.cobalt_sulfate",
                "mass_g": 600 * KG,
                "elements": {"Co": 90 * KG},
            },
            {
                "lot": "lot:li2co3",
                "material": "elements.lithium_carbonate",
                "mass_g": 150 * KG,
                "elements": {"Li": 27 * KG},
            },
        ],
        250 * KG,
    )
    salt = lot(world, "lot:coso4")
    assert salt.content == {"post": 600 * KG, "Co": 90 * KG, "Co.post": 90 * KG}
    assert lot(world, "lot:li2co3").content == {"post": 150 * KG, "Li": 27 * KG, "Li.post": 27 * KG}
    world.create(
        mill,
        "lot:virgin-co",
        1_400 * KG,
        "elements.cobalt_sulfate",
        "virgin",
        elements={"Co": 360 * KG},
    )
    transform(
        world,
        mill,
        "cathode_synthesis",
        [("lot:coso4", 600 * KG), ("lot:virgin-co", 1_400 * KG)],
        [
            {
                "lot": "lot:cathode",
                "material": "batteries.cathode.nmc",
                "mass_g": 1_900 * KG,
                "elements": {"Co": 400 * KG},
            }
        ],
        100 * KG,
    )
    cathode = lot(world, "lot:cathode")
    assert cathode.content == {"post": 570 * KG, "Co": 400 * KG, "Co.post": 80 * KG}
    assert element_recovered_g(cathode.content, "Co") * 100 == 20 * cathode.content["Co"]
    assert verify_store(world.store).ok


def test_an_output_cannot_hold_more_of_an_element_than_went_in(world: World, mill: Signer) -> None:
    """Black mass with 100 kg Co: an output declaring 101 kg Co is refused, and so is an
    output declaring lithium when the inputs declared none."""
    world.create(
        mill, "lot:bm", 1 * T, "batteries.black_mass", "post_consumer", elements={"Co": 100 * KG}
    )

    def leach(elements: dict[str, int]) -> Any:
        body = {
            "process": "hydrometallurgy",
            "inputs": [{"lot": "lot:bm", "mass_g": 1 * T}],
            "outputs": [
                {
                    "lot": "lot:salt",
                    "material": "elements.cobalt_sulfate",
                    "mass_g": 600 * KG,
                    "elements": elements,
                }
            ],
            "loss_g": 400 * KG,
        }
        return world.refused(mill.record("transform", body, world.heads("lot:bm")))

    too_much = leach({"Co": 100 * KG + 1})
    assert (too_much.code, too_much.path) == (
        "element.exceeds_inputs",
        "body.outputs[0].elements.Co",
    )
    assert "100001 g of Co" in too_much.message and "100000 g" in too_much.message
    none_in = leach({"Li": 1})
    assert none_in.code == "element.exceeds_inputs"


def test_a_retired_product_becomes_post_consumer_waste(world: World, mill: Signer) -> None:
    """A pack made of virgin material (0 % recovered) is retired: from then on it is
    post-consumer waste, 100 % recovered, each element too (ISO 14021 §7.8.1.1)."""
    maker = world.admit("org:maker", ["producer", "manufacturer"])
    world.create(
        maker,
        "lot:pack",
        450 * KG,
        "batteries.pack",
        "virgin",
        elements={"Co": 9 * KG, "Ni": 27 * KG},
        units=[gbt_code(1)],
    )
    assert recovered_g(lot(world, "lot:pack").content) == 0
    world.ok(
        maker.record("status", {"lot": "lot:pack", "status": "in_use"}, world.heads("lot:pack"))
    )
    assert recovered_g(lot(world, "lot:pack").content) == 0
    world.ok(
        maker.record("status", {"lot": "lot:pack", "status": "retired"}, world.heads("lot:pack"))
    )
    pack = lot(world, "lot:pack")
    assert pack.content == {
        "post": 450 * KG,
        "Co": 9 * KG,
        "Co.post": 9 * KG,
        "Ni": 27 * KG,
        "Ni.post": 27 * KG,
    }
    assert pack.recovered == {"post": 450 * KG, "Co.post": 9 * KG, "Ni.post": 27 * KG}
    assert verify_store(world.store).ok


@pytest.mark.parametrize(
    ("where", "field"),
    [("body", "recovered_g"), ("body", "recycled_share"), ("output", "post_consumer_g")],
)
def test_recovered_content_submitted_by_a_client_is_refused(
    world: World, mill: Signer, where: str, field: str
) -> None:
    """Shares are computed, never submitted: a field declaring one is its own refusal."""
    if where == "body":
        body: dict[str, Any] = {
            "lot": "lot:x",
            "material": "steel.hms1",
            "mass_g": 10,
            "origin": "post_consumer",
            field: 10,
        }
        refusal = world.refused(mill.record("create", body))
        assert (refusal.code, refusal.path) == ("recovered.declared", f"body.{field}")
    else:
        world.create(mill, "lot:x", 10)
        body = {
            "process": "shredding",
            "inputs": [{"lot": "lot:x", "mass_g": 10}],
            "outputs": [{"lot": "lot:y", "material": "steel.shredded", "mass_g": 10, field: 10}],
            "loss_g": 0,
        }
        refusal = world.refused(mill.record("transform", body, world.heads("lot:x")))
        assert (refusal.code, refusal.path) == ("recovered.declared", f"body.outputs[0].{field}")
    assert "computes it" in refusal.message


def test_battery_codes_are_checked_on_create(world: World) -> None:
    """Malformed, duplicate and non-battery codes are each their own refusal."""
    maker = world.admit("org:maker", ["producer", "manufacturer"])

    def create(lot_id: str, units: list[str], material: str = "batteries.pack") -> Any:
        body = {
            "lot": lot_id,
            "material": material,
            "mass_g": 1_000,
            "origin": "virgin",
            "units": units,
        }
        return maker.record("create", body)

    bad = world.refused(create("lot:a", [gbt_code(1), "GZMPN0719062026000000001"]))
    assert (bad.code, bad.path) == ("battery_code.malformed", "body.units[1]")
    assert "gbt34014.battery_type" in bad.message
    steel = world.refused(create("lot:a", [gbt_code(1)], material="steel.hms1"))
    assert (steel.code, steel.path) == ("battery_code.not_battery", "body.units")
    world.ok(create("lot:a", [gbt_code(1), gbt_code(2)]))
    again = world.refused(create("lot:b", [gbt_code(3), gbt_code(2)]))
    assert (again.code, again.path) == ("battery_code.duplicate", "body.units[1]")
    assert "lot:a" in again.message
    # One battery named twice in one record, in two GS1 spellings of the same GTIN + serial.
    twice = world.refused(
        create(
            "lot:b",
            ["(01)09521234543213(21)SN1", "https://id.example.com/01/9521234543213/21/SN1"],
        )
    )
    assert (twice.code, twice.path) == ("battery_code.duplicate", "body.units[1]")
    # After a split the battery is held by a part: still registered.
    world.ok(
        maker.record(
            "split",
            {
                "lot": "lot:a",
                "parts": [
                    {"lot": "lot:a1", "mass_g": 500, "units": [gbt_code(1)]},
                    {"lot": "lot:a2", "mass_g": 500, "units": [gbt_code(2)]},
                ],
            },
            world.heads("lot:a"),
        )
    )
    assert world.refused(create("lot:b", [gbt_code(1)])).code == "battery_code.duplicate"


def test_a_voided_registration_frees_the_code(world: World) -> None:
    maker = world.admit("org:maker", ["producer", "manufacturer"])
    body = {
        "lot": "lot:a",
        "material": "batteries.pack",
        "mass_g": 1_000,
        "origin": "virgin",
        "units": [gbt_code(7)],
    }
    [made] = world.ok(maker.record("create", body))
    world.ok(
        maker.record("void", {"record": made.hash, "reason": "wrong lot"}, world.heads("lot:a"))
    )
    world.ok(maker.record("create", body | {"lot": "lot:b"}))
    assert verify_store(world.store).ok


def test_second_life_keeps_the_original_code_beside_the_new_one(world: World) -> None:
    """GB/T 34014-2017 §4.2: a second-life product is coded anew and keeps its original
    code; both lead to the same lot, and a split may name either."""
    maker = world.admit("org:maker", ["producer", "manufacturer"])
    old1, old2 = gbt_code(1), gbt_code(2)
    new1 = gbt_code(1, maker="SLX")
    world.create(maker, "lot:packs", 900, "batteries.pack", "virgin", units=[old1, old2])

    def status(status: str, recode: dict[str, str]) -> Any:
        return maker.record(
            "status",
            {"lot": "lot:packs", "status": status, "recode": recode},
            world.heads("lot:packs"),
        )

    wrong_status = world.refused(status("retired", {old1: new1}))
    assert (wrong_status.code, wrong_status.path) == ("battery_code.second_life", "body.recode")
    same = world.refused(status("second_life", {old1: old1}))
    assert same.code == "battery_code.second_life"
    not_held = world.refused(status("second_life", {gbt_code(5): new1}))
    assert not_held.code == "battery_code.second_life"
    taken = world.refused(status("second_life", {old1: old2}))
    assert taken.code == "battery_code.duplicate"
    malformed = world.refused(status("second_life", {old1: "SLX-1"}))
    assert malformed.code == "battery_code.malformed"
    world.ok(status("second_life", {old1: new1}))
    packs = lot(world, "lot:packs")
    assert packs.units == (old1, old2) and packs.recoded == {old1: new1}
    world.ok(
        maker.record(
            "split",
            {
                "lot": "lot:packs",
                "parts": [
                    {"lot": "lot:p1", "mass_g": 450, "units": [new1]},
                    {"lot": "lot:p2", "mass_g": 450, "units": [old2]},
                ],
            },
            world.heads("lot:packs"),
        )
    )
    part = lot(world, "lot:p1")
    assert part.units == (old1,) and part.recoded == {old1: new1}
    assert lot(world, "lot:p2").recoded == {}
    # The new code is registered too: nobody may register it again.
    body = {
        "lot": "lot:c",
        "material": "batteries.pack",
        "mass_g": 1,
        "origin": "virgin",
        "units": [new1],
    }
    assert world.refused(maker.record("create", body)).code == "battery_code.duplicate"
    assert verify_store(world.store).ok


def test_a_lot_of_units_is_transformed_whole(world: World) -> None:
    """Batteries are not divided by mass: a transform takes a lot of units whole."""
    rec = world.admit("org:rec", ["recycler"])
    world.create(rec, "lot:packs", 900, "batteries.pack", "post_consumer", units=[gbt_code(1)])
    body = {
        "process": "dismantling",
        "inputs": [{"lot": "lot:packs", "mass_g": 500}],
        "outputs": [{"lot": "lot:m", "material": "batteries.li_ion.module", "mass_g": 500}],
        "loss_g": 0,
    }
    refusal = world.refused(rec.record("transform", body, world.heads("lot:packs")))
    assert (refusal.code, refusal.path) == ("mass.mismatch", "body.inputs[0].mass_g")
