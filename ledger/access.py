"""Who may read what (DESIGN.md "API": access).

The policy, decided here and nowhere else:

* **regulators and the operator** read everything;
* **every participant** reads a lot it holds now (its custodian), a lot in
  transit to it, and a lot it *handled*: it signed a record that changed the
  lot (``lot_records``: a create, transfer, receive, split, merge, transform,
  status, dispose or void of that lot);
* **a producer** (role ``producer``) also reads the lineage of the lots it
  created — those whose creating record it signed, i.e. what it placed on
  the market — upstream and downstream along ``lot_edges``, as far as the
  lineage goes, never through a ``void`` lot (siblings are not reached: the
  walk goes only up from a lot it created, or only down);
* an **event** (a record) is readable by the organisation that signed it and
  by anyone who may read a lot the record changed;
* **organisations** (ids, names, roles, regions) are readable by every
  authenticated participant.

Anything else answers exactly as if it did not exist, so existence does not
leak. This module holds the decisions as pure functions of values the caller
passes in (:func:`read_scope`, :func:`may_read_lot`, :func:`may_read_event`);
``ledger.queries`` turns the same :class:`ReadScope` into SQL so that lists
are filtered in the database, and the tests check both agree.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum

from ledger.errors import RecordRefused

EVERYTHING = frozenset({"regulator", "operator"})
PRODUCER = "producer"


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
        return PRODUCER in self.roles


class Ground(StrEnum):
    """A reason a participant may read a lot."""

    CUSTODIAN = "custodian"  # it holds the lot now
    IN_TRANSIT_TO = "in_transit_to"  # the lot is on its way to it
    HANDLED = "handled"  # it signed a record that changed the lot
    PRODUCER_LINEAGE = "producer_lineage"  # lineage of a lot it created (producers)


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What one viewer may read, in the form the SQL layer needs.

    ``everything``: no filter at all. Otherwise a lot is readable on any of
    ``grounds`` for ``org``.
    """

    org: str
    everything: bool
    grounds: frozenset[Ground]


def read_scope(viewer: Viewer) -> ReadScope:
    """The viewer's read scope: the one place roles turn into read rights."""
    if viewer.reads_everything:
        return ReadScope(viewer.org, True, frozenset(Ground))
    grounds = {Ground.CUSTODIAN, Ground.IN_TRANSIT_TO, Ground.HANDLED}
    if viewer.is_producer:
        grounds.add(Ground.PRODUCER_LINEAGE)
    return ReadScope(viewer.org, False, frozenset(grounds))


@dataclass(frozen=True, slots=True)
class LotFacts:
    """What the decision about one lot depends on.

    ``actors``: every organisation that signed a record which changed the lot.
    ``in_lineage_of``: producers in whose lineage set the lot lies (see the
    module docstring: upstream or downstream of a lot the producer created).
    """

    custodian: str
    transit_to: str | None
    actors: Set[str]
    in_lineage_of: Set[str] = frozenset()


def lot_grounds(scope: ReadScope, facts: LotFacts) -> frozenset[Ground]:
    """The grounds on which ``scope`` may read the lot (empty: hidden)."""
    org = scope.org
    found = set()
    if facts.custodian == org:
        found.add(Ground.CUSTODIAN)
    if facts.transit_to == org:
        found.add(Ground.IN_TRANSIT_TO)
    if org in facts.actors:
        found.add(Ground.HANDLED)
    if org in facts.in_lineage_of:
        found.add(Ground.PRODUCER_LINEAGE)
    return frozenset(found) & scope.grounds


def may_read_lot(scope: ReadScope, facts: LotFacts) -> bool:
    return scope.everything or bool(lot_grounds(scope, facts))


def may_read_event(scope: ReadScope, actor: str, *, reads_a_lot_it_changed: bool) -> bool:
    """An event: its signer, anyone who reads a lot it changed, or a reader of everything."""
    return scope.everything or actor == scope.org or reads_a_lot_it_changed


def write_refusal(viewer_org: str, actor: str, record_id: str) -> RecordRefused | None:
    """A token writes only as its own organisation: a record of another actor is refused,
    even when its signature verifies (a leaked record can't be replayed through another
    firm's token, and a stolen token can't carry another firm's records)."""
    if actor == viewer_org:
        return None
    return RecordRefused(
        "actor.not_authorised",
        f"the record's actor is {actor} but the API token is {viewer_org}'s: "
        f"submit records of {actor} with a token of {actor}",
        path="actor",
        record_id=record_id,
    )
