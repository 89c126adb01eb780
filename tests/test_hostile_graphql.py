"""Hostile GraphQL (issue 8/8): operations generated from the schema by
hypothesis-graphql, and hostile variables for every root field, sent to the
app in-process as a regulator, as a participant and with no token.

Every answer passes tests/hostile_api.py ``problems``: no server error (5xx),
no INTERNAL, no stack trace or internal detail (Traceback, ``File "``,
sqlalchemy, psycopg, a .py name, ``line <n>``) the request did not send, every
error with a contract code and the status that code fixes, every Rejected
record with a ledger code; with no token, 401 UNAUTHENTICATED. Each answer
also comes within :data:`SLOW_SECONDS`.

What is generated:

- valid operations (``Mode.POSITIVE``): every root query and ``recordEvents``,
  arguments of every type, custom scalars (Grams, Long, DateTime, Date) from
  edge values (0, ±2^53, 10^30, year 1 and 9999 with offsets, junk);
- invalid ones (``Mode.NEGATIVE``: one schema violation each — a wrong type,
  a missing argument, an unknown enum value);
- every root field with its arguments as variables, the variables drawn from
  hostile JSON (huge and negative integers, floats, NaN, NUL, lone
  surrogates, RTL overrides, long strings, nested lists and objects) mixed
  with real ids of the network.

Examples per run: the numbers below, 20 times as many with RLEDGER_LONG=1.
SQLite gets most of them, PostgreSQL a share (a NUL or an odd string reaches a
different driver there). Figures go to docs/reliability.md (tests/reliability.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import graphql
import hypothesis_graphql as hg
import pytest
from conftest import World
from hostile_api import Answer, RawClient, problems, request_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from read_network import COLL_A, REGULATOR, build_network
from reliability import tally

from ledger.tokens import issue_token
from schema.app import create_app
from schema.root import schema

LONG = bool(os.environ.get("RLEDGER_LONG"))
SCALE = 20 if LONG else 1
SLOW_SECONDS = 10.0  # one request, on a loaded 2-core CI machine
ROW = "generated GraphQL queries and mutations"
NOTE = (
    "hypothesis-graphql (valid and invalid) and hostile variables for every root field; "
    "regulator, participant and no token; no 5xx, no INTERNAL, no stack trace, every "
    "refusal with a code"
)

SCHEMA = schema._schema  # graphql-core's schema of the strawberry one
MAX_SAFE = 2**53 - 1


def _int(v: int) -> graphql.IntValueNode:
    return graphql.IntValueNode(value=str(v))


def _str(v: str) -> graphql.StringValueNode:
    return graphql.StringValueNode(value=v)


EDGE_INTS = [0, 1, -1, MAX_SAFE, MAX_SAFE + 1, -MAX_SAFE, -MAX_SAFE - 1, 2**63, 10**30]
TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59.999999Z",
    "2026-01-01T00:00:00",  # no time zone
    "2026-01-01",
    "",
    "x",
    "2026-01-01T00:00:00+99:00",
]
DATES = ["2026-01-01", "0001-01-01", "9999-12-31", "2026-13-01", "", "x", "2026-01-01T00:00:00Z"]
CUSTOM_SCALARS = {
    "Grams": st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**70), 2**70)).map(_int),
    "Long": st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**70), 2**70)).map(_int),
    "DateTime": st.sampled_from(TIMES).map(_str),
    "Date": st.sampled_from(DATES).map(_str),
}

# Hostile JSON for variables.
IDS = ["lot:pack", "lot:bm", "lot:occ-2", "org:coll-a", "org:regulator", "lot:nope"]
ODD_TEXT = [
    "",
    "\x00",
    "lot:\x00pack",
    "\ud800",  # a lone surrogate (sent as the escape \ud800)
    "a\udfffb",
    "\u202elot:pack",  # right-to-left override
    "lot:caf\u00e9",
    "lot:cafe\u0301",  # the same, NFD
    "\ufeff",
    "x" * 70_000,  # longer than SQLite's LIKE pattern limit (50,000 bytes)
    "%",
    "_",
    "\\",
    "' OR 1=1 --",
    "steel",
    "CN-GD",
    "YIELD",
    "2026",
    "eu.batteries.ev",
    "0" * 64,
]
HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(ODD_TEXT + IDS),
)
HOSTILE_JSON = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.fixture
def fuzz(world: World) -> Iterator[tuple[RawClient, dict[str, str | None], str]]:
    """The read network on this engine, a client, and the tokens of the three callers."""
    build_network(world)
    engine = world.store.engine
    tokens: dict[str, str | None] = {
        "regulator": issue_token(engine, REGULATOR, label="fuzz"),
        "participant": issue_token(engine, COLL_A, label="fuzz"),
        "no token": None,
    }
    kind = "postgres" if world.url.startswith("postgresql") else "sqlite"
    with RawClient(create_app(world.store, token_ttl=60)) as client:
        yield client, tokens, kind


def _examples(kind: str, sqlite: int, postgres: int) -> int:
    return SCALE * (sqlite if kind == "sqlite" else postgres)


class Tally:
    """Requests sent and answers that held; failures listed for the assertion."""

    def __init__(self) -> None:
        self.tried = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def check(self, sent: Any, answer: Answer, *, unauthenticated: bool = False) -> None:
        """Count the answer; raise (so that hypothesis shrinks the example) if it did not hold."""
        self.tried += 1
        self.slowest = max(self.slowest, answer.seconds)
        found = problems(sent, answer, unauthenticated=unauthenticated)
        if answer.seconds > SLOW_SECONDS:
            found.append(f"took {answer.seconds:.1f} s")
        if found:
            self.failures.append(f"{found} for {str(sent)[:600]!r}")
            raise AssertionError(self.failures[-1])

    def run(self, kind: str, examples: Callable[[], None]) -> None:
        """Run the hypothesis test ``examples``; tally what was tried and held, pass or fail."""
        try:
            examples()
        finally:
            held = self.tried - len(self.failures)
            tally(ROW, tried=self.tried, held=held, unit="requests", note=NOTE)
        assert not self.failures and self.tried > 0
        print(f"{kind}: {self.tried} requests, slowest {self.slowest:.2f} s")


SETTINGS = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}


@pytest.mark.parametrize("mode", [hg.Mode.POSITIVE, hg.Mode.NEGATIVE], ids=["valid", "invalid"])
def test_generated_operations(
    fuzz: tuple[RawClient, dict[str, str | None], str], mode: hg.Mode
) -> None:
    """Generated queries and mutations as each caller: every answer holds."""
    client, tokens, kind = fuzz
    seen = Tally()
    n = _examples(kind, 200, 40) if mode is hg.Mode.POSITIVE else _examples(kind, 150, 40)
    callers = ["regulator", "participant", "no token"]
    if mode is hg.Mode.NEGATIVE:
        callers = ["regulator", "participant"]  # no token: 401 before the query is read

    @settings(max_examples=n, **SETTINGS)  # type: ignore[arg-type]
    @given(hg.from_schema(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=mode))
    def run(query: str) -> None:
        payload = {"query": query}
        for who in callers:
            answer = client.post(request_bytes(payload), tokens[who])
            seen.check(payload, answer, unauthenticated=tokens[who] is None)

    seen.run(f"{kind} {mode.name}", run)


def _selection(type_: graphql.GraphQLOutputType) -> str:
    named = graphql.get_named_type(type_)
    return "" if graphql.is_leaf_type(named) else " { __typename }"


def _root_operations() -> list[tuple[str, str, list[str]]]:
    """(field, operation text, variable names) for every root field, each argument a variable."""
    out = []
    for kind, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            names = list(field.args)
            decl = ", ".join(f"${a}: {field.args[a].type}" for a in names)
            args = ", ".join(f"{a}: ${a}" for a in names)
            text = f"{kind}{f'({decl})' if decl else ''} {{ {name}"
            text += f"({args})" if args else ""
            text += _selection(field.type) + " }"
            out.append((name, text, names))
    return out


ROOT_OPERATIONS = _root_operations()


def test_every_root_field_is_listed() -> None:
    """The variables fuzz covers every root field of the schema (a new field is in it)."""
    assert {name for name, _, _ in ROOT_OPERATIONS} >= {"lot", "lots", "recordEvents", "heads"}
    assert len(ROOT_OPERATIONS) == len(SCHEMA.query_type.fields) + len(  # type: ignore[union-attr]
        SCHEMA.mutation_type.fields  # type: ignore[union-attr]
    )


@st.composite
def _variables_request(draw: st.DrawFn) -> dict[str, Any]:
    _, text, names = draw(st.sampled_from(ROOT_OPERATIONS))
    variables = {}
    for name in names:
        if draw(st.integers(0, 5)):  # now and then leave one out
            variables[name] = draw(HOSTILE_JSON)
    payload: dict[str, Any] = {"query": text, "variables": variables}
    if draw(st.integers(0, 9)) == 0:
        payload["operationName"] = draw(st.sampled_from(["X", "\ud800", "", "\x00"]))
    return payload


def test_hostile_variables_for_every_root_field(
    fuzz: tuple[RawClient, dict[str, str | None], str],
) -> None:
    """Each root field with hostile JSON for its variables, as a regulator and a participant."""
    client, tokens, kind = fuzz
    seen = Tally()

    @settings(max_examples=_examples(kind, 400, 120), **SETTINGS)  # type: ignore[arg-type]
    @given(_variables_request())
    def run(payload: dict[str, Any]) -> None:
        for who in ("regulator", "participant"):
            seen.check(payload, client.post(request_bytes(payload), tokens[who]))

    seen.run(f"{kind} variables", run)
