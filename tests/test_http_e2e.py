"""End to end over real HTTP: `rledger serve` in a subprocess on a loopback port,
on a SQLite file and on a throwaway PostgreSQL database, called with plain httpx.

One server per engine for the whole module (starting one costs about a
second); every test uses its own lots, so the tests do not depend on each
other's order. The rest of the API is tested through httpx's ASGI transport
elsewhere; these tests pin what only a real server shows: the CLI's wiring,
uvicorn, the HTTP status codes and headers on the wire, and a second process
writing to the same database the test reads.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import World, fixed_key, make_world
from postgres_server import create_database, drop_database
from server_process import Server, running_server

from ledger.database import database_url
from ledger.signing import record_hash
from ledger.store import Signed
from ledger.tokens import issue_token, revoke_token, token_id_of
from producers.events import Signer
from producers.keyfiles import write_private_key

COLLECTOR = "org:e2e-collector"
RECYCLER = "org:e2e-recycler"

RECORD = """
mutation Record($events: [SignedEvent!]!, $atomic: Boolean) {
  recordEvents(events: $events, atomic: $atomic) {
    __typename
    ... on Recorded { id hash seq existing }
    ... on Rejected { record: id code message path }
  }
}"""
LOT = "query Lot($id: ID!) { lot(id: $id) { id massG head custodian { id } } }"

_names = itertools.count()


@dataclass
class Served:
    server: Server
    world: World
    tokens: dict[str, str] = field(repr=False)  # org -> bearer token

    @property
    def collector(self) -> Signer:
        return self.world.orgs[COLLECTOR]

    @property
    def recycler(self) -> Signer:
        return self.world.orgs[RECYCLER]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A ledger with two organisations and a token each, served by `rledger serve`."""
    admin_url: str | None = None
    if request.param == "sqlite":
        url = database_url(str(tmp_path_factory.mktemp("e2e") / "ledger.db"))
    else:
        admin_url = request.getfixturevalue("pg_admin_url")
        name = f"e2e{next(_names)}"
        url = create_database(admin_url, name)
    world = make_world(url)
    try:
        world.admit(COLLECTOR, ["collector"])
        world.admit(RECYCLER, ["recycler"])
        tokens = {org: issue_token(world.store.engine, org) for org in (COLLECTOR, RECYCLER)}
        with running_server(url) as server:
            yield Served(server, world, tokens)
    finally:
        world.store.close()
        if admin_url is not None:
            drop_database(admin_url, name)


@pytest.fixture(autouse=True)
def server_log(served: Served) -> Iterator[None]:
    """Print what the server logged during the test at teardown: pytest shows it
    only when the test failed."""
    start = len(served.server.log())
    yield
    print(f"--- server log during this test ({served.server.log_path}) ---")
    print(served.server.log()[start:])


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.server.url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(
    http: httpx.Client, token: str | None, query: str, variables: dict[str, Any] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return http.post("/graphql", json=body, headers=bearer(token) if token else {})


def record_events(http: httpx.Client, token: str, *records: Signed) -> list[dict[str, Any]]:
    events = [{"envelope": r.envelope, "signature": r.signature} for r in records]
    response = post(http, token, RECORD, {"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert "errors" not in answer, answer
    results: list[dict[str, Any]] = answer["data"]["recordEvents"]
    assert len(results) == len(records)
    return results


def hash_of(record: Signed) -> str:
    data = record.envelope.encode() if isinstance(record.envelope, str) else record.envelope
    return record_hash(data)


def create(signer: Signer, lot: str, mass_g: int) -> Signed:
    body = {"lot": lot, "material": "steel.hms1", "mass_g": mass_g, "origin": "post_consumer"}
    return signer.record("create", body)


def test_health_and_graphiql_need_no_token(served: Served, http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "seq": served.world.store.last_seq()}

    page = http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.text.lower()


def test_a_missing_unknown_or_revoked_token_is_401(served: Served, http: httpx.Client) -> None:
    # (Not used before it is revoked: a server caches a token's answer for a few seconds.)
    revoked = issue_token(served.world.store.engine, COLLECTOR, label="to revoke")
    token_id = token_id_of(revoked)
    assert token_id is not None and revoke_token(served.world.store.engine, token_id)

    good = served.tokens[COLLECTOR]
    wrong = good[:-1] + ("A" if good[-1] != "A" else "B")  # a known id, the wrong secret
    messages = set()
    for token in (None, "rlt_notatoken", wrong, revoked):
        response = post(http, token, "{ __typename }")
        assert response.status_code == 401, (token and token[:8], response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")  # RFC 6750 §3
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        messages.add(error["message"])
        assert (token or "rlt_") not in response.text  # the token is never echoed
    assert len(messages) == 1  # the same answer for every kind of bad token


def test_record_events_refuse_resubmit_and_read_back(served: Served, http: httpx.Client) -> None:
    lot = f"lot:e2e-{next(_names)}"
    token = served.tokens[COLLECTOR]
    first = create(served.collector, lot, 1_250_000)
    status = served.collector.record(
        "status", {"lot": lot, "status": "stored"}, {lot: hash_of(first)}
    )
    before = served.world.store.last_seq()

    recorded = record_events(http, token, first, status)
    assert [r["__typename"] for r in recorded] == ["Recorded", "Recorded"]
    assert [r["hash"] for r in recorded] == [hash_of(first), hash_of(status)]
    assert [r["seq"] for r in recorded] == [before + 1, before + 2]
    assert not any(r["existing"] for r in recorded)
    assert served.world.store.heads([lot]) == {lot: hash_of(status)}  # written by the server

    # Refused records are data: a stale parent (the lot moved on), a record signed
    # by another organisation than the token's, beside one that goes through.
    stale = served.collector.record(
        "status", {"lot": lot, "status": "in_use"}, {lot: hash_of(first)}
    )
    foreign = create(served.recycler, f"{lot}-foreign", 1000)
    fine = served.collector.record(
        "status", {"lot": lot, "status": "collected"}, {lot: hash_of(status)}
    )
    conflict, not_ours, ok = record_events(http, token, stale, foreign, fine)
    assert conflict["__typename"] == "Rejected"
    assert (conflict["code"], conflict["path"]) == ("conflict", f"parents.{lot}")
    assert conflict["message"]
    assert not_ours["__typename"] == "Rejected"
    assert not_ours["code"] == "actor.not_authorised"
    assert ok["__typename"] == "Recorded" and ok["seq"] == before + 3

    # The same record again is answered with what is stored (ids are idempotency keys).
    [again] = record_events(http, token, first)
    assert again == {**recorded[0], "existing": True}
    assert served.world.store.last_seq() == before + 3

    response = post(http, token, LOT, {"id": lot})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "lot": {
                "id": lot,
                "massG": 1_250_000,
                "head": hash_of(fine),
                "custodian": {"id": COLLECTOR},
            }
        }
    }
    assert http.get("/health").json()["seq"] == before + 3


def rledger(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RLEDGER_TOKEN", "RLEDGER_DB")}
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_rledger_token_create_and_submit_over_http(served: Served, tmp_path: Path) -> None:
    """`rledger token create` prints a token; `rledger submit --url --token --key` signs
    drafts and sends them to the server; refusals are listed and the exit status is 1."""
    made = rledger("token", "create", "--org", COLLECTOR, "--db", served.world.url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rlt_") and "\n" not in token

    key = tmp_path / "collector.key"
    write_private_key(key, fixed_key(COLLECTOR))
    lot = f"lot:e2e-{next(_names)}"
    parts = [{"lot": f"{lot}-a", "mass_g": 400_000}, {"lot": f"{lot}-b", "mass_g": 500_000}]
    drafts = [
        {
            "type": "create",
            "body": {
                "lot": lot,
                "material": "paper.occ",
                "mass_g": 900_000,
                "origin": "post_consumer",
            },
        },
        {"type": "split", "body": {"lot": lot, "parts": parts}},  # parents: the create, predicted
        {
            "type": "create",
            "body": {
                "lot": f"{lot}-x",
                "material": "unobtainium",
                "mass_g": 1,
                "origin": "post_consumer",
            },
        },
    ]
    file = tmp_path / "drafts.jsonl"
    file.write_text("".join(json.dumps(d) + "\n" for d in drafts))

    sent = rledger(
        "submit",
        str(file),
        "--url",
        served.server.url,
        "--token",
        token,
        "--key",
        str(key),  # no --actor: the CLI asks the API whose token this is (viewer)
    )
    assert sent.returncode == 1, (sent.stdout, sent.stderr)
    assert "2 appended, 1 refused" in sent.stdout
    assert "line 3" in sent.stderr and "material.unknown" in sent.stderr
    assert token not in sent.stdout + sent.stderr
    heads = served.world.store.heads([lot, f"{lot}-a", f"{lot}-b", f"{lot}-x"])
    assert set(heads) == {lot, f"{lot}-a", f"{lot}-b"}
    assert len(set(heads.values())) == 1  # the split is the latest record of all three
    stored = served.world.store.lot(f"{lot}-b")
    assert stored is not None and stored.custodian == COLLECTOR and stored.mass_g == 500_000
