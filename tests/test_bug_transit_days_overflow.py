"""Bug: ``anomalies(transitDays: 2147483647)`` was INTERNAL.

The stuck-in-transit check computes ``now - timedelta(days=transitDays)``;
past about 739,000 days that leaves the calendar (OverflowError: a 500).
Found by tests/test_hostile_graphql.py. Now transitDays above 36,500 (a
century) is BAD_USER_INPUT naming the argument (schema/anomalies.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems

from ledger.tokens import issue_token
from schema.anomalies import MAX_TRANSIT_DAYS
from schema.app import create_app


@pytest.fixture
def client(sqlite_world: World) -> Iterator[tuple[RawClient, str]]:
    token = issue_token(sqlite_world.store.engine, sqlite_world.operator.actor)
    with RawClient(create_app(sqlite_world.store, token_ttl=60)) as c:
        yield c, token


def test_transit_days_beyond_a_century_are_bad_user_input(client: tuple[RawClient, str]) -> None:
    c, token = client
    query = "query($d: Int) { anomalies(transitDays: $d) { kind } }"
    for days in (MAX_TRANSIT_DAYS + 1, 739_000, 2_147_483_647):
        answer = c.ask(token, query, {"d": days})
        assert answer.status == 400, answer.text[:300]
        [error] = answer.json()["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "transitDays"}
        assert not problems(query, answer)
    assert c.ask(token, query, {"d": MAX_TRANSIT_DAYS}).status == 200
