"""The API as a hostile client sees it (issue 8/8): raw requests to the app
in-process, and the checks every answer must pass, whatever was sent.

:class:`RawClient` posts bytes to ``create_app(...)`` over httpx's ASGI
transport from one event loop kept in a background thread (a blocking
portal), so thousands of requests cost no loop set-up each.

:func:`problems` lists what is wrong with one answer (empty: it held):

- no server error: an HTTP status below 500 (503 OVERLOADED and
  STORE_UNAVAILABLE are server errors here too: nothing in these tests
  overloads the store or breaks the database, so either would mean a client's
  input was taken for a database failure);
- a JSON object with ``data`` or ``errors``;
- every error carries ``extensions.code`` from the contract (schema/errors.py
  STATUS), never INTERNAL, and the status is the most severe code's;
- every ``Rejected`` record result carries a code of the ledger's list
  (ledger/errors.py CODES);
- no string of the answer holds a stack trace or internal detail that the
  request did not send itself: ``Traceback``, ``File "``, ``sqlalchemy``,
  ``psycopg``, a ``.py`` file name, a frame's ``line <n>, in``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from anyio.from_thread import start_blocking_portal
from starlette.applications import Starlette

from ledger.errors import CODES
from schema.errors import STATUS

# What a stack trace or an internal error leaves in text (case-insensitive).
LEAKS = {
    "a traceback": re.compile(r"traceback", re.I),
    "a stack frame": re.compile(r'File "'),
    "SQLAlchemy": re.compile(r"sqlalchemy", re.I),
    "psycopg": re.compile(r"psycopg", re.I),
    "a Python file name": re.compile(r"\w\.py\b"),
    # a stack frame's "line 12, in f" (a position in the client's own JSON text,
    # "Expecting value: line 1 column 1", is no internal detail: json.malformed says it)
    "a line number": re.compile(r"\bline \d+, in\b"),
}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    text: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def codes(self) -> list[str]:
        body = self.json()
        errors = body.get("errors") or [] if isinstance(body, dict) else []
        return [str((e.get("extensions") or {}).get("code")) for e in errors]


class RawClient:
    """Posts to the app's /graphql from a long-lived event loop. Use as a context manager."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._stack = ExitStack()
        self._client: httpx.AsyncClient | None = None

    def __enter__(self) -> RawClient:
        self.portal = self._stack.enter_context(start_blocking_portal(backend="asyncio"))
        transport = httpx.ASGITransport(app=self.app)
        self._client = httpx.AsyncClient(
            transport=transport, base_url="http://ledger.test", timeout=120
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self.portal.call(self._client.aclose)
        self._stack.close()

    def post(self, body: bytes, token: str | None) -> Answer:
        assert self._client is not None, "use RawClient as a context manager"
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        post = partial(self._client.post, "/graphql", content=body, headers=headers)
        response = self.portal.call(post)
        return Answer(response.status_code, response.text, response.elapsed.total_seconds())

    def ask(self, token: str | None, query: str, variables: dict[str, Any] | None = None) -> Answer:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        return self.post(request_bytes(payload), token)


def request_bytes(payload: Any) -> bytes:
    """JSON bytes as a hostile client may send them: NaN and lone surrogates (as
    \\ud800 escapes) allowed."""
    return json.dumps(payload, allow_nan=True).encode("ascii")


def strings(value: Any) -> Iterator[str]:
    """Every string of a parsed JSON value, member names included."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            for k, item in v.items():
                yield k
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)


def problems(sent: Any, answer: Answer, *, unauthenticated: bool = False) -> list[str]:
    """What is wrong with ``answer`` to the request ``sent`` (its parsed JSON, or its
    text); empty when every check held. ``unauthenticated``: no valid token was sent,
    so the answer must be 401 UNAUTHENTICATED."""
    found: list[str] = []
    if answer.status >= 500:
        found.append(f"server error {answer.status}")
    try:
        body = answer.json()
    except ValueError:
        return [*found, f"not JSON: {answer.text[:200]!r}"]
    if not isinstance(body, dict) or not ({"data", "errors"} & set(body)):
        return [*found, "not a GraphQL response object"]
    errors = body.get("errors") or []
    codes = []
    for error in errors:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
        if not isinstance(code, str) or code not in STATUS:
            found.append(f"an error without a contract code: {error!r:.300}")
        elif code == "INTERNAL":
            found.append(f"INTERNAL: {error.get('message')!r:.300}")
        else:
            codes.append(code)
        if isinstance(error, dict) and not error.get("message"):
            found.append("an error without a message")
    expected = max((STATUS[c] for c in codes), default=200)
    if codes and len(codes) == len(errors) and answer.status != expected:
        found.append(f"status {answer.status} for codes {codes} (expected {expected})")
    if not errors and answer.status != 200:
        found.append(f"status {answer.status} without errors")
    if unauthenticated and (answer.status != 401 or codes != ["UNAUTHENTICATED"]):
        found.append(f"no valid token, yet answered {answer.status} {codes}")
    found += _rejected_without_code(body.get("data"))
    sent_text = sent if isinstance(sent, str) else "\n".join(strings(sent))
    for text in strings(body):
        for what, pattern in LEAKS.items():
            if pattern.search(text) and not pattern.search(sent_text):
                found.append(f"leaks {what}: {text[:300]!r}")
    return found


def _rejected_without_code(data: Any) -> list[str]:
    """A record result that looks like a Rejected (it has a message, or says so in
    __typename) must carry a code from the ledger's list."""
    out = []
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            looks_rejected = v.get("__typename") == "Rejected" or "message" in v
            if looks_rejected and "code" in v and v["code"] not in CODES:
                out.append(f"a Rejected record with code {v['code']!r}")
            stack.extend(x for x in v.values() if isinstance(x, (dict, list)))
    return out
