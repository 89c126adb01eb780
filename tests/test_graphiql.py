"""GraphiQL is served from the package: every script and stylesheet the page
loads comes from this server, and each still matches the Subresource
Integrity hash strawberry pins for it (so the vendored copy is the exact
published file)."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from conftest import World

from schema.app import create_app

TAG = re.compile(
    r"<(?:script|link)\b[^>]*?(?:src|href)=\"([^\"]+)\"[^>]*?integrity=\"([^\"]+)\"", re.S
)


@pytest.mark.anyio
async def test_graphiql_loads_only_local_assets_that_match_their_integrity_hashes(
    sqlite_world: World,
) -> None:
    transport = httpx.ASGITransport(app=create_app(sqlite_world.store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        assets = TAG.findall(page.text)
        assert len(assets) == 7, assets
        assert "unpkg.com" not in page.text and "cdn" not in page.text.lower()
        for url, integrity in assets:
            assert url.startswith("/static/graphiql/"), url
            served = await client.get(url)  # no token needed for the page's own files
            assert served.status_code == 200, url
            algorithm, _, expected = integrity.partition("-")
            digest = base64.b64encode(hashlib.new(algorithm, served.content).digest()).decode()
            assert digest == expected, f"{url} differs from the file strawberry pins"
        assert (await client.get("/static/graphiql/../../app.py")).status_code == 404
