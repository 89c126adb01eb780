"""The HTTP/GraphQL error contract (COMMON.md; DESIGN.md "The API").

A refused *record* is data (``Rejected`` in schema/mutations.py). Everything
else is a GraphQL error ``{"message", "extensions": {"code", ...}}`` whose code
fixes the HTTP status:

====  ========================================================  =========
HTTP  code                                                      retryable
====  ========================================================  =========
401   UNAUTHENTICATED                                           no
413   REQUEST_TOO_LARGE                                         no
400   BAD_REQUEST (body not a JSON object with a query, …)      no
400   GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED           no
400   QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS         no
400   QUERY_TOO_COSTLY (fields with every page full, limits.py) no
400   BATCH_TOO_LARGE                                           no
400   BAD_USER_INPUT (a read argument out of range; names it)   no
429   RATE_LIMITED (per token; Retry-After; rate_limit.py)      yes
503   OVERLOADED, STORE_UNAVAILABLE (header Retry-After: 1)     yes
500   INTERNAL ("internal error; reference <id>")               yes
====  ========================================================  =========

:func:`coded_errors` gives every error of a result its code. Errors the
client caused keep their message; an unexpected exception (or any error we
cannot place) is replaced by INTERNAL with a reference id, and logged with
that id and its traceback — never the request's headers or variables.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Sequence

from graphql import GraphQLError, GraphQLSyntaxError
from graphql.validation.validate import ValidationAbortedError
from sqlalchemy.exc import StatementError

from ledger.errors import Overloaded, StoreUnavailable

log = logging.getLogger("rledger.api")

STATUS: dict[str, int] = {
    "UNAUTHENTICATED": 401,
    "REQUEST_TOO_LARGE": 413,
    "BAD_REQUEST": 400,
    "GRAPHQL_PARSE_FAILED": 400,
    "GRAPHQL_VALIDATION_FAILED": 400,
    "QUERY_TOO_DEEP": 400,
    "TOO_MANY_ALIASES": 400,
    "QUERY_TOO_COSTLY": 400,
    "TOO_MANY_TOKENS": 400,
    "BATCH_TOO_LARGE": 400,
    "BAD_USER_INPUT": 400,
    "RATE_LIMITED": 429,
    "OVERLOADED": 503,
    "STORE_UNAVAILABLE": 503,
    "INTERNAL": 500,
}
RETRYABLE = frozenset({"RATE_LIMITED", "OVERLOADED", "STORE_UNAVAILABLE", "INTERNAL"})

# graphql-core's wording when parse(max_tokens=...) stops, and when a document
# nests deeper than the parser's recursion allows (pinned by tests).
_TOKEN_LIMIT = re.compile(r"Document contains more than \d+ tokens")
_NESTED_TOO_DEEPLY = re.compile(r"nested too deeply", re.IGNORECASE)


class ApiError(Exception):
    """An error the client can act on, with its contract code.

    Raise it from a resolver (or anywhere before execution) and the client
    gets ``message`` and ``extensions.code``; the HTTP status follows the code
    (:data:`STATUS`; 400 for a code not listed there).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    def extensions(self) -> dict[str, object]:
        ext: dict[str, object] = {"code": self.code}
        if self.retryable:
            ext["retryable"] = True
        return ext

    def as_graphql(self, like: GraphQLError | None = None) -> GraphQLError:
        """This error as a GraphQL error, at the location and path of ``like``."""
        return GraphQLError(
            self.message,
            like.nodes if like else None,
            like.source if like else None,
            like.positions if like else None,
            like.path if like else None,
            original_error=self,
            extensions=self.extensions(),
        )


UNAUTHENTICATED_MESSAGE = (
    "missing, malformed, unknown or revoked API token: send the header "
    "`Authorization: Bearer <token>` with a token from `rledger token create --org ID`"
)


def unauthenticated() -> ApiError:
    return ApiError("UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE)


def internal(exc: BaseException | None, where: str, detail: str = "") -> ApiError:
    """Log an unexpected failure under a fresh reference; the client's error names it."""
    ref = secrets.token_hex(6)
    if exc is not None:
        _hide_sql_parameters(exc)
        log.error(
            "internal error %s at %s: %s",
            ref,
            where,
            type(exc).__name__,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    else:
        log.error("internal error %s at %s: %s", ref, where, detail)
    return ApiError(
        "INTERNAL",
        f"internal error; reference {ref} (the ledger's operator can look it up in "
        "the server log; retrying the same request is safe)",
    )


def _hide_sql_parameters(exc: BaseException) -> None:
    """SQLAlchemy prints a failed statement's parameters (envelope bytes, token
    hashes) in its message; the log gets the statement without them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StatementError):
            current.hide_parameters = True
        current = current.__cause__ or current.__context__


def code_of(error: GraphQLError) -> str | None:
    ext = error.extensions or {}
    code = ext.get("code")
    return code if isinstance(code, str) else None


def coded_errors(errors: Sequence[GraphQLError]) -> list[GraphQLError]:
    """Every error with its contract code; unexpected ones masked and logged.

    Returns new error objects: validation errors may come from
    ``ValidationCache``, shared by every request that sent the same query.
    """
    return [_coded(e) for e in errors]


def _coded(error: GraphQLError) -> GraphQLError:
    if code_of(error) is not None and not isinstance(error.original_error, Exception):
        return error  # one of ours already (a limit rule's error)
    original = error.original_error
    if isinstance(original, ApiError):
        return original.as_graphql(error)
    if isinstance(original, Overloaded):
        return ApiError("OVERLOADED", str(original)).as_graphql(error)
    if isinstance(original, StoreUnavailable):
        return ApiError("STORE_UNAVAILABLE", str(original)).as_graphql(error)
    if isinstance(error, GraphQLSyntaxError):
        return _syntax(error)
    if isinstance(error, ValidationAbortedError):  # too many errors, or a recursion limit
        return _with_code(
            error,
            "GRAPHQL_VALIDATION_FAILED",
            f"{error.message} The query is too big or too repetitive to check (e.g. "
            "hundreds of copies of one field, or deeply nested fragments): simplify it.",
        )
    if error.path is None and (original is None or isinstance(original, GraphQLError)):
        # Validation, or a variable that did not coerce to its type.
        return _with_code(error, "GRAPHQL_VALIDATION_FAILED")
    if error.path is not None and isinstance(original, GraphQLError):
        # A resolver raised a GraphQLError on purpose: its message is for the client.
        return _with_code(error, code_of(original) or "BAD_REQUEST")
    where = ".".join(str(p) for p in error.path) if error.path else "the operation"
    return internal(original, where, error.message).as_graphql(error)


def _syntax(error: GraphQLSyntaxError) -> GraphQLError:
    if _TOKEN_LIMIT.search(error.message):
        return _with_code(
            error,
            "TOO_MANY_TOKENS",
            f"{error.message} Send a shorter query; pass large inputs (such as a batch "
            "of events) as variables.",
        )
    if _NESTED_TOO_DEEPLY.search(error.message):
        return _with_code(error, "QUERY_TOO_DEEP")
    return _with_code(error, "GRAPHQL_PARSE_FAILED")


def _with_code(error: GraphQLError, code: str, message: str | None = None) -> GraphQLError:
    return GraphQLError(
        message or error.message,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code},
    )


def http_status(errors: Iterable[GraphQLError]) -> int:
    """The status of a response with these (coded) errors: the most severe one's."""
    return max((STATUS.get(code_of(e) or "INTERNAL", 400) for e in errors), default=200)


def error_body(error: ApiError) -> dict[str, object]:
    """The JSON body for an error raised before any GraphQL ran (401, 413, 400)."""
    return {"errors": [{"message": error.message, "extensions": error.extensions()}]}
