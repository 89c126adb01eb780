"""The client SDK: submit signed records to a Recovery Ledger over HTTP, and query it.

:class:`LedgerClient` (on ``httpx.Client``) and :class:`AsyncLedgerClient`
(on ``httpx.AsyncClient``) speak the service's GraphQL API at ``/graphql``
with a bearer token (COMMON.md, "the HTTP/GraphQL error contract")::

    with LedgerClient("https://ledger.example", token) as client:
        results = client.submit([signer.record("create", body)])

``record`` sends one ``recordEvents`` call. ``submit`` splits a long list
into batches and retries a batch that failed as a whole (no answer, 503
``OVERLOADED`` / ``STORE_UNAVAILABLE``, 500 ``INTERNAL``) with exponential
backoff, full jitter and the server's ``Retry-After``. Retrying is safe
because a record's id is its idempotency key: a record stored by an attempt
whose answer was lost answers ``Recorded(existing=True)`` the next time.
A record the ledger refuses is not an exception but a :class:`Rejected` in
the results, in the same position as the record.

Errors (each message says what to do next; the token never appears in one)::

    ClientError                 anything this SDK raises on purpose (.code, .status)
    ├── AuthenticationError     401 UNAUTHENTICATED: the token is missing, malformed, unknown
    │                           or revoked; check it, or ask the ledger's operator for a new
    │                           one (`rledger token create --org ID`)
    ├── RequestRejected         400: the request is wrong and retrying it unchanged won't help;
    │                           .code is GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED,
    │                           QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS or
    │                           BATCH_TOO_LARGE (send at most 5,000 records per call)
    ├── RequestTooLarge         413 REQUEST_TOO_LARGE: the body is over the server's limit;
    │                           send smaller batches
    ├── QueryError              a 200 answer with GraphQL errors (e.g. a field the token may
    │                           not read); .errors and the partial .data are kept
    ├── UnexpectedResponse      the answer does not follow the contract (not JSON, no data,
    │                           another count of results): is the URL the ledger's /graphql?
    └── RetryableError          retried with backoff until the attempts ran out; the same call
        │                       may be repeated later unchanged (.attempts, .retry_after)
        ├── Overloaded          503 OVERLOADED (or 429): the ledger is busy
        ├── Unavailable         503 STORE_UNAVAILABLE: its database failed mid-write
        ├── ServerError         500 INTERNAL or another 5xx; .reference for the operator
        └── TransportError      no answer at all: connection refused, timeout, TLS, protocol
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ledger.store import Signed
from producers.events import Signer
from producers.results import Recorded, RecordResult, Rejected
from producers.submit import Line, submit_lines, submit_lines_async

__all__ = [
    "AsyncLedgerClient",
    "AuthenticationError",
    "ClientError",
    "LedgerClient",
    "Overloaded",
    "QueryError",
    "RecordResult",
    "Recorded",
    "Rejected",
    "RequestRejected",
    "RequestTooLarge",
    "RetryPolicy",
    "RetryableError",
    "ServerError",
    "TransportError",
    "Unavailable",
    "UnexpectedResponse",
    "drafts_to_lines",
]

MAX_BATCH = 5_000  # the server's limit (ledger.store.MAX_BATCH): more is BATCH_TOO_LARGE
HEADS_PER_QUERY = 5_000  # lots per heads query (the server's limit)

RECORD_MUTATION = """\
mutation RecordEvents($events: [SignedEvent!]!, $atomic: Boolean!) {
  recordEvents(events: $events, atomic: $atomic) {
    __typename
    ... on Recorded { id hash seq existing }
    ... on Rejected { rejectedId: id code message path }
  }
}"""  # the alias: Recorded.id is ID! and Rejected.id is ID, which may not share a response name


# --- errors ---------------------------------------------------------------------


class ClientError(Exception):
    """Base of every error this SDK raises on purpose."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class AuthenticationError(ClientError):
    """401: the ledger did not accept the token. Not retried."""


class RequestRejected(ClientError):
    """400: the request is malformed or over a limit; ``code`` says which. Not retried."""


class RequestTooLarge(ClientError):
    """413: the request body is over the server's limit. Send smaller batches."""


class QueryError(ClientError):
    """A query answered with GraphQL errors; ``errors`` as sent, ``data`` the partial data."""

    def __init__(
        self, message: str, *, errors: list[dict[str, Any]], data: dict[str, Any] | None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.errors = errors
        self.data = data


class UnexpectedResponse(ClientError):
    """The answer does not follow the API's contract."""


class RetryableError(ClientError):
    """A failure of the whole request that was retried until the attempts ran out."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        attempts: int = 1,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.attempts = attempts


class Overloaded(RetryableError):
    """503 OVERLOADED: the ledger is busy."""


class Unavailable(RetryableError):
    """503 STORE_UNAVAILABLE: the ledger's database failed; nothing unacknowledged was kept."""


class ServerError(RetryableError):
    """500 INTERNAL (or another 5xx); ``reference`` names the server's log entry, if given."""

    def __init__(self, message: str, *, reference: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reference = reference


class TransportError(RetryableError):
    """No HTTP answer: connection refused or reset, timeout, TLS or protocol failure."""


def _exhausted(exc: RetryableError, attempts: int) -> RetryableError:
    """The last failure, told that the attempts ran out."""
    exc.attempts = attempts
    exc.message += (
        f"; gave up after {attempts} attempt{'s' if attempts != 1 else ''}: the same call "
        "can be repeated later unchanged, record ids make that safe"
    )
    exc.args = (exc.message,)
    return exc


# --- retry policy ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a request that failed as a whole.

    The n-th retry waits a random time in [0, min(max_delay, base_delay·2ⁿ)]
    ("full jitter", so that many clients that failed together don't come back
    together), but never less than the server's ``Retry-After`` (RFC 9110
    §10.2.3), itself capped at ``max_retry_after``.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1 (1 = no retry)")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))
        if retry_after is None:
            return backoff
        return max(min(retry_after, self.max_retry_after), backoff)


NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- requests and answers (no I/O) ------------------------------------------------


def graphql_url(url: str) -> str:
    """The GraphQL endpoint for a service URL: ``https://host`` → ``https://host/graphql``."""
    trimmed = url.rstrip("/")
    return trimmed if trimmed.endswith("/graphql") else trimmed + "/graphql"


def _signed_input(event: Signed | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(event, Signed):
        envelope, signature = event.envelope, event.signature
    else:
        envelope, signature = event["envelope"], event["signature"]
    if isinstance(envelope, bytes):
        envelope = envelope.decode("utf-8")
    return {"envelope": envelope, "signature": signature}


def _record_payload(events: Sequence[Signed | Mapping[str, Any]], atomic: bool) -> dict[str, Any]:
    return {
        "query": RECORD_MUTATION,
        "operationName": "RecordEvents",
        "variables": {"events": [_signed_input(e) for e in events], "atomic": atomic},
    }


HEADS_QUERY = "query Heads($lots: [ID!]!) { heads(lots: $lots) { lot head } }"


def _heads_payload(lot_ids: Sequence[str]) -> dict[str, Any]:
    return {"query": HEADS_QUERY, "operationName": "Heads", "variables": {"lots": list(lot_ids)}}


def _heads_answer(lot_ids: Sequence[str], data: dict[str, Any]) -> dict[str, str]:
    wanted = set(lot_ids)
    heads: dict[str, str] = {}
    for item in data.get("heads") or []:
        if (
            isinstance(item, dict)
            and item.get("lot") in wanted
            and isinstance(item.get("head"), str)
        ):
            heads[item["lot"]] = item["head"]
    return heads


def _record_answer(data: dict[str, Any], expected: int) -> list[RecordResult]:
    items = data.get("recordEvents")
    if not isinstance(items, list) or len(items) != expected:
        count = len(items) if isinstance(items, list) else "no"
        raise UnexpectedResponse(
            f"recordEvents answered {count} results for {expected} records; "
            "the batch may or may not be stored: submit it again (ids are idempotent)"
        )
    results: list[RecordResult] = []
    for item in items:
        kind = item.get("__typename") if isinstance(item, dict) else None
        try:
            if kind == "Recorded":
                results.append(
                    Recorded(
                        str(item["id"]),
                        str(item["hash"]),
                        int(item["seq"]),
                        bool(item.get("existing", False)),
                    )
                )
            elif kind == "Rejected":
                results.append(
                    Rejected(
                        item.get("rejectedId"),
                        str(item["code"]),
                        str(item["message"]),
                        item.get("path"),
                    )
                )
            else:
                raise KeyError("__typename")
        except (KeyError, TypeError, ValueError):
            raise UnexpectedResponse(
                f"a recordEvents result is neither Recorded nor Rejected: {str(item)[:200]}"
            ) from None
    return results


_REFERENCE = re.compile(r"reference ([A-Za-z0-9._:-]{1,64})")


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "<token>") if secret else text


def _answer(response: httpx.Response, secret: str | None) -> dict[str, Any]:
    """The ``data`` of a GraphQL answer, or the typed error it stands for."""
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    first: dict[str, Any] = (
        errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    )
    ext = first.get("extensions")
    extensions: dict[str, Any] = ext if isinstance(ext, dict) else {}
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    said = _scrub(str(first.get("message") or response.reason_phrase or "no message"), secret)[:500]
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    kw: dict[str, Any] = {"code": code, "status": status}

    if status == 401 or code == "UNAUTHENTICATED":
        raise AuthenticationError(
            f"the ledger refused the API token ({said}); check the token (--token or "
            "RLEDGER_TOKEN) or ask the ledger's operator for a new one "
            "(`rledger token create --org ID`)",
            **kw,
        )
    if status == 413 or code == "REQUEST_TOO_LARGE":
        raise RequestTooLarge(
            f"the request is larger than the server accepts ({said}); send smaller batches "
            "(batch_size / --batch)",
            **kw,
        )
    if code == "OVERLOADED" or status == 429:
        raise Overloaded(f"the ledger is overloaded ({said})", retry_after=retry_after, **kw)
    if code == "STORE_UNAVAILABLE":
        raise Unavailable(
            f"the ledger's database is unavailable ({said})", retry_after=retry_after, **kw
        )
    if status >= 500 or code == "INTERNAL":
        reference = extensions.get("reference")
        if reference is None and (m := _REFERENCE.search(said)):
            reference = m.group(1)
        raise ServerError(
            f"the ledger failed with HTTP {status} ({said}); if it persists, give the "
            "reference to the ledger's operator",
            reference=str(reference) if reference is not None else None,
            retry_after=retry_after,
            **kw,
        )
    if 400 <= status < 500:
        kw["code"] = code or f"HTTP_{status}"
        raise RequestRejected(
            f"the ledger rejected the request: {kw['code']}: {said}; fix the request "
            "(retrying it unchanged won't help)",
            **kw,
        )
    if status != 200 or not isinstance(payload, dict):
        raise UnexpectedResponse(
            f"HTTP {status} without a GraphQL answer; is the URL the ledger's /graphql endpoint?",
            status=status,
        )
    data = payload.get("data")
    if errors:
        raise QueryError(
            f"the query failed: {code or 'ERROR'}: {said}",
            errors=[e for e in errors if isinstance(e, dict)],
            data=data if isinstance(data, dict) else None,
            **kw,
        )
    if not isinstance(data, dict):
        raise UnexpectedResponse(
            "a GraphQL answer without data; is the URL the ledger's /graphql endpoint?",
            status=status,
        )
    return data


def _transport_error(exc: httpx.TransportError, url: str) -> TransportError:
    return TransportError(
        f"no answer from {url}: {type(exc).__name__}; check the URL and that the service is up"
    )


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else str(parsed)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1-{MAX_BATCH} (the ledger's limit per call)")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def drafts_to_lines(drafts: Iterable[Mapping[str, Any] | Signed]) -> list[Line]:
    """Lines numbered from 1 for :func:`producers.submit.submit_lines`."""
    lines: list[Line] = []
    for number, draft in enumerate(drafts, 1):
        if isinstance(draft, Signed):
            lines.append(Line(number, None, draft))
        else:
            lines.append(Line(number, dict(draft)))
    return lines


# --- the clients ----------------------------------------------------------------


class _Base:
    def __init__(
        self,
        url: str | None,
        token: str | None,
        retry: RetryPolicy,
        rng: random.Random | None,
    ) -> None:
        self._url = graphql_url(url) if url else "/graphql"
        self._token = token
        self.retry = retry
        self._rng = rng or random.Random()

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({_safe_url(self._url)!r})"

    @property
    def url(self) -> str:
        return _safe_url(self._url)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


class LedgerClient(_Base):
    """A synchronous client. Pass ``url`` and ``token``, or an ``httpx.Client`` of your own.

    ``url``: the service (``https://host``) or its endpoint (``…/graphql``).
    With ``client``, relative URLs resolve against its ``base_url`` and it is
    not closed by :meth:`close`. ``transport`` (e.g. ``httpx.MockTransport``)
    is used for a client built here. ``sleep`` and ``rng`` are for tests.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if client is None and url is None:
            raise ValueError("LedgerClient needs a url (or an httpx.Client)")
        super().__init__(url, token, retry or RetryPolicy(), rng)
        self._owned = client is None
        self._http = client or httpx.Client(transport=transport, timeout=timeout)
        self._sleep = sleep

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    # -- plumbing

    def _post_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(self._url, json=payload, headers=self._headers())
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.url) from None
        return _answer(response, self._token)

    def _post(self, payload: dict[str, Any], policy: RetryPolicy) -> dict[str, Any]:
        for attempt in range(1, policy.attempts + 1):
            try:
                return self._post_once(payload)
            except RetryableError as exc:
                if attempt == policy.attempts:
                    raise _exhausted(exc, attempt) from None
                self._sleep(policy.delay(attempt - 1, exc.retry_after, self._rng))
        raise AssertionError("unreachable")

    # -- the API

    def query(
        self, text: str, variables: Mapping[str, Any] | None = None, *, retry: bool = False
    ) -> dict[str, Any]:
        """Run any GraphQL operation; returns its ``data``. ``retry``: only for reads."""
        payload: dict[str, Any] = {"query": text}
        if variables is not None:
            payload["variables"] = dict(variables)
        return self._post(payload, self.retry if retry else NO_RETRY)

    def record(
        self, events: Sequence[Signed | Mapping[str, Any]], *, atomic: bool = False
    ) -> list[RecordResult]:
        """One ``recordEvents`` call, no retry: one result per record, in order."""
        if not events:
            return []
        data = self._post(_record_payload(events, atomic), NO_RETRY)
        return _record_answer(data, len(events))

    def submit(
        self,
        events: Sequence[Signed | Mapping[str, Any]],
        *,
        batch_size: int = 500,
        atomic: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[RecordResult]:
        """Send ``events`` in batches, retrying failed requests; results in order.

        ``atomic``: all-or-nothing *per batch*. ``on_batch(n)`` is called after
        each batch of n records (for a progress bar). If a batch still fails
        after the retries, the exception says so; batches before it are stored
        (their results are lost with the exception: submit everything again,
        stored records answer ``existing=True``).
        """
        results: list[RecordResult] = []
        for batch in _batches(events, batch_size):
            data = self._post(_record_payload(batch, atomic), self.retry)
            results.extend(_record_answer(data, len(batch)))
            if on_batch is not None:
                on_batch(len(batch))
        return results

    def heads(self, lot_ids: Iterable[str]) -> dict[str, str]:
        """``{lot: head}`` for the lots that exist and the token may read."""
        wanted = sorted(set(lot_ids))
        heads: dict[str, str] = {}
        for chunk in _batches(wanted, HEADS_PER_QUERY):
            data = self._post(_heads_payload(chunk), self.retry)
            heads.update(_heads_answer(chunk, data))
        return heads

    def sign_and_submit(
        self,
        drafts: Sequence[Mapping[str, Any] | Signed] | list[Line],
        signer: Signer,
        *,
        batch_size: int = 500,
        atomic: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Line]:
        """Sign drafts (``{"type", "body", "id"?, "at"?, "parents"?}``) and submit them.

        Parents default to the lots' heads (read here, then predicted from the
        records signed before); drafts refused only because an earlier record
        they built on was refused are signed again and retried. Returns the
        lines, each with its ``result`` (``line.refusal`` for a refusal).
        """
        lines = _as_lines(drafts)
        for chunk in _batches(lines, batch_size):
            part = list(chunk)
            submit_lines(
                part,
                signer,
                lambda b: self.submit(b, batch_size=batch_size, atomic=atomic),
                self.heads,
                atomic=atomic,
            )
            if on_batch is not None:
                on_batch(len(part))
        return lines


class AsyncLedgerClient(_Base):
    """:class:`LedgerClient` on ``httpx.AsyncClient`` (e.g. with ``httpx.ASGITransport``)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if client is None and url is None:
            raise ValueError("AsyncLedgerClient needs a url (or an httpx.AsyncClient)")
        super().__init__(url, token, retry or RetryPolicy(), rng)
        self._owned = client is None
        self._http = client or httpx.AsyncClient(transport=transport, timeout=timeout)
        self._sleep = sleep

    async def __aenter__(self) -> AsyncLedgerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def _post_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(self._url, json=payload, headers=self._headers())
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.url) from None
        return _answer(response, self._token)

    async def _post(self, payload: dict[str, Any], policy: RetryPolicy) -> dict[str, Any]:
        for attempt in range(1, policy.attempts + 1):
            try:
                return await self._post_once(payload)
            except RetryableError as exc:
                if attempt == policy.attempts:
                    raise _exhausted(exc, attempt) from None
                await self._sleep(policy.delay(attempt - 1, exc.retry_after, self._rng))
        raise AssertionError("unreachable")

    async def query(
        self, text: str, variables: Mapping[str, Any] | None = None, *, retry: bool = False
    ) -> dict[str, Any]:
        """See :meth:`LedgerClient.query`."""
        payload: dict[str, Any] = {"query": text}
        if variables is not None:
            payload["variables"] = dict(variables)
        return await self._post(payload, self.retry if retry else NO_RETRY)

    async def record(
        self, events: Sequence[Signed | Mapping[str, Any]], *, atomic: bool = False
    ) -> list[RecordResult]:
        """See :meth:`LedgerClient.record`."""
        if not events:
            return []
        data = await self._post(_record_payload(events, atomic), NO_RETRY)
        return _record_answer(data, len(events))

    async def submit(
        self,
        events: Sequence[Signed | Mapping[str, Any]],
        *,
        batch_size: int = 500,
        atomic: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[RecordResult]:
        """See :meth:`LedgerClient.submit`."""
        results: list[RecordResult] = []
        for batch in _batches(events, batch_size):
            data = await self._post(_record_payload(batch, atomic), self.retry)
            results.extend(_record_answer(data, len(batch)))
            if on_batch is not None:
                on_batch(len(batch))
        return results

    async def heads(self, lot_ids: Iterable[str]) -> dict[str, str]:
        """See :meth:`LedgerClient.heads`."""
        wanted = sorted(set(lot_ids))
        heads: dict[str, str] = {}
        for chunk in _batches(wanted, HEADS_PER_QUERY):
            data = await self._post(_heads_payload(chunk), self.retry)
            heads.update(_heads_answer(chunk, data))
        return heads

    async def sign_and_submit(
        self,
        drafts: Sequence[Mapping[str, Any] | Signed] | list[Line],
        signer: Signer,
        *,
        batch_size: int = 500,
        atomic: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Line]:
        """See :meth:`LedgerClient.sign_and_submit`."""
        lines = _as_lines(drafts)

        async def append(batch: Sequence[Signed]) -> list[RecordResult]:
            return await self.submit(batch, batch_size=batch_size, atomic=atomic)

        for chunk in _batches(lines, batch_size):
            part = list(chunk)
            await submit_lines_async(part, signer, append, self.heads, atomic=atomic)
            if on_batch is not None:
                on_batch(len(part))
        return lines


def _as_lines(drafts: Sequence[Mapping[str, Any] | Signed] | list[Line]) -> list[Line]:
    if all(isinstance(d, Line) for d in drafts):
        return [d for d in drafts if isinstance(d, Line)]
    return drafts_to_lines(d for d in drafts if not isinstance(d, Line))
