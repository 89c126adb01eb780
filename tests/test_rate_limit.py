"""Per-token rate limits (schema/rate_limit.py): a token bucket per API token, answered
429 RATE_LIMITED with Retry-After, never slowing another token; the SDK's retry honours
Retry-After and completes a write exactly once.

Hand-worked bucket (rate 2 a second, burst 3, clock in seconds): at t=0 three requests
take the bucket from 3 to 0; a fourth finds 0 and must wait (1 - 0) / 2 = 0.5 s
(Retry-After rounds up: 1). At t=0.5 the bucket holds 0.5 x 2 = 1: one request passes,
the next waits 0.5 s again. At t=100 it holds min(3, 0 + 99.5 x 2) = 3, never more.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import httpx
import pytest
from conftest import World
from read_network import Api
from reliability import tally

from ledger.tokens import issue_token, token_id_of
from producers.client import AsyncLedgerClient, RetryPolicy
from producers.results import Recorded
from schema import app as app_module
from schema.app import create_app
from schema.rate_limit import RateLimit, RateLimited, RateLimiter

VIEWER = "{ viewer { org } }"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_by_hand() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=2.0, burst=3), clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0, "another token has its own bucket"
    clock.now = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now = 100.0
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0, "a long pause refills to the burst, never beyond"
    with pytest.raises(RateLimited) as caught:
        limiter.check("rlt_aaaaaaaaaaaa_" + "x" * 43)
        limiter.check("rlt_aaaaaaaaaaaa_" + "x" * 43)
        limiter.check("rlt_aaaaaaaaaaaa_" + "x" * 43)
        limiter.check("rlt_aaaaaaaaaaaa_" + "x" * 43)
    err = caught.value
    assert (err.status, err.code, err.retryable) == (429, "RATE_LIMITED", True)
    assert err.extensions() == {"code": "RATE_LIMITED", "retryable": True, "retryAfter": 1}
    assert err.headers() == {"Retry-After": "1"}
    assert "retry after 1 s" in err.message and "rlt_" not in err.message
    limiter.check(None)  # no token: nothing to count (authentication refuses it)
    limiter.check("not a token")


def test_many_tokens_stay_bounded_in_memory() -> None:
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1), clock=Clock(), max_entries=100)
    for i in range(1_000):
        limiter.take(f"t{i}")
    assert len(limiter._buckets) == 100
    assert limiter.take("t999") > 0, "the most recent ones are kept"


def test_settings_from_the_environment() -> None:
    assert RateLimit.from_env({}) == RateLimit(100.0, 200)
    assert RateLimit.from_env({"RLEDGER_RATE_LIMIT": "5"}) == RateLimit(5.0, 10)
    assert RateLimit.from_env({"RLEDGER_RATE_LIMIT": "0.5"}) == RateLimit(0.5, 1)
    got = RateLimit.from_env({"RLEDGER_RATE_LIMIT": "20", "RLEDGER_RATE_BURST": "7"})
    assert got == RateLimit(20.0, 7)
    for off in ("0", "off", "OFF", "false", "no"):
        assert RateLimit.from_env({"RLEDGER_RATE_LIMIT": off}) is None
    for bad in (
        {"RLEDGER_RATE_LIMIT": "fast"},
        {"RLEDGER_RATE_LIMIT": "-3"},
        {"RLEDGER_RATE_LIMIT": "inf"},
        {"RLEDGER_RATE_LIMIT": "nan"},
        {"RLEDGER_RATE_LIMIT": "10", "RLEDGER_RATE_BURST": "0"},
        {"RLEDGER_RATE_LIMIT": "10", "RLEDGER_RATE_BURST": "1.5"},
    ):
        with pytest.raises(ValueError, match="RLEDGER_RATE_LIMIT"):
            RateLimit.from_env(bad)


def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of the buckets of every app create_app builds from here on."""
    clock = Clock()
    monkeypatch.setattr(app_module, "RateLimiter", functools.partial(RateLimiter, clock=clock))
    return clock


def test_over_the_limit_is_429_and_other_tokens_are_untouched(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sqlite_world
    for org in ("org:a", "org:b"):
        world.admit(org, ["collector"])
    clock = fake_clock(monkeypatch)
    api = Api(world)
    api.app = create_app(world.store, token_ttl=0, rate_limit=RateLimit(rate=1.0, burst=3))
    engine = world.store.engine
    busy, sibling, other = (issue_token(engine, o) for o in ("org:a", "org:a", "org:b"))
    tried = held = 0
    for _ in range(3):
        assert api.ask(busy, VIEWER).status == 200
    for _ in range(20):  # the busy token is refused every time, nothing runs
        answer = api.ask(busy, VIEWER)
        tried += 1
        held += answer.status == 429 and answer.codes == ["RATE_LIMITED"]
        assert "data" not in answer.body
        assert answer.body["errors"][0]["extensions"] == {
            "code": "RATE_LIMITED",
            "retryable": True,
            "retryAfter": 1,
        }
    assert held == tried
    # ...while the org's other token and another org's token get their whole burst
    for token in (sibling, other):
        for _ in range(3):
            assert api.ask(token, VIEWER).status == 200
    # forged requests with the busy token's id are 401 and take nothing from its bucket
    fresh = issue_token(engine, "org:b")
    forged = f"rlt_{token_id_of(fresh)}_" + "A" * 43
    for _ in range(10):
        assert api.ask(forged, VIEWER).status == 401
    for _ in range(3):
        assert api.ask(fresh, VIEWER).status == 200
    # a second later the busy token may send one more request
    clock.now += 1.0
    assert api.ask(busy, VIEWER).status == 200
    assert api.ask(busy, VIEWER).status == 429
    tally(
        "requests over a token's rate limit",
        tried=tried,
        held=held,
        unit="requests",
        note="429 RATE_LIMITED with Retry-After; other tokens untouched",
    )


def test_the_http_answer_and_a_refused_write_changes_nothing(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sqlite_world
    signer = world.admit("org:a", ["collector"])
    clock = fake_clock(monkeypatch)
    app = create_app(world.store, token_ttl=0, rate_limit=RateLimit(rate=0.5, burst=1))
    token = issue_token(world.store.engine, "org:a")
    body = {"lot": "lot:x", "material": "paper.occ", "mass_g": 1_000, "origin": "post_consumer"}
    signed = signer.record("create", body)
    write = {
        "query": "mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename } }",
        "variables": {"e": [{"envelope": signed.envelope, "signature": signed.signature}]},
    }

    async def post(payload: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger.test") as c:
            headers = {"Authorization": f"Bearer {token}"}
            return await c.post("/graphql", json=payload, headers=headers)

    assert anyio.run(post, {"query": VIEWER}).status_code == 200
    before = world.store.last_seq()
    refused = anyio.run(post, write)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"  # (1 - 0) / 0.5 s
    assert refused.json() == {
        "errors": [
            {
                "message": refused.json()["errors"][0]["message"],
                "extensions": {"code": "RATE_LIMITED", "retryable": True, "retryAfter": 2},
            }
        ]
    }
    assert token not in refused.text
    assert world.store.last_seq() == before, "nothing written"
    clock.now += 2.0
    assert anyio.run(post, write).json()["data"] == {"recordEvents": [{"__typename": "Recorded"}]}
    assert world.store.last_seq() == before + 1


def test_the_sdk_waits_out_retry_after_and_writes_once(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending faster than its limit: each 429 is retried after Retry-After (the
    fake sleep moves the limiter's clock), every record is Recorded once."""
    world = sqlite_world
    signer = world.admit("org:a", ["collector"])
    clock = fake_clock(monkeypatch)
    app = create_app(world.store, token_ttl=0, rate_limit=RateLimit(rate=1.0, burst=2))
    token = issue_token(world.store.engine, "org:a")
    records = [
        signer.record(
            "create",
            {
                "lot": f"lot:{i}",
                "material": "paper.occ",
                "mass_g": 1_000,
                "origin": "post_consumer",
            },
        )
        for i in range(6)
    ]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    async def send() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="http://ledger.test")
        client = AsyncLedgerClient(
            "http://ledger.test/graphql",
            token,
            client=http,
            sleep=sleep,
            retry=RetryPolicy(attempts=5),
        )
        try:
            return await client.submit(records, batch_size=1)
        finally:
            await http.aclose()

    before = world.store.last_seq()
    results = anyio.run(send)
    assert all(isinstance(r, Recorded) and not r.existing for r in results)
    assert world.store.last_seq() == before + 6
    # two in the burst, then one a second: four waits of at least Retry-After (1 s)
    assert len(slept) == 4 and all(s >= 1.0 for s in slept)
    tally(
        "writes retried after 429 RATE_LIMITED",
        tried=len(slept),
        held=len(slept),
        unit="retries",
        note="SDK honours Retry-After; every record recorded once",
    )
