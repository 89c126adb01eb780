"""Bug: ``anomalies(from, to)`` with a bound outside the years EPR periods cover was INTERNAL.

With both bounds given, the over-certification check walks the EPR periods of
the window; ``to: "9999-12-31T23:59:59.999999Z"`` (or ``from`` in year 1) asked
ledger/epr_schemes.py for a period it does not cover, and its ValueError came
back as a 500. Found by tests/test_hostile_graphql.py with RLEDGER_LONG=1. Now
schema/anomalies.py refuses a bound before 1901 or after 9998-01-01 (an
April-to-March year of 1900 begins in 1899): BAD_USER_INPUT naming it.
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


QUERY = "query($f: DateTime, $t: DateTime) { anomalies(from: $f, to: $t) { kind } }"


@pytest.mark.parametrize(
    ("start", "end", "argument"),
    [
        ("2026-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "to"),
        ("2026-01-01T00:00:00Z", "9998-01-01T00:00:00.000001Z", "to"),
        ("0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "from"),
        ("1900-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "from"),
    ],
)
def test_a_bound_outside_the_epr_years_is_bad_user_input(
    client: tuple[RawClient, str], start: str, end: str, argument: str
) -> None:
    c, token = client
    answer = c.ask(token, QUERY, {"f": start, "t": end})
    assert answer.status == 400, answer.text[:300]
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
    assert not problems(QUERY, answer)


def test_the_widest_window_passes(client: tuple[RawClient, str]) -> None:
    c, token = client
    answer = c.ask(token, QUERY, {"f": "1901-01-01T00:00:00Z", "t": "9998-01-01T00:00:00Z"})
    assert answer.status == 200, answer.text[:300]
