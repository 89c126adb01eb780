"""The GraphQL service's core through httpx's ASGI transport: recordEvents,
authentication, limits and the HTTP/GraphQL error contract (COMMON.md).

Every bad input named in issue 3 gets its own code and never a 500 or a
stack trace. Tests that write run on SQLite and PostgreSQL (``world``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from conftest import World
from graphql import build_schema, parse, validate
from graphql.validation import MaxIntrospectionDepthRule

import schema.mutations as mutations
from ledger.access import Viewer
from ledger.canonical import canonical_bytes
from ledger.errors import Overloaded, StoreUnavailable
from ledger.signing import sign
from ledger.store import MAX_BATCH, Signed
from ledger.tokens import issue_token, revoke_token, token_id_of
from producers.events import Signer
from schema.app import create_app
from schema.auth import Authenticator, bearer_token
from schema.errors import ApiError
from schema.limits import IntrospectionDepthRule, Limits, limit_rules, validation_rules
from schema.scalars import MAX_SAFE, parse_grams, parse_long, serialize_grams, serialize_long

RECORD = """
mutation Record($events: [SignedEvent!]!, $atomic: Boolean) {
  recordEvents(events: $events, atomic: $atomic) {
    __typename
    ... on Recorded { id hash seq existing }
    ... on Rejected { rejectedId: id code message path }
  }
}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Api:
    world: World
    app: Any
    token: str  # org:collector's
    collector: Signer
    recycler: Signer

    @asynccontextmanager
    async def client(self, app: Any = None) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app or self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as c:
            yield c

    async def post(
        self, body: Any, token: str | None = "", app: Any = None, **kw: Any
    ) -> httpx.Response:
        headers = {} if token is None else {"authorization": f"Bearer {token or self.token}"}
        async with self.client(app) as c:
            if isinstance(body, (bytes, str)):
                return await c.post("/graphql", content=body, headers=headers, **kw)
            return await c.post("/graphql", json=body, headers=headers, **kw)

    async def record(
        self, *records: Signed, atomic: bool | None = None, token: str = ""
    ) -> list[dict[str, Any]]:
        variables: dict[str, Any] = {"events": [_event(r) for r in records]}
        if atomic is not None:
            variables["atomic"] = atomic
        r = await self.post({"query": RECORD, "variables": variables}, token=token)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "errors" not in body
        results: list[dict[str, Any]] = body["data"]["recordEvents"]
        assert len(results) == len(records)
        return results

    def create(self, signer: Signer, lot: str, mass_g: int = 1_000) -> Signed:
        body = {"lot": lot, "material": "steel.hms1", "mass_g": mass_g, "origin": "post_consumer"}
        return signer.record("create", body)


def _event(record: Signed) -> dict[str, str]:
    envelope = record.envelope
    text = envelope.decode() if isinstance(envelope, bytes) else envelope
    return {"envelope": text, "signature": record.signature}


def _api(world: World) -> Api:
    collector = world.admit("org:collector", ["collector"])
    recycler = world.admit("org:recycler", ["recycler"])
    token = issue_token(world.store.engine, collector.actor)
    return Api(world, create_app(world.store, token_ttl=0), token, collector, recycler)


@pytest.fixture
def api(world: World) -> Api:
    """On SQLite and on PostgreSQL: for what writes or reads the database."""
    return _api(world)


@pytest.fixture
def sqlite_api(sqlite_world: World) -> Api:
    """On SQLite only: for the protocol (parsing, limits, shapes), which no database sees."""
    return _api(sqlite_world)


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response's one error, after checking its status, code and hygiene."""
    assert r.status_code == status, r.text
    _no_stack_trace(r)
    errors = r.json()["errors"]
    assert len(errors) >= 1, errors
    error: dict[str, Any] = errors[0]
    assert error["extensions"]["code"] == code, errors
    assert error["message"]
    return error


_STACK_TRACE = re.compile(r'Traceback|File "|\.py", line \d+|\.py:\d+')


def _no_stack_trace(r: httpx.Response) -> None:
    assert not _STACK_TRACE.search(r.text), r.text


# --- recordEvents: the happy path and per-record refusals (both engines) ----------


@pytest.mark.anyio
async def test_records_are_recorded_with_their_seq(api: Api) -> None:
    before = api.world.store.last_seq()
    records = [api.create(api.collector, f"lot:h{i}") for i in range(3)]
    results = await api.record(*records)
    assert [r["__typename"] for r in results] == ["Recorded"] * 3
    assert [r["seq"] for r in results] == [before + 1, before + 2, before + 3]
    assert all(r["existing"] is False for r in results)
    assert [r["id"] for r in results] == [json.loads(_event(x)["envelope"])["id"] for x in records]
    stored = {s.seq: s.hash for s in api.world.store.records(before + 1)}
    assert [r["hash"] for r in results] == [stored[r["seq"]] for r in results]
    async with api.client() as c:
        health = (await c.get("/health")).json()
    assert health == {"status": "ok", "seq": before + 3}


@pytest.mark.anyio
async def test_a_refused_record_is_data_with_code_and_path_and_the_rest_go_in(api: Api) -> None:
    before = api.world.store.last_seq()
    good1 = api.create(api.collector, "lot:r1")
    bad = api.collector.record("transfer", {"lot": "lot:nope", "to": "org:recycler", "mass_g": 1})
    good2 = api.create(api.collector, "lot:r2")
    results = await api.record(good1, bad, good2)
    assert [r["__typename"] for r in results] == ["Recorded", "Rejected", "Recorded"]
    rejected = results[1]
    assert rejected["code"] == "lot.unknown"
    assert rejected["path"] == "body.lot"
    assert rejected["rejectedId"] == json.loads(_event(bad)["envelope"])["id"]
    assert rejected["message"]
    assert api.world.store.last_seq() == before + 2
    assert api.world.store.lot("lot:nope") is None


@pytest.mark.anyio
async def test_atomic_batch_is_all_or_nothing(api: Api) -> None:
    before = (api.world.store.last_seq(), api.world.store.projection_rows())
    good = api.create(api.collector, "lot:a1")
    bad = api.create(api.collector, "lot:a2", mass_g=0)
    results = await api.record(good, bad, atomic=True)
    assert [r["__typename"] for r in results] == ["Rejected", "Rejected"]
    assert results[0]["code"] == "batch.aborted"
    assert results[1]["code"] == "mass.not_positive"
    assert (api.world.store.last_seq(), api.world.store.projection_rows()) == before
    # The same good record alone goes in: the abort wrote nothing, not even its id.
    [alone] = await api.record(good, atomic=True)
    assert alone["__typename"] == "Recorded" and alone["existing"] is False


@pytest.mark.anyio
async def test_resubmission_answers_existing(api: Api) -> None:
    record = api.create(api.collector, "lot:i1")
    [first] = await api.record(record)
    [again] = await api.record(record)
    assert again["__typename"] == "Recorded"
    assert again["existing"] is True
    assert (again["seq"], again["hash"], again["id"]) == (first["seq"], first["hash"], first["id"])


@pytest.mark.anyio
async def test_writing_as_another_organisation_is_refused(api: Api) -> None:
    before = api.world.store.last_seq()
    own = api.create(api.collector, "lot:n1")
    foreign = api.create(api.recycler, "lot:n2")  # well signed, by the recycler
    results = await api.record(own, foreign)
    assert results[0]["__typename"] == "Recorded"
    assert results[1]["__typename"] == "Rejected"
    assert results[1]["code"] == "actor.not_authorised"
    assert results[1]["path"] == "actor"
    assert "org:recycler" in results[1]["message"] and "org:collector" in results[1]["message"]
    assert api.world.store.last_seq() == before + 1
    assert api.world.store.lot("lot:n2") is None
    # Atomic: the not-authorised record aborts the whole batch.
    own2 = api.create(api.collector, "lot:n3")
    results = await api.record(own2, foreign, atomic=True)
    assert [r["code"] for r in results] == ["batch.aborted", "actor.not_authorised"]
    assert api.world.store.last_seq() == before + 1
    # With the recycler's own token the same record goes in.
    token = issue_token(api.world.store.engine, api.recycler.actor)
    [ok] = await api.record(foreign, token=token)
    assert ok["__typename"] == "Recorded"


@pytest.mark.anyio
async def test_bad_envelopes_and_signatures_are_rejected_records(api: Api) -> None:
    env = api.collector.envelope(
        "create", {"lot": "lot:e1", "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
    )
    pretty = canonical_bytes(env).replace(b",", b", ")
    not_canonical = Signed(pretty, sign(api.collector.private_key, pretty))
    not_json = Signed(b'{"v":1,', sign(api.collector.private_key, b'{"v":1,'))
    good = api.collector.sign_envelope(env)
    forged = Signed(good.envelope, api.create(api.collector, "lot:e2").signature)
    garbled = Signed(good.envelope, "not base64!")
    results = await api.record(not_canonical, not_json, forged, garbled)
    assert [r["code"] for r in results] == [
        "json.not_canonical",
        "json.malformed",
        "signature.invalid",
        "signature.malformed",
    ]
    assert api.world.store.lot("lot:e1") is None


# --- GraphQL errors: each bad input has its code, and none is a 500 ---------------


@pytest.mark.anyio
async def test_syntax_error(sqlite_api: Api) -> None:
    error = _error(
        await sqlite_api.post({"query": "mutation { recordEvents(events: [ }"}),
        400,
        "GRAPHQL_PARSE_FAILED",
    )
    assert "Syntax Error" in error["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "variables",
    [
        {"events": [{"envelope": 5, "signature": "x"}]},  # a number for a string
        {"events": [{"envelope": "{}"}]},  # a missing field
        {"events": [{"envelope": "{}", "signature": "x", "extra": 1}]},  # an unknown field
        {"events": "not a list of objects"},
        {"events": [], "atomic": "yes"},
        {},  # the required variable missing
    ],
)
async def test_wrong_types_are_validation_errors(
    sqlite_api: Api, variables: dict[str, Any]
) -> None:
    r = await sqlite_api.post({"query": RECORD, "variables": variables})
    error = _error(r, 400, "GRAPHQL_VALIDATION_FAILED")
    assert "$events" in error["message"] or "$atomic" in error["message"]


@pytest.mark.anyio
async def test_unknown_field_and_wrong_literal(sqlite_api: Api) -> None:
    _error(await sqlite_api.post({"query": "{ noSuchField }"}), 400, "GRAPHQL_VALIDATION_FAILED")
    q = 'mutation { recordEvents(events: [{envelope: 1, signature: "x"}]) { __typename } }'
    _error(await sqlite_api.post({"query": q}), 400, "GRAPHQL_VALIDATION_FAILED")


@pytest.mark.anyio
async def test_oversized_batch(api: Api) -> None:
    before = api.world.store.last_seq()
    events = [_event(api.create(api.collector, "lot:big"))] * (MAX_BATCH + 1)
    r = await api.post({"query": RECORD, "variables": {"events": events}})
    error = _error(r, 400, "BATCH_TOO_LARGE")
    assert str(MAX_BATCH) in error["message"]
    assert api.world.store.last_seq() == before


@pytest.mark.anyio
@pytest.mark.parametrize(
    "selection",
    [
        "a: recordEvents(events: $e) { __typename } b: recordEvents(events: $e) { __typename }",
        "recordEvents(events: $e) { __typename } ...F",
        "... on Mutation { x: recordEvents(events: $e) { __typename } } y: recordEvents(events: $e) { __typename }",
    ],
)
async def test_aliases_cannot_multiply_the_batch_limit(api: Api, selection: str) -> None:
    """Found in review: 30 aliased recordEvents sharing one $e ran 30 batches."""
    fragment = " fragment F on Mutation { z: recordEvents(events: $e) { __typename } }"
    query = f"mutation($e: [SignedEvent!]!) {{ {selection} }}" + (
        fragment if "...F" in selection else ""
    )
    before = api.world.store.last_seq()
    r = await api.post(
        {"query": query, "variables": {"e": [_event(api.create(api.collector, "lot:x"))]}}
    )
    error = _error(r, 400, "BAD_REQUEST")
    assert "one recordEvents per request" in error["message"]
    assert api.world.store.last_seq() == before, "nothing written"


@pytest.mark.anyio
async def test_oversized_body_declared_and_streamed(sqlite_api: Api) -> None:
    app = create_app(sqlite_api.world.store, limits=Limits(max_body_bytes=2_000), token_ttl=0)
    small = {"query": "{ __typename }"}
    assert (await sqlite_api.post(small, app=app)).status_code == 200
    big = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 3_000}})
    _error(await sqlite_api.post(big, app=app), 413, "REQUEST_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(3):
            yield b" " * 1_000

    async with sqlite_api.client(app) as c:
        r = await c.post(
            "/graphql", content=chunks(), headers={"authorization": f"Bearer {sqlite_api.token}"}
        )
    _error(r, 413, "REQUEST_TOO_LARGE")


@pytest.mark.anyio
async def test_declared_size_is_refused_before_authentication(sqlite_api: Api) -> None:
    """A client announcing 17 MiB is told 413 at once, token or not: nothing is read."""
    async with sqlite_api.client() as c:
        r = await c.post(
            "/graphql", content=b"{}", headers={"content-length": str(17 * 1024 * 1024)}
        )
    _error(r, 413, "REQUEST_TOO_LARGE")


@pytest.mark.anyio
async def test_too_deep(sqlite_api: Api) -> None:
    shallow = create_app(sqlite_api.world.store, limits=Limits(max_depth=0), token_ttl=0)
    assert (await sqlite_api.post({"query": "{ __typename }"}, app=shallow)).status_code == 200
    q = "mutation Nested { recordEvents(events: []) { ... on Recorded { id } } }"
    error = _error(await sqlite_api.post({"query": q}, app=shallow), 400, "QUERY_TOO_DEEP")
    assert "'Nested'" in error["message"] and "1 levels" in error["message"]
    ok = "{ __schema { types { fields { type { fields { name } } } } } }"
    assert (await sqlite_api.post({"query": ok})).status_code == 200
    deep = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = _error(await sqlite_api.post({"query": deep}), 400, "QUERY_TOO_DEEP")
    assert "introspection" in error["message"]


@pytest.mark.anyio
async def test_too_many_aliases(sqlite_api: Api) -> None:
    ok = "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }"
    assert (await sqlite_api.post({"query": ok})).status_code == 200
    over = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"
    error = _error(await sqlite_api.post({"query": over}), 400, "TOO_MANY_ALIASES")
    assert "31" in error["message"] and "30" in error["message"]


@pytest.mark.anyio
async def test_too_many_tokens_and_too_long_a_text(sqlite_api: Api) -> None:
    ok = "{ __typename }" + "\n#" * 9_990  # comments count as tokens too: 9,993
    assert (await sqlite_api.post({"query": ok})).status_code == 200
    for over in ("{ __typename }" + "\n#" * 9_998, "{ " + "__typename " * 10_000 + "}"):
        error = _error(await sqlite_api.post({"query": over}), 400, "TOO_MANY_TOKENS")
        assert "10000" in error["message"] and "variables" in error["message"]
    long_comment = "{ __typename }\n#" + "x" * (300 * 1024)
    error = _error(await sqlite_api.post({"query": long_comment}), 400, "TOO_MANY_TOKENS")
    assert "characters" in error["message"]


@pytest.mark.anyio
async def test_missing_malformed_unknown_and_revoked_tokens(api: Api) -> None:
    query = {"query": "{ __typename }"}
    token = issue_token(api.world.store.engine, api.collector.actor)
    assert (await api.post(query, token=token)).status_code == 200
    token_id = token_id_of(token)
    assert token_id is not None
    assert revoke_token(api.world.store.engine, token_id)
    unknown = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    messages = set()
    async with api.client() as c:
        for headers in (
            {},
            {"authorization": "Bearer"},
            {"authorization": "Basic dXNlcjpwYXNz"},
            {"authorization": "Bearer not-a-token"},
            {"authorization": f"Bearer {unknown}"},
            {"authorization": f"Bearer {token}"},  # revoked
        ):
            r = await c.post("/graphql", json=query, headers=headers)
            error = _error(r, 401, "UNAUTHENTICATED")
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert token not in r.text and token_id not in r.text
            messages.add(error["message"])
    assert len(messages) == 1  # the same answer for every case: nothing to learn


@pytest.mark.anyio
async def test_request_shape_errors(sqlite_api: Api) -> None:
    _error(await sqlite_api.post(b"{not json"), 400, "BAD_REQUEST")
    _error(
        await sqlite_api.post(b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 100_000),
        400,
        "BAD_REQUEST",
    )
    _error(await sqlite_api.post(b"\xff\xfe\x00"), 400, "BAD_REQUEST")
    _error(await sqlite_api.post([{"query": "{ __typename }"}]), 400, "BAD_REQUEST")
    _error(await sqlite_api.post({"variables": {}}), 400, "BAD_REQUEST")
    _error(await sqlite_api.post({"query": "{ __typename }", "variables": [1]}), 400, "BAD_REQUEST")
    repetitive = "{ " + "__typename " * 2_000 + "}"  # graphql-core gives up: still a 400
    error = _error(await sqlite_api.post({"query": repetitive}), 400, "GRAPHQL_VALIDATION_FAILED")
    assert "simplify" in error["message"]
    error = _error(
        await sqlite_api.post({"query": "query A { __typename }", "operationName": "B"}),
        400,
        "GRAPHQL_VALIDATION_FAILED",
    )
    assert "operationName" in error["message"]


@pytest.mark.anyio
async def test_get_serves_graphiql_and_queries_but_not_mutations(sqlite_api: Api) -> None:
    async with sqlite_api.client() as c:
        page = await c.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        auth = {"authorization": f"Bearer {sqlite_api.token}"}
        r = await c.get("/graphql", params={"query": "{ __typename }"}, headers=auth)
        assert r.json() == {"data": {"__typename": "Query"}}
        r = await c.get("/graphql", params={"query": "{ __typename }"})
        _error(r, 401, "UNAUTHENTICATED")
        mutation = "mutation { recordEvents(events: []) { __typename } }"
        r = await c.get("/graphql", params={"query": mutation}, headers=auth)
        error = _error(r, 400, "BAD_REQUEST")
        assert "POST" in error["message"]


# --- failures of the server side ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "code"),
    [(Overloaded("busy"), "OVERLOADED"), (StoreUnavailable("down"), "STORE_UNAVAILABLE")],
)
async def test_retryable_store_failures_are_503_with_retry_after(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch, exc: Exception, code: str
) -> None:
    def fail(*_a: Any, **_k: Any) -> Any:
        raise exc

    monkeypatch.setattr(mutations, "append_as", fail)
    r = await sqlite_api.post({"query": RECORD, "variables": {"events": []}})
    error = _error(r, 503, code)
    assert r.headers["retry-after"] == "1"
    assert error["extensions"]["retryable"] is True
    assert error["path"] == ["recordEvents"]


@pytest.mark.anyio
async def test_an_unexpected_exception_is_internal_with_a_reference(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(mutations, "append_as", boom)
    record = sqlite_api.create(sqlite_api.collector, "lot:x1")
    with caplog.at_level(logging.ERROR, logger="rledger.sqlite_api"):
        r = await sqlite_api.post({"query": RECORD, "variables": {"events": [_event(record)]}})
    error = _error(r, 500, "INTERNAL")
    assert error["message"].startswith("internal error; reference ")
    assert "a bug deep inside" not in r.text  # the cause stays in the log
    assert error["extensions"]["retryable"] is True
    ref = error["message"].split("reference ")[1].split()[0]
    logged = "\n".join(
        rec.getMessage()
        + (logging.Formatter().formatException(rec.exc_info) if rec.exc_info else "")
        for rec in caplog.records
    )
    assert ref in logged and "a bug deep inside" in logged  # the operator can find it
    assert sqlite_api.token not in logged
    assert (token_id_of(sqlite_api.token) or "?") not in logged
    assert str(record.signature) not in logged


@pytest.mark.anyio
async def test_a_failure_outside_graphql_is_internal_too(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Authenticator, header: str | None) -> Viewer:
        raise KeyError("unexpected")

    monkeypatch.setattr(Authenticator, "viewer", broken)
    with caplog.at_level(logging.ERROR, logger="rledger.sqlite_api"):
        r = await sqlite_api.post({"query": "{ __typename }"})
    error = _error(r, 500, "INTERNAL")
    assert "reference" in error["message"]
    assert sqlite_api.token not in caplog.text


@pytest.mark.anyio
async def test_append_runs_off_the_event_loop(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is being written, the same app keeps answering."""
    entered, release = threading.Event(), threading.Event()

    def slow(*_a: Any, **_k: Any) -> list[Any]:
        entered.set()
        release.wait(10)
        return []

    monkeypatch.setattr(mutations, "append_as", slow)
    async with anyio.create_task_group() as tg, sqlite_api.client() as c:
        results: dict[str, httpx.Response] = {}

        async def write() -> None:
            results["write"] = await c.post(
                "/graphql",
                json={"query": RECORD, "variables": {"events": []}},
                headers={"authorization": f"Bearer {sqlite_api.token}"},
            )

        tg.start_soon(write)
        await anyio.to_thread.run_sync(entered.wait, 10)
        health = await c.get("/health")  # answered while the write is blocked
        assert health.status_code == 200
        release.set()
    assert results["write"].json() == {"data": {"recordEvents": []}}


# --- pieces: authentication cache, limits, scalars ----------------------------------


@pytest.mark.anyio
async def test_token_cache_bounds_revocation_to_its_ttl(world: World) -> None:
    world.admit("org:cached", ["collector"])
    token = issue_token(world.store.engine, "org:cached")
    now = [1000.0]
    auth = Authenticator(world.store, ttl=5.0, clock=lambda: now[0])
    assert (await auth.viewer(f"Bearer {token}")).org == "org:cached"
    token_id = token_id_of(token)
    assert token_id is not None and revoke_token(world.store.engine, token_id)
    now[0] += 4.9
    assert (await auth.viewer(f"bearer {token}")).org == "org:cached"  # still cached
    now[0] += 0.2
    with pytest.raises(ApiError) as caught:
        await auth.viewer(f"Bearer {token}")
    assert caught.value.code == "UNAUTHENTICATED"
    assert token not in auth._cache.__repr__()  # keyed by a hash, never by the token


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"):
        assert bearer_token(bad) is None


_RECURSIVE = build_schema("type Query { n: Node a: String } type Node { n: Node a: String }")


def _limit_errors(query: str, limits: Limits | None = None) -> list[str]:
    errors = validate(_RECURSIVE, parse(query), limit_rules(limits or Limits()))
    return [str((e.extensions or {}).get("code")) for e in errors]


def _nested(levels: int) -> str:
    return "{ " + "n { " * levels + "a" + " }" * levels + " }"


def test_depth_limit_counts_levels_below_the_root() -> None:
    assert _limit_errors(_nested(12)) == []
    assert _limit_errors(_nested(13)) == ["QUERY_TOO_DEEP"]
    via_fragments = (
        "{ n { ...F } } fragment F on Node { n { n { ...G } } } fragment G on Node { n { a } }"
    )
    assert _limit_errors(via_fragments, Limits(max_depth=4)) == []
    assert _limit_errors(via_fragments, Limits(max_depth=3)) == ["QUERY_TOO_DEEP"]


def test_limits_are_linear_in_fragments() -> None:
    """40 fragments, each spreading the next twice: 2^40 paths, but each fragment
    is measured once (the aliases are counted per use: 2^40 of them, and so are the
    fields the cost rule counts)."""
    frags = " ".join(f"fragment F{i} on Node {{ x: a ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    query = "{ n { ...F0 } } " + frags + " fragment F40 on Node { a }"
    assert _limit_errors(query) == ["TOO_MANY_ALIASES", "QUERY_TOO_COSTLY"]


def test_limit_rules_are_built_once_per_limits() -> None:
    assert limit_rules(Limits()) is limit_rules(Limits())
    assert limit_rules(Limits(max_depth=3)) is not limit_rules(Limits())
    rules = validation_rules(Limits())
    assert rules is validation_rules(Limits())
    assert MaxIntrospectionDepthRule not in rules and IntrospectionDepthRule in rules
    with pytest.raises(ValueError):
        Limits(max_batch=MAX_BATCH + 1)


@pytest.mark.anyio
async def test_a_query_seen_before_is_not_validated_again(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit rules are the same classes on every request, so strawberry's
    ValidationCache (keyed on the rules) answers a repeated query."""
    import strawberry.schema.schema as strawberry_schema

    calls = []
    real = vars(strawberry_schema)["validate"]

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    query = {"query": f"{{ unique_{id(calls)}: __typename }}"}
    for _ in range(3):
        assert (await sqlite_api.post(query)).status_code == 200
    assert len(calls) == 1


def test_grams_and_long_refuse_what_is_not_a_json_integer_in_range() -> None:
    assert parse_grams(0) == 0 and parse_grams(MAX_SAFE) == MAX_SAFE
    assert serialize_grams(1_500) == 1_500
    assert parse_long(-MAX_SAFE) == -MAX_SAFE and serialize_long(MAX_SAFE) == MAX_SAFE
    for bad in (True, 1.0, 1.5, "12", None, -1, MAX_SAFE + 1):
        with pytest.raises(ValueError, match="Grams"):
            parse_grams(bad)
        with pytest.raises(ValueError, match="Grams"):
            serialize_grams(bad)
    for bad in (False, 2.0, "1", MAX_SAFE + 1, -MAX_SAFE - 1):
        with pytest.raises(ValueError, match="Long"):
            parse_long(bad)
        with pytest.raises(ValueError, match="Long"):
            serialize_long(bad)
    with pytest.raises(ValueError, match="whole grams"):
        parse_grams(2.5)


def test_a_logged_database_error_leaves_out_the_statement_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sqlalchemy.exc import OperationalError

    from schema.errors import internal

    try:
        try:
            raise OperationalError(
                "INSERT INTO records VALUES (?)", ("SECRET-BYTES",), Exception("disk I/O")
            )
        except OperationalError as db:
            raise RuntimeError("wrapped") from db
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR, logger="rledger.api"):
            error = internal(exc, "somewhere")
    assert error.code == "INTERNAL" and error.status == 500
    assert "INSERT INTO records" in caplog.text  # the statement, for the operator
    assert "SECRET-BYTES" not in caplog.text


@pytest.mark.anyio
async def test_made_up_tokens_cannot_push_good_ones_out_of_the_cache(world: World) -> None:
    """Found in review: 10,000 distinct well-formed tokens emptied the whole cache."""
    world.admit("org:cached", ["collector"])
    token = issue_token(world.store.engine, "org:cached")
    auth = Authenticator(world.store, ttl=60.0, max_entries=3)
    await auth.viewer(f"Bearer {token}")
    for i in range(20):
        fake = f"rlt_{'a' * 12}_{str(i).rjust(43, 'A')}"
        with pytest.raises(ApiError):
            await auth.viewer(f"Bearer {fake}")
    assert len(auth._cache) == 1, "only good tokens are kept"
    revoke_token(world.store.engine, token.split("_")[1])
    assert (await auth.viewer(f"Bearer {token}")).org == "org:cached", "served from the cache"
