"""Bug: a material filter over 50,000 bytes was a retryable 503.

SQLite refuses a LIKE pattern longer than SQLITE_MAX_LIKE_PATTERN_LENGTH
(50,000 bytes); the prefix match of ``lots(filter: {material})``,
``materialFlows(material)`` and ``avoidedEmissions(material)`` sent it one,
and the OperationalError came back as STORE_UNAVAILABLE ("retry the query"),
which retrying could never fix. Found by tests/test_hostile_graphql.py. Now a
material filter longer than a material code (64 characters) is BAD_USER_INPUT
naming the argument, on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems

from ledger.tokens import issue_token
from schema.app import create_app


@pytest.fixture
def client(world: World) -> Iterator[tuple[RawClient, str]]:
    world.create(world.admit("org:coll", ["collector"]), "lot:a", 1_000)
    token = issue_token(world.store.engine, world.operator.actor)
    with RawClient(create_app(world.store, token_ttl=60)) as c:
        yield c, token


@pytest.mark.parametrize(
    ("query", "argument"),
    [
        (
            "query($m: String) { lots(filter: {material: $m}) { edges { cursor } } }",
            "filter.material",
        ),
        ("query($m: String) { materialFlows(material: $m) { __typename } }", "material"),
        ("query($m: String) { avoidedEmissions(material: $m) { avoidedG } }", "material"),
    ],
)
def test_an_overlong_material_is_bad_user_input(
    client: tuple[RawClient, str], query: str, argument: str
) -> None:
    c, token = client
    for material in ("s" * 65, "s" * 60_000):
        answer = c.ask(token, query, {"m": material})
        assert answer.status == 400, answer.text[:300]
        [error] = answer.json()["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
        assert not problems(query, answer)
    # a code of 64 characters is still a filter (it matches nothing here)
    assert c.ask(token, query, {"m": "s" * 64}).status == 200
    assert c.ask(token, query, {"m": "steel"}).status == 200
