"""``recordEvents`` answered without graphql-core's per-record execution.

graphql-core executes a batch's answer field by field: each of 500
``RecordResult`` values is resolved to its union member and completed field
by field (about 40 µs a record on this machine, a fifth of what the server
spends on a record). But almost every ingest request is one document, sent
again and again with new variables — the SDK's ``RECORD_MUTATION``
(producers/client.py) or one like it. For such a document, an
:class:`IngestPlan` is made once: the document is parsed and validated with
every rule a request gets (``schema.limits.validation_rules``), and what the
answer holds for a ``Recorded`` and for a ``Rejected`` — response keys in
GraphQL's field-collection order (spec §6.3.2 CollectFields), aliases
included — is written down. A request then costs a look-up, the variables'
checks, the append, and a list of small dicts: the same JSON, key for key
and byte for byte, as the full execution (tests/test_ingest_plan.py sends
each request both ways and compares the bodies).

A plan is only made for the plain shape, and a request only takes it when
its variables are plain too; anything else goes the full way, which is the
one place errors are worded:

- one mutation operation, no fragment definitions, no directives anywhere;
- one root field, ``recordEvents`` (aliased or not), whose ``events`` is
  the one ``[SignedEvent!]!`` variable and whose ``atomic`` is absent, a
  boolean literal or a ``Boolean`` / ``Boolean!`` variable without a default;
- below it only leaf fields, ``__typename`` and inline fragments on
  ``Recorded``, ``Rejected`` or ``RecordResult``;
- at request time: ``events`` a JSON list of at most ``max_batch`` objects
  holding exactly the two strings ``envelope`` and ``signature``, ``atomic``
  a JSON boolean (or null/absent where the type allows), and the request's
  text checks (``check_request_text``) passing.

An exception from the append (``Overloaded``, ``StoreUnavailable``, a bug)
becomes the error graphql-core would make of it — located at the field,
``data: null`` — and goes through the same ``coded_errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from graphql import (
    BooleanValueNode,
    FieldNode,
    GraphQLError,
    InlineFragmentNode,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    TypeNode,
    VariableNode,
    located_error,
    parse,
    validate,
)
from strawberry.types import ExecutionResult

import schema.mutations as mutations
from ledger.errors import RecordRefused
from ledger.store import Appended, Result, Signed
from schema.context import Context
from schema.errors import ApiError, coded_errors
from schema.limits import Limits, check_request_text, validation_rules
from schema.scalars import serialize_long

MAX_PLANS = 64  # distinct documents remembered (plans and refusals alike)
# The fields a plan can answer; a field added to either type goes the full way until
# it is added here (tests/test_ingest_plan.py compares these with the schema).
RECORDED_FIELDS = frozenset({"__typename", "id", "hash", "seq", "existing"})
REJECTED_FIELDS = frozenset({"__typename", "id", "code", "message", "path"})


class _NotPlain(Exception):
    """The document is valid but not of the plain shape: the full execution serves it."""


@dataclass(frozen=True, slots=True)
class IngestPlan:
    key: str  # the response key of recordEvents
    node: FieldNode
    events: str  # the events variable's name
    atomic: bool | str  # a literal, or the name of a Boolean variable
    atomic_required: bool  # declared Boolean!
    recorded: tuple[tuple[str, str], ...]  # (response key, field name), in order
    rejected: tuple[tuple[str, str], ...]

    async def run(
        self, ctx: Context, query: str, operation_name: str | None, variables: Any
    ) -> ExecutionResult | None:
        """The answer, or None when the request is not plain (serve it the full way)."""
        if variables is not None and not isinstance(variables, dict):
            return None
        variables = variables or {}
        batch = _events(variables.get(self.events), ctx.limits.max_batch)
        if batch is None:
            return None
        atomic = self.atomic
        if isinstance(atomic, str):
            value = variables.get(atomic)
            if type(value) is bool:
                atomic = value
            elif value is None and not self.atomic_required:
                atomic = False  # absent or null: the argument's default, false
            else:
                return None
        try:
            check_request_text(query, operation_name, variables, ctx.limits)
        except ApiError:
            return None
        store, org, atomic_ = ctx.store, ctx.viewer.org, atomic
        try:
            results = await anyio.to_thread.run_sync(
                lambda: mutations.append_as(store, org, batch, atomic=atomic_)
            )
        except Exception as exc:  # what graphql-core does with a resolver's exception
            error = located_error(exc, [self.node], [self.key])
            return ExecutionResult(data=None, errors=coded_errors([error]))
        return ExecutionResult(data={self.key: self.answers(results)}, errors=None)

    def answers(self, results: Sequence[Result]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in results:
            if isinstance(r, Appended):
                values: dict[str, Any] = {
                    "__typename": "Recorded",
                    "id": r.id,
                    "hash": r.hash,
                    "seq": serialize_long(r.seq),
                    "existing": r.existing,
                }
                out.append({key: values[name] for key, name in self.recorded})
            else:
                out.append({key: _rejected(r, name) for key, name in self.rejected})
        return out


def _rejected(r: RecordRefused, name: str) -> Any:
    if name == "__typename":
        return "Rejected"
    if name == "id":
        return r.record_id
    return getattr(r, name)  # code, message, path


def _events(value: Any, max_batch: int) -> list[Signed] | None:
    if type(value) is not list or len(value) > max_batch:
        return None
    batch: list[Signed] = []
    for item in value:
        if type(item) is not dict or len(item) != 2:
            return None
        envelope, signature = item.get("envelope"), item.get("signature")
        if type(envelope) is not str or type(signature) is not str:
            return None
        batch.append(Signed(envelope, signature))
    return batch


class Plans:
    """Plans by (query text, operation name), for one :class:`Limits`."""

    def __init__(self, graphql_schema: Any, limits: Limits) -> None:
        self._schema = graphql_schema
        self._limits = limits
        self._plans: dict[tuple[str, str | None], IngestPlan | None] = {}

    def get(self, query: str, operation_name: str | None) -> IngestPlan | None:
        if "recordEvents" not in query:
            return None
        key = (query, operation_name)
        if key in self._plans:
            return self._plans[key]
        plan = self._make(query, operation_name)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _make(self, query: str, operation_name: str | None) -> IngestPlan | None:
        limits = self._limits
        if len(query) > limits.max_query_chars:
            return None
        try:
            document = parse(query, max_tokens=limits.max_tokens)
        except GraphQLError:
            return None
        if validate(self._schema, document, list(validation_rules(limits))):
            return None
        try:
            return _plan(document.definitions, operation_name)
        except _NotPlain:
            return None


def _plan(definitions: Sequence[Any], operation_name: str | None) -> IngestPlan:
    if len(definitions) != 1 or not isinstance(definitions[0], OperationDefinitionNode):
        raise _NotPlain
    op: OperationDefinitionNode = definitions[0]
    if op.operation != OperationType.MUTATION or op.directives:
        raise _NotPlain
    if operation_name is not None and (op.name is None or op.name.value != operation_name):
        raise _NotPlain
    declared: dict[str, str] = {}
    for vd in op.variable_definitions or ():
        if vd.directives or vd.default_value is not None:
            raise _NotPlain
        declared[vd.variable.name.value] = _type_text(vd.type)
    (field,) = _only(op.selection_set.selections)
    if not isinstance(field, FieldNode) or field.name.value != "recordEvents" or field.directives:
        raise _NotPlain
    args = {a.name.value: a.value for a in field.arguments or ()}
    events = args.pop("events", None)
    if not isinstance(events, VariableNode) or declared.get(events.name.value) != "[SignedEvent!]!":
        raise _NotPlain
    atomic: bool | str = False
    required = False
    if "atomic" in args:
        node = args.pop("atomic")
        if isinstance(node, BooleanValueNode):
            atomic = node.value
        elif isinstance(node, VariableNode) and declared.get(node.name.value) in (
            "Boolean",
            "Boolean!",
        ):
            atomic = node.name.value
            required = declared[atomic] == "Boolean!"
        else:
            raise _NotPlain
    if args or len(declared) != 1 + isinstance(atomic, str) or field.selection_set is None:
        raise _NotPlain
    selections = field.selection_set.selections
    recorded = _collect(selections, "Recorded", {})
    rejected = _collect(selections, "Rejected", {})
    if not (
        set(recorded.values()) <= RECORDED_FIELDS and set(rejected.values()) <= REJECTED_FIELDS
    ):
        raise _NotPlain
    return IngestPlan(
        key=field.alias.value if field.alias else "recordEvents",
        node=field,
        events=events.name.value,
        atomic=atomic,
        atomic_required=required,
        recorded=tuple(recorded.items()),
        rejected=tuple(rejected.items()),
    )


def _only(selections: Sequence[SelectionNode]) -> Sequence[SelectionNode]:
    if len(selections) != 1:
        raise _NotPlain
    return selections


def _type_text(node: TypeNode) -> str:
    if isinstance(node, NonNullTypeNode):
        return _type_text(node.type) + "!"
    if isinstance(node, ListTypeNode):
        return f"[{_type_text(node.type)}]"
    assert isinstance(node, NamedTypeNode)
    return node.name.value


def _collect(
    selections: Sequence[SelectionNode], typename: str, out: dict[str, str]
) -> dict[str, str]:
    """Response key -> field name for one union member, first appearance first
    (CollectFields; validation has already made same keys the same field)."""
    for node in selections:
        if node.directives:
            raise _NotPlain
        if isinstance(node, FieldNode):
            if node.arguments or node.selection_set is not None:
                raise _NotPlain
            out.setdefault(node.alias.value if node.alias else node.name.value, node.name.value)
        elif isinstance(node, InlineFragmentNode):
            condition = node.type_condition.name.value if node.type_condition else None
            if condition in (None, typename, "RecordResult"):
                _collect(node.selection_set.selections, typename, out)
            elif condition not in ("Recorded", "Rejected"):
                raise _NotPlain
        else:  # a fragment spread
            raise _NotPlain
    return out
