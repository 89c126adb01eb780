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
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, ValueNode
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
        if not isinstance(node, IntValueNode):
            raise ValueError(f"{name} must be an integer literal, e.g. 1500")
        return _integer(name, int(node.value), low, high)

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

SCALAR_MAP: dict[object, ScalarDefinition] = {Grams: GRAMS, Long: LONG}
