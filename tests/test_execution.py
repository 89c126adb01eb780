"""schema/execution.py: the short cut for lists of strings answers exactly as graphql-core's
long way does, and is taken only where it may be."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from graphql.execution.executor import Executor
from hypothesis import given, settings
from hypothesis import strategies as st

from schema.execution import LedgerExecutionContext

ITEMS: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def strings(self) -> list[str]:
        return ITEMS

    @strawberry.field
    def maybe_strings(self) -> list[str | None]:
        return ITEMS

    @strawberry.field
    def ids(self) -> list[strawberry.ID]:
        return ITEMS

    @strawberry.field
    def ints(self) -> list[int]:
        return ITEMS

    @strawberry.field
    def nested(self) -> list[list[str]]:
        return [ITEMS, ITEMS]

    @strawberry.field
    def from_tuple(self) -> list[str]:
        return tuple(ITEMS)  # type: ignore[return-value]


FAST = strawberry.Schema(query=Query, execution_context_class=LedgerExecutionContext)
SLOW = strawberry.Schema(query=Query)
FIELDS = ("strings", "maybeStrings", "ids", "ints", "nested", "fromTuple")


def answer(schema: strawberry.Schema, field: str) -> tuple[Any, list[Any]]:
    result = asyncio.run(schema.execute(f"{{ {field} }}"))
    return result.data, [(e.message, e.path) for e in result.errors or []]


def item_completions(monkeypatch: Any, schema: strawberry.Schema, field: str) -> int:
    calls = [0]
    original = Executor.complete_list_item_value

    def counted(self: Executor, *args: Any) -> bool:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(Executor, "complete_list_item_value", counted)
    answer(schema, field)
    monkeypatch.setattr(Executor, "complete_list_item_value", original)
    return calls[0]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.text(), st.none(), st.integers(), st.booleans(), st.floats()), max_size=8)
)
def test_the_short_cut_answers_as_the_long_way(items: list[Any]) -> None:
    ITEMS[:] = items
    for field in FIELDS:
        assert answer(FAST, field) == answer(SLOW, field), field


def test_a_list_of_strings_skips_the_items_and_nothing_else_does(monkeypatch: Any) -> None:
    ITEMS[:] = ["a", "b", "c"]
    assert item_completions(monkeypatch, FAST, "strings") == 0
    assert item_completions(monkeypatch, FAST, "ids") == 0
    assert item_completions(monkeypatch, FAST, "nested") == 2  # the outer list's two items
    assert item_completions(monkeypatch, FAST, "fromTuple") == 3  # only a list is copied
    assert item_completions(monkeypatch, SLOW, "strings") == 3
    ITEMS[:] = ["a", None, "c"]
    assert item_completions(monkeypatch, FAST, "maybeStrings") == 3
    ITEMS[:] = [1, 2]
    assert item_completions(monkeypatch, FAST, "ints") == 2
    ITEMS[:] = ["a", 1]  # String serializes 1 as "1": the long way does that
    assert item_completions(monkeypatch, FAST, "strings") == 2
    assert answer(FAST, "strings") == ({"strings": ["a", "1"]}, [])


def test_the_ledger_schema_uses_it() -> None:
    from schema.root import schema

    assert schema.execution_context_class is LedgerExecutionContext
