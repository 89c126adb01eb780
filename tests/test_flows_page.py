"""The flows page (GET /flows, schema/static/flows/): served from the package with
its charting library, and, in a real headless Chromium against `rledger serve`
on a demo ledger, a Sankey of exactly the nodes the API answers for the filter,
its CSV download, a battery trace and the anomaly list.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``) driven by
Playwright's Python package with ``executable_path`` (``RLEDGER_CHROMIUM`` names
another binary); no browser is downloaded.
Without Chromium (or the ``playwright`` package) the browser test fails when
``CI=true`` and is skipped, with the install line, elsewhere. A screenshot of
the page goes to ``$RLEDGER_ARTIFACTS`` (default tests/artifacts/) for CI to keep.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import World, make_world
from server_process import Server, running_server

from ledger.database import database_url
from ledger.tokens import issue_token
from producers.demo import PROCESSOR, REGULATOR, seed_demo
from schema.app import create_app

CHROMIUM = Path(os.environ.get("RLEDGER_CHROMIUM") or "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL = "apt-get install -y chromium  (and the playwright Python package from the dev lock)"
ARTIFACTS = Path(os.environ.get("RLEDGER_ARTIFACTS") or Path(__file__).parent / "artifacts")

# Apache ECharts 6.1.0, dist/echarts.min.js of the npm package echarts@6.1.0
# (tarball integrity sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==).
ECHARTS_VERSION = "6.1.0"
ECHARTS_SHA256 = "b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0"
SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"([^>]*)>", re.S)
INTEGRITY = re.compile(r"\bintegrity=\"([^\"]+)\"")

FLOWS = """
query Flows($from: DateTime, $to: DateTime, $material: String, $groupBy: FlowGroupBy!) {
  materialFlows(from: $from, to: $to, material: $material, groupBy: $groupBy) {
    nodes { id kind massG } links { source target massG }
  }
}"""


# --- served from the package (no browser) ------------------------------------------


@pytest.mark.anyio
async def test_the_flows_page_loads_only_its_own_files_and_the_pinned_echarts(
    sqlite_world: World,
) -> None:
    transport = httpx.ASGITransport(app=create_app(sqlite_world.store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/flows")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp, csp
        scripts = SCRIPT.findall(page.text)
        assert [src for src, _ in scripts] == ["/flows/echarts.min.js", "/flows/app.js"]
        assert "cdn" not in page.text.lower() and "unpkg" not in page.text
        served = {}
        for src, _attrs in scripts:
            response = await client.get(src)  # the page's own files need no token
            assert response.status_code == 200, src
            served[src] = response.content
        echarts = served["/flows/echarts.min.js"]
        assert hashlib.sha256(echarts).hexdigest() == ECHARTS_SHA256, "echarts.min.js changed"
        assert f'version="{ECHARTS_VERSION}"' in echarts.decode("utf-8")
        integrity = INTEGRITY.search(scripts[0][1])
        assert integrity is not None, "the page loads echarts.min.js without an SRI hash"
        algorithm, _, expected = integrity.group(1).partition("-")
        assert base64.b64encode(hashlib.new(algorithm, echarts).digest()).decode() == expected
        for name in ("style.css", "LICENSE.echarts", "NOTICE.echarts", "LICENSE.zrender"):
            assert (await client.get(f"/flows/{name}")).status_code == 200, name
        assert (await client.get("/flows/../app.py")).status_code == 404
        assert (await client.get("/flows/%2e%2e/app.py")).status_code == 404


# --- in a real browser ------------------------------------------------------------


@dataclass
class Demo:
    server: Server
    tokens: dict[str, str]  # org -> bearer token

    def flows(self, org: str, variables: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(
            self.server.graphql,
            json={"query": FLOWS, "variables": variables},
            headers={"authorization": f"Bearer {self.tokens[org]}"},
            timeout=10,
        )
        body = r.json()
        assert r.status_code == 200 and "errors" not in body, body
        flows: dict[str, Any] = body["data"]["materialFlows"]
        return flows

    def anomalies(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        r = httpx.post(
            self.server.graphql,
            json={
                "query": "query A($from: DateTime, $to: DateTime) "
                "{ anomalies(from: $from, to: $to) { kind message } }",
                "variables": {"from": variables["from"], "to": variables["to"]},
            },
            headers={"authorization": f"Bearer {self.tokens[REGULATOR]}"},
            timeout=10,
        )
        found: list[dict[str, Any]] = r.json()["data"]["anomalies"]
        return found

    def first_battery_code(self) -> str:
        r = httpx.post(
            self.server.graphql,
            json={"query": '{ lot(id: "lot:gz-automaker-demo:00001") { units } }'},
            headers={"authorization": f"Bearer {self.tokens[REGULATOR]}"},
            timeout=10,
        )
        units: list[str] = r.json()["data"]["lot"]["units"]
        assert units, "the demo's first battery pack lot has no unit codes"
        return units[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One month (May 2026) of the demo network, served by `rledger serve`."""
    url = database_url(str(tmp_path_factory.mktemp("flows-page") / "demo.db"))
    world = make_world(url)
    try:
        seed_demo(world.store, world.operator, months=1)
        tokens = {org: issue_token(world.store.engine, org) for org in (REGULATOR, PROCESSOR)}
    finally:
        world.store.close()
    with running_server(url) as server:
        yield Demo(server, tokens)


def _drawable(flows: dict[str, Any]) -> list[str]:
    """The nodes a Sankey can draw: those on a link of positive mass between two
    different nodes (a loop such as processed → processed cannot be drawn)."""
    ends = {
        end
        for link in flows["links"]
        if link["massG"] > 0 and link["source"] != link["target"]
        for end in (link["source"], link["target"])
    }
    return sorted(n["id"] for n in flows["nodes"] if n["id"] in ends)


@pytest.fixture(scope="module")
def sync_playwright() -> Any:
    """Playwright's sync API, or fail (CI) / skip (elsewhere) when the browser is missing."""
    why = None
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is not installed: {INSTALL}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = f"the playwright Python package is not installed: {INSTALL}"
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return sync_playwright


def test_the_sankey_shows_the_nodes_the_api_answers_for_the_filter(
    sync_playwright: Any, demo: Demo
) -> None:
    """Steel in May 2026, as the regulator (every flow), then as the scrap processor (the
    flows of its own records)."""
    # The page's To date is inclusive: 2026-05-31 asks for flows before 2026-06-01T00:00Z.
    variables = {
        "from": "2026-05-01T00:00:00Z",
        "to": "2026-06-01T00:00:00Z",
        "material": "steel",
        "groupBy": "STAGE",
    }
    regulator = demo.flows(REGULATOR, variables)
    collector = demo.flows(PROCESSOR, variables)
    expected = _drawable(regulator)
    # What the demo's steel flows hold (ledger/flows.py stages), so the test can fail.
    assert {"collected", "processed", "recycled", "manufactured", "virgin"} <= set(expected)
    # The processor reads only the flows of its own records: fewer stages (no virgin iron).
    assert "collected" in _drawable(collector) and set(_drawable(collector)) < set(expected)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(demo.server.url + "/flows")
            assert page.is_visible("#login") and not page.is_visible("#app")

            page.fill("#token", "rlt_notatoken_x")
            page.click("#token-save")
            page.wait_for_selector("#error:has-text('not accepted')")
            assert page.is_visible("#login") and not page.is_visible("#app")

            page.fill("#token", demo.tokens[REGULATOR])
            page.click("#token-save")
            page.wait_for_selector("#chart[data-state=rendered]")
            assert not page.is_visible("#error")
            assert "reads everything" in (page.text_content("#who") or "")

            page.fill("#f-from", "2026-05-01")
            page.fill("#f-to", "2026-05-31")
            page.fill("#f-material", "steel")
            page.select_option("#f-group", "STAGE")
            page.click("#f-apply")
            page.wait_for_selector("#chart[data-state=rendered]")
            drawn = json.loads(page.get_attribute("#chart", "data-nodes") or "null")
            assert drawn == expected
            svg_text = page.locator("#chart svg text").all_text_contents()
            for node in expected:  # stage nodes are labelled with their ids
                assert node in svg_text, (node, svg_text)
            page.screenshot(path=str(ARTIFACTS / "flows-page-steel.png"), full_page=True)

            # The CSV download holds the same links, in integer grams.
            with page.expect_download() as download:
                page.click("#f-csv")
            path = download.value.path()
            rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
            assert [(r["source"], r["target"], int(r["mass_g"])) for r in rows] == [
                (x["source"], x["target"], x["massG"]) for x in regulator["links"]
            ]
            assert {(r["material"], r["from"], r["to"]) for r in rows} == {
                ("steel", variables["from"], variables["to"])
            }

            # The trace view: a battery by its code, with its life from registration on.
            code = demo.first_battery_code()
            page.click("button[data-view=trace]")
            page.fill("#t-id", code)
            page.click("#t-apply")
            page.wait_for_selector("#trace-out h2")
            assert code in (page.text_content("#trace-out h2") or "")
            stages = page.locator("#trace-out table").first.locator("tbody td:nth-child(3)")
            assert stages.first.text_content() == "registered"
            page.screenshot(path=str(ARTIFACTS / "flows-page-battery.png"))

            # The anomaly list: the regulator's anomalies of May 2026, one row each.
            anomalies = demo.anomalies(variables)
            assert anomalies, "the demo raises anomalies (yields, a lot left in transit)"
            page.click("button[data-view=anomalies]")
            page.fill("#a-from", "2026-05-01")
            page.fill("#a-to", "2026-05-31")
            page.click("#a-apply")
            page.wait_for_selector("#anomalies-out[data-count]")
            assert page.get_attribute("#anomalies-out", "data-count") == str(len(anomalies))
            messages = page.locator("#anomalies-out tbody td:nth-child(4)").all_text_contents()
            assert messages == [a["message"] for a in anomalies]
            page.click("button[data-view=flows]")

            # The processor's token: the same filter shows only the flows of its own records.
            page.click("#logout")
            assert page.evaluate("() => sessionStorage.length") == 0
            page.fill("#token", demo.tokens[PROCESSOR])
            page.click("#token-save")
            page.wait_for_selector("#chart[data-state=rendered]")
            page.fill("#f-from", "2026-05-01")
            page.fill("#f-to", "2026-05-31")
            page.fill("#f-material", "steel")
            page.click("#f-apply")
            page.wait_for_selector("#chart[data-state=rendered]")
            drawn = json.loads(page.get_attribute("#chart", "data-nodes") or "null")
            assert drawn == _drawable(collector) != expected
            assert "reads what it holds" in (page.text_content("#who") or "")
        finally:
            browser.close()
    assert errors == [], errors
