"""Limits on what one request may ask (DESIGN.md "The API": depth, aliases, tokens).

Each limit answers with its own code (schema/errors.py): QUERY_TOO_DEEP,
TOO_MANY_ALIASES, TOO_MANY_TOKENS, BATCH_TOO_LARGE, REQUEST_TOO_LARGE.

Where each one is checked:

- body size: schema/app.py, before the body is read (Content-Length, then a
  running count of the streamed bytes);
- query text: :class:`QueryLimits` refuses a text longer than
  ``max_query_chars`` (so the parse and validation caches below hold at most
  128 bounded texts) and has graphql-core's parser stop after ``max_tokens``
  tokens (``parse(max_tokens=...)``; comments count too);
- depth and aliases: two validation rules, :class:`DepthRule` and
  :class:`AliasRule`; introspection, which they skip, is bounded by
  graphql-core's ``MaxIntrospectionDepthRule`` (one of its specified rules:
  ``__schema { types { fields { type { fields … } } } }`` would otherwise
  grow with the schema's size at each level), its error coded QUERY_TOO_DEEP;
- batch size: the ``recordEvents`` resolver (schema/mutations.py).

Why our own two rules rather than strawberry's ``QueryDepthLimiter`` and
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

from ledger.store import MAX_BATCH
from schema.errors import ApiError


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask. Frozen and hashable: the rules are built once per value."""

    max_depth: int = 12  # nested field levels below the root (introspection fields excepted)
    max_aliases: int = 30  # aliased fields in the document, counted once per use
    max_tokens: int = 10_000  # GraphQL tokens in the query text, comments included
    max_query_chars: int = 256 * 1024  # query text length (pass big inputs as variables)
    max_body_bytes: int = 16 * 1024 * 1024  # HTTP request body
    max_batch: int = MAX_BATCH  # events in one recordEvents call

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


class AliasRule(ValidationRule):
    """TOO_MANY_ALIASES: the document uses more than ``max_aliases`` aliased fields."""

    max_aliases: ClassVar[int]

    def enter_document(self, *_args: Any) -> None:
        walk = _Aliases(_fragments(self.context))
        try:
            total = sum(
                walk.measure(op.selection_set)
                for op in self.context.document.definitions
                if isinstance(op, OperationDefinitionNode)
            )
        except RecursionError:
            total = self.max_aliases + 1
        if total > self.max_aliases:
            self.report_error(
                GraphQLError(
                    f"the document uses {total} aliased fields; at most {self.max_aliases} "
                    "are allowed: split it into several requests, or use a list field "
                    "(e.g. lots(filter: ...)) instead of many aliases",
                    extensions={"code": "TOO_MANY_ALIASES"},
                )
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
    """The depth and alias rules for these limits: the same classes on every call."""
    depth = type("DepthRule", (DepthRule,), {"max_depth": limits.max_depth})
    aliases = type("AliasRule", (AliasRule,), {"max_aliases": limits.max_aliases})
    return (depth, aliases)


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
        ctx.parse_options["max_tokens"] = limits.max_tokens
        ctx.validation_rules = validation_rules(limits)
        yield


DEFAULT_LIMITS = Limits()
