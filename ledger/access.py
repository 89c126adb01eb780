"""Who may read what (DESIGN.md "API": access).

A participant reads its own lots and the lots it handled; a producer also
reads the lineage of what it placed on the market; a regulator (and the
operator) reads everything. Decided here, from values the caller passes in,
so the GraphQL layer holds no access rules of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

EVERYTHING = frozenset({"regulator", "operator"})


@dataclass(frozen=True, slots=True)
class Viewer:
    """The organisation behind an API token, and its registered roles."""

    org: str
    roles: frozenset[str]

    @property
    def reads_everything(self) -> bool:
        return bool(self.roles & EVERYTHING)

    @property
    def is_producer(self) -> bool:
        return "producer" in self.roles
