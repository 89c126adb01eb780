"""Bug: a Grams or Long literal out of range, or not an integer, was INTERNAL.

``consistencyProof(from: 1.5, to: 1)`` or ``treeSize: 10^20`` written in the
query text: the scalars' literal parsers raised ValueError, which graphql-core
wraps in a validation error whose original error is no GraphQLError, so
schema/errors.py masked it as an unexpected failure (500). The same values as
variables were already GRAPHQL_VALIDATION_FAILED. Found by
tests/test_hostile_graphql.py. Now the literal parsers raise strawberry's
coercion error (schema/scalars.py): 400 GRAPHQL_VALIDATION_FAILED with the
scalar's own message.
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


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            '{ inclusionProof(hash: "a", treeSize: 100000000000000000000) { treeSize } }',
            "Long must lie in",
        ),
        (
            '{ inclusionProof(hash: "a", treeSize: -9007199254740992) { treeSize } }',
            "Long must lie in",
        ),
        (
            '{ inclusionProof(hash: "a", treeSize: 1.5) { treeSize } }',
            "Long must be an integer literal",
        ),
        ("{ consistencyProof(from: true, to: 1) { toSize } }", "Long must be an integer literal"),
        ('{ consistencyProof(from: "1", to: 1) { toSize } }', "Long must be an integer literal"),
    ],
)
def test_a_bad_literal_is_a_validation_error(
    client: tuple[RawClient, str], query: str, says: str
) -> None:
    c, token = client
    answer = c.ask(token, query)
    assert answer.status == 400, answer.text[:300]
    assert answer.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert says in answer.json()["errors"][0]["message"]
    assert not problems(query, answer)
