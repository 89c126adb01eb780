"""The authorisation matrix: every query and recordEvents against every kind of
caller, on SQLite and PostgreSQL; a hidden lot answers exactly like a missing
one; and the SQL filters agree with the pure policy of ledger/access.py.

The subject is lot:pack (tests/read_network.py): org:maker created it and
sent it to org:coll-a, which sent it to org:recycler, which dismantled it
into lot:bm and lot:casing. org:coll-b never touched any of it.
"""

from __future__ import annotations

from collections import deque

import pytest
from conftest import World
from read_network import (
    ALL_LOTS,
    COLL_A,
    COLL_B,
    MAKER,
    OPERATOR,
    RECYCLER,
    REGULATOR,
    ROLES,
    VISIBLE_LOTS,
    Answer,
    Api,
    Network,
    build_network,
)
from sqlalchemy import select

from ledger import queries
from ledger.access import (
    Ground,
    LotFacts,
    Viewer,
    lot_grounds,
    may_read_event,
    may_read_lot,
    read_scope,
)
from ledger.state import VOID
from ledger.tables import lot_edges, lot_records, lots, records
from producers.events import Signer

CALLERS = {
    "coll-a": COLL_A,  # a collector that handled lot:pack
    "coll-b": COLL_B,  # a collector that did not
    "recycler": RECYCLER,  # the processor downstream
    "maker": MAKER,  # the producer that created lot:pack, upstream of lot:bm
    "regulator": REGULATOR,
    "operator": OPERATOR,
    "no-token": None,
    "revoked": "revoked",
}

# V visible · H hidden (null / left out, exactly like a missing one) · R refused (401)
# W written (Recorded) · X rejected as data (Rejected actor.not_authorised)
#
#   lot      lot(id: "lot:pack")            event    event(hash: <lot:pack's create>)
#   product  lot(id: "lot:bm")              events   events(filter: {lot: "lot:pack"})
#   lots     lot:pack among lots            lineage  lineage(lot: "lot:pack", DOWNSTREAM)
#   org      organisation(id: coll-b)       orgs     organisations
#   write    recordEvents signed as itself  as-other recordEvents signed as another org
#   heads    heads(lots: [lot:pack])        viewer   viewer { org } names the caller
MATRIX = """
            lot  product  lots  event  events  lineage  org  orgs  heads  viewer  write  as-other
coll-a      V    H        V     V      V       V        V    V     V      V       W      X
coll-b      H    H        H     H      H       H        V    V     H      V       W      X
recycler    V    V        V     V      V       V        V    V     V      V       W      X
maker       V    V        V     V      V       V        V    V     V      V       W      X
regulator   V    V        V     V      V       V        V    V     V      V       W      X
operator    V    V        V     V      V       V        V    V     V      V       W      X
no-token    R    R        R     R      R       R        R    R     R      R       R      R
revoked     R    R        R     R      R       R        R    R     R      R       R      R
"""


def parse_matrix(text: str) -> dict[tuple[str, str], str]:
    header, *rows = [line.split() for line in text.strip().splitlines()]
    return {(row[0], op): cell for row in rows for op, cell in zip(header, row[1:], strict=True)}


EXPECTED = parse_matrix(MATRIX)
OPERATIONS = MATRIX.strip().splitlines()[0].split()

LOT = "query($id: ID!) { lot(id: $id) { id } }"
LOTS = "{ lots(first: 500) { edges { node { id } } } }"
EVENT = "query($h: String!) { event(hash: $h) { hash } }"
EVENTS = "query($lot: ID!) { events(filter: {lot: $lot}) { edges { node { hash } } } }"
LINEAGE = "query($lot: ID!) { lineage(lot: $lot, direction: DOWNSTREAM) { nodes { id } } }"
ORG = "query($id: ID!) { organisation(id: $id) { id } }"
ORGS = "{ organisations { id } }"
HEADS = "query($lots: [ID!]!) { heads(lots: $lots) { lot head } }"
VIEWER = "{ viewer { org } }"
WRITE = """mutation($e: [SignedEvent!]!) { recordEvents(events: $e) {
  __typename ... on Rejected { code message } } }"""


@pytest.fixture
def net(world: World) -> Network:
    return build_network(world)


def signer_of(net: Network, org: str) -> Signer:
    return net.world.operator if org == OPERATOR else net.signers[org]


def a_create(signer: Signer, lot: str) -> dict[str, str]:
    body = {"lot": lot, "material": "paper.occ", "mass_g": 1_000, "origin": "post_consumer"}
    signed = signer.record("create", body)
    assert isinstance(signed.envelope, str)
    return {"envelope": signed.envelope, "signature": signed.signature}


def run(api: Api, net: Network, caller: str, op: str) -> tuple[str, Answer]:
    """Ask ``op`` as ``caller``; classify the answer as V, H, R, W or X."""
    who = CALLERS[caller]
    if who == "revoked":
        who = api.revoked_token(COLL_A)
    org = who if who in ROLES or who == OPERATOR else COLL_A
    queries_ = {
        "lot": (LOT, {"id": "lot:pack"}),
        "product": (LOT, {"id": "lot:bm"}),
        "lots": (LOTS, None),
        "event": (EVENT, {"h": net.hashes["pack.create"]}),
        "events": (EVENTS, {"lot": "lot:pack"}),
        "lineage": (LINEAGE, {"lot": "lot:pack"}),
        "org": (ORG, {"id": COLL_B}),
        "orgs": (ORGS, None),
        "heads": (HEADS, {"lots": ["lot:pack"]}),
        "viewer": (VIEWER, None),
        "write": (WRITE, {"e": [a_create(signer_of(net, org), f"lot:new-{caller}")]}),
        "as-other": (
            WRITE,
            {"e": [a_create(signer_of(net, COLL_B if org != COLL_B else COLL_A), "lot:x")]},
        ),
    }
    query, variables = queries_[op]
    answer = api.ask(who, query, variables)
    if answer.status == 401:
        assert answer.codes == ["UNAUTHENTICATED"] and answer.body.get("data") is None
        return "R", answer
    data = answer.data
    if op in ("lot", "product"):
        return ("V" if data["lot"] else "H"), answer
    if op == "lots":
        ids = {e["node"]["id"] for e in data["lots"]["edges"]}
        return ("V" if "lot:pack" in ids else "H"), answer
    if op == "event":
        return ("V" if data["event"] else "H"), answer
    if op == "events":
        return ("V" if data["events"]["edges"] else "H"), answer
    if op == "lineage":
        return ("V" if data["lineage"] else "H"), answer
    if op == "org":
        return ("V" if data["organisation"] else "H"), answer
    if op == "orgs":
        return ("V" if {"id": COLL_B} in data["organisations"] else "H"), answer
    if op == "heads":
        return ("V" if data["heads"] else "H"), answer
    if op == "viewer":
        return ("V" if data["viewer"]["org"] == org else "H"), answer
    [result] = data["recordEvents"]
    if result["__typename"] == "Recorded":
        return "W", answer
    assert result["code"] == "actor.not_authorised", result
    return "X", answer


def test_the_authorisation_matrix(net: Network) -> None:
    api = Api(net.world)
    got: dict[tuple[str, str], str] = {}
    for caller in CALLERS:
        before = net.world.store.last_seq()
        for op in OPERATIONS:
            got[caller, op], _ = run(api, net, caller, op)
        written = net.world.store.last_seq() - before
        assert written == (1 if got[caller, "write"] == "W" else 0), caller
    wrong = {cell: (got[cell], want) for cell, want in EXPECTED.items() if got[cell] != want}
    assert not wrong, f"(caller, operation): (got, expected) {wrong}"


HIDDEN_LIKE_MISSING = [
    (LOT, {"id": "lot:pack"}, {"id": "lot:missing"}),
    (LOT, {"id": "lot:bm"}, {"id": "lot:missing"}),
    (LINEAGE, {"lot": "lot:pack"}, {"lot": "lot:missing"}),
    (EVENT, None, {"h": "f" * 64}),
    (EVENTS, {"lot": "lot:pack"}, {"lot": "lot:missing"}),
    (
        "query($id: ID!) { lots(filter: {custodian: $id}) { edges { node { id } } "
        "pageInfo { hasNextPage endCursor } } }",
        {"id": RECYCLER},
        {"id": "org:missing"},
    ),
]


def test_a_hidden_lot_answers_exactly_like_a_missing_one(net: Network) -> None:
    api = Api(net.world)
    for query, hidden, missing in HIDDEN_LIKE_MISSING:
        hidden = hidden or {"h": net.hashes["pack.create"]}
        a = api.ask(COLL_B, query, hidden)
        b = api.ask(COLL_B, query, missing)
        assert (a.status, a.body) == (b.status, b.body), query
        assert a.status == 200 and "errors" not in a.body


def test_what_each_caller_reads(net: Network) -> None:
    """The exact lots, lineage and events per caller (not just lot:pack)."""
    api = Api(net.world)
    every = api.ok(
        REGULATOR, "{ events(first: 500) { edges { node { hash actor { id } lots } } } }"
    )
    all_events = [e["node"] for e in every["events"]["edges"]]
    for org, visible in VISIBLE_LOTS.items():
        ids = {e["node"]["id"] for e in api.ok(org, LOTS)["lots"]["edges"]}
        assert ids == visible, org
        for lot in ALL_LOTS:
            assert (api.ok(org, LOT, id=lot)["lot"] is not None) == (lot in visible), (org, lot)
        scope = read_scope(Viewer(org, frozenset(ROLES.get(org, ["operator"]))))
        want = [
            e["hash"]
            for e in all_events
            if may_read_event(
                scope, e["actor"]["id"], reads_a_lot_it_changed=bool(set(e["lots"]) & visible)
            )
        ]
        seen = api.ok(org, "{ events(first: 500) { edges { node { hash } } } }")
        assert [e["node"]["hash"] for e in seen["events"]["edges"]] == want, org
    down = {
        org: api.ok(org, LINEAGE, lot="lot:pack")["lineage"]
        for org in (COLL_A, RECYCLER, MAKER, REGULATOR)
    }
    # coll-a handled lot:pack but not what it became: the walk stops at lot:pack
    assert down[COLL_A] == {"nodes": [{"id": "lot:pack"}]}
    for org in (RECYCLER, MAKER, REGULATOR):
        assert [n["id"] for n in down[org]["nodes"]] == ["lot:pack", "lot:bm", "lot:casing"]
    # the maker reads upstream of lot:bm too (lineage of what it placed on the market)
    up = api.ok(MAKER, 'query { lineage(lot: "lot:bm") { nodes { id } edges { parent child } } }')
    assert up["lineage"]["edges"] == [{"parent": "lot:pack", "child": "lot:bm"}]
    # coll-b: lot:occ-2 is in transit to the recycler, so the recycler reads it; coll-b doesn't
    assert api.ok(RECYCLER, LOT, id="lot:occ-2")["lot"] == {"id": "lot:occ-2"}
    assert api.ok(RECYCLER, LOT, id="lot:occ-1")["lot"] is None


def facts_from_tables(world: World) -> dict[str, LotFacts]:
    """Each lot's LotFacts, computed in Python from the raw projection tables."""
    with world.store.engine.connect() as conn:
        lot_rows = {r.id: r for r in conn.execute(select(lots))}
        acted = conn.execute(
            select(lot_records.c.lot, records.c.actor, records.c.seq).join(
                records, records.c.seq == lot_records.c.seq
            )
        ).all()
        edges = conn.execute(select(lot_edges.c.parent, lot_edges.c.child)).all()
        creators = {
            r.id: r.actor
            for r in conn.execute(
                select(lots.c.id, records.c.actor).join(
                    records, records.c.seq == lots.c.created_seq
                )
            )
        }
    actors: dict[str, set[str]] = {}
    for lot, actor, _seq in acted:
        actors.setdefault(lot, set()).add(actor)
    live = {i for i, r in lot_rows.items() if r.status != VOID}
    near: dict[str, dict[str, list[str]]] = {"up": {}, "down": {}}
    for parent, child in edges:
        if parent in live and child in live:
            near["up"].setdefault(child, []).append(parent)
            near["down"].setdefault(parent, []).append(child)
    lineage_of: dict[str, set[str]] = {}
    for lot, creator in creators.items():
        if lot not in live:
            continue
        for way in ("up", "down"):
            depth = {lot: 0}
            todo = deque([lot])
            while todo:
                x = todo.popleft()
                lineage_of.setdefault(x, set()).add(creator)
                for y in near[way].get(x, []):
                    if y not in depth:
                        depth[y] = depth[x] + 1
                        todo.append(y)
    return {
        i: LotFacts(r.custodian, r.transit_to, actors.get(i, set()), lineage_of.get(i, set()))
        for i, r in lot_rows.items()
    }


def test_the_sql_filters_agree_with_the_policy(world: World) -> None:
    """For every caller and every lot: ledger.queries' SQL == ledger.access's decision,
    and both == the expectations written down in tests/read_network.py."""
    net = build_network(world, bulk_lots=30)
    # a producer whose lot lies deeper: the maker also makes a cathode from lot:bm's black mass
    maker2 = world.admit("org:maker-2", ["producer"])
    recycler = net.signers[RECYCLER]
    world.ok(
        recycler.record(
            "transfer",
            {"lot": "lot:bm", "to": "org:maker-2", "mass_g": 250_000},
            world.heads("lot:bm"),
        )
    )
    world.ok(maker2.record("receive", {"lot": "lot:bm", "mass_g": 250_000}, world.heads("lot:bm")))
    world.ok(
        maker2.record(
            "transform",
            {
                "process": "cathode_synthesis",
                "inputs": [{"lot": "lot:bm", "mass_g": 250_000}],
                "outputs": [
                    {"lot": "lot:cathode", "material": "batteries.cathode.nmc", "mass_g": 200_000}
                ],
                "loss_g": 50_000,
            },
            world.heads("lot:bm"),
        )
    )
    facts = facts_from_tables(world)
    callers = {**ROLES, OPERATOR: ["operator"], "org:maker-2": ["producer"]}
    for org, roles in callers.items():
        scope = read_scope(Viewer(org, frozenset(roles)))
        with world.store.engine.connect() as conn:
            page = queries.lots_page(conn, scope, queries.LotFilter(), queries.MAX_PAGE)
            by_id = queries.lots_by_id(conn, scope, facts)
        assert not page.has_next
        sql = {lot.id for lot in page.items}
        policy = {lot for lot, f in facts.items() if may_read_lot(scope, f)}
        assert sql == policy == set(by_id), org
        if org in VISIBLE_LOTS:
            assert {x for x in policy if x in ALL_LOTS} == VISIBLE_LOTS[org], org
    # maker-2 made lot:cathode from lot:bm: it reads lot:bm and lot:pack upstream (not the
    # casing beside it, which is neither above nor below the cathode)
    maker2_scope = read_scope(Viewer("org:maker-2", frozenset({"producer"})))
    assert {x for x in facts if may_read_lot(maker2_scope, facts[x])} == {
        "lot:cathode",
        "lot:bm",
        "lot:pack",
    }
    assert lot_grounds(maker2_scope, facts["lot:pack"]) == {Ground.PRODUCER_LINEAGE}
    # and the first maker now reads the cathode too (downstream of lot:pack)
    assert may_read_lot(read_scope(Viewer(MAKER, frozenset({"producer"}))), facts["lot:cathode"])


def test_the_producer_reads_its_whole_lineage_and_the_walk_visits_each_lot_once(
    world: World,
) -> None:
    """A chain of 60 splits: the producer who bought its end reads all of it. A diamond
    (every lot reached by two paths) grows the walk by the lots, not by the paths: the
    first cut carried depth in its rows and took 2.6 s for 6,862 lots at 100k records."""
    maker = world.admit("org:chain-maker", ["producer"])
    world.create(maker, "lot:c-0", 1_000_000)
    length = 60
    for i in range(length):
        world.ok(
            maker.record(
                "split",
                {
                    "lot": f"lot:c-{i}",
                    "parts": [
                        {"lot": f"lot:c-{i + 1}", "mass_g": 1_000_000 - i - 1},
                        {"lot": f"lot:s-{i}", "mass_g": 1},
                    ],
                },
                world.heads(f"lot:c-{i}"),
            )
        )
    # the maker made every lot of the chain itself; a second producer only receives the end
    other = world.admit("org:chain-buyer", ["producer"])
    end = f"lot:c-{length}"
    world.ok(
        maker.record(
            "transfer",
            {"lot": end, "to": other.actor, "mass_g": 1_000_000 - length},
            world.heads(end),
        )
    )
    world.ok(other.record("receive", {"lot": end, "mass_g": 1_000_000 - length}, world.heads(end)))
    world.ok(
        other.record(
            "transform",
            {
                "process": "manufacturing",
                "inputs": [{"lot": end, "mass_g": 1_000_000 - length}],
                "outputs": [
                    {"lot": "lot:product", "material": "steel.rebar", "mass_g": 1_000_000 - length}
                ],
                "loss_g": 0,
            },
            world.heads(end),
        )
    )
    scope = read_scope(Viewer(other.actor, frozenset({"producer"})))
    with world.store.engine.connect() as conn:
        seen = {x.id for x in queries.lots_page(conn, scope, queries.LotFilter(), 500).items}
        walked = conn.execute(queries.producer_lineage(scope)).scalars().all()
    # up from lot:product through the whole chain; the split-off lot:s-* are siblings
    assert seen == {"lot:product", *(f"lot:c-{i}" for i in range(length + 1))}
    assert len(walked) == len(set(walked)) == length + 2


BAD_AUTHORIZATION = [
    None,  # no header
    "Bearer rlt_aaaaaaaaaaaa_" + "b" * 43,  # well-formed, unknown
    "Bearer nonsense",
    "Basic dXNlcjpwYXNz",
    "Bearer ",
]


def test_every_read_needs_a_valid_token(net: Network) -> None:
    api = Api(net.world)
    messages = set()
    for authorization in BAD_AUTHORIZATION:
        for query, variables in [
            (LOT, {"id": "lot:pack"}),
            (LOTS, None),
            (EVENT, {"h": net.hashes["pack.create"]}),
            (EVENTS, {"lot": "lot:pack"}),
            (LINEAGE, {"lot": "lot:pack"}),
            (ORG, {"id": COLL_B}),
            (ORGS, None),
        ]:
            answer = api.ask(None, query, variables, authorization=authorization)
            assert answer.status == 401 and answer.codes == ["UNAUTHENTICATED"], answer.body
            assert answer.body.get("data") is None
            messages.add(answer.body["errors"][0]["message"])
    assert len(messages) == 1  # the same answer whatever was wrong with the token
