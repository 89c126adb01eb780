"""The ASGI app: ``POST /graphql`` (and GET for queries and GraphiQL), ``GET /health``,
and ``GET /flows``: the material-flows page (schema/static/flows/), which asks for a
token and calls POST /graphql with it like any client.

A request to /graphql, in order (each step's failure is a GraphQL error with
the contract's code and HTTP status, schema/errors.py):

1. ``GET`` from a browser without a query: the GraphiQL page (no token).
2. ``Content-Length`` over ``max_body_bytes``: 413 REQUEST_TOO_LARGE, before
   anything else is read.
3. ``Authorization: Bearer <token>`` → a :class:`ledger.access.Viewer`
   (schema/auth.py): 401 UNAUTHENTICATED, or 503 if the database is down;
   then the token's request rate (schema/rate_limit.py, when the app has a
   limit; ``rledger serve`` does by default): 429 RATE_LIMITED with Retry-After.
4. The body, counted as it streams in (413 as soon as it passes the limit,
   whatever Content-Length claimed), decoded as ``{"query", "variables"?,
   "operationName"?}`` (400 BAD_REQUEST otherwise). GET takes the same three
   from the query string and may only run queries.
5. ``schema.execute`` (schema/root.py) with a fresh :class:`Context`: limits,
   parse, validate, resolve — ``recordEvents`` goes on to
   schema/mutations.py and from there to ``Store.append`` in a worker thread.
6. The response: 200 with ``data``; or, with errors, the most severe error's
   status (503 adds ``Retry-After: 1``).

An exception that escapes all this is logged with a reference id and answered
500 INTERNAL "internal error; reference <id>" — no stack trace, and neither
the Authorization header nor the body is ever logged.

``rledger serve`` runs :func:`create_app_from_env` under uvicorn (``--factory``).
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from ledger.database import database_url
from ledger.merkle_log import Checkpointer, checkpoint_if_grown
from ledger.store import Store
from schema import log_redaction
from schema.auth import Authenticator, bearer_token
from schema.context import Context
from schema.errors import ApiError, error_body, http_status, internal
from schema.graphiql import STATIC_DIR, STATIC_PATH, graphiql_html
from schema.ingest_plan import Plans
from schema.limits import Limits
from schema.rate_limit import RateLimit, RateLimited, RateLimiter
from schema.root import schema

log = logging.getLogger("rledger.writer")

GRAPHIQL_HTML = graphiql_html()
_OPERATIONS = {"GET": OperationType.from_http("GET"), "POST": OperationType.from_http("POST")}
RETRY_AFTER_SECONDS = "1"
# The flows page (GET /flows): static files from the package; it asks for a token
# and calls POST /graphql with it, so it reads exactly what the token may read.
FLOWS_DIR = Path(__file__).resolve().parent / "static" / "flows"
FLOWS_HEADERS = {  # W3C CSP Level 3: scripts and data from this server only
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
DEFAULT_CHECKPOINT_EVERY = 60.0  # seconds between scheduled checkpoints (when the log grew)


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


class GraphQLEndpoint:
    """Serves /graphql for one store; ``create_app`` mounts it."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        authenticator: Authenticator,
        *,
        graphiql: bool,
        checkpointer: Checkpointer | None = None,
        rate_limiter: RateLimiter | None = None,
        ingest_plans: bool = True,
    ) -> None:
        self.store = store
        # recordEvents in its plain shape, without per-record GraphQL execution
        # (schema/ingest_plan.py): the same answers, key for key.
        self.plans = Plans(schema._schema, limits) if ingest_plans else None
        self.rate_limiter = rate_limiter
        self.limits = limits
        self.authenticator = authenticator
        self.graphiql = graphiql
        self.checkpointer = checkpointer

    async def handle(self, request: Request) -> Response:
        try:
            if request.method == "GET" and _wants_html(request):
                if self.graphiql:
                    return HTMLResponse(GRAPHIQL_HTML)
                raise ApiError("BAD_REQUEST", "GraphiQL is turned off; POST queries to /graphql")
            self._check_declared_size(request)
            authorization = request.headers.get("authorization")
            viewer = await self.authenticator.viewer(authorization)
            if self.rate_limiter is not None:  # per token, after authentication
                self.rate_limiter.check(bearer_token(authorization))
            operation = await self._read_operation(request)
            context = Context.for_viewer(
                self.store,
                viewer,
                request=request,
                limits=self.limits,
                checkpointer=self.checkpointer,
            )
            if request.method == "POST" and self.plans is not None:
                plan = self.plans.get(operation.query, operation.operation_name)
                if plan is not None:
                    planned = await plan.run(
                        context, operation.query, operation.operation_name, operation.variables
                    )
                    if planned is not None:
                        return _result_response(planned)
            result = await schema.execute(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
                allowed_operation_types=_OPERATIONS[request.method],
            )
            return _result_response(result)
        except ApiError as exc:
            return _error_response(exc)
        except Exception as exc:  # the last line of defence: never a stack trace
            return _error_response(internal(exc, f"{request.method} {request.url.path}"))

    def _check_declared_size(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise self._too_large()

    async def _read_body(self, request: Request) -> bytes:
        """The body, refused as soon as it passes the limit (chunked bodies declare no size)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> ApiError:
        return ApiError(
            "REQUEST_TOO_LARGE",
            f"the request body is over {self.limits.max_body_bytes} bytes: send the "
            f"events in smaller batches (at most {self.limits.max_batch} per call)",
        )

    async def _read_operation(self, request: Request) -> GraphQLRequest:
        if request.method == "GET":
            params = request.query_params
            variables = params.get("variables")
            return _operation(
                {
                    "query": params.get("query"),
                    "variables": _json(variables, "variables") if variables else None,
                    "operationName": params.get("operationName"),
                }
            )
        return _operation(_json(await self._read_body(request), "the request body"))


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "query" not in request.query_params and ("text/html" in accept or "*/*" in accept)


def _json(text: bytes | str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise ApiError(
            "BAD_REQUEST",
            f"{what} is not JSON: send "
            '{"query": "...", "variables": {...}} with Content-Type: application/json',
        ) from None


def _operation(data: Any) -> GraphQLRequest:
    if not isinstance(data, dict):
        raise ApiError(
            "BAD_REQUEST",
            'the request must be one JSON object {"query": "...", "variables": {...}}; '
            "batches of operations are not accepted (send a list of events to "
            "recordEvents instead)",
        )
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str):
        raise ApiError("BAD_REQUEST", 'the request has no query: send {"query": "..."}')
    if variables is not None and not isinstance(variables, dict):
        raise ApiError("BAD_REQUEST", "variables must be a JSON object (name to value)")
    if name is not None and not isinstance(name, str):
        raise ApiError("BAD_REQUEST", "operationName must be a string")
    return GraphQLRequest(query, variables, name)


def _result_response(result: ExecutionResult) -> Response:
    body: dict[str, Any] = {"data": result.data}
    if not result.errors:
        return JSONResponse(body)
    body["errors"] = [e.formatted for e in result.errors]
    status = http_status(result.errors)
    return JSONResponse(body, status_code=status, headers=_headers(status))


def _error_response(error: ApiError) -> Response:
    headers = _headers(error.status)
    if isinstance(error, RateLimited):
        headers = error.headers()
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


def _headers(status: int) -> dict[str, str]:
    if status == 503:
        return {"Retry-After": RETRY_AFTER_SECONDS}
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="rledger"'}  # RFC 6750 §3
    return {}


def create_app(
    store: Store,
    *,
    limits: Limits | None = None,
    graphiql: bool = True,
    token_ttl: float | None = None,
    close_store: bool = False,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: float | None = None,
    rate_limit: RateLimit | None = None,
    ingest_plans: bool = True,
) -> Starlette:
    """The API over ``store``. ``token_ttl``: seconds a token check is cached
    (revocation takes effect within it; schema/auth.py). ``close_store``: close
    the store when the app shuts down (for a store the app opened itself).
    ``checkpointer``: signs checkpoints with the ledger key, on demand (the
    ``checkpoint`` query) and, with ``checkpoint_every`` seconds, on a schedule
    while the app runs (only when the log has grown; ledger/merkle_log.py).
    ``rate_limit``: requests a second per API token (schema/rate_limit.py); None: no limit.
    ``ingest_plans``: answer plain ``recordEvents`` requests without per-record GraphQL
    execution (schema/ingest_plan.py; False: every request the full way, for tests)."""
    log_redaction.install()  # no query strings or tokens in the logs (schema/log_redaction.py)
    limits = limits or Limits()
    authenticator = (
        Authenticator(store) if token_ttl is None else Authenticator(store, ttl=token_ttl)
    )
    endpoint = GraphQLEndpoint(
        store,
        limits,
        authenticator,
        graphiql=graphiql,
        checkpointer=checkpointer,
        rate_limiter=RateLimiter(rate_limit) if rate_limit is not None else None,
        ingest_plans=ingest_plans,
    )

    async def health(_request: Request) -> Response:
        try:
            seq = await anyio.to_thread.run_sync(store.last_seq)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=_headers(503))
        return JSONResponse({"status": "ok", "seq": seq})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tasks:
                if checkpointer is not None and checkpoint_every:
                    tasks.start_soon(_checkpoint_schedule, checkpointer, checkpoint_every)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            stats = store.writer_stats()
            if stats.transactions:  # how the serial section was spent (docs/performance.md)
                log.info("%s", stats.describe())
            if close_store:
                store.close()

    return Starlette(
        routes=[
            Route("/graphql", endpoint.handle, methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/flows", _flows_page, methods=["GET"]),
            Mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="graphiql-assets"),
            Mount("/flows/", StaticFiles(directory=FLOWS_DIR), name="flows-assets"),
        ],
        lifespan=lifespan,
    )


async def _flows_page(_request: Request) -> Response:
    return FileResponse(FLOWS_DIR / "index.html", headers=FLOWS_HEADERS)


async def _checkpoint_schedule(checkpointer: Checkpointer, every: float) -> None:
    """Every ``every`` seconds, sign a checkpoint if the log has grown since the last one."""
    while True:
        await anyio.sleep(every)
        await anyio.to_thread.run_sync(checkpoint_if_grown, checkpointer)


def create_app_from_env() -> Starlette:
    """The uvicorn factory (``schema.app:create_app_from_env``, ``factory=True``):
    the store at ``RLEDGER_DB`` (a SQLite path or a database URL; default rledger.db).
    ``RLEDGER_GRAPHIQL=0`` turns the GraphiQL page off. ``RLEDGER_LEDGER_KEY``: the
    ledger's private key file (PEM), to sign checkpoints on demand and every
    ``RLEDGER_CHECKPOINT_EVERY`` seconds (default 60; 0: only on demand);
    ``RLEDGER_ORIGIN``: the log's name in them (default: see ledger/merkle_log.py).
    ``RLEDGER_RATE_LIMIT`` / ``RLEDGER_RATE_BURST``: requests a second per API token and
    the burst (default 100 and 200; ``RLEDGER_RATE_LIMIT=0`` turns it off;
    schema/rate_limit.py). ``RLEDGER_TOKEN_TTL``: seconds a good token is cached per
    process (default 5; 0: every request asks the database, so a revoked token is refused
    at once; schema/auth.py). ``RLEDGER_INGEST_PLANS=0``: answer every ``recordEvents``
    through graphql-core's full execution (schema/ingest_plan.py; the answers are the
    same, only slower)."""
    rate_limit = RateLimit.from_env()  # a bad setting fails before the store opens
    token_ttl = _seconds("RLEDGER_TOKEN_TTL")
    processes = int(os.environ.get("RLEDGER_VERIFY_PROCESSES", "1"))
    store = Store.open(database_url(os.environ.get("RLEDGER_DB")), verify_processes=processes)
    graphiql = os.environ.get("RLEDGER_GRAPHIQL", "1") not in ("0", "false", "no")
    checkpointer = None
    if key_file := os.environ.get("RLEDGER_LEDGER_KEY"):
        checkpointer = Checkpointer.from_key_file(
            store.engine, Path(key_file), origin=os.environ.get("RLEDGER_ORIGIN") or None
        )
    every = float(os.environ.get("RLEDGER_CHECKPOINT_EVERY", str(DEFAULT_CHECKPOINT_EVERY)))
    app = create_app(
        store,
        graphiql=graphiql,
        close_store=True,
        checkpointer=checkpointer,
        checkpoint_every=every or None,
        rate_limit=rate_limit,
        token_ttl=token_ttl,
        ingest_plans=os.environ.get("RLEDGER_INGEST_PLANS", "1") not in ("0", "false", "no"),
    )
    _freeze_startup_heap()
    return app


def _freeze_startup_heap() -> None:
    """Leave what the worker built to start (modules, the schema, SQLAlchemy's metadata:
    about 130,000 objects) out of the cyclic garbage collector's full collections.

    Each full collection walked them all, and took 80-110 ms in the middle of whichever
    request set it off: the p95 of ``recoveredContent`` with its proof was 165 ms against a
    p50 of 70 (tests/benchmarks/national.py; docs/performance.md). ``gc.freeze`` (CPython
    3.7+) moves them to a generation that is never collected; they live as long as the
    process anyway."""
    gc.collect()
    gc.freeze()


def _seconds(name: str) -> float | None:
    """A non-negative number of seconds from the environment variable ``name``, or None."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"{name}={text!r}: set it to a number of seconds (0 or more)")
    return value
