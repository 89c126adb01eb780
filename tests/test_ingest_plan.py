"""``recordEvents`` through an ingest plan (schema/ingest_plan.py) answers exactly
as graphql-core's full execution does.

Each request goes to two apps over the same store: one with plans (the
default), one without (``create_app(ingest_plans=False)``). The append is
replaced by a fixed answer, so both see the same results, e.g. for three
records: ``Appended("r1", "aa…", 7)``, a ``RecordRefused("conflict", …,
path="parents.lot:a")`` and ``Appended("r3", "bb…", 8, existing=True)``;
the bodies must then be equal byte for byte (key order included), with
the same status and headers that matter. Requests the plan must leave to
the full execution (odd shapes, bad variables) are compared too, and for
each request the test checks which way it went.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import World

import schema.ingest_plan as ingest_plan
import schema.mutations as mutations
from ledger.errors import Overloaded, RecordRefused, StoreUnavailable
from ledger.store import Appended, Result
from ledger.tokens import issue_token
from producers.client import RECORD_MUTATION
from schema.app import create_app
from schema.limits import Limits

RESULTS: list[Result] = [
    Appended("r1", "a" * 64, 7),
    RecordRefused(
        "conflict", "the lot moved on: use its head", path="parents.lot:a", record_id="r2"
    ),
    Appended("r3", "b" * 64, 8, existing=True),
    RecordRefused("json.malformed", "not JSON", path=None, record_id=None),
]
EVENTS = [{"envelope": f'{{"id":"r{i}"}}', "signature": "c2ln"} for i in range(1, 5)]

TEST_QUERY = """
mutation Record($events: [SignedEvent!]!, $atomic: Boolean) {
  recordEvents(events: $events, atomic: $atomic) {
    __typename
    ... on Recorded { id hash seq existing }
    ... on Rejected { rejectedId: id code message path }
  }
}
"""
MINIMAL = "mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename } }"
SHUFFLED = """
mutation M($e: [SignedEvent!]!) {
  out: recordEvents(events: $e, atomic: false) {
    ... on Rejected { why: message code }
    __typename
    ... on Recorded { seq s2: seq hash }
    ... on RecordResult { kind: __typename }
    ... { __typename }
    ... on Rejected { code path }
  }
}
"""
SPREAD = """
mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { ...R } }
fragment R on Recorded { id seq }
"""
TWO_OPS = """
mutation A($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename } }
mutation B($e: [SignedEvent!]!) { recordEvents(events: $e) { ... on Recorded { seq } } }
"""
DIRECTIVE = """
mutation($e: [SignedEvent!]!, $no: Boolean!) {
  recordEvents(events: $e) { __typename ... on Recorded { seq @skip(if: $no) } }
}
"""

# (name, request body, whether the plan answers it)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("test query, atomic absent", {"query": TEST_QUERY, "variables": {"events": EVENTS}}, True),
    (
        "test query, atomic true",
        {"query": TEST_QUERY, "variables": {"events": EVENTS, "atomic": True}},
        True,
    ),
    (
        "test query, atomic null",
        {"query": TEST_QUERY, "variables": {"events": EVENTS, "atomic": None}},
        True,
    ),
    (
        "SDK mutation",
        {"query": RECORD_MUTATION, "variables": {"events": EVENTS, "atomic": False}},
        True,
    ),
    (
        "SDK mutation, operationName",
        {
            "query": RECORD_MUTATION,
            "operationName": "RecordEvents",
            "variables": {"events": EVENTS, "atomic": True},
        },
        True,
    ),
    (
        "SDK mutation without the required atomic",
        {"query": RECORD_MUTATION, "variables": {"events": EVENTS}},
        False,
    ),
    (
        "SDK mutation, atomic a string",
        {"query": RECORD_MUTATION, "variables": {"events": EVENTS, "atomic": "yes"}},
        False,
    ),
    ("minimal", {"query": MINIMAL, "variables": {"e": EVENTS}}, True),
    (
        "aliases, repeats, fragments on the union",
        {"query": SHUFFLED, "variables": {"e": EVENTS}},
        True,
    ),
    ("empty batch", {"query": MINIMAL, "variables": {"e": []}}, True),
    ("fragment spread", {"query": SPREAD, "variables": {"e": EVENTS}}, False),
    (
        "two operations",
        {"query": TWO_OPS, "operationName": "B", "variables": {"e": EVENTS}},
        False,
    ),
    ("directive", {"query": DIRECTIVE, "variables": {"e": EVENTS, "no": False}}, False),
    (
        "an event with a third member",
        {"query": MINIMAL, "variables": {"e": [{**EVENTS[0], "x": "1"}]}},
        False,
    ),
    ("an event not an object", {"query": MINIMAL, "variables": {"e": ["text"]}}, False),
    ("events one object, not a list", {"query": MINIMAL, "variables": {"e": EVENTS[0]}}, False),
    ("events null", {"query": MINIMAL, "variables": {"e": None}}, False),
    (
        "a signature not a string",
        {"query": MINIMAL, "variables": {"e": [{"envelope": "{}", "signature": 5}]}},
        False,
    ),
    (
        "a lone surrogate",
        {"query": MINIMAL, "variables": {"e": [{"envelope": "\ud800", "signature": "x"}]}},
        False,
    ),
    ("batch too large", {"query": MINIMAL, "variables": {"e": EVENTS * 2}}, False),
    ("unknown field", {"query": MINIMAL.replace("__typename", "nope"), "variables": {}}, False),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def apps(sqlite_world: World) -> tuple[Any, Any, str]:
    collector = sqlite_world.admit("org:collector", ["collector"])
    token = issue_token(sqlite_world.store.engine, collector.actor)
    limits = Limits(max_batch=len(EVENTS))
    planned = create_app(sqlite_world.store, token_ttl=0, limits=limits)
    full = create_app(sqlite_world.store, token_ttl=0, limits=limits, ingest_plans=False)
    return planned, full, token


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each request was answered by a plan."""
    answered: list[bool] = []
    run = ingest_plan.IngestPlan.run

    async def spy(self: ingest_plan.IngestPlan, *args: Any) -> Any:
        result = await run(self, *args)
        answered.append(result is not None)
        return result

    monkeypatch.setattr(ingest_plan.IngestPlan, "run", spy)
    yield answered


async def _post(app: Any, body: dict[str, Any], token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
        return await client.post(
            "/graphql",
            content=json.dumps(body).encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert (a.status_code, a.headers.get("retry-after")) == (
        b.status_code,
        b.headers.get("retry-after"),
    )
    # an INTERNAL error's reference is new each time
    masked = [re.sub(rb"reference [0-9a-zA-Z-]+", b"reference R", r.content) for r in (a, b)]
    assert masked[0] == masked[1]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "body", "planned"), CASES, ids=[c[0] for c in CASES])
async def test_a_plan_answers_as_the_full_execution(
    apps: tuple[Any, Any, str],
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    body: dict[str, Any],
    planned: bool,
) -> None:
    calls: list[tuple[str, int, bool]] = []

    def fixed(_store: Any, org: str, batch: list[Any], *, atomic: bool = False) -> list[Result]:
        calls.append((org, len(batch), atomic))
        return RESULTS[: len(batch)]

    monkeypatch.setattr(mutations, "append_as", fixed)
    with_plan, full, token = apps
    a = await _post(with_plan, body, token)
    b = await _post(full, body, token)
    _same(a, b)
    assert any(taken) == planned, name
    if planned:
        assert a.status_code == 200 and "errors" not in a.json(), a.text
        assert len(calls) == 2 and calls[0] == calls[1]  # the same append, both ways
    else:
        assert calls[: len(calls) // 2] == calls[len(calls) // 2 :]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc", [Overloaded("busy"), StoreUnavailable("down"), RuntimeError("a bug deep inside")]
)
async def test_a_failed_append_is_the_same_error_both_ways(
    apps: tuple[Any, Any, str],
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
) -> None:
    def fail(*_a: Any, **_k: Any) -> Any:
        raise exc

    monkeypatch.setattr(mutations, "append_as", fail)
    with_plan, full, token = apps
    body = {"query": RECORD_MUTATION, "variables": {"events": EVENTS, "atomic": False}}
    a = await _post(with_plan, body, token)
    b = await _post(full, body, token)
    _same(a, b)
    assert taken == [True]
    assert a.status_code in (500, 503) and a.json()["data"] is None
    assert "a bug deep inside" not in a.text


def test_plans_are_remembered_and_bounded() -> None:
    from schema.root import schema

    plans = ingest_plan.Plans(schema._schema, Limits())
    first = plans.get(MINIMAL, None)
    assert first is not None and plans.get(MINIMAL, None) is first
    assert plans.get(SPREAD, None) is None
    assert plans.get("{ __typename }", None) is None  # not even parsed: no recordEvents
    for i in range(ingest_plan.MAX_PLANS + 1):
        plans.get(MINIMAL.replace("$e", f"$e{i}"), None)
    assert len(plans._plans) <= ingest_plan.MAX_PLANS


def test_the_plan_knows_every_field_and_extension_of_the_schema() -> None:
    """A plan answers without the schema's extensions and with its own list of
    fields: a new extension or field must be looked at in schema/ingest_plan.py
    (a new field goes the full way until then, so it is never answered wrong)."""
    from schema.root import schema

    graphql_schema = schema._schema
    for name, known in (
        ("Recorded", ingest_plan.RECORDED_FIELDS),
        ("Rejected", ingest_plan.REJECTED_FIELDS),
    ):
        fields = set(graphql_schema.get_type(name).fields) | {"__typename"}  # type: ignore[union-attr]
        assert fields == known, name
    names = [getattr(e, "__name__", type(e).__name__) for e in schema.extensions]
    assert names == ["QueryLimits", "ParserCache", "ValidationCache"], (
        "schema/ingest_plan.py reproduces QueryLimits' checks; review it for a new extension"
    )
