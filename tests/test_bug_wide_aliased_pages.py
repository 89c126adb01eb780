"""Bug: thirty aliased full pages passed every limit and took a minute.

``{ a0: lots(first: 500) { edges { node { ...20 fields } } } a1: ... a29: ... }``
is 12 levels deep at most and uses 30 aliases: within both limits. It made
15,000 lot nodes with their custodians and head events: 15-70 s of CPU and
180 MB (found by tests/test_query_limits.py). Now a query's cost (fields with
every page full, schema/limits.py CostRule) is limited to 50,000: this one
costs 30 x 12,001 and is refused QUERY_TOO_COSTLY before anything is read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems

from ledger.tokens import issue_token
from schema.app import create_app

NODE = (
    "id material massG remainingG status head elements { element massG } units "
    "custodian { id name roles region } headEvent { hash type at actor { id } } recoveredG"
)


@pytest.fixture
def client(sqlite_world: World) -> Iterator[tuple[RawClient, str]]:
    token = issue_token(sqlite_world.store.engine, sqlite_world.operator.actor)
    with RawClient(create_app(sqlite_world.store, token_ttl=60)) as c:
        yield c, token


def test_thirty_aliased_full_pages_are_too_costly(client: tuple[RawClient, str]) -> None:
    c, token = client
    page = f"lots(first: 500) {{ edges {{ node {{ {NODE} }} }} }}"
    query = "{ " + " ".join(f"a{i}: {page}" for i in range(30)) + " }"
    answer = c.ask(token, query)
    assert (answer.status, answer.codes) == (400, ["QUERY_TOO_COSTLY"]), answer.text[:300]
    message = answer.json()["errors"][0]["message"]
    assert "360030 fields" in message and "at most 50000" in message
    assert not problems(query, answer)
    four = "{ " + " ".join(f"a{i}: {page}" for i in range(4)) + " }"
    assert c.ask(token, four).status == 200  # 48,004: within the limit
