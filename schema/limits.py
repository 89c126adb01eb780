"""Limits on what one request may ask (DESIGN.md "The API": depth, aliases, tokens).

Each limit answers with its own code (schema/errors.py): QUERY_TOO_DEEP,
TOO_MANY_ALIASES, QUERY_TOO_COSTLY, TOO_MANY_TOKENS, BATCH_TOO_LARGE,
REQUEST_TOO_LARGE.
A request whose text is not Unicode (a lone surrogate) is BAD_REQUEST.

Where each one is checked:

- body size: schema/app.py, before the body is read (Content-Length, then a
  running count of the streamed bytes);
- query text: :class:`QueryLimits` refuses a text longer than
  ``max_query_chars`` (so the parse and validation caches below hold at most
  128 bounded texts) and has graphql-core's parser stop after ``max_tokens``
  tokens (``parse(max_tokens=...)``; comments count too);
- depth, aliases and cost: three validation rules, :class:`DepthRule`,
  :class:`AliasRule` and :class:`CostRule`; introspection, which the first
  two skip, is bounded by graphql-core's ``MaxIntrospectionDepthRule`` (one
  of its specified rules: ``__schema { types { fields { type { fields … } } } }``
  would otherwise grow with the schema's size at each level), its error coded
  QUERY_TOO_DEEP;
- cost (:class:`CostRule`): the fields a query may return, counted as if every
  page came back full: a field costs 1 plus its selection's cost times its
  page size (``first``: its literal value, at most ``MAX_PAGE``; ``MAX_PAGE``
  when it is a variable, which validation cannot see; ``DEFAULT_PAGE`` when
  absent; 1 for a field without ``first``). Thirty aliased
  ``lots(first: 500)`` pages of 20 fields each passed the depth and alias
  limits and took 15-70 s and 180 MB (found by tests/test_query_limits.py;
  tests/test_bug_wide_aliased_pages.py); they cost 360,030 against
  ``max_cost`` 50,000 (one such page: 12,001). Lists without ``first`` are
  bounded by their own caps (heads 5,000 lots, lineage 5,000 lots) and
  counted once;
- variables: :class:`QueryLimits` counts their JSON values (every list
  item and object member, at every level) and refuses more than
  ``max_variable_values`` (REQUEST_TOO_LARGE) before graphql-core coerces
  them: coercion costs about 10 µs a value, so the 1,000,000-item list a
  16 MiB body holds took 7-15 s of CPU before its resolver said no (found by
  tests/test_query_limits.py; tests/test_bug_huge_variable_lists.py). The
  same walk refuses a string or member name holding a lone UTF-16
  surrogate (``"\\ud800"`` is valid JSON but not Unicode text; I-JSON,
  RFC 7493 §2.1, forbids it): neither the database drivers nor the UTF-8
  response could encode it, and it came back as a 500
  (tests/test_bug_lone_surrogate_in_request.py);
- batch size: the ``recordEvents`` resolver (schema/mutations.py).

Why our own rules rather than strawberry's ``QueryDepthLimiter`` and
``MaxAliasesLimiter`` (measured on this 2-core machine, strawberry 0.341):

- they build a new rule class on every construction, so per-request
  extensions make every request's rule tuple new and strawberry's
  ``ValidationCache`` (keyed on the rules) never hits: 200 requests of a
  20-field ``lots`` query were validated 200 times (about 8 ms each) instead
  of once;
- their errors carry no code;
- the depth walk revisits a fragment at every spread: 20 fragments that each
  spread the next twice (a 300-token query) took 11 s of CPU; ours, 2 ms.

Ours are built once per :class:`Limits` (:func:`limit_rules` is cached),
measure each fragment once, and tag their errors with the contract's codes.
:class:`QueryLimits` sets the whole rule tuple, the same object for every
request with the same limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import (
    ASTValidationRule,
    ValidationContext,
    ValidationRule,
    specified_rules,
)
from graphql.validation.rules.max_introspection_depth_rule import MaxIntrospectionDepthRule
from strawberry.extensions import SchemaExtension

from ledger.queries import DEFAULT_PAGE, MAX_PAGE
from ledger.store import MAX_BATCH
from schema.errors import ApiError


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask. Frozen and hashable: the rules are built once per value."""

    max_depth: int = 12  # nested field levels below the root (introspection fields excepted)
    max_aliases: int = 30  # aliased fields in the document, counted once per use
    max_cost: int = 50_000  # fields a query may return with every page full (CostRule)
    max_tokens: int = 10_000  # GraphQL tokens in the query text, comments included
    max_query_chars: int = 256 * 1024  # query text length (pass big inputs as variables)
    max_body_bytes: int = 16 * 1024 * 1024  # HTTP request body
    max_batch: int = MAX_BATCH  # events in one recordEvents call
    # JSON values in the variables: a full batch (5,000 events of two strings) is 15,001
    max_variable_values: int = 50_000

    def __post_init__(self) -> None:
        if self.max_batch > MAX_BATCH:
            raise ValueError(f"max_batch may be at most the ledger's MAX_BATCH ({MAX_BATCH})")


def _fragments(context: ValidationContext) -> dict[str, FragmentDefinitionNode]:
    return {
        d.name.value: d
        for d in context.document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }


def _operation_name(node: OperationDefinitionNode) -> str:
    return f"operation {node.name.value!r}" if node.name else "the operation"


class _FragmentWalk:
    """Folds a measure over a selection set, computing each fragment once.

    A fragment spread that is unknown or part of a cycle counts 0 here:
    ``KnownFragmentNamesRule`` and ``NoFragmentCyclesRule`` report those.
    """

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, int] = {}
        self.visiting: set[str] = set()

    def spread(self, node: FragmentSpreadNode) -> int:
        name = node.name.value
        if name in self.memo:
            return self.memo[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.visiting:
            return 0
        self.visiting.add(name)
        try:
            value = self.memo[name] = self.measure(fragment.selection_set)
        finally:
            self.visiting.discard(name)
        return value

    def measure(self, selection_set: SelectionSetNode) -> int:
        raise NotImplementedError


class _Depth(_FragmentWalk):
    def measure(self, selection_set: SelectionSetNode) -> int:
        """Fields on the longest path below this selection set."""
        deepest = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                if node.name.value.startswith("__"):
                    continue  # introspection: bounded by MaxIntrospectionDepthRule
                depth = 1 + (self.measure(node.selection_set) if node.selection_set else 0)
            elif isinstance(node, InlineFragmentNode):
                depth = self.measure(node.selection_set)
            else:
                assert isinstance(node, FragmentSpreadNode)
                depth = self.spread(node)
            deepest = max(deepest, depth)
        return deepest


class _Aliases(_FragmentWalk):
    def measure(self, selection_set: SelectionSetNode) -> int:
        """Aliased fields in this selection set, each fragment counted once per spread."""
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += (1 if node.alias else 0) + (
                    self.measure(node.selection_set) if node.selection_set else 0
                )
            elif isinstance(node, InlineFragmentNode):
                total += self.measure(node.selection_set)
            else:
                assert isinstance(node, FragmentSpreadNode)
                total += self.spread(node)
        return total


class _Cost(_FragmentWalk):
    def measure(self, selection_set: SelectionSetNode) -> int:
        """Fields this selection set may return, every page full."""
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                below = self.measure(node.selection_set) if node.selection_set else 0
                total += 1 + _page_size(node) * below
            elif isinstance(node, InlineFragmentNode):
                total += self.measure(node.selection_set)
            else:
                assert isinstance(node, FragmentSpreadNode)
                total += self.spread(node)
        return total


def _page_size(node: FieldNode) -> int:
    """How many items a field's ``first`` argument may bring back (1 without one)."""
    for arg in node.arguments or ():
        if arg.name.value != "first":
            continue
        if isinstance(arg.value, IntValueNode):
            return max(0, min(int(arg.value.value), MAX_PAGE))
        if isinstance(arg.value, NullValueNode):
            return DEFAULT_PAGE
        return MAX_PAGE  # a variable: its value is not known when the query is validated
    return DEFAULT_PAGE if node.name.value in PAGED_FIELDS else 1


# Fields with a ``first`` argument (default DEFAULT_PAGE, at most MAX_PAGE; ledger/queries.py).
PAGED_FIELDS = frozenset({"lots", "events", "refusals", "records"})


class DepthRule(ValidationRule):
    """QUERY_TOO_DEEP: an operation nests fields more than ``max_depth`` levels."""

    max_depth: ClassVar[int]

    def enter_document(self, *_args: Any) -> None:
        walk = _Depth(_fragments(self.context))
        for op in self.context.document.definitions:
            if not isinstance(op, OperationDefinitionNode):
                continue
            try:
                depth = walk.measure(op.selection_set) - 1  # the root fields are level 0
            except RecursionError:  # a chain of thousands of fragments
                depth = self.max_depth + 1
            if depth > self.max_depth:
                self.report_error(
                    GraphQLError(
                        f"{_operation_name(op)} nests fields {depth} levels deep below the "
                        f"root; at most {self.max_depth} are allowed: ask for the deeper "
                        "part in a second query (from the ids the first one returns)",
                        op,
                        extensions={"code": "QUERY_TOO_DEEP"},
                    )
                )


def _document_total(context: Any, walk: Any, limit: int) -> int:
    """``walk.measure`` summed over the document's operations; past ``limit`` when the
    document nests too deeply to walk."""
    try:
        return sum(
            walk.measure(op.selection_set)
            for op in context.document.definitions
            if isinstance(op, OperationDefinitionNode)
        )
    except RecursionError:
        return limit + 1


class _TotalRule(ValidationRule):
    """A limit on a count summed over the document's operations: past ``limit``, one error
    with ``code`` and the text :meth:`advice` gives. The walker counts one operation."""

    limit: ClassVar[int]
    code: ClassVar[str]
    walker: ClassVar[type[_Aliases] | type[_Cost]]

    def advice(self, total: int) -> str:
        raise NotImplementedError

    def enter_document(self, *_args: Any) -> None:
        total = _document_total(self.context, self.walker(_fragments(self.context)), self.limit)
        if total > self.limit:
            self.report_error(GraphQLError(self.advice(total), extensions={"code": self.code}))


class AliasRule(_TotalRule):
    """TOO_MANY_ALIASES: the document uses more than ``limit`` aliased fields."""

    code = "TOO_MANY_ALIASES"
    walker = _Aliases

    def advice(self, total: int) -> str:
        return (
            f"the document uses {total} aliased fields; at most {self.limit} are allowed: "
            "split it into several requests, or use a list field (e.g. lots(filter: ...)) "
            "instead of many aliases"
        )


class CostRule(_TotalRule):
    """QUERY_TOO_COSTLY: the document may return more than ``limit`` fields."""

    code = "QUERY_TOO_COSTLY"
    walker = _Cost

    def advice(self, total: int) -> str:
        return (
            f"the document may return {total} fields, counting every page as full (first, "
            f"or {DEFAULT_PAGE} when it is left out); at most {self.limit} are allowed: ask "
            "for fewer fields, smaller pages (first: ...) or fewer aliased lists, and page "
            "on with after"
        )


class IntrospectionDepthRule(MaxIntrospectionDepthRule):
    """graphql-core's recommended rule, its error tagged QUERY_TOO_DEEP."""

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(
            GraphQLError(
                "the introspection query nests its lists (fields, interfaces, "
                "possibleTypes, inputFields) too deeply; ask for the schema with the "
                "standard introspection query, or download schema.graphql",
                error.nodes,
                extensions={"code": "QUERY_TOO_DEEP"},
            )
        )


@cache
def limit_rules(limits: Limits) -> tuple[type[ASTValidationRule], ...]:
    """The depth, alias and cost rules for these limits: the same classes on every call."""
    depth = type("DepthRule", (DepthRule,), {"max_depth": limits.max_depth})
    aliases = type("AliasRule", (AliasRule,), {"limit": limits.max_aliases})
    cost = type("CostRule", (CostRule,), {"limit": limits.max_cost})
    return (depth, aliases, cost)


@cache
def validation_rules(limits: Limits) -> tuple[type[ASTValidationRule], ...]:
    """Every rule a request is validated with: the specification's (graphql-core's
    ``specified_rules``, whose ``MaxIntrospectionDepthRule`` is swapped for the coded
    one) and the limits'. One tuple per :class:`Limits`, so ``ValidationCache``
    finds a query it validated before."""
    spec = tuple(
        IntrospectionDepthRule if rule is MaxIntrospectionDepthRule else rule
        for rule in specified_rules
    )
    return spec + limit_rules(limits)


class QueryLimits(SchemaExtension):
    """Applies the request's :class:`Limits` (``info.context.limits``; the defaults
    when the context has none) before parsing and validation.

    List it before strawberry's ``ParserCache`` and ``ValidationCache``: they
    read the parse options and validation rules this sets. It replaces the
    rules (strawberry's default is graphql-core's ``specified_rules``): an
    extension that adds rules must come after it.
    """

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        limits = getattr(ctx.context, "limits", None) or DEFAULT_LIMITS
        query = ctx.query or ""
        if len(query) > limits.max_query_chars:
            raise ApiError(
                "TOO_MANY_TOKENS",
                f"the query text is {len(query)} characters long; at most "
                f"{limits.max_query_chars} are allowed: pass large inputs (such as a batch "
                "of events) as variables, not inline in the query",
            )
        check_request_text(query, ctx.operation_name, ctx.variables, limits)
        ctx.parse_options["max_tokens"] = limits.max_tokens
        ctx.validation_rules = validation_rules(limits)
        yield


# A UTF-16 surrogate code point: in a str decoded from JSON it is always a lone one
# (json.loads joins an escaped pair into one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_request_text(
    query: str, operation_name: str | None, variables: dict[str, Any] | None, limits: Limits
) -> None:
    """Refuse variables with more than ``limits.max_variable_values`` JSON values
    (REQUEST_TOO_LARGE), and a lone surrogate in the query, the operation name or
    any string or member name of the variables (BAD_REQUEST, naming where).

    The walk stops at the limit, so it costs at most that many steps whatever
    the body holds; it runs before graphql-core coerces the variables."""
    if _SURROGATE.search(query):
        raise _not_unicode("the query")
    if operation_name is not None and _SURROGATE.search(operation_name):
        raise _not_unicode("operationName")
    if not variables:
        return
    if _values_ok(variables, limits):
        return
    _walk_naming(variables, limits)  # raises, naming where
    raise _not_unicode("the variables")  # not reached: the two walks see the same


def _values_ok(variables: dict[str, Any], limits: Limits) -> bool:
    """The walk without paths (the hot path: every ``recordEvents`` body goes through it).
    True if nothing is wrong; raises REQUEST_TOO_LARGE as :func:`_walk_naming` would; False
    if there is a lone surrogate (then :func:`_walk_naming` finds it again, naming where).
    It visits values in the same order, so both stop at the same first fault."""
    budget = limits.max_variable_values
    stack: list[Any] = [variables]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return False
            continue
        if not isinstance(value, (dict, list)):
            continue
        budget -= len(value)  # counted before the members are looked at
        if budget < 0:
            raise _too_many(limits)
        if isinstance(value, list):
            extend(value)
            continue
        for name in value:
            if not name.isascii() and _SURROGATE.search(name):
                return False
        extend(value.values())
    return True


def _walk_naming(variables: dict[str, Any], limits: Limits) -> None:
    budget = limits.max_variable_values  # members and items, at every level
    stack: list[tuple[str, Any]] = [("variables", variables)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _not_unicode(path)
            continue
        if not isinstance(value, (dict, list)):
            continue
        budget -= len(value)  # counted before the members are looked at
        if budget < 0:
            raise _too_many(limits)
        if isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
            continue
        for name, member in value.items():
            if _SURROGATE.search(name):
                raise _not_unicode(f"a member name in {path}")
            stack.append((f"{path}.{name[:64]}", member))


def _too_many(limits: Limits) -> ApiError:
    return ApiError(
        "REQUEST_TOO_LARGE",
        f"the variables hold more than {limits.max_variable_values} values (list "
        "items, object members and scalars, counted together): send at most "
        f"{limits.max_batch} events per recordEvents call, and split long lists",
    )


def _not_unicode(where: str) -> ApiError:
    return ApiError(
        "BAD_REQUEST",
        f"{where} holds a lone UTF-16 surrogate (an escape such as \\ud800 without its "
        "pair), which is not Unicode text (I-JSON, RFC 7493 §2.1): send valid UTF-8",
    )


DEFAULT_LIMITS = Limits()
