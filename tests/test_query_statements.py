"""A page of lots with custodians and head events (and a page of events with
their actors and lots) costs a fixed number of SQL statements, whatever the
page size (the dataloaders batch), on both engines.

Counted with a SQLAlchemy ``before_cursor_execute`` listener on the store's
engine, after one warm-up request (so the token check is cached, as it is for
a busy client). The count includes SQLite's explicit ``BEGIN`` per
connection (ledger/database.py), so SQLite counts a statement more per read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import World
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
