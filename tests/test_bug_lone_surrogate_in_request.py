"""Bug: a lone UTF-16 surrogate in a request was a 500 INTERNAL.

``"\\ud800"`` is valid JSON but not Unicode text. Sent as a variable it reached
the database driver, which could not encode it (UnicodeEncodeError: INTERNAL);
sent as operationName it came back in graphql-core's error message, and the
UTF-8 response could not be rendered (INTERNAL again). Found by
tests/test_hostile_graphql.py. Now schema/limits.py refuses it up front: 400
BAD_REQUEST naming where it is (I-JSON, RFC 7493 §2.1), on both engines, and
nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import World
from hostile_api import RawClient, problems, request_bytes

from ledger.tokens import issue_token
from schema.app import create_app


@pytest.fixture
def client(world: World) -> Iterator[tuple[RawClient, str]]:
    token = issue_token(world.store.engine, world.operator.actor)
    with RawClient(create_app(world.store, token_ttl=60)) as c:
        yield c, token


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (
            {"query": "query($c: ID!) { lot(id: $c) { id } }", "variables": {"c": "\ud800"}},
            "variables.c",
        ),
        (
            {
                "query": "query($l: [ID!]!) { heads(lots: $l) { lot } }",
                "variables": {"l": ["a", "x\udfff"]},
            },
            "variables.l[1]",
        ),
        ({"query": "{ __typename }", "variables": {"\udc00": 1}}, "a member name in variables"),
        ({"query": "query A { __typename }", "operationName": "\ud800"}, "operationName"),
        (
            {
                "query": "mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename } }",
                "variables": {"e": [{"envelope": '{"id":"\ud800"}', "signature": "x"}]},
            },
            "variables.e[0].envelope",
        ),
    ],
)
def test_a_lone_surrogate_is_bad_request_naming_where(
    client: tuple[RawClient, str], world: World, payload: dict[str, object], where: str
) -> None:
    c, token = client
    before = world.store.last_seq()
    answer = c.post(request_bytes(payload), token)  # json.dumps writes the escape \ud800
    assert b"\\ud" in request_bytes(payload).lower()
    assert answer.status == 400, answer.text
    assert answer.codes == ["BAD_REQUEST"]
    assert where in answer.json()["errors"][0]["message"]
    assert not problems(payload, answer)
    assert world.store.last_seq() == before


def test_a_surrogate_pair_is_a_character_and_passes(client: tuple[RawClient, str]) -> None:
    """\\ud83d\\ude00 is one character (U+1F600): no refusal."""
    c, token = client
    answer = c.ask(token, "query($c: ID!) { lot(id: $c) { id } }", {"c": "lot:\U0001f600"})
    assert answer.status == 200 and answer.json() == {"data": {"lot": None}}
