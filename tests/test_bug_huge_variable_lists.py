"""Bug: a huge list in the variables was coerced item by item before anything
said no.

``heads(lots: $l)`` with 1,000,000 ids (9 MB, under the 16 MiB body limit) took
7 s of CPU in graphql-core's variable coercion before the resolver refused
more than 5,000; 400,000 events in recordEvents 15 s; and
``anomalies(kinds: $k)`` with 1,000,000 kinds answered 200 after 14 s. Found
by tests/test_query_limits.py. Now schema/limits.py counts the variables'
values first and refuses more than ``max_variable_values`` (50,000): 413
REQUEST_TOO_LARGE, the walk stopping at the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems

from ledger.tokens import issue_token
from schema.app import create_app
from schema.limits import Limits


@pytest.fixture
def client(sqlite_world: World) -> Iterator[tuple[RawClient, str]]:
    token = issue_token(sqlite_world.store.engine, sqlite_world.operator.actor)
    app = create_app(sqlite_world.store, token_ttl=60, limits=Limits(max_variable_values=100))
    with RawClient(app) as c:
        yield c, token


def test_values_are_counted_lists_objects_and_scalars_together(
    client: tuple[RawClient, str],
) -> None:
    """With max_variable_values 100: {"l": [99 ids]} holds 1 (l) + 99 = 100 values and
    passes; one more id, or an object member, and it is refused."""
    c, token = client
    query = "query($l: [ID!]!) { heads(lots: $l) { lot } }"
    assert c.ask(token, query, {"l": ["lot:x"] * 99}).status == 200
    for variables in ({"l": ["lot:x"] * 100}, {"l": ["lot:x"] * 99, "unused": 0}):
        answer = c.ask(token, query, variables)
        assert (answer.status, answer.codes) == (413, ["REQUEST_TOO_LARGE"]), answer.text[:300]
        assert "more than 100 values" in answer.json()["errors"][0]["message"]
        assert not problems(query, answer)


def test_a_million_kinds_are_refused_at_once(client: tuple[RawClient, str]) -> None:
    c, token = client
    query = "query($k: [AnomalyKind!]) { anomalies(kinds: $k) { kind } }"
    started = time.monotonic()
    answer = c.ask(token, query, {"k": ["YIELD"] * 1_000_000})
    assert (answer.status, answer.codes) == (413, ["REQUEST_TOO_LARGE"])
    assert time.monotonic() - started < 5
