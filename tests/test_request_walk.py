"""schema/limits.py walks every request's variables twice over in the worst case: a fast
walk without paths (every ``recordEvents`` body goes through it) and, only when something
is wrong, the walk that names where. They must stop at the same first fault: the answer is
the one the naming walk alone would give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schema.errors import ApiError
from schema.limits import Limits, _walk_naming, check_request_text

_text = st.text(alphabet=st.sampled_from(["a", "é", "\ud800", "\udfff", "z", "0"]), max_size=3)
_values = st.recursive(
    st.none() | st.integers() | st.booleans() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=30,
)


def _answer(fn: Any, *args: Any) -> tuple[str, str] | None:
    try:
        fn(*args)
    except ApiError as exc:
        return exc.code, exc.message
    return None


@settings(max_examples=400, deadline=None)
@given(variables=st.dictionaries(_text, _values, max_size=4), budget=st.integers(1, 40))
def test_the_fast_walk_answers_as_the_naming_walk(variables: dict[str, Any], budget: int) -> None:
    limits = Limits(max_variable_values=budget)
    assert _answer(check_request_text, "{ a }", None, variables, limits) == _answer(
        _walk_naming, variables, limits
    )
