"""The GraphQL schema: queries (schema/queries.py), ``recordEvents``, scalars, limits.

``schema`` is built once at import. Every request through it:

1. :class:`~schema.limits.QueryLimits` refuses an overlong query text and
   sets the parser's token limit and the depth/alias rules for the request's
   :class:`~schema.limits.Limits`;
2. strawberry's ``ParserCache`` and ``ValidationCache`` skip parsing and
   validating a query text seen recently (the limit rules are the same
   classes every time, so the cache key matches);
3. resolvers run; then :meth:`LedgerSchema.execute` gives every error its
   contract code and masks the unexpected ones (schema/errors.py).

Masking happens after execution rather than with strawberry's ``MaskErrors``,
which by default masks every error — validation and limit errors included —
and can't see exceptions raised by extensions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from schema.errors import ApiError, coded_errors
from schema.execution import LedgerExecutionContext
from schema.limits import QueryLimits
from schema.mutations import Mutation
from schema.queries import Query
from schema.scalars import SCALAR_MAP


class LedgerSchema(strawberry.Schema):
    """A strawberry schema whose results follow the error contract."""

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        try:
            result = await super().execute(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed_operation_types,
                operation_extensions,
            )
        except MissingQueryError:
            return _refused("BAD_REQUEST", 'the request has no query: send {"query": "..."}')
        except CannotGetOperationTypeError as exc:
            return _refused(
                "GRAPHQL_VALIDATION_FAILED",
                f"{exc.as_http_error_reason()}: name one of the document's operations "
                "in operationName",
            )
        except InvalidOperationTypeError as exc:
            return _refused(
                "BAD_REQUEST",
                f"{exc.operation_type.value} operations are not allowed with this method: "
                "send mutations with POST",
            )
        if result.errors:
            result.errors = coded_errors(result.errors)
        return result

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Nothing here: :func:`schema.errors.coded_errors` logs the unexpected errors,
        with the reference the client sees; the others are the client's business."""


def _refused(code: str, message: str) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[ApiError(code, message).as_graphql()])


schema = LedgerSchema(
    query=Query,
    mutation=Mutation,
    extensions=[QueryLimits, ParserCache, ValidationCache],
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    execution_context_class=LedgerExecutionContext,
)
