"""Bug: a DateTime argument that leaves years 1-9999 once in UTC was INTERNAL.

``0001-01-01T00:00:00+01:00`` parses (dateutil), but is 31 December of year 0
in UTC: the filters of avoidedEmissions, materialFlows, anomalies and lots
converted it with ``astimezone(UTC)`` and overflowed (OverflowError: a 500).
Found by tests/test_hostile_graphql.py. Now the DateTime scalar refuses it
(schema/scalars.py): GRAPHQL_VALIDATION_FAILED, as a literal or a variable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems

from ledger.tokens import issue_token
from schema.app import create_app


@pytest.fixture
def client(sqlite_world: World) -> Iterator[tuple[RawClient, str]]:
    token = issue_token(sqlite_world.store.engine, sqlite_world.operator.actor)
    with RawClient(create_app(sqlite_world.store, token_ttl=60)) as c:
        yield c, token


FIELDS = [
    "avoidedEmissions(from: $t) { avoidedG }",
    "materialFlows(to: $t) { __typename }",
    "anomalies(from: $t) { kind }",
    "lots(filter: {createdFrom: $t}) { edges { cursor } }",
]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_beyond_the_utc_calendar_is_refused(
    client: tuple[RawClient, str], field: str, time: str
) -> None:
    c, token = client
    for query, variables in (
        (f"query($t: DateTime) {{ {field} }}", {"t": time}),
        ("{ " + field.replace("$t", f'"{time}"') + " }", None),
    ):
        answer = c.ask(token, query, variables)
        assert answer.status == 400, answer.text[:300]
        assert answer.codes == ["GRAPHQL_VALIDATION_FAILED"], answer.text[:300]
        assert "years 1-9999" in answer.text
        assert not problems(query, answer)


def test_the_edges_of_the_calendar_in_utc_still_pass(client: tuple[RawClient, str]) -> None:
    c, token = client
    for time in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00-01:00"):
        answer = c.ask(
            token, "query($t: DateTime) { avoidedEmissions(from: $t) { avoidedG } }", {"t": time}
        )
        assert answer.status == 200, answer.text[:300]
