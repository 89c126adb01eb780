"""The API's two integer scalars (DESIGN.md "The API").

GraphQL's ``Int`` is 32 bits, too small for masses and sequence numbers. Both
scalars travel as plain JSON integers and stay within ±(2^53 − 1), the range
every JSON parser holds exactly (RFC 8259 §6; I-JSON, RFC 7493 §2.2):

- ``Grams``: a mass in integer grams, 0 ≤ g < 2^53;
- ``Long``: a signed integer, |n| ≤ 2^53 − 1 (sequence numbers, tree sizes).

Annotate fields with the ``NewType``\\s below (``mass_g: Grams``); the schema
maps them to their GraphQL scalars through :data:`SCALAR_MAP`
(``StrawberryConfig(scalar_map=...)``, see schema/root.py).

Parsing refuses booleans (``true`` is not 1), floats (even ``5.0``: masses
are integer grams, DESIGN.md "Records"), strings and out-of-range numbers,
each with a message that names the scalar and says what is expected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, ValueNode
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

Grams = NewType("Grams", int)
Long = NewType("Long", int)

MAX_SAFE = 2**53 - 1  # the largest integer a JSON number carries exactly (I-JSON)


def _integer(name: str, value: object, low: int, high: int) -> int:
    # bool is a subclass of int in Python: refuse it before the int check.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"{name} must be a JSON integer, not {_describe(value)}; "
            + ("masses are whole grams" if name == "Grams" else "send a whole number")
        )
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in {low}..{high}; got {value}")
    return value


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return f"the number {value!r} (not an integer)"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _literal(name: str, low: int, high: int) -> Callable[..., int]:
    """Literals written in the query text: only an integer literal is accepted."""

    def parse_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
        # A GraphQLError (strawberry's coercion error), not a ValueError: graphql-core
        # passes it on as the client's validation error, while a ValueError from a
        # literal surfaced as INTERNAL (found by tests/test_hostile_graphql.py;
        # tests/test_bug_scalar_literals_were_internal.py).
        if not isinstance(node, IntValueNode):
            raise StrawberryInputCoercionError(f"{name} must be an integer literal, e.g. 1500")
        try:
            return _integer(name, int(node.value), low, high)
        except ValueError as exc:
            raise StrawberryInputCoercionError(str(exc)) from None

    return parse_literal


def serialize_grams(value: object) -> int:
    return _integer("Grams", value, 0, MAX_SAFE)


def parse_grams(value: object) -> Grams:
    return Grams(_integer("Grams", value, 0, MAX_SAFE))


def serialize_long(value: object) -> int:
    return _integer("Long", value, -MAX_SAFE, MAX_SAFE)


def parse_long(value: object) -> Long:
    return Long(_integer("Long", value, -MAX_SAFE, MAX_SAFE))


GRAMS: ScalarDefinition = strawberry.scalar(
    name="Grams",
    description="A mass in integer grams: a JSON integer, 0 <= g < 2^53.",
    serialize=serialize_grams,
    parse_value=parse_grams,
    parse_literal=_literal("Grams", 0, MAX_SAFE),
)

LONG: ScalarDefinition = strawberry.scalar(
    name="Long",
    description="A signed integer beyond GraphQL's 32-bit Int: a JSON integer within ±(2^53 - 1).",
    serialize=serialize_long,
    parse_value=parse_long,
    parse_literal=_literal("Long", -MAX_SAFE, MAX_SAFE),
)


def parse_datetime(value: object) -> datetime:
    """strawberry's DateTime parser (ISO 8601, dateutil), and a time with an offset
    must lie within years 1-9999 once in UTC: ``0001-01-01T00:00:00+01:00`` parsed,
    then overflowed where a filter converts it to UTC (an INTERNAL error, found by
    tests/test_hostile_graphql.py; tests/test_bug_datetime_beyond_utc_range.py)."""
    try:
        parsed = DateTimeDefinition.parse_value(value)  # type: ignore[misc]
        assert isinstance(parsed, datetime)
        if parsed.utcoffset() is not None:
            parsed.astimezone(UTC)
    except (OverflowError, ValueError, StrawberryInputCoercionError):
        raise StrawberryInputCoercionError(
            f"DateTime {str(value)[:40]!r} lies outside years 1-9999 once in UTC, or is not "
            "a date and time: give e.g. 2026-11-20T08:15:00Z"
        ) from None
    return parsed


# The same name and description as strawberry's DateTime: schema.graphql is unchanged.
DATETIME: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description=DateTimeDefinition.description,
    serialize=datetime.isoformat,
    parse_value=parse_datetime,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {Grams: GRAMS, Long: LONG, datetime: DATETIME}
