"""Every example in docs/queries.md answers, on a fresh demo ledger, as the
organisation it names: no errors, and something found."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import World

from ledger.tokens import issue_token
from producers.demo import seed_demo
from schema.app import create_app

DOC = Path(__file__).resolve().parent.parent / "docs" / "queries.md"
EXAMPLE = re.compile(r"^## (.+?)\n\nas: (org:\S+)\n\n```graphql\n(.+?)\n```", re.S | re.M)


def examples() -> list[tuple[str, str, str]]:
    found = EXAMPLE.findall(DOC.read_text(encoding="utf-8"))
    assert len(found) >= 5, "docs/queries.md lost its examples"
    return [(title, org, query) for title, org, query in found]


def _found_something(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_found_something(v) for v in value.values()) if value else False
    if isinstance(value, list):
        return bool(value)
    return value is not None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import make_world

    from ledger.database import database_url

    world: World = make_world(database_url(str(tmp_path_factory.mktemp("demo") / "demo.db")))
    seed_demo(world.store, world.operator, months=1)
    yield world
    world.store.close()


@pytest.mark.anyio
@pytest.mark.parametrize(("title", "org", "query"), examples(), ids=lambda v: str(v)[:40])
async def test_a_documented_query_answers(demo: World, title: str, org: str, query: str) -> None:
    token = issue_token(demo.store.engine, org)
    transport = httpx.ASGITransport(app=create_app(demo.store))
    async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
        r = await client.post(
            "/graphql", json={"query": query}, headers={"authorization": f"Bearer {token}"}
        )
    body = r.json()
    assert r.status_code == 200 and "errors" not in body, (title, body)
    assert _found_something(body["data"]), (title, body["data"])
