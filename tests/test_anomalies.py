"""Anomalies for regulators: each kind raised by a small hand-built network, with the
records that raise it, and nothing raised where everything adds up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import World
from read_network import Api

from ledger.access import ReadScope
from ledger.anomalies import Kind, Window, anomalies

T = 1_000_000
AT = "2026-03-02T08:00:00Z"
WINDOW = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
REGULATOR = ReadScope("org:regulator", True, frozenset())


@pytest.fixture
def net(world: World) -> World:
    """collector ships 10 t of steel scrap (9.8 t arrive: 20 ‰ lost, tolerance 10 ‰) and
    5 t that never arrive; the mill melts 10 t into 9.95 t (995 ‰; melting: 850-930 ‰);
    a producer-only org records collected waste; a clean 2 t lot is received whole."""
    collector = world.admit("org:collector", ["collector"])
    mill = world.admit("org:mill", ["recycler"])
    world.admit("org:regulator", ["regulator"])
    shop = world.admit("org:shop", ["producer"])
    for lot_id, mass in (("lot:a", 10 * T), ("lot:b", 5 * T), ("lot:c", 2 * T)):
        world.ok(collector.record("create", _create(lot_id, mass), at=AT))
        body = {"lot": lot_id, "to": "org:mill", "mass_g": mass}
        world.ok(collector.record("transfer", body, world.heads(lot_id), at=AT))
    world.ok(
        mill.record("receive", {"lot": "lot:a", "mass_g": 9_800_000}, world.heads("lot:a"), at=AT)
    )
    world.ok(mill.record("receive", {"lot": "lot:c", "mass_g": 2 * T}, world.heads("lot:c"), at=AT))
    melt = {
        "process": "melting",
        "inputs": [{"lot": "lot:a", "mass_g": 9_800_000}],
        "outputs": [{"lot": "lot:billet", "material": "steel.billet", "mass_g": 9_750_000}],
        "loss_g": 50_000,
    }
    world.ok(mill.record("transform", melt, world.heads("lot:a"), at=AT))
    world.ok(shop.record("create", _create("lot:odd", T), at=AT))
    return world


def _create(lot_id: str, mass: int) -> dict[str, object]:
    return {"lot": lot_id, "material": "steel.hms1", "mass_g": mass, "origin": "post_consumer"}


def test_each_kind_is_raised_with_its_records(net: World) -> None:
    later = datetime(2026, 3, 30, tzinfo=UTC)
    with net.store.engine.connect() as conn:
        found = anomalies(conn, REGULATOR, WINDOW, now=later)
    assert found is not None
    by_kind: dict[Kind, list[str]] = {}
    for a in found:
        by_kind.setdefault(a.kind, []).append(a.message)
        assert a.records and all(len(h) == 64 for h in a.records)
    assert set(by_kind) == {Kind.TRANSIT_LOSS, Kind.YIELD, Kind.STUCK_IN_TRANSIT, Kind.MISSING_ROLE}
    [loss] = by_kind[Kind.TRANSIT_LOSS]
    assert "lot:a lost 200000 g of 10000000 g" in loss and "(20 ‰)" in loss and "10 ‰" in loss
    [yields] = by_kind[Kind.YIELD]
    assert "9750000 g from 9800000 g (994 ‰)" in yields and "850-930" in yields
    [stuck] = by_kind[Kind.STUCK_IN_TRANSIT]
    assert stuck.startswith("lot:b (5000000 g) was sent to org:mill")
    [role] = by_kind[Kind.MISSING_ROLE]
    assert "org:shop recorded collected waste (lot:odd)" in role
    # Within the 14 days, lot:b is not yet stuck; a narrower window or kind list says less.
    with net.store.engine.connect() as conn:
        soon = anomalies(
            conn, REGULATOR, WINDOW, [Kind.STUCK_IN_TRANSIT], now=later - timedelta(days=20)
        )
        assert soon == []
        empty = anomalies(
            conn,
            REGULATOR,
            Window(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
            [Kind.YIELD, Kind.TRANSIT_LOSS],
        )
        assert empty == []


def test_only_regulators_read_anomalies_through_the_api(net: World) -> None:
    api = Api(net)
    query = """{ anomalies(from: "2026-03-01T00:00:00Z", to: "2026-04-01T00:00:00Z",
                 kinds: [TRANSIT_LOSS]) { kind org lot records message } }"""
    [found] = api.ok("org:regulator", query)["anomalies"]
    assert (found["kind"], found["org"], found["lot"]) == ("TRANSIT_LOSS", "org:mill", "lot:a")
    assert api.ok("org:mill", query) == {"anomalies": None}
