"""The schema's execution context: graphql-core's, with one short cut for long lists of strings.

graphql-core completes a list one item at a time (a path entry, ``complete_value``, the
scalar's ``serialize``): about 4 µs an item here. A proof's ``recordHashes`` holds
thousands of hashes, and completing them took about 20 ms of the 73 ms that
``recoveredContent { proof { recordHashes } }`` cost at 1,000,000 records
(tests/benchmarks/national.py). ``String`` and ``ID`` serialize a ``str`` as itself, so a
list of them whose items are all ``str`` completes to a copy of itself: the short cut
returns that copy, and anything else (another scalar, an object, a ``None``, a ``@stream``)
goes the long way. tests/test_execution.py holds both ways to the same answers.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
)
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Scalars whose serialize() gives back a str unchanged (graphql-core's specified scalars).
_STR_IDENTITY = (GraphQLString, GraphQLID)


class LedgerExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with :meth:`complete_list_value`'s short cut."""

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        item = return_type.of_type
        leaf = item.of_type if isinstance(item, GraphQLNonNull) else item
        if (
            leaf in _STR_IDENTITY
            and type(result) is list
            and all(type(x) is str for x in result)
            and self.get_stream_usage(field_details_list, path) is None
        ):
            return list(result)
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )
