"""recoveredContent and battery over HTTP (httpx's ASGI transport), on SQLite and PostgreSQL.

The network is tests/tracing_network.py's battery loop; the hand-worked numbers behind every
figure are in tests/test_tracing.py's docstrings. The headline: a battery traced end to end
from the automaker's code to the cathode lot, whose recycled-content shares are then computed
and checked against the EU 2023/1542 Art. 8 targets — all as the automaker.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from battery_test_codes import gbt_code
from conftest import World
from read_network import Api
from tracing_network import (
    B11,
    B14,
    CATHODE,
    GS1_KEY,
    GS1_LINK,
    MAKER,
    OUTSIDER,
    RECYCLER,
    REGULATOR,
    S91,
    Loop,
    build_loop,
)


@pytest.fixture
def loop(world: World) -> Loop:
    return build_loop(world)


@pytest.fixture
def api(loop: Loop) -> Api:
    return Api(loop.world)


BATTERY = """query($code: String!, $depth: Int) { battery(code: $code, maxDepth: $depth) {
  code scheme secondLifeCodes
  lots { seq lot { id material units } }
  events { seq hash type at stage lots status note voidedBy actor { id } }
  custodians { since seq lot organisation { id } }
  lastLot { id } unitsInLastLot
  downstream {
    lot { id material custodian { id } } massG remainingG
    elements { element massG remainingG }
  }
  elements { element initialG recoveredG heldNowG }
  complete truncated hiddenByAccess
} }"""

CONTENT = """query($lot: ID!, $on: Date) { recoveredContent(lot: $lot) {
  lot material massG recoveredG preConsumerG postConsumerG share shareBasisPoints
  elements { element massG recoveredG preConsumerG postConsumerG share shareBasisPoints }
  check(on: $on) {
    __typename
    ... on RecycledContentCheck {
      on article inForceFrom meetsAll approximation
      findings { element basis totalG recoveredG shareBasisPoints requiredBasisPoints meets }
    }
    ... on NoRecycledContentTarget { on firstTargetFrom message }
    ... on RecycledContentNotApplicable { reason }
  }
} }"""

PROOF = """query($lot: ID!, $depth: Int, $lots: Int) { recoveredContent(lot: $lot) {
  proof(maxDepth: $depth, maxLots: $lots) {
    complete truncated hiddenByAccess depth
    nodes { lot material origin massG recoveredG preConsumerG postConsumerG madeBy madeSeq }
    edges { parent child massG elements { element massG } seq recordHash }
    recordHashes
  }
} }"""


def test_a_battery_end_to_end_from_the_automakers_code_to_the_cathode(loop: Loop, api: Api) -> None:
    """The automaker asks for its pack B11: retired, collected, dismantled, black mass,
    recovered as sulfates and carbonate, remanufactured into lot:cathode, which now holds
    Co 9,828 g, Ni 25,740 g and Li 4,286 g of it (4,286.4 rounded down). Then it asks how
    much of the cathode is recovered — Co 80 %, Li and Ni 100 %, 94.11 % by mass — and checks
    that against Art. 8(2) as in force on 2031-08-18: met."""
    b = api.ok(MAKER, BATTERY, code=B11)["battery"]
    assert (b["code"], b["scheme"], b["secondLifeCodes"]) == (B11, "gbt34014", [])
    assert [x["lot"]["id"] for x in b["lots"]] == ["lot:packs", "lot:fleet-a"]
    assert b["lots"][1]["lot"]["units"] == [B11, gbt(12), gbt(13)]
    stages = [e["stage"] for e in b["events"]]
    assert stages == [
        "REGISTERED",
        "PLACED_ON_MARKET",
        "HANDLED",
        "HANDLED",
        "IN_USE",
        "HANDLED",
        "RETIRED",
        "HANDLED",
        "COLLECTED",
        "DISMANTLED",
        "BLACK_MASS",
        "HANDLED",
        "RECOVERED_ELEMENTS",
        "REMANUFACTURED",
    ]
    collected = b["events"][8]
    assert collected["actor"] == {"id": RECYCLER} and collected["type"] == "receive"
    assert collected["hash"] == loop.hashes["fleet-a.receive"]
    assert b["events"][6]["note"] == "state of health below 70 %"
    assert [c["organisation"]["id"] for c in b["custodians"]] == [MAKER, "org:fleet", RECYCLER]
    assert (b["lastLot"], b["unitsInLastLot"]) == ({"id": "lot:fleet-a"}, 3)
    cathode = b["downstream"][-1]
    assert cathode["lot"] == {
        "id": "lot:cathode",
        "material": "batteries.cathode.nmc",
        "custodian": {"id": CATHODE},
    }
    assert (cathode["massG"], cathode["remainingG"]) == (67_764, 67_764)
    assert cathode["elements"] == [
        {"element": "Co", "massG": 9_828, "remainingG": 9_828},
        {"element": "Li", "massG": 4_286, "remainingG": 4_286},
        {"element": "Ni", "massG": 25_740, "remainingG": 25_740},
    ]
    assert b["elements"] == [
        {"element": "Co", "initialG": 12_000, "recoveredG": 9_828, "heldNowG": 9_828},
        {"element": "Li", "initialG": 6_000, "recoveredG": 4_286, "heldNowG": 4_286},
        {"element": "Mn", "initialG": 12_000, "recoveredG": 0, "heldNowG": 0},
        {"element": "Ni", "initialG": 36_000, "recoveredG": 25_740, "heldNowG": 25_740},
    ]
    assert (b["complete"], b["truncated"], b["hiddenByAccess"]) == (True, False, False)

    c = api.ok(MAKER, CONTENT, lot=cathode["lot"]["id"], on="2031-08-18")["recoveredContent"]
    assert (c["massG"], c["recoveredG"], c["preConsumerG"], c["postConsumerG"]) == (
        400_000,
        376_471,
        0,
        376_471,
    )
    assert c["shareBasisPoints"] == 9411 and c["share"] == pytest.approx(0.9411775)
    assert [(e["element"], e["shareBasisPoints"]) for e in c["elements"]] == [
        ("Co", 8000),
        ("Li", 10_000),
        ("Ni", 10_000),
    ]
    assert c["elements"][0]["share"] == 0.8
    check = c["check"]
    assert check["__typename"] == "RecycledContentCheck" and check["meetsAll"] is True
    assert (check["on"], check["inForceFrom"]) == ("2031-08-18", "2031-08-18")
    assert check["article"] == "Regulation (EU) 2023/1542 Art. 8(2)"
    assert "active material" in check["approximation"]
    assert check["findings"] == [
        {
            "element": "Co",
            "basis": "active_material",
            "totalG": 63_000,
            "recoveredG": 50_400,
            "shareBasisPoints": 8000,
            "requiredBasisPoints": 1600,
            "meets": True,
        },
        {
            "element": "Li",
            "basis": "active_material",
            "totalG": 22_560,
            "recoveredG": 22_560,
            "shareBasisPoints": 10_000,
            "requiredBasisPoints": 600,
            "meets": True,
        },
        {
            "element": "Ni",
            "basis": "active_material",
            "totalG": 132_000,
            "recoveredG": 132_000,
            "shareBasisPoints": 10_000,
            "requiredBasisPoints": 600,
            "meets": True,
        },
    ]


def gbt(n: int) -> str:
    return gbt_code(n)


def test_the_proof_through_the_api_and_every_record_it_names(loop: Loop, api: Api) -> None:
    """The regulator's proof of lot:cathode is complete (23 records, 11 lots, 12 flows, see
    tests/test_tracing.py); each record hash answers event(hash) with its signed envelope. The
    automaker's is not: lot:bm-other and lot:co-mined are not in its lineage."""
    p = api.ok(REGULATOR, PROOF, lot="lot:cathode")["recoveredContent"]["proof"]
    assert (p["complete"], p["truncated"], p["hiddenByAccess"], p["depth"]) == (
        True,
        False,
        False,
        6,
    )
    assert len(p["nodes"]) == 11 and len(p["edges"]) == 12 and len(p["recordHashes"]) == 23
    root = p["nodes"][0]
    assert root == {
        "lot": "lot:cathode",
        "material": "batteries.cathode.nmc",
        "origin": "transformed",
        "massG": 400_000,
        "recoveredG": 376_471,
        "preConsumerG": 0,
        "postConsumerG": 376_471,
        "madeBy": loop.hashes["cathode.make"],
        "madeSeq": loop.seqs["cathode.make"],
    }
    into = next(e for e in p["edges"] if e["parent"] == "lot:coso4")
    assert into == {
        "parent": "lot:coso4",
        "child": "lot:cathode",
        "massG": 94_118,
        "elements": [{"element": "Co", "massG": 50_400}],
        "seq": loop.seqs["cathode.make"],
        "recordHash": loop.hashes["cathode.make"],
    }
    query = "query($h: String!) { event(hash: $h) { hash envelope signature } }"
    for h in p["recordHashes"]:
        event = api.ok(REGULATOR, query, h=h)["event"]
        assert event is not None and event["hash"] == h and event["signature"]
    mine = api.ok(MAKER, PROOF, lot="lot:cathode")["recoveredContent"]["proof"]
    assert (mine["complete"], mine["hiddenByAccess"]) == (False, True)
    assert {n["lot"] for n in mine["nodes"]} >= {"lot:cathode", "lot:packs"}
    assert "lot:bm-other" not in {n["lot"] for n in mine["nodes"]}
    cut = api.ok(REGULATOR, PROOF, lot="lot:cathode", depth=1)["recoveredContent"]["proof"]
    assert (cut["complete"], cut["truncated"], len(cut["nodes"])) == (False, True, 5)


def test_the_proof_as_one_json_document_says_the_same(api: Api) -> None:
    """proof.document carries the same lots, flows and record hashes as the fields, with each
    lot's stored composition: lot:cathode's is {"Co": 63000, "Co.post": 50400, ...,
    "post": 376471} (worked in tests/test_tracing.py)."""
    query = """query($lot: ID!) { recoveredContent(lot: $lot) { proof {
      complete depth nodes { lot massG madeBy madeSeq recoveredG } edges { parent child massG
      seq recordHash elements { element massG } } recordHashes document } } }"""
    p = api.ok(REGULATOR, query, lot="lot:cathode")["recoveredContent"]["proof"]
    doc = json.loads(p["document"])
    assert (doc["lot"], doc["complete"], doc["truncated"], doc["hiddenByAccess"]) == (
        "lot:cathode",
        True,
        False,
        False,
    )
    assert doc["depth"] == p["depth"] == 6
    assert doc["recordHashes"] == p["recordHashes"]
    assert [(x["lot"], x["massG"], x["madeBy"], x["madeSeq"]) for x in doc["lots"]] == [
        (n["lot"], n["massG"], n["madeBy"], n["madeSeq"]) for n in p["nodes"]
    ]
    assert doc["lots"][0]["content"] == {
        "Co": 63_000,
        "Co.post": 50_400,
        "Li": 22_560,
        "Li.post": 22_560,
        "Ni": 132_000,
        "Ni.post": 132_000,
        "post": 376_471,
    }
    assert [
        (f["parent"], f["child"], f["massG"], f["seq"], f["recordHash"], f["elements"])
        for f in doc["flows"]
    ] == [
        (
            e["parent"],
            e["child"],
            e["massG"],
            e["seq"],
            e["recordHash"],
            {x["element"]: x["massG"] for x in e["elements"]},
        )
        for e in p["edges"]
    ]


def test_no_target_before_2031_and_no_verdict_for_steel(api: Api) -> None:
    """The day before Art. 8(2) applies, and today (no `on`: the ledger's date, before 2031),
    there is no minimum: the answer says so instead of passing or failing. A steel lot is
    not a battery. Virgin packs fail every target of Art. 8(3)."""
    for on in ("2031-08-17", None):
        c = api.ok(REGULATOR, CONTENT, lot="lot:cathode", on=on)["recoveredContent"]
        assert c["check"]["__typename"] == "NoRecycledContentTarget"
        assert c["check"]["firstTargetFrom"] == "2031-08-18"
        assert "no Regulation (EU) 2023/1542 Art. 8 minimum" in c["check"]["message"]
    steel = api.ok(REGULATOR, CONTENT, lot="lot:casing", on="2031-08-18")["recoveredContent"]
    assert steel["check"]["__typename"] == "RecycledContentNotApplicable"
    assert "steel.hms2 is not a battery material" in steel["check"]["reason"]
    packs = api.ok(REGULATOR, CONTENT, lot="lot:packs", on="2036-08-18")["recoveredContent"]
    check = packs["check"]
    assert check["__typename"] == "RecycledContentCheck" and check["meetsAll"] is False
    assert check["article"] == "Regulation (EU) 2023/1542 Art. 8(3)"
    assert [(f["element"], f["requiredBasisPoints"], f["meets"]) for f in check["findings"]] == [
        ("Co", 2600, False),
        ("Li", 1200, False),
        ("Ni", 1500, False),
    ]


def test_second_life_and_gs1_codes(api: Api) -> None:
    by_new = api.ok(REGULATOR, BATTERY, code=S91)["battery"]
    assert by_new == api.ok(REGULATOR, BATTERY, code=B14)["battery"]
    assert (by_new["code"], by_new["secondLifeCodes"]) == (B14, [S91])
    assert by_new["events"][-1]["stage"] == "SECOND_LIFE"
    assert by_new["events"][-1]["status"] == "second_life"
    assert by_new["downstream"][0]["lot"]["id"] == "lot:fleet-b"
    gs1 = api.ok(MAKER, BATTERY, code=GS1_LINK)["battery"]
    assert (gs1["code"], gs1["scheme"]) == (GS1_KEY, "gs1")


def test_hidden_missing_and_void_answer_null(loop: Loop, api: Api) -> None:
    """A battery whose first lot the viewer may not read answers exactly like an unknown
    code; a lot it may not read like a missing one; so does a void lot."""
    unknown = api.ok(REGULATOR, BATTERY, code=gbt(4242))
    for org in (RECYCLER, CATHODE, OUTSIDER):
        assert api.ok(org, BATTERY, code=B11) == unknown == {"battery": None}
    for org, lot in ((OUTSIDER, "lot:cathode"), (REGULATOR, "lot:nope")):
        assert api.ok(org, CONTENT, lot=lot) == {"recoveredContent": None}
    w = loop.world
    made = w.create(w.orgs[OUTSIDER], "lot:oops", 1_000)
    w.ok(
        w.orgs[OUTSIDER].record(
            "void", {"record": made.hash, "reason": "typo"}, w.heads("lot:oops")
        )
    )
    assert api.ok(REGULATOR, CONTENT, lot="lot:oops") == {"recoveredContent": None}
    fleet = api.ok("org:fleet", BATTERY, code=B11)["battery"]
    assert (fleet["complete"], fleet["hiddenByAccess"]) == (False, True)
    assert [d["lot"]["id"] for d in fleet["downstream"]] == ["lot:fleet-a"]


def _error(answer: Any) -> dict[str, Any]:
    [error] = answer.body["errors"]
    assert answer.status == 400, answer.body
    result: dict[str, Any] = error["extensions"]
    result["message"] = error["message"]
    return result


def test_bad_arguments_name_themselves(api: Api) -> None:
    bad = _error(api.ask(REGULATOR, BATTERY, {"code": "not a code"}))
    assert (bad["code"], bad["argument"]) == ("BAD_USER_INPUT", "code")
    assert "not a battery code" in bad["message"]
    deep = _error(api.ask(REGULATOR, BATTERY, {"code": B11, "depth": 51}))
    assert (deep["code"], deep["argument"]) == ("BAD_USER_INPUT", "maxDepth")
    many = _error(api.ask(REGULATOR, PROOF, {"lot": "lot:cathode", "lots": 0}))
    assert (many["code"], many["argument"]) == ("BAD_USER_INPUT", "maxLots")


BENCHMARK = Path(__file__).resolve().parent / "benchmarks" / "tracing.py"


def test_the_tracing_benchmark_runs_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/benchmarks/tracing.py --quick, as a smoke test: it builds its ledger (40 packs),
    checks each answer (a complete proof, the battery reaching the new pack 10 hops on) and
    prints p50/p95 for every query and viewer. No timing is asserted: the suite's machine is
    shared; the figures are for reading."""
    spec = importlib.util.spec_from_file_location("tracing_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--quick", "--runs", "3", "--warmup", "1"])
    assert len(results) == 10  # 5 queries x 2 viewers
    assert all(0 < p50 <= p95 for p50, p95 in results.values())
    out = capsys.readouterr().out
    assert "p50 ms" in out and "battery(code), 10 hops" in out


def test_a_lot_says_its_recovered_mass_and_second_life_codes(api: Api) -> None:
    """Lot.recoveredG (DESIGN.md's Lot) equals recoveredContent's figure; the second-life
    lot lists its new code beside the original."""
    query = """query($id: ID!) {
      lot(id: $id) { recoveredG massG secondLifeCodes { original code } }
      recoveredContent(lot: $id) { recoveredG massG }
    }"""
    found = api.ok(REGULATOR, query, id="lot:fleet-b")
    assert found["lot"]["recoveredG"] == found["recoveredContent"]["recoveredG"]
    assert found["lot"]["secondLifeCodes"] == [{"original": B14, "code": S91}]
