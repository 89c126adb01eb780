"""The read queries over HTTP (httpx's ASGI transport), on SQLite and PostgreSQL:
fields of lots and events, filters, keyset pagination over several pages,
lineage both ways with masses, a lot's history, bad arguments."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from battery_test_codes import gbt_code
from conftest import World
from read_network import (
    ALL_LOTS,
    COLL_A,
    COLL_B,
    MAKER,
    RECYCLER,
    REGULATOR,
    Api,
    Network,
    build_network,
)

from ledger import queries
from ledger.access import Viewer, read_scope

BULK = 120


@pytest.fixture
def net(world: World) -> Network:
    return build_network(world, bulk_lots=BULK)


@pytest.fixture
def api(net: Network) -> Api:
    return Api(net.world)


LOT = """query($id: ID!) { lot(id: $id) {
  id material origin massG remainingG status head createdSeq updatedSeq units
  elements { element massG } transitLossG disposedG
  custodian { id name roles region } inTransitTo { id }
  headEvent { hash type actor { id } }
} }"""


def test_a_lot_and_its_fields(net: Network, api: Api) -> None:
    pack = api.ok(REGULATOR, LOT, id="lot:pack")["lot"]
    assert pack["material"] == "batteries.li_ion.nmc"
    assert pack["origin"] == "virgin"
    assert (pack["massG"], pack["remainingG"], pack["status"]) == (400_000, 0, "consumed")
    assert pack["transitLossG"] == 1_000 and pack["disposedG"] == 0
    assert pack["units"] == [gbt_code(1), gbt_code(2)]
    assert pack["custodian"] == {
        "id": RECYCLER,
        "name": RECYCLER,
        "roles": ["recycler"],
        "region": "CN-GD",
    }
    assert pack["inTransitTo"] is None
    assert pack["head"] == net.hashes["dismantle"]
    assert pack["headEvent"] == {
        "hash": net.hashes["dismantle"],
        "type": "transform",
        "actor": {"id": RECYCLER},
    }
    assert pack["createdSeq"] < pack["updatedSeq"]

    bm = api.ok(REGULATOR, LOT, id="lot:bm")["lot"]
    assert bm["elements"] == [{"element": "Co", "massG": 19_000}]
    assert (bm["massG"], bm["remainingG"], bm["origin"]) == (250_000, 250_000, "transformed")

    occ2 = api.ok(REGULATOR, LOT, id="lot:occ-2")["lot"]
    assert occ2["status"] == "in_transit"
    assert occ2["custodian"]["id"] == COLL_A
    assert occ2["inTransitTo"] == {"id": RECYCLER}

    assert api.ok(REGULATOR, LOT, id="lot:nope") == {"lot": None}


LOT_IDS = """query($f: LotFilter, $first: Int, $after: String) {
  lots(filter: $f, first: $first, after: $after) {
    edges { cursor node { id } } pageInfo { hasNextPage endCursor }
  } }"""


def lot_ids(api: Api, who: str, **f: Any) -> list[str]:
    conn = api.ok(who, LOT_IDS, f=f, first=500)["lots"]
    assert conn["pageInfo"]["hasNextPage"] is False
    return [e["node"]["id"] for e in conn["edges"] if not e["node"]["id"].startswith("lot:bulk")]


def test_lot_filters(api: Api) -> None:
    r = REGULATOR
    assert lot_ids(api, r) == ALL_LOTS  # ordered by id
    # material: a code, or a family / grade prefix (never a bare string prefix)
    assert lot_ids(api, r, material="steel") == ["lot:casing", "lot:cs-1", "lot:cs-2", "lot:hms"]
    assert lot_ids(api, r, material="steel.hms1") == ["lot:hms"]
    assert lot_ids(api, r, material="stee") == []
    assert lot_ids(api, r, material="batteries") == ["lot:bm", "lot:pack"]
    assert lot_ids(api, r, material="batteries.li_ion") == ["lot:pack"]
    assert lot_ids(api, r, material="batteries.li%") == []  # LIKE wildcards are escaped
    assert lot_ids(api, r, custodian=COLL_B) == ["lot:cu", "lot:hms"]
    assert lot_ids(api, r, status="void") == ["lot:cs-1", "lot:cs-2"]
    assert lot_ids(api, r, status="in_transit") == ["lot:occ-2"]
    # region of the custodian; a country code matches its subdivisions
    assert lot_ids(api, r, region="CN-GX") == ["lot:occ", "lot:occ-1", "lot:occ-2"]
    assert lot_ids(api, r, region="CN") == ALL_LOTS
    assert lot_ids(api, r, region="CN-GD") == [x for x in ALL_LOTS if not x.startswith("lot:occ")]
    assert lot_ids(api, r, region="DE") == []
    # combined
    assert lot_ids(api, r, material="steel", status="void", custodian=RECYCLER) == [
        "lot:cs-1",
        "lot:cs-2",
    ]


def test_lot_time_filters_compare_times_not_strings(api: Api) -> None:
    """lot:occ was created at 08:00:00.5Z; a record without a fraction sorts after it as a string."""
    r = REGULATOR
    occs = ["lot:occ", "lot:occ-1", "lot:occ-2"]
    assert (
        lot_ids(api, r, createdFrom="2026-02-01T08:00:00Z", createdTo="2026-02-10T08:00:00Z")
        == occs
    )
    assert lot_ids(
        api, r, createdFrom="2026-02-01T08:00:00.5Z", createdTo="2026-02-02T08:00:00Z"
    ) == ["lot:occ"]
    assert lot_ids(
        api, r, createdFrom="2026-02-01T08:00:00.6Z", createdTo="2026-02-10T08:00:00.000001Z"
    ) == ["lot:hms", "lot:occ-1", "lot:occ-2"]
    # the same instant with an offset
    assert lot_ids(
        api, r, createdFrom="2026-02-01T16:00:00.5+08:00", createdTo="2026-02-01T16:00:01+08:00"
    ) == ["lot:occ"]
    # the dismantling is dated 08:00:00.250Z
    assert lot_ids(
        api, r, createdFrom="2026-03-10T08:00:00.25Z", createdTo="2026-03-10T08:00:00.3Z"
    ) == [
        "lot:bm",
        "lot:casing",
    ]
    assert (
        lot_ids(api, r, createdFrom="2026-03-10T08:00:00Z", createdTo="2026-03-10T08:00:00.2Z")
        == []
    )


def collect(api: Api, who: str, query: str, key: str, first: int, **variables: Any) -> list[Any]:
    """Every node of a connection, page by page; checks the cursors and hasNextPage."""
    nodes: list[Any] = []
    after = None
    pages = 0
    while True:
        conn = api.ok(who, query, first=first, after=after, **variables)[key]
        edges = conn["edges"]
        info = conn["pageInfo"]
        assert len(edges) <= first
        if edges:
            assert info["endCursor"] == edges[-1]["cursor"]
        nodes.extend(e["node"] for e in edges)
        pages += 1
        if not info["hasNextPage"]:
            return nodes
        assert len(edges) == first
        after = info["endCursor"]
        assert pages < 200


def test_lots_page_without_duplicates_or_gaps(net: Network, api: Api) -> None:
    every = lot_ids_all = [n["id"] for n in collect(api, REGULATOR, LOT_IDS, "lots", 500)]
    assert len(every) == BULK + len(ALL_LOTS)
    assert every == sorted(every)
    for first in (50, 7):
        paged = [n["id"] for n in collect(api, REGULATOR, LOT_IDS, "lots", first)]
        assert paged == lot_ids_all, first
    # filtered and paged: only the bulk lots of coll-b (every third), 3 pages of 17
    coll_b = [
        n["id"] for n in collect(api, REGULATOR, LOT_IDS, "lots", 17, f={"custodian": COLL_B})
    ]
    assert coll_b == sorted(["lot:cu", "lot:hms", *net.bulk[1::3]])
    # as a collector: only what it may read, still gap-free
    own = [n["id"] for n in collect(api, COLL_B, LOT_IDS, "lots", 13)]
    assert own == coll_b
    # an empty page: first: 0
    conn = api.ok(REGULATOR, LOT_IDS, first=0)["lots"]
    assert conn["edges"] == [] and conn["pageInfo"] == {"hasNextPage": True, "endCursor": None}


EVENTS = """query($f: EventFilter, $first: Int, $after: String) {
  events(filter: $f, first: $first, after: $after) {
    edges { cursor node { seq hash type at actor { id } lots } }
    pageInfo { hasNextPage endCursor }
  } }"""


def test_events_pages_and_filters(net: Network, api: Api) -> None:
    every = collect(api, REGULATOR, EVENTS, "events", 500)
    seqs = [e["seq"] for e in every]
    assert seqs == list(range(1, len(seqs) + 1))  # the whole ledger, in order
    assert collect(api, REGULATOR, EVENTS, "events", 9) == every

    def hashes(**f: Any) -> list[str]:
        return [e["hash"] for e in collect(api, REGULATOR, EVENTS, "events", 4, f=f)]

    h = net.hashes
    assert hashes(lot="lot:pack") == [
        h["pack.create"],
        h["pack.t1"],
        h["pack.r1"],
        h["pack.t2"],
        h["pack.r2"],
        h["dismantle"],
    ]
    assert hashes(type="transfer") == [h["pack.t1"], h["pack.t2"], h["occ.t"]]
    assert hashes(type="transfer", actor=COLL_A) == [h["pack.t2"], h["occ.t"]]
    assert hashes(actor=MAKER) == [h["pack.create"], h["pack.t1"]]
    assert hashes(lot="lot:cs-1") == [h["casing.split"], h["casing.void"]]
    assert hashes(**{"from": "2026-03-10T08:00:00.25Z", "to": "2026-03-11T08:00:00Z"}) == [
        h["dismantle"]
    ]
    assert hashes(**{"from": "2026-03-10T08:00:00.26Z", "to": "2026-03-11T08:00:00.000001Z"}) == [
        h["casing.split"]
    ]
    assert hashes(
        type="create", **{"from": "2026-02-01T08:00:00Z", "to": "2026-02-11T08:00:00Z"}
    ) == [
        h["occ.create"],
        h["hms.create"],
    ]
    # the lots a record changed
    [dismantle] = [e for e in every if e["hash"] == h["dismantle"]]
    assert dismantle["lots"] == ["lot:bm", "lot:casing", "lot:pack"]
    assert dismantle["actor"] == {"id": RECYCLER}


EVENT = """query($h: String!) { event(hash: $h) {
  seq id hash type key at recordedAt envelope signature lots actor { id name } } }"""


def test_an_event_by_hash(net: Network, api: Api) -> None:
    h = net.hashes["pack.t1"]
    ev = api.ok(REGULATOR, EVENT, h=h)["event"]
    assert ev["hash"] == h == hashlib.sha256(ev["envelope"].encode()).hexdigest()
    assert ev["type"] == "transfer" and ev["at"] == "2026-03-01T08:00:00Z"
    assert '"to":"org:coll-a"' in ev["envelope"]
    assert ev["signature"] and ev["recordedAt"].endswith("Z")
    assert ev["lots"] == ["lot:pack"]
    assert ev["actor"] == {"id": MAKER, "name": MAKER}
    assert api.ok(REGULATOR, EVENT, h=h.upper())["event"]["hash"] == h
    assert api.ok(REGULATOR, EVENT, h="0" * 64) == {"event": None}
    assert api.ok(REGULATOR, EVENT, h="not a hash") == {"event": None}


HISTORY = """query($id: ID!, $first: Int, $after: String) { lot(id: $id) {
  records(first: $first, after: $after) {
    edges { cursor node { type hash } } pageInfo { hasNextPage endCursor } } } }"""


def test_the_history_of_a_lot(net: Network, api: Api) -> None:
    first = api.ok(COLL_A, HISTORY, id="lot:pack", first=4)["lot"]["records"]
    assert [e["node"]["type"] for e in first["edges"]] == [
        "create",
        "transfer",
        "receive",
        "transfer",
    ]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = api.ok(COLL_A, HISTORY, id="lot:pack", first=4, after=first["pageInfo"]["endCursor"])
    page2 = rest["lot"]["records"]
    assert [e["node"]["type"] for e in page2["edges"]] == ["receive", "transform"]
    assert page2["pageInfo"]["hasNextPage"] is False
    assert page2["edges"][-1]["node"]["hash"] == net.hashes["dismantle"]


LINEAGE = """query($lot: ID!, $d: Direction, $depth: Int) {
  lineage(lot: $lot, direction: $d, maxDepth: $depth) {
    lot { id } direction depth truncated
    nodes { id material massG }
    edges { parent child massG seq recordHash record { type } }
  } }"""


def test_lineage_up_and_down_with_masses(net: Network, api: Api) -> None:
    up = api.ok(REGULATOR, LINEAGE, lot="lot:bm", d="UPSTREAM")["lineage"]
    assert [n["id"] for n in up["nodes"]] == ["lot:bm", "lot:pack"]
    [edge] = up["edges"]
    assert edge["parent"] == "lot:pack" and edge["child"] == "lot:bm"
    assert edge["massG"] == 250_000
    assert edge["recordHash"] == net.hashes["dismantle"]
    assert edge["record"] == {"type": "transform"}
    assert (up["direction"], up["truncated"], up["lot"]) == ("UPSTREAM", False, {"id": "lot:bm"})

    down = api.ok(REGULATOR, LINEAGE, lot="lot:pack", d="DOWNSTREAM")["lineage"]
    assert [n["id"] for n in down["nodes"]] == ["lot:pack", "lot:bm", "lot:casing"]
    assert {(e["child"], e["massG"]) for e in down["edges"]} == {
        ("lot:bm", 250_000),
        ("lot:casing", 140_000),
    }
    # lot:casing's split into cs-1/cs-2 was voided: those edges are left out
    assert down["truncated"] is False and down["depth"] == 1
    casing = api.ok(REGULATOR, LINEAGE, lot="lot:casing", d="DOWNSTREAM")["lineage"]
    assert [n["id"] for n in casing["nodes"]] == ["lot:casing"] and casing["edges"] == []
    void = api.ok(REGULATOR, LINEAGE, lot="lot:cs-1")["lineage"]  # UPSTREAM by default
    assert [n["id"] for n in void["nodes"]] == ["lot:cs-1"] and void["edges"] == []

    # a split: one level, two children, masses as split
    occ = api.ok(REGULATOR, LINEAGE, lot="lot:occ", d="DOWNSTREAM", depth=1)["lineage"]
    assert sorted((e["child"], e["massG"]) for e in occ["edges"]) == [
        ("lot:occ-1", 200_000),
        ("lot:occ-2", 300_000),
    ]
    assert occ["truncated"] is False

    # maxDepth stops the walk and says so
    short = api.ok(REGULATOR, LINEAGE, lot="lot:bm", depth=0)["lineage"]
    assert [n["id"] for n in short["nodes"]] == ["lot:bm"]
    assert short["edges"] == [] and short["truncated"] is True and short["depth"] == 0
    assert api.ok(REGULATOR, LINEAGE, lot="lot:nope") == {"lineage": None}

    # two levels: the recycler splits the black mass
    world, rec = net.world, net.signers[RECYCLER]
    parts = [{"lot": "lot:bm-1", "mass_g": 100_000}, {"lot": "lot:bm-2", "mass_g": 150_000}]
    world.ok(rec.record("split", {"lot": "lot:bm", "parts": parts}, world.heads("lot:bm")))
    two = api.ok(REGULATOR, LINEAGE, lot="lot:bm-2")["lineage"]
    assert [n["id"] for n in two["nodes"]] == ["lot:bm-2", "lot:bm", "lot:pack"]
    assert [(e["parent"], e["child"], e["massG"]) for e in two["edges"]] == [
        ("lot:bm", "lot:bm-2", 150_000),
        ("lot:pack", "lot:bm", 250_000),
    ]
    assert (two["depth"], two["truncated"]) == (2, False)
    one = api.ok(REGULATOR, LINEAGE, lot="lot:bm-2", depth=1)["lineage"]
    assert [n["id"] for n in one["nodes"]] == ["lot:bm-2", "lot:bm"]
    assert (one["depth"], one["truncated"]) == (1, True)
    down = api.ok(REGULATOR, LINEAGE, lot="lot:pack", d="DOWNSTREAM")["lineage"]
    assert [n["id"] for n in down["nodes"]] == [
        "lot:pack",
        "lot:bm",
        "lot:casing",
        "lot:bm-1",
        "lot:bm-2",
    ]
    assert down["depth"] == 2


def test_lineage_node_cap(net: Network) -> None:
    scope = read_scope(Viewer(REGULATOR, frozenset({"regulator"})))
    with net.world.store.engine.connect() as conn:
        found = queries.lineage(
            conn, scope, "lot:pack", queries.Direction.DOWNSTREAM, 10, node_cap=2
        )
    assert found is not None
    assert [n.id for n in found.nodes] == ["lot:pack", "lot:bm"]
    assert [e.child for e in found.edges] == ["lot:bm"]  # no edge to a left-out lot
    assert found.truncated


def test_organisations(api: Api) -> None:
    orgs = api.ok(COLL_B, "{ organisations { id name roles region } }")["organisations"]
    assert [o["id"] for o in orgs] == sorted(o["id"] for o in orgs)
    assert {o["id"] for o in orgs} >= {MAKER, COLL_A, COLL_B, RECYCLER, REGULATOR, "org:operator"}
    one = api.ok(COLL_B, "query($id: ID!) { organisation(id: $id) { id roles region } }", id=MAKER)
    assert one["organisation"] == {
        "id": MAKER,
        "roles": ["producer", "manufacturer"],
        "region": "CN-GD",
    }
    none = api.ok(COLL_B, "query($id: ID!) { organisation(id: $id) { id } }", id="org:nope")
    assert none == {"organisation": None}


BAD_ARGUMENTS = [
    # (query, the argument named in extensions.argument, words the message must hold)
    ("{ lots(first: 501) { edges { cursor } } }", "first", "at most 500"),
    ("{ events(first: 100000) { edges { cursor } } }", "first", "at most 500"),
    ("{ lots(first: -1) { edges { cursor } } }", "first", "0 or more"),
    (
        '{ lot(id: "lot:pack") { records(first: 501) { edges { cursor } } } }',
        "first",
        "at most 500",
    ),
    ('{ lots(after: "garbage!") { edges { cursor } } }', "after", "endCursor"),
    ('{ events(after: "TDpsb3Q6YQ") { edges { cursor } } }', "after", "endCursor"),
    ('{ lineage(lot: "lot:pack", maxDepth: 51) { depth } }', "maxDepth", "0..50"),
    ('{ lineage(lot: "lot:pack", maxDepth: -1) { depth } }', "maxDepth", "0..50"),
    ('{ lots(filter: {region: "china"}) { edges { cursor } } }', "filter.region", "ISO 3166-2"),
    (
        '{ lots(filter: {createdFrom: "2026-01-01T00:00:00"}) { edges { cursor } } }',
        "filter.createdFrom",
        "time zone",
    ),
    (
        '{ events(filter: {to: "2026-01-01T00:00:00"}) { edges { cursor } } }',
        "filter.to",
        "time zone",
    ),
]


def test_a_lots_history_is_answered_on_a_single_lot_only(api: Api) -> None:
    """Found in review: Lot.records costs a statement per lot, so 30 aliases of
    lots(first: 500) { records } made a 600-byte request cost 15,000 statements."""
    across = api.ask(
        REGULATOR, "{ lots(first: 2) { edges { node { records { edges { cursor } } } } } }"
    )
    assert across.status == 400 and "BAD_USER_INPUT" in across.codes
    assert "events(filter: {lot" in str(across.body)
    single = api.ok(REGULATOR, '{ lot(id: "lot:pack") { records(first: 2) { edges { cursor } } } }')
    assert len(single["lot"]["records"]["edges"]) == 2


def test_a_value_the_database_cannot_compare_is_the_callers_error_not_a_retry(api: Api) -> None:
    """Found in review: PostgreSQL refuses a NUL in text, and the driver's DataError
    was answered 503 "retry", so a client would retry forever."""
    answer = api.ask(REGULATOR, LOT, {"id": "lot:\u0000x"})
    if answer.status == 200:  # SQLite compares it: there is no such lot
        assert answer.body["data"]["lot"] is None
    else:
        assert answer.status == 400 and answer.codes == ["BAD_USER_INPUT"], answer.body


def test_bad_arguments_are_clear_errors(api: Api) -> None:
    for query, argument, words in BAD_ARGUMENTS:
        answer = api.ask(REGULATOR, query)
        assert answer.status == 400, (query, answer.body)
        [error] = answer.body["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}, query
        assert words in error["message"], query
        assert "Traceback" not in str(answer.body)


def test_a_cursor_only_fits_its_own_list(api: Api) -> None:
    lots = api.ok(REGULATOR, LOT_IDS, first=1)["lots"]
    events = api.ok(REGULATOR, EVENTS, first=1)["events"]
    wrong = api.ask(REGULATOR, EVENTS, {"first": 1, "after": lots["pageInfo"]["endCursor"]})
    assert wrong.codes == ["BAD_USER_INPUT"]
    wrong = api.ask(REGULATOR, LOT_IDS, {"first": 1, "after": events["pageInfo"]["endCursor"]})
    assert wrong.codes == ["BAD_USER_INPUT"]
