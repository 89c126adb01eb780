"""Query limits against hostile requests (issue 8/8): deep, wide and aliased
queries, huge pages, huge lists in variables and huge bodies are each refused
with their code, quickly and in bounded memory, and the server answers the next
request as before.

tests/test_api_core.py pins each limit at its edge (12 levels pass, 13 don't;
30 aliases pass, 31 don't; ...). Here are the extremes an attacker would send,
each measured: the answer's status and code, the seconds it took (at most
:data:`SECONDS`, on a loaded 2-core machine) and the memory it needed: the
growth of the process's peak resident set while the request ran (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``, proc(5)), at most
:data:`RSS_BYTES` plus 8 times the body (the JSON decoder's objects for a
body of 16 MiB, the most the app reads, are about that).

Two of these found bugs, fixed in schema/limits.py:

- a 1,000,000-item list in the variables (9 MB, under the 16 MiB body limit)
  was coerced item by item by graphql-core before any resolver looked at it:
  7-15 s of CPU and 300 MB, and ``anomalies(kinds: $k)`` even answered 200.
  Now the variables' values are counted first (``max_variable_values``):
  413 REQUEST_TOO_LARGE in well under a second;
- thirty aliased ``lots(first: 500)`` pages of 20 fields each passed the
  depth and alias limits and took 15-70 s and 180 MB to answer. Now a query's
  cost (fields with every page full) is limited: 400 QUERY_TOO_COSTLY.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from hostile_api import RawClient, problems, request_bytes
from read_network import REGULATOR, build_network
from reliability import tally

from ledger.tokens import issue_token
from schema.app import create_app
from schema.limits import Limits

SECONDS = 5.0
RSS_BYTES = 64 * 1024 * 1024
ROW = "query-cost limits: deep, wide, aliased queries, huge pages, lists and bodies"

NODE = (
    "id material massG remainingG status head elements { element massG } units "
    "custodian { id name roles region } headEvent { hash type at actor { id } } recoveredG"
)


@dataclass(frozen=True)
class Case:
    name: str
    payload: Any  # a JSON value, or raw bytes
    status: int
    code: str


def _cases() -> list[Case]:
    over_tokens = "{ " + " ".join(f"a{i}: __typename" for i in range(10_000)) + " }"
    two_thousand_aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(2_000)) + " }"
    doubling = " ".join(
        f"fragment F{i} on Query {{ x: __typename ...F{i + 1} ...F{i + 1} }}" for i in range(40)
    )
    # each fragment nests the next one level down (x is no field of Lot: the depth
    # is measured on the document, before the unknown field is reported)
    deep_via_spreads = '{ lot(id: "lot:pack") { ...N0 } } ' + " ".join(
        f"fragment N{i} on Lot {{ id x {{ ...N{i + 1} }} }}" for i in range(50)
    )
    deep_via_spreads += " fragment N50 on Lot { id }"
    nested_50 = '{ lot(id: "lot:pack")' + " { custodian" * 50 + " { id" + " }" * 51 + " }"
    wide = (
        "{ "
        + " ".join(f"a{i}: lots(first: 500) {{ edges {{ node {{ {NODE} }} }} }}" for i in range(30))
        + " }"
    )
    wide_variable = (
        "query($n: Int) { "
        + " ".join(
            f"a{i}: events(first: $n) {{ edges {{ node {{ hash type at }} }} }}" for i in range(30)
        )
        + " }"
    )
    million = ["lot:x"] * 1_000_000
    return [
        Case("10,000 aliases (30,001 tokens)", {"query": over_tokens}, 400, "TOO_MANY_TOKENS"),
        Case("2,000 aliases", {"query": two_thousand_aliases}, 400, "TOO_MANY_ALIASES"),
        Case(
            "2^40 aliases through 40 doubling fragments",
            {"query": "{ ...F0 } " + doubling + " fragment F40 on Query { __typename }"},
            400,
            "TOO_MANY_ALIASES",
        ),
        Case("depth 50 by nesting", {"query": nested_50}, 400, "QUERY_TOO_DEEP"),
        Case("depth 100 through 50 fragments", {"query": deep_via_spreads}, 400, "QUERY_TOO_DEEP"),
        Case(
            "4,000 levels of braces",
            {"query": "{" + " a {" * 4_000 + " b" + " }" * 4_000 + " }"},
            400,
            "QUERY_TOO_DEEP",
        ),
        Case(
            "a fragment cycle",
            {"query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"},
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        Case(
            "first: 10^9",
            {"query": "{ lots(first: 1000000000) { edges { cursor } } }"},
            400,
            "BAD_USER_INPUT",
        ),
        Case(
            "first: 10^12 (beyond Int)",
            {"query": "{ lots(first: 1000000000000) { edges { cursor } } }"},
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        Case(
            "first: 10^9 as a variable",
            {
                "query": "query($n: Int) { events(first: $n) { edges { cursor } } }",
                "variables": {"n": 10**9},
            },
            400,
            "BAD_USER_INPUT",
        ),
        Case(
            "lineage maxDepth: 10^9",
            {"query": '{ lineage(lot: "lot:pack", maxDepth: 1000000000) { depth } }'},
            400,
            "BAD_USER_INPUT",
        ),
        Case(
            "30 aliased pages of 500 lots, 20 fields each", {"query": wide}, 400, "QUERY_TOO_COSTLY"
        ),
        Case(
            "30 aliased pages of events, first a variable",
            {"query": wide_variable, "variables": {"n": 500}},
            400,
            "QUERY_TOO_COSTLY",
        ),
        Case(
            "heads of 1,000,000 lots in a variable",
            {"query": "query($l: [ID!]!) { heads(lots: $l) { lot } }", "variables": {"l": million}},
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "1,000,000 anomaly kinds in a variable",
            {
                "query": "query($k: [AnomalyKind!]) { anomalies(kinds: $k) { kind } }",
                "variables": {"k": ["YIELD"] * 1_000_000},
            },
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "100,000 events in one recordEvents",
            {
                "query": "mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename } }",
                "variables": {"e": [{"envelope": "", "signature": ""}] * 100_000},
            },
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "an unused variable of 1,000,000 numbers",
            {"query": "{ __typename }", "variables": {"x": [0] * 1_000_000}},
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "an object of 200,000 members in a variable",
            {"query": "{ __typename }", "variables": {"x": {f"k{i}": 0 for i in range(200_000)}}},
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "a 17 MiB body",
            {"query": "{ __typename }", "variables": {"x": "a" * (17 * 1024 * 1024)}},
            413,
            "REQUEST_TOO_LARGE",
        ),
        Case(
            "a 300 KiB query text",
            {"query": "{ __typename } #" + "x" * (300 * 1024)},
            400,
            "TOO_MANY_TOKENS",
        ),
        Case(
            "200,000 nested JSON arrays",
            b'{"query": "{ __typename }", "variables": {"x": '
            + b"[" * 200_000
            + b"]" * 200_000
            + b"}}",
            400,
            "BAD_REQUEST",
        ),
        Case(
            "3,000 operations, one named",
            {
                "query": " ".join(f"query Q{i} {{ __typename }}" for i in range(3_000)),
                "operationName": "Q1",
            },
            400,
            "TOO_MANY_TOKENS",
        ),
        Case(
            "a batch of 1,000 operations (a JSON array)",
            [{"query": "{ __typename }"}] * 1_000,
            400,
            "BAD_REQUEST",
        ),
    ]


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match, f"/proc/self/status has no {field}"
    return int(match.group(1)) * 1024


def _reset_peak_rss() -> int:
    """Reset the peak resident set to the current one (proc(5): clear_refs 5); returns it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def _peak_rss() -> int:
    return _status_kib("VmHWM")


@pytest.fixture
def client(sqlite_world: World) -> Iterator[tuple[RawClient, str]]:
    build_network(sqlite_world, bulk_lots=495)  # 505 lots: one full page
    token = issue_token(sqlite_world.store.engine, REGULATOR, label="limits")
    with RawClient(create_app(sqlite_world.store, token_ttl=60)) as c:
        yield c, token


def test_hostile_limits_are_refused_quickly_with_their_codes(
    client: tuple[RawClient, str],
) -> None:
    c, token = client
    held = 0
    failures = []
    cases = _cases()  # built here, not at import: they hold millions of items
    for case in cases:
        body = case.payload if isinstance(case.payload, bytes) else request_bytes(case.payload)
        rss = _reset_peak_rss()
        started = time.monotonic()
        answer = c.post(body, token)
        seconds = time.monotonic() - started
        grew = _peak_rss() - rss
        body_json = json.loads(answer.text)
        codes = [e["extensions"]["code"] for e in body_json.get("errors", [])]
        found = problems(case.payload if not isinstance(case.payload, bytes) else "", answer)
        if answer.status != case.status or case.code not in codes:
            found.append(f"answered {answer.status} {codes}: {answer.text[:300]}")
        if seconds > SECONDS:
            found.append(f"took {seconds:.1f} s")
        if grew > RSS_BYTES + 8 * len(body):
            found.append(f"grew by {grew / 1e6:.0f} MB for a {len(body) / 1e6:.1f} MB body")
        alive = c.ask(token, '{ lot(id: "lot:pack") { id } }')
        if alive.status != 200 or json.loads(alive.text)["data"]["lot"]["id"] != "lot:pack":
            found.append(f"the next request failed: {alive.status} {alive.text[:200]}")
        if found:
            failures.append(f"{case.name}: {found}")
        else:
            held += 1
    tally(
        ROW,
        tried=len(cases),
        held=held,
        unit="hostile requests",
        note="each refused with its code within 5 s, the server answering the next request",
    )
    assert not failures, "\n".join(failures)


def test_what_a_client_needs_stays_under_the_cost_limit(
    client: tuple[RawClient, str],
) -> None:
    """One full page of lots with every field a list view shows (cost 12,001), two
    aliased ones, and a page of events with a variable first: all answered."""
    c, token = client
    page = f"lots(first: 500) {{ edges {{ node {{ {NODE} }} }} pageInfo {{ endCursor }} }}"
    for query, variables in (
        ("{ " + page + " }", None),
        ("{ a: " + page + " b: " + page + " }", None),
        (
            "query($n: Int) { events(first: $n) { edges { node { hash type at actor { id } } } } }",
            {"n": 500},
        ),
    ):
        answer = c.ask(token, query, variables)
        assert answer.status == 200, answer.text[:300]
        assert not problems(query, answer)
    edges = json.loads(c.ask(token, "{ " + page + " }").text)["data"]["lots"]["edges"]
    assert len(edges) == 500


def test_cost_counts_every_page_as_full() -> None:
    """Hand-worked: lots(first: 500) { edges { node { id } } } costs
    1 (lots) + 500 x (1 (edges) + 1 (node) + 1 (id)) = 1,501; without first the
    page is 50: 1 + 50 x 3 = 151; a field without first multiplies by 1."""
    from graphql import parse, validate

    from schema.limits import validation_rules
    from schema.root import schema

    def codes(query: str, limits: Limits) -> list[str]:
        errors = validate(schema._schema, parse(query), validation_rules(limits))
        return [str((e.extensions or {}).get("code")) for e in errors]

    q500 = "{ lots(first: 500) { edges { node { id } } } }"
    assert codes(q500, Limits(max_cost=1_501)) == []
    assert codes(q500, Limits(max_cost=1_500)) == ["QUERY_TOO_COSTLY"]
    q50 = "{ lots { edges { node { id } } } }"
    assert codes(q50, Limits(max_cost=151)) == []
    assert codes(q50, Limits(max_cost=150)) == ["QUERY_TOO_COSTLY"]
    lot = '{ lot(id: "lot:pack") { id custodian { id name } } }'  # 1 + (1 + (1 + 2)) = 5
    assert codes(lot, Limits(max_cost=5)) == []
    assert codes(lot, Limits(max_cost=4)) == ["QUERY_TOO_COSTLY"]
