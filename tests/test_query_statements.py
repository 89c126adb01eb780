"""A page of lots with custodians and head events (and a page of events with
their actors and lots) costs a fixed number of SQL statements, whatever the
page size (the dataloaders batch), on both engines.

Counted with a SQLAlchemy ``before_cursor_execute`` listener on the store's
engine, after one warm-up request (so the token check is cached, as it is for
a busy client). The count includes SQLite's explicit ``BEGIN`` per
connection (ledger/database.py), so SQLite counts a statement more per read.

The second half pins the statements of a walk (one on PostgreSQL, whatever its depth),
a battery, a recovered-content proof and an inclusion proof (issue 8: each PostgreSQL
statement is a round trip), counted at the driver, since ledger/tracing.py and
ledger/merkle_log.py read partly on the driver's own cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import World
from driver_statements import driver_statements
from read_network import COLL_A, MAKER, REGULATOR, Api, build_network
from sqlalchemy import event

PAGE = """query($first: Int) { lots(first: $first) { edges { node {
  id custodian { name region }
  headEvent { hash type at actor { name } }
} } } }"""

# Reads: the page, the custodians, the head events, and the actors not already
# loaded (often none: a lot's creator is its custodian). SQLite adds a BEGIN to each.
MAX_READS = 4
MAX_STATEMENTS = 2 * MAX_READS


@contextmanager
def counting(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(world.store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(world.store.engine, "before_cursor_execute", count)


EVENTS = """query($first: Int) { events(first: $first) { edges { node {
  hash actor { name region } lots
} } } }"""


def measure(world: World, api: Api, who: str, query: str, key: str) -> dict[int, tuple[int, int]]:
    """(statements, reads without BEGIN) for a page of 10 and of 100."""
    counts = {}
    for first in (10, 100):
        with counting(world) as seen:
            page = api.ok(who, query, first=first)[key]["edges"]
        if who != MAKER:  # the producer sees only its lineage, fewer than 10 lots
            assert len(page) == first
        if key == "lots":
            assert all(e["node"]["custodian"]["name"] and e["node"]["headEvent"] for e in page)
        else:
            assert all(e["node"]["actor"]["name"] for e in page)
            assert first == 10 or any(e["node"]["lots"] for e in page)
        reads = [s for s in seen if not s.lstrip().upper().startswith("BEGIN")]
        counts[first] = (len(seen), len(reads))
    return counts


@pytest.mark.parametrize("who", [REGULATOR, COLL_A, MAKER])
def test_a_page_costs_a_fixed_number_of_statements(world: World, who: str) -> None:
    build_network(world, bulk_lots=300)  # coll-a creates every third: 100 of them
    api = Api(world, token_ttl=60)
    api.ok(who, "{ organisations { id } }")  # warm-up: the token check is cached from now on
    for query, key in ((PAGE, "lots"), (EVENTS, "events")):
        counts = measure(world, api, who, query, key)
        print(f"{world.store.engine.dialect.name} {who} {key}: (statements, reads) {counts}")
        assert counts[10] == counts[100], counts
        assert counts[100][0] <= MAX_STATEMENTS and counts[100][1] <= MAX_READS, counts


# --- tracing and proofs: one statement a walk, whatever its depth -----------------------------
#
# Counted below SQLAlchemy (tests/driver_statements.py): these reads run partly on the
# driver's own cursor.


def scope_of(org: str) -> Any:
    from tracing_network import ROLES

    from ledger.access import Viewer, read_scope

    return read_scope(Viewer(org, frozenset(ROLES[org])))


@pytest.fixture
def loop(world: World) -> Any:
    from tracing_network import build_loop

    return build_loop(world)


def test_a_walk_is_one_statement_whatever_its_depth(
    loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The battery loop (tests/tracing_network.py): lot:cathode's upstream is 6 levels deep
    (cathode <- salts <- campaign <- bm, bm-other <- modules <- fleet-a <- packs), lot:packs'
    downstream 6 too. Walked one level at a time that is a statement a level and one to see
    whether anything lies beyond the last: 2, 3 and 7 for maxDepth 1, 2 and 50 — still so on
    SQLite, where that is faster. On PostgreSQL (and on SQLite when asked) ONE for a
    regulator, whatever the depth, and two for a recycler (the access flags of the lots
    met, in one more)."""
    from tracing_network import RECYCLER, REGULATOR

    from ledger import tracing
    from ledger.queries import Direction

    world = loop.world
    engine = world.store.engine.dialect.name

    def counts(org: str, lot: str, way: Direction) -> tuple[list[int], list[int]]:
        depths, statements = [], []
        for max_depth in (1, 2, 50):
            with (
                driver_statements(world.store.engine) as seen,
                world.store.engine.connect() as conn,
            ):
                found = tracing.walk(conn, scope_of(org), lot, way, max_depth)
            statements.append(len(seen))
            depths.append(found.depth)
        return depths, statements

    for one in (False, True):
        if one:
            monkeypatch.setattr(tracing, "ONE_STATEMENT_WALKS", frozenset({engine}))
        by_level = not one and engine == "sqlite"
        for org, per_walk in ((REGULATOR, 1), (RECYCLER, 2)):
            for lot, way in (
                ("lot:cathode", Direction.UPSTREAM),
                ("lot:packs", Direction.DOWNSTREAM),
            ):
                depths, statements = counts(org, lot, way)
                if org == REGULATOR:
                    assert depths == [1, 2, 6], (lot, depths)
                    assert statements == ([2, 3, 7] if by_level else [1, 1, 1]), statements
                elif not by_level:
                    assert statements == [per_walk] * 3, (org, lot, statements)


def test_a_walk_too_large_for_one_read_walks_level_by_level_alike(
    loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement or one a level, the same lots, flows, depth, truncation and hidden flag,
    for every viewer: the one-statement walk (on either engine), and its fallback when the
    reach is larger than REACH_PER_LOT * maxLots rows (here: always)."""
    from tracing_network import ROLES

    from ledger import tracing
    from ledger.queries import Direction

    lots = ["lot:packs", "lot:fleet-a", "lot:bm", "lot:campaign", "lot:coso4", "lot:cathode"]
    cases = [
        (org, lot, way, depth, cap)
        for org in sorted(ROLES)
        for lot in lots
        for way in Direction
        for depth, cap in ((50, 5_000), (2, 5_000), (50, 3), (0, 5_000))
    ]

    def walks() -> list[Any]:
        out = []
        with loop.world.store.engine.connect() as conn:
            for org, lot, way, depth, cap in cases:
                w = tracing.walk(conn, scope_of(org), lot, way, depth, cap)
                out.append((w.lots, w.steps, w.depth, w.truncated, w.hidden))
        return out

    engine = loop.world.store.engine.dialect.name
    monkeypatch.setattr(tracing, "ONE_STATEMENT_WALKS", frozenset({engine}))
    with driver_statements(loop.world.store.engine) as seen:
        at_once = walks()
    assert len([s for s in seen if "WITH RECURSIVE reach" in s]) == len(cases)
    monkeypatch.setattr(tracing, "REACH_PER_LOT", 0)  # a bound of 1 row: always too large
    with driver_statements(loop.world.store.engine) as seen:
        by_level = walks()
    assert by_level == at_once
    levels = [s for s in seen if "WITH RECURSIVE" not in s]
    assert len(levels) > len(cases)  # the fallback did run: a statement per level
    assert any(w[3] for w in at_once) and any(w[4] for w in at_once)
    assert any(w[2] == 6 for w in at_once)


def test_a_battery_and_a_proof_cost_a_fixed_number_of_statements(loop: Any) -> None:
    """A regulator's battery(B11) (5 hops downstream of lot:fleet-a): the lots that held it,
    their records, the walk, the lots it reached, the records that made them: 5 statements
    on PostgreSQL (on SQLite the walk is 6, a level each: 10). The proof of lot:cathode with
    its lots and record hashes: the lot, the walk, the lots, the records: 4 (SQLite: 10).
    An inclusion proof by record hash (queries.inclusion_by_hash): the record and the
    tree's hashes in one statement on PostgreSQL, one after the other on SQLite (2)."""
    from tracing_network import B11, REGULATOR

    from ledger import tracing
    from ledger.queries import inclusion_by_hash

    world = loop.world
    by_level = world.store.engine.dialect.name == "sqlite"
    regulator = scope_of(REGULATOR)
    with driver_statements(world.store.engine) as seen, world.store.engine.connect() as conn:
        b = tracing.battery(conn, regulator, B11)
    assert b is not None and b.complete and len(b.downstream) == 9
    assert len(seen) == (10 if by_level else 5), seen
    with driver_statements(world.store.engine) as seen, world.store.engine.connect() as conn:
        p = tracing.content_proof(conn, regulator, "lot:cathode")
    assert p is not None and p.complete and len(p.lots) == 11 and p.depth == 6
    assert len(seen) == (10 if by_level else 4), seen
    size = world.store.last_seq()
    digest = loop.hashes["packs.split"]
    with driver_statements(world.store.engine) as seen, world.store.engine.connect() as conn:
        proof = inclusion_by_hash(conn, regulator, digest, size)
    assert proof is not None and proof.leaf_index == loop.seqs["packs.split"] - 1
    assert len(seen) == (2 if by_level else 1), seen
    if by_level:  # the record is found through ix_records_hash16, not by scanning records
        with world.store.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + seen[0]).all()  # as sent
        assert "ix_records_hash16" in " ".join(str(r[-1]) for r in plan), plan


RC_PROOF = """query($lot: ID!) { recoveredContent(lot: $lot) { lot shareBasisPoints
  proof { complete depth recordHashes } } }"""
BATTERY = """query($code: String!) { battery(code: $code) { code complete lots { seq lot { id } }
  events { seq stage type } custodians { since organisation { id } }
  downstream { lot { id } massG remainingG } elements { element initialG recoveredG heldNowG } } }"""


def test_the_api_reads_a_proof_and_a_battery_in_a_few_statements(loop: Any) -> None:
    """Over the API (tests/benchmarks/national.py's queries, for the regulator): the proof of
    lot:cathode with its record hashes is 3 statements on PostgreSQL (the lot, the walk, the
    records; SQLite walks a level a statement: 9); the battery 6 (tracing.battery's 5 and
    the custodians' organisations; SQLite 11)."""
    from tracing_network import B11, REGULATOR

    world = loop.world
    by_level = world.store.engine.dialect.name == "sqlite"
    api = Api(world, token_ttl=60)
    api.ok(REGULATOR, "{ organisations { id } }")  # warm-up: the token check is cached
    with driver_statements(world.store.engine) as seen:
        rc = api.ok(REGULATOR, RC_PROOF, lot="lot:cathode")["recoveredContent"]
    assert rc["proof"]["complete"] and rc["proof"]["depth"] == 6
    assert len(rc["proof"]["recordHashes"]) > 20
    assert len(seen) == (9 if by_level else 3), seen
    with driver_statements(world.store.engine) as seen:
        b = api.ok(REGULATOR, BATTERY, code=B11)["battery"]
    assert b["complete"] and len(b["downstream"]) == 9
    assert len(seen) == (11 if by_level else 6), seen


def test_a_driver_error_below_sqlalchemy_is_raised_as_sqlalchemys(world: World) -> None:
    """ledger.database.driver_rows raises what exec_driver_sql would (DBAPIError's tree,
    parameters hidden), so the store's retry rules (ledger/store.py, _store_error) and
    the API's error codes see the same errors on both paths."""
    from sqlalchemy.exc import DBAPIError

    from ledger.database import driver_rows

    mark = "?" if world.store.engine.dialect.paramstyle == "qmark" else "%s"
    with world.store.engine.connect() as conn, pytest.raises(DBAPIError) as below:
        driver_rows(conn, f"SELECT nope FROM records WHERE hash = {mark}", ["secret-value"])
    with world.store.engine.connect() as conn, pytest.raises(DBAPIError) as above:
        conn.exec_driver_sql(f"SELECT nope FROM records WHERE hash = {mark}", ("secret-value",))
    assert type(below.value) is type(above.value)
    assert type(below.value.orig) is type(above.value.orig)
    assert "secret-value" not in str(below.value)
