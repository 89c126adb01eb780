"""materialFlows (ledger/flows.py): stage totals, links, rates and months, on SQLite and
PostgreSQL, checked against hand-worked figures and against an independent walk of the
demo's records.

Hand-worked (test_a_small_chain_adds_up): org:col (collector, CN-GD) creates lot:a, 100,000 g
of post-consumer steel.hms1 (collected 100,000). It sorts lot:a (inputs 100,000 g) into
lot:b, 90,000 g steel.shredded, with loss_g 10,000 (processed 100,000; loss 10,000). It
disposes of 5,000 g of lot:b to landfill (disposed 5,000) and ships the other 85,000 g to
org:mill (in transit 85,000). Links: collected→processed 100,000, processed→loss 10,000,
processed→disposed 5,000, processed→in_transit 85,000. Rates of collected: recovery 0
(nothing recycled yet), disposal 5,000 / 100,000 = 500 bp.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import World, make_world
from read_network import Api

from ledger import flows
from ledger.access import Ground, ReadScope, Viewer, read_scope
from ledger.database import database_url
from ledger.materials import default_taxonomy
from ledger.queries import QueryRefused
from producers.demo import seed_demo

AT = "2026-05-10T08:00:00Z"
MAY = datetime(2026, 5, 1, tzinfo=UTC)
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
ALL = ReadScope("org:regulator", True, frozenset(Ground))


def _rec(w: World, org: str, rtype: str, body: dict[str, Any], *lots: str) -> None:
    parents = w.heads(*lots) if lots else None
    w.ok(w.orgs[org].record(rtype, body, parents, at=AT))


def _chain(w: World) -> None:
    w.admit("org:col", ["collector"], "CN-GD")
    w.admit("org:mill", ["recycler"], "CN-HN")
    _rec(
        w,
        "org:col",
        "create",
        {"lot": "lot:a", "material": "steel.hms1", "mass_g": 100_000, "origin": "post_consumer"},
    )
    _rec(
        w,
        "org:col",
        "transform",
        {
            "process": "sorting",
            "inputs": [{"lot": "lot:a", "mass_g": 100_000}],
            "outputs": [{"lot": "lot:b", "material": "steel.shredded", "mass_g": 90_000}],
            "loss_g": 10_000,
        },
        "lot:a",
    )
    _rec(w, "org:col", "dispose", {"lot": "lot:b", "mass_g": 5_000, "method": "landfill"}, "lot:b")
    _rec(w, "org:col", "transfer", {"lot": "lot:b", "to": "org:mill", "mass_g": 85_000}, "lot:b")


def _flows(w: World, scope: ReadScope = ALL, **kw: Any) -> flows.Flows:
    group_by = kw.pop("group_by", flows.GroupBy.STAGE)
    with w.store.engine.connect() as conn:
        return flows.material_flows(conn, scope, flows.FlowFilter(**kw), group_by)


def test_a_small_chain_adds_up(world: World) -> None:
    _chain(world)
    f = _flows(world, start=MAY, end=JUNE)
    assert f.stages == {
        "collected": 100_000,
        "processed": 100_000,
        "recycled": 0,
        "manufactured": 0,
        "second_life": 0,
        "disposed": 5_000,
        "in_transit": 85_000,
    }
    assert {(x.source, x.target): x.mass_g for x in f.links} == {
        ("collected", "processed"): 100_000,
        ("processed", "loss"): 10_000,
        ("processed", "disposed"): 5_000,
        ("processed", "in_transit"): 85_000,
    }
    assert f.disposed_by_method == {"landfill": 5_000}
    assert (f.recovery_bp, f.reuse_bp, f.disposal_bp) == (0, 0, 500)
    assert [(m.month, m.stages["collected"]) for m in f.months] == [("2026-05", 100_000)]
    assert {n.id: n.mass_g for n in f.nodes}["processed"] == 100_000
    # Outside the period, or another material or region: nothing.
    assert _flows(world, start=JUNE).stages["collected"] == 0
    assert _flows(world, material="paper").links == []
    assert _flows(world, material="steel").stages["collected"] == 100_000
    assert _flows(world, region="CN-HN").stages["collected"] == 0
    assert _flows(world, region="CN").stages["collected"] == 100_000


def test_grouped_by_organisation_and_region(world: World) -> None:
    _chain(world)
    by_org = _flows(world, group_by=flows.GroupBy.ORGANISATION)
    assert {(x.source, x.target): x.mass_g for x in by_org.links}[("org:col", "collected")] == (
        100_000
    )
    kinds = {n.id: n.kind for n in by_org.nodes}
    assert kinds["org:col"] == "organisation" and kinds["collected"] == "stage"
    by_region = _flows(world, group_by=flows.GroupBy.REGION)
    assert {(x.source, x.target) for x in by_region.links} >= {("CN-GD", "processed")}


def test_participants_see_their_own_flows_only(world: World) -> None:
    _chain(world)
    world.admit("org:other", ["collector"], "CN-GD")
    other = read_scope(Viewer("org:other", frozenset({"collector"})))
    assert _flows(world, other).links == [] and _flows(world, other).stages["collected"] == 0
    mine = read_scope(Viewer("org:col", frozenset({"collector"})))
    assert _flows(world, mine).stages["collected"] == 100_000


def test_bad_arguments_are_refused(sqlite_world: World) -> None:
    with pytest.raises(QueryRefused) as exc:
        _flows(sqlite_world, region="cn-gd")
    assert exc.value.argument == "region"
    with pytest.raises(QueryRefused) as exc:
        _flows(sqlite_world, start=JUNE, end=MAY)
    assert exc.value.argument == "to"
    with pytest.raises(QueryRefused):
        _flows(sqlite_world, start=datetime(2026, 5, 1))  # no time zone


def test_the_api_answers(sqlite_world: World) -> None:
    _chain(sqlite_world)
    sqlite_world.admit("org:regulator", ["regulator"], "CN")
    api = Api(sqlite_world)
    q = """query($m: String) { materialFlows(from: "2026-05-01T00:00:00Z", material: $m) {
      nodes { id kind massG } links { source target massG } stages { stage massG }
      recoveryRate { basisPoints } disposalRate { basisPoints percent }
      months { month stages { stage massG } } } }"""
    data = api.ok("org:regulator", q, m="steel")["materialFlows"]
    assert {"source": "collected", "target": "processed", "massG": 100_000} in data["links"]
    assert data["disposalRate"] == {"basisPoints": 500, "percent": 5.0}
    answer = api.ask("org:regulator", '{ materialFlows(region: "xx") { stages { stage } } }')
    assert answer.body["errors"][0]["extensions"]["argument"] == "region"


# --- the demo: one month of one material, against the records -------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[World]:
    with tempfile.TemporaryDirectory() as d:
        w = make_world(database_url(os.path.join(d, "demo.db")))
        seed_demo(w.store, w.operator, months=1)
        yield w
        w.store.close()


def _expected(w: World, family: str) -> dict[str, int]:
    """Walk the records in Python (what ledger/flows.py must NOT do) for ``family``."""
    tax = default_taxonomy()
    bodies = [
        (r.type, r.at, r.hash, json.loads(bytes(r.canonical))["body"]) for r in w.store.records()
    ]
    voided = {b["record"] for t, _, _, b in bodies if t == "void"}
    material: dict[str, str] = {}
    pending: dict[str, int] = {}
    got = dict.fromkeys(["collected", "processed", "recycled", "manufactured", "loss"], 0)
    got["disposed"] = got["in_transit"] = 0

    def match(lot: str) -> bool:
        return material[lot] == family or material[lot].startswith(family + ".")

    for t, at, h, b in bodies:
        if h in voided or not (MAY.isoformat()[:7] <= at[:7] < JUNE.isoformat()[:7]):
            continue
        if t == "create":
            material[b["lot"]] = b["material"]
            if b["origin"] in ("pre_consumer", "post_consumer") and match(b["lot"]):
                got["collected"] += b["mass_g"]
        elif t == "split":
            for p in b["parts"]:
                material[p["lot"]] = material[b["lot"]]
        elif t == "merge":
            material[b["into"]] = material[b["lots"][0]]
        elif t == "transform":
            proc = tax.process(b["process"])
            assert proc is not None
            stage = (
                "recycled"
                if proc.recycling
                else "manufactured"
                if proc.code in flows.MANUFACTURING
                else "processed"
            )
            hits = [i for i in b["inputs"] if match(i["lot"])]
            got[stage] += sum(i["mass_g"] for i in hits)
            if hits:
                got["loss"] += b["loss_g"]
            for o in b["outputs"]:
                material[o["lot"]] = o["material"]
        elif t == "dispose" and match(b["lot"]):
            got["disposed"] += b["mass_g"]
        elif t == "transfer":
            pending[b["lot"]] = b["mass_g"] if match(b["lot"]) else 0
        elif t == "receive":
            pending.pop(b["lot"], None)
    got["in_transit"] = sum(pending.values())
    return got


@pytest.mark.parametrize("family", ["steel", "paper", "plastics", "batteries"])
def test_one_demo_month_adds_up_to_the_records(demo: World, family: str) -> None:
    expected = _expected(demo, family)
    f = _flows(demo, start=MAY, end=JUNE, material=family)
    loss = sum(x.mass_g for x in f.links if x.target == "loss")
    got = {k: f.stages[k] for k in expected if k != "loss"} | {"loss": loss}
    assert got == expected
    assert expected["collected"] > 0 and expected["processed"] + expected["recycled"] > 0
    # the months add up to the period, and the links into a stage to its total
    for stage, total in f.stages.items():
        assert sum(m.stages.get(stage, 0) for m in f.months) == total
        if stage != "collected":
            assert sum(x.mass_g for x in f.links if x.target == stage) == total


def test_demo_second_life_and_recovery(demo: World) -> None:
    f = _flows(demo, start=MAY, end=JUNE)
    assert f.stages["second_life"] > 0  # the storage operator's repurposed packs
    assert f.recovery_bp > 0
    assert f.recovery_bp == f.stages["recycled"] * 10_000 // f.stages["collected"]


def test_the_benchmark_runs_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/benchmarks/flows.py --quick (5,000 records, cached under /tmp) as a smoke test."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent / "benchmarks" / "flows.py"
    spec = importlib.util.spec_from_file_location("flows_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "materialFlows year, all materials: p50" in out


def test_the_totals_rollup_answers_as_flow_days_would(demo: World) -> None:
    """A regulator's question by stage with no region reads flow_totals (flow_days without
    the actor); grouped by organisation the same question reads flow_days. Every total,
    month, method and rate must agree, and each stage link must equal flow_days' own sum."""
    for material in (None, "batteries", "steel.hms1"):
        by_stage = _flows(demo, start=MAY, end=JUNE, material=material)
        by_org = _flows(
            demo, start=MAY, end=JUNE, material=material, group_by=flows.GroupBy.ORGANISATION
        )
        assert by_stage.stages == by_org.stages
        assert by_stage.months == by_org.months
        assert by_stage.disposed_by_method == by_org.disposed_by_method
        assert (by_stage.recovery_bp, by_stage.disposal_bp) == (
            by_org.recovery_bp,
            by_org.disposal_bp,
        )
        with demo.store.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT source, target, SUM(mass_g) FROM flow_days "
                "WHERE day >= '2026-05-01' AND day < '2026-06-01' AND source != '' "
                + (
                    ""
                    if material is None
                    else f"AND (material = '{material}' OR material LIKE '{material}.%') "
                )
                + "GROUP BY source, target"
            ).all()
        from_days = {(s, t): int(g) for s, t, g in rows if int(g)}
        links = {(x.source, x.target): x.mass_g for x in by_stage.links}
        assert {k: v for k, v in links.items() if k in from_days} == from_days
        assert by_stage.stages["collected"] > 0
