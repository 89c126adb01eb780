"""The client SDK (producers/client.py).

Against httpx.MockTransport: the error contract, retries with backoff and
Retry-After, batching, the token kept out of every message. Then end to end
through httpx.ASGITransport against schema.app.create_app on a real SQLite
ledger, and ``rledger submit --url`` against ``rledger serve`` over real HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from battery_test_codes import gbt_code
from conftest import World, fixed_key
from server_process import running_server

from ledger.envelope import parse_envelope
from ledger.signing import b64url_encode
from ledger.store import Signed
from ledger.tokens import issue_token
from producers import builders
from producers.client import (
    AsyncLedgerClient,
    AuthenticationError,
    ClientError,
    LedgerClient,
    Overloaded,
    QueryError,
    Recorded,
    Rejected,
    RequestRejected,
    RequestTooLarge,
    RetryableError,
    RetryPolicy,
    ServerError,
    TransportError,
    Unavailable,
    UnexpectedResponse,
    parse_retry_after,
)
from producers.events import Signer
from producers.keyfiles import write_private_key
from schema.app import create_app

TOKEN = "rlt_abcdefghijkl_" + "S" * 43
URL = "http://ledger.test"

# --- a fake server ------------------------------------------------------------


class Fake:
    """A MockTransport handler: answers from a script, then records every request."""

    def __init__(self, *script: Callable[[httpx.Request], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return step(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def error(status: int, code: str, message: str = "no", **headers: str) -> Callable[..., Any]:
    def answer(_request: httpx.Request) -> httpx.Response:
        body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
        return httpx.Response(status, json=body, headers=headers)

    return answer


def recorded(request: httpx.Request) -> httpx.Response:
    """Answer recordEvents with Recorded for each event, seq from its envelope's n."""
    events = json.loads(request.content)["variables"]["events"]
    results = []
    for e in events:
        env = json.loads(e["envelope"])
        results.append(
            {
                "__typename": "Recorded",
                "id": env["id"],
                "hash": "h" * 64,
                "seq": env["n"],
                "existing": False,
            }
        )
    return httpx.Response(200, json={"data": {"recordEvents": results}})


def event(n: int) -> Signed:
    return Signed(json.dumps({"id": f"r{n}", "n": n}), "sig")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(fake: Fake, attempts: int = 4, sleeps: Sleeps | None = None) -> LedgerClient:
    return LedgerClient(
        URL,
        TOKEN,
        transport=httpx.MockTransport(fake),
        retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=8.0),
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def no_token_in(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), *map(str, exc.args)):
        assert TOKEN not in text and "SSSSSSSS" not in text


# --- retries ------------------------------------------------------------------


def test_retries_503_honouring_retry_after_then_succeeds() -> None:
    fake = Fake(
        error(503, "OVERLOADED", "busy", **{"Retry-After": "1"}),
        error(503, "STORE_UNAVAILABLE", "db down", **{"Retry-After": "2"}),
        recorded,
    )
    sleeps = Sleeps()
    results = client(fake, sleeps=sleeps).submit([event(1), event(2)])
    assert results == [Recorded("r1", "h" * 64, 1, False), Recorded("r2", "h" * 64, 2, False)]
    assert len(fake.requests) == 3
    assert sleeps[0] >= 1.0 and sleeps[1] >= 2.0  # never sooner than the server asked
    assert all(s <= 8.0 for s in sleeps)
    # The same records, byte for byte, every time: retry is safe because ids are idempotent.
    assert fake.requests[0].content == fake.requests[1].content == fake.requests[2].content


def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    fake = Fake(error(503, "STORE_UNAVAILABLE", "db down", **{"Retry-After": "1"}))
    sleeps = Sleeps()
    with pytest.raises(Unavailable) as raised:
        client(fake, attempts=3, sleeps=sleeps).submit([event(1)])
    assert len(fake.requests) == 3 and len(sleeps) == 2
    exc = raised.value
    assert isinstance(exc, RetryableError) and exc.attempts == 3
    assert exc.status == 503 and exc.code == "STORE_UNAVAILABLE" and exc.retry_after == 1.0
    assert "gave up after 3 attempts" in str(exc) and "repeated later unchanged" in str(exc)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (error(500, "INTERNAL", "internal error; reference 7f3a9c"), ServerError),
        (lambda r: httpx.Response(502, text="<html>bad gateway</html>"), ServerError),
        (error(429, "RATE_LIMITED"), Overloaded),
    ],
)
def test_server_failures_are_retried(
    answer: Callable[..., httpx.Response], kind: type[ClientError]
) -> None:
    fake = Fake(answer, answer, recorded)
    assert client(fake).submit([event(5)]) == [Recorded("r5", "h" * 64, 5, False)]
    fake = Fake(answer)
    with pytest.raises(kind) as raised:
        client(fake, attempts=2).submit([event(5)])
    assert len(fake.requests) == 2
    if isinstance(raised.value, ServerError) and raised.value.status == 500:
        assert raised.value.reference == "7f3a9c"


def test_transport_errors_are_retried_then_raised() -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError) as raised:
        LedgerClient(
            "http://user:secret@ledger.test",
            TOKEN,
            transport=httpx.MockTransport(refuse),
            retry=RetryPolicy(attempts=3),
            sleep=Sleeps(),
        ).submit([event(1)])
    assert calls == 3
    assert "ConnectError" in str(raised.value) and "secret" not in str(raised.value)
    no_token_in(raised.value)


def test_record_makes_one_call_without_retry() -> None:
    fake = Fake(error(503, "OVERLOADED", **{"Retry-After": "1"}))
    with pytest.raises(Overloaded):
        client(fake).record([event(1)])
    assert len(fake.requests) == 1


def test_retry_delays_are_jittered_capped_and_respect_retry_after() -> None:
    import random

    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0, max_retry_after=60.0)
    rng = random.Random(1)
    delays = [policy.delay(n, None, rng) for n in range(10) for _ in range(50)]
    assert all(0.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 100
    assert all(policy.delay(0, 3.0, rng) >= 3.0 for _ in range(50))
    assert policy.delay(0, 3600.0, rng) == 60.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28.0 <= (parse_retry_after(later) or 0) <= 30.0
    assert parse_retry_after("5") == 5.0 and parse_retry_after("soon") is None


# --- errors that are not retried ------------------------------------------------


def test_401_raises_authentication_error_without_the_token() -> None:
    # A server that (wrongly) echoes the token must not get it into our message either.
    fake = Fake(error(401, "UNAUTHENTICATED", f"bad token {TOKEN}"))
    with pytest.raises(AuthenticationError) as raised:
        client(fake).submit([event(1)])
    assert len(fake.requests) == 1  # not retried
    assert raised.value.status == 401 and raised.value.code == "UNAUTHENTICATED"
    assert "rledger token create" in str(raised.value)
    no_token_in(raised.value)
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(client(fake))


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "BATCH_TOO_LARGE", RequestRejected),
        (400, "GRAPHQL_VALIDATION_FAILED", RequestRejected),
        (400, "QUERY_TOO_DEEP", RequestRejected),
        (413, "REQUEST_TOO_LARGE", RequestTooLarge),
    ],
)
def test_request_errors_are_typed_and_not_retried(
    status: int, code: str, kind: type[ClientError]
) -> None:
    fake = Fake(error(status, code, "the server says why"))
    with pytest.raises(kind) as raised:
        client(fake).submit([event(1)])
    assert len(fake.requests) == 1
    assert raised.value.code == code and raised.value.status == status
    assert "the server says why" in str(raised.value)
    assert not isinstance(raised.value, RetryableError)


def test_answers_off_the_contract_are_unexpected_responses() -> None:
    short = Fake(lambda r: httpx.Response(200, json={"data": {"recordEvents": []}}))
    with pytest.raises(UnexpectedResponse, match="0 results for 1 records"):
        client(short).submit([event(1)])
    html = Fake(lambda r: httpx.Response(200, text="<html>a captive portal</html>"))
    with pytest.raises(UnexpectedResponse, match="/graphql"):
        client(html).query("{ health }")


def test_graphql_errors_in_a_200_are_query_errors_with_partial_data() -> None:
    body = {
        "data": {"a": 1, "b": None},
        "errors": [{"message": "not found", "path": ["b"], "extensions": {"code": "NOT_FOUND"}}],
    }
    fake = Fake(lambda r: httpx.Response(200, json=body))
    with pytest.raises(QueryError) as raised:
        client(fake).query("{ a b }")
    assert raised.value.code == "NOT_FOUND" and raised.value.data == {"a": 1, "b": None}
    assert raised.value.errors[0]["path"] == ["b"]


# --- results and batching -------------------------------------------------------


def test_rejected_records_are_results_in_place() -> None:
    def mixed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "data": {
                    "recordEvents": [
                        {
                            "__typename": "Recorded",
                            "id": "r1",
                            "hash": "a" * 64,
                            "seq": 9,
                            "existing": True,
                        },
                        {
                            "__typename": "Rejected",
                            "rejectedId": "r2",
                            "code": "mass.mismatch",
                            "message": "a transfer moves the whole lot",
                            "path": "body.mass_g",
                        },
                        {
                            "__typename": "Rejected",
                            "rejectedId": None,
                            "code": "json.malformed",
                            "message": "not JSON",
                            "path": None,
                        },
                    ]
                }
            },
        )

    results = client(Fake(mixed)).record([event(1), event(2), event(3)], atomic=False)
    assert results == [
        Recorded("r1", "a" * 64, 9, True),
        Rejected("r2", "mass.mismatch", "a transfer moves the whole lot", "body.mass_g"),
        Rejected(None, "json.malformed", "not JSON", None),
    ]
    assert str(results[1]) == (
        "record r2: mass.mismatch at body.mass_g: a transfer moves the whole lot"
    )


def test_submit_splits_into_batches_and_keeps_order() -> None:
    fake = Fake(recorded)
    sizes: list[int] = []
    events = [event(n) for n in range(1, 1235)]
    results = client(fake).submit(events, batch_size=500, atomic=True, on_batch=sizes.append)
    assert [len(b["variables"]["events"]) for b in fake.bodies()] == [500, 500, 234]
    assert sizes == [500, 500, 234]
    assert [r.seq for r in results if isinstance(r, Recorded)] == list(range(1, 1235))
    assert all(b["variables"]["atomic"] is True for b in fake.bodies())
    sent = [e["envelope"] for b in fake.bodies() for e in b["variables"]["events"]]
    assert sent == [e.envelope for e in events]
    with pytest.raises(ValueError, match="1-5000"):
        client(fake).submit(events, batch_size=5001)


def test_heads_are_read_in_one_query_per_5000_lots() -> None:
    def heads(request: httpx.Request) -> httpx.Response:
        asked = json.loads(request.content)["variables"]["lots"]
        # The server leaves out lots that don't exist or can't be read; an answer for a
        # lot not asked about is ignored.
        data = [{"lot": lot, "head": f"{i:064x}"} for i, lot in enumerate(asked) if i % 2 == 0]
        return httpx.Response(200, json={"data": {"heads": [*data, {"lot": "lot:x", "head": "0"}]}})

    fake = Fake(heads)
    lots = {f"lot:{n:05d}" for n in range(6_000)}
    found = client(fake).heads(lots)
    assert [len(json.loads(r.content)["variables"]["lots"]) for r in fake.requests] == [5000, 1000]
    assert len(found) == 2_500 + 500 and "lot:x" not in found
    assert client(fake).heads([]) == {} and len(fake.requests) == 2


def test_url_forms_and_no_token() -> None:
    fake = Fake(lambda r: httpx.Response(200, json={"data": {"health": "ok"}}))
    for url in ("http://h:1", "http://h:1/", "http://h:1/graphql"):
        LedgerClient(url, None, transport=httpx.MockTransport(fake)).query("{ health }")
    assert {str(r.url) for r in fake.requests} == {"http://h:1/graphql"}
    assert all("authorization" not in r.headers for r in fake.requests)


# --- async ----------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_retries_batches_and_types_errors() -> None:
    fake = Fake(error(503, "OVERLOADED", **{"Retry-After": "1"}), recorded)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with AsyncLedgerClient(URL, TOKEN, transport=httpx.MockTransport(fake), sleep=sleep) as c:
        results = await c.submit([event(n) for n in range(1, 8)], batch_size=3)
    assert [r.seq for r in results if isinstance(r, Recorded)] == list(range(1, 8))
    assert [len(b["variables"]["events"]) for b in fake.bodies()] == [3, 3, 3, 1]
    assert slept and slept[0] >= 1.0
    fake = Fake(error(401, "UNAUTHENTICATED"))
    async with AsyncLedgerClient(URL, TOKEN, transport=httpx.MockTransport(fake)) as c:
        with pytest.raises(AuthenticationError) as raised:
            await c.record([event(1)])
    no_token_in(raised.value)


# --- end to end: the real app over ASGI -------------------------------------------


@pytest.fixture
def api(sqlite_world: World) -> Iterator[tuple[World, Signer, str]]:
    acme = sqlite_world.admit("org:acme", ["collector", "processor"])
    sqlite_world.admit("org:mill", ["recycler"])
    token = issue_token(sqlite_world.store.engine, "org:acme", label="test")
    yield sqlite_world, acme, token


def asgi_client(world: World, token: str) -> AsyncLedgerClient:
    app = create_app(world.store)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger")
    return AsyncLedgerClient(client=http, token=token, retry=RetryPolicy(attempts=2))


@pytest.mark.anyio
async def test_end_to_end_record_resend_and_refusals(api: tuple[World, Signer, str]) -> None:
    world, acme, token = api
    mill = world.orgs["org:mill"]
    c = asgi_client(world, token)
    create = acme.record(
        "create", builders.create("lot:a", "paper.occ", 5_000_000, "post_consumer")
    )
    as_mill = mill.record("create", builders.create("lot:m", "paper.occ", 1_000, "post_consumer"))
    forged = Signed(create.envelope, acme.record("create", {"x": 1}).signature)
    results = await c.record([create, as_mill, forged])
    assert isinstance(results[0], Recorded) and results[0].existing is False
    assert results[0].hash == parse_envelope(create.envelope).hash
    assert isinstance(results[1], Rejected) and results[1].code == "actor.not_authorised"
    assert results[1].path == "actor" and results[1].id == parse_envelope(as_mill.envelope).id
    assert isinstance(results[2], Rejected) and results[2].code == "signature.invalid"
    # Resending (a retry whose answer was lost) answers the stored record.
    [again] = await c.submit([create])
    assert isinstance(again, Recorded) and again.existing and again.seq == results[0].seq
    # atomic: one refusal and nothing is written.
    t1 = acme.record(
        "transfer", builders.transfer("lot:a", "org:mill", 5_000_000), {"lot:a": results[0].hash}
    )
    bad = acme.record("dispose", builders.dispose("lot:a", 1, "landfill"), {"lot:a": "0" * 64})
    before = world.store.last_seq()
    atomic = await c.record([t1, bad], atomic=True)
    assert [r.code for r in atomic if isinstance(r, Rejected)] == ["batch.aborted", "conflict"]
    assert world.store.last_seq() == before


@pytest.mark.anyio
async def test_end_to_end_errors(api: tuple[World, Signer, str]) -> None:
    world, acme, _token = api
    bad = asgi_client(world, "rlt_abcdefghijkl_" + "x" * 43)
    with pytest.raises(AuthenticationError) as raised:
        await bad.record(
            [acme.record("create", builders.create("lot:b", "paper.occ", 1, "virgin"))]
        )
    assert "rlt_" not in str(raised.value)
    good = asgi_client(world, _token)
    with pytest.raises(RequestRejected) as too_many:
        await good.record([Signed("{}", "x")] * 5001)
    assert too_many.value.code == "BATCH_TOO_LARGE" and too_many.value.status == 400
    with pytest.raises(RequestRejected) as syntax:
        await good.query("{ health ")
    assert syntax.value.code == "GRAPHQL_PARSE_FAILED"


@pytest.mark.anyio
async def test_end_to_end_sign_and_submit_drafts(api: tuple[World, Signer, str]) -> None:
    """Parents predicted within a run, read from the ledger (`lot { head }`) in the next."""
    world, acme, token = api
    async with asgi_client(world, token) as c:
        first = await c.sign_and_submit(
            [
                builders.draft(
                    "create", builders.create("lot:s", "steel.hms1", 9_000, "post_consumer")
                ),
                builders.draft(
                    "split", builders.split("lot:s", [("lot:s1", 4_000), ("lot:s2", 5_000)])
                ),
                builders.draft("dispose", builders.dispose("lot:s1", 9_999, "landfill")),
            ],
            acme,
        )
        assert [line.refusal.code if line.refusal else None for line in first] == [
            None,
            None,
            "mass.insufficient",
        ]
        second = await c.sign_and_submit(
            [builders.draft("transfer", builders.transfer("lot:s2", "org:mill", 5_000))], acme
        )
    assert second[0].refusal is None and isinstance(second[0].result, Recorded)
    assert world.store.lot("lot:s2").status == "in_transit"  # type: ignore[union-attr]


# --- rledger submit --url, over real HTTP ----------------------------------------


def test_cli_submit_over_http(sqlite_world: World, tmp_path: Path) -> None:
    world = sqlite_world
    write_private_key(tmp_path / "acme.key", fixed_key("org:acme"))
    world.admit("org:acme", ["collector"])
    token = issue_token(world.store.engine, "org:acme")
    drafts = [
        builders.draft(
            "create", builders.create("lot:h", "plastics.pet", 700_000, "post_consumer")
        ),
        builders.draft(
            "split", builders.split("lot:h", [("lot:h1", 300_000), ("lot:h2", 400_000)])
        ),
        builders.draft("dispose", builders.dispose("lot:h1", 300_001, "landfill")),
        builders.draft("dispose", builders.dispose("lot:h1", 300_000, "incineration")),
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in drafts))
    env = {**os.environ, "RLEDGER_TOKEN": token}
    cmd = [sys.executable, "-m", "producers.cli", "submit", "d.jsonl", "--key", "acme.key"]
    with running_server(world.url) as server:
        proc = subprocess.run(
            [*cmd, "--url", server.url, "--actor", "org:acme", "--batch", "2"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert "3 appended, 1 refused" in proc.stdout
        assert "line 3: refused record " in proc.stderr and "mass.insufficient" in proc.stderr
        assert "at body.mass_g" in proc.stderr
        assert token not in proc.stdout + proc.stderr
        wrong = subprocess.run(
            [*cmd, "--url", server.url, "--actor", "org:acme"],
            cwd=tmp_path,
            env={**env, "RLEDGER_TOKEN": "rlt_nope"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert wrong.returncode == 1 and "refused the API token" in wrong.stderr
        assert "rlt_nope" not in wrong.stdout + wrong.stderr
        # Without --actor: the token's organisation if the API says it, else a clear error.
        bare = subprocess.run(
            [*cmd, "--url", server.url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bare.returncode == 1
        assert "pass --actor" in bare.stderr or "lot.exists" in bare.stderr
        assert token not in bare.stdout + bare.stderr
    assert world.store.lot("lot:h1").status == "disposed"  # type: ignore[union-attr]


# --- builders -----------------------------------------------------------------------


def test_every_builder_makes_a_body_the_ledger_accepts_as_shaped() -> None:
    signer = Signer("org:acme", fixed_key("org:acme"))
    key = b64url_encode(b"\x01" * 32)
    bodies = {
        "org.register": builders.org_register("org:new", "New Co", ["recycler"], "CN-GD"),
        "key.add": builders.key_add("org:new", b"\x01" * 32, valid_from="2026-01-01T00:00:00Z"),
        "key.revoke": builders.key_revoke("org:new", "ab" * 32, reason="lost"),
        "create": builders.create(
            "lot:b1",
            "batteries.li_ion.nmc",
            400_000,
            "post_consumer",
            elements={"Co": 20_000, "Li": 8_000},
            units=[gbt_code(1)],
        ),
        "transfer": builders.transfer("lot:b1", "org:mill", 400_000),
        "receive": builders.receive("lot:b1", 399_000),
        "split": builders.split("lot:b1", [{"lot": "lot:b2", "mass_g": 1, "units": [gbt_code(1)]}]),
        "merge": builders.merge(["lot:x", "lot:y"], "lot:z", mass_g=10),
        "transform": builders.transform(
            "shredding",
            [("lot:z", 10)],
            [builders.output("lot:q", "steel.shredded", 9)],
            1,
        ),
        "status": builders.status(
            "lot:b1", "second_life", note="storage", recode={gbt_code(1): gbt_code(1, maker="SLX")}
        ),
        "dispose": builders.dispose("lot:b1", 5, "landfill"),
        "void": builders.void("cd" * 32, "entered twice"),
    }
    assert key == bodies["key.add"]["public_key"]
    for rtype, body in bodies.items():
        env = parse_envelope(signer.record(rtype, body).envelope)
        assert env.type == rtype and env.body == body


@pytest.mark.parametrize(
    ("build", "path", "words"),
    [
        (
            lambda: builders.create("lot:a", "steel.hms1", 12.5, "virgin"),  # type: ignore[arg-type]
            "body.mass_g",
            "kg_to_grams",
        ),
        (lambda: builders.create("lot:a", "steel.hms1", 0, "virgin"), "body.mass_g", "more than 0"),
        (lambda: builders.create("a", "steel.hms1", 1, "virgin"), "body.lot", "'lot:'"),
        (lambda: builders.create("lot:a", "steel.gold", 1, "virgin"), "body.material", "taxonomy"),
        (
            lambda: builders.create("lot:a", "steel.hms1", 1, "recycled"),  # type: ignore[arg-type]
            "body.origin",
            "one of",
        ),
        (
            lambda: builders.create("lot:a", "steel.hms1", 5, "virgin", elements={"Co": 6}),
            "body.elements",
            "over 5 g",
        ),
        (
            lambda: builders.create("lot:a", "steel.hms1", 5, "virgin", elements={"Xx": 1}),
            "body.elements.Xx",
            "tracked element",
        ),
        (lambda: builders.transfer("lot:a", "mill", 1), "body.to", "'org:'"),
        (
            lambda: builders.split("lot:a", [("lot:b", 1), ("lot:b", 2)]),
            "body.parts[1].lot",
            "twice",
        ),
        (lambda: builders.merge(["lot:a"], "lot:b"), "body.lots", "at least two"),
        (
            lambda: builders.status("lot:a", "retired", recode={"a": "b"}),
            "body.recode",
            "second_life",
        ),
        (
            lambda: builders.transform(
                "shredding", [("lot:a", 10)], [builders.output("lot:b", "steel.shredded", 8)], 1
            ),
            "body.loss_g",
            "inputs are 10 g",
        ),
        (
            lambda: builders.transform("alchemy", [("lot:a", 1)], [], 0),
            "body.process",
            "not a process",
        ),
        (lambda: builders.status("lot:a", "consumed"), "body.status", "one of"),
        (
            lambda: builders.dispose("lot:a", 1, "ocean"),  # type: ignore[arg-type]
            "body.method",
            "one of",
        ),
        (lambda: builders.void("nothex", "x"), "body.record", "64 lowercase hex"),
        (lambda: builders.key_add("org:a", b"short"), "body.public_key", "32 raw bytes"),
        (lambda: builders.org_register("org:a", "A", ["king"], "CN-GD"), "body.roles[0]", "one of"),
        (
            lambda: builders.org_register("org:a", "A", ["recycler"], "Guangdong"),
            "body.region",
            "ISO",
        ),
        (lambda: builders.draft("create", {}, at="2026-01-01 00:00"), "at", "RFC 3339"),
        (lambda: builders.utc_at(datetime(2026, 1, 1)), "at", "no UTC offset"),
    ],
)
def test_builders_refuse_mistakes_naming_the_field(
    build: Callable[[], object], path: str, words: str
) -> None:
    with pytest.raises(builders.BuildError) as raised:
        build()
    assert raised.value.path == path and words in str(raised.value)
    assert str(raised.value).startswith(f"{path}: ")


@pytest.mark.anyio
async def test_end_to_end_receiver_reads_the_head_of_a_lot_in_transit_to_it(
    api: tuple[World, Signer, str],
) -> None:
    """A receive needs the head of a lot the receiver never held: `lot { head }` must
    answer it for a lot in transit to the token's organisation."""
    world, acme, _ = api
    mill = world.orgs["org:mill"]
    created = world.create(acme, "lot:t", 2_000)
    world.ok(
        acme.record(
            "transfer", builders.transfer("lot:t", "org:mill", 2_000), {"lot:t": created.hash}
        )
    )
    mill_token = issue_token(world.store.engine, "org:mill")
    async with asgi_client(world, mill_token) as c:
        [line] = await c.sign_and_submit(
            [builders.draft("receive", builders.receive("lot:t", 1_990))], mill
        )
    assert line.refusal is None, line.refusal
    lot = world.store.lot("lot:t")
    assert lot is not None and lot.custodian == "org:mill" and lot.transit_loss_g == 10
