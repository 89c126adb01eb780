"""The read side's GraphQL types: lots, events, organisations, lineage, connections.

Shapes only: every field either copies a value the ledger already computed
or asks this request's loaders (schema/loaders.py) for a related row, so a
list of N items costs a fixed number of statements. Access rules live in
ledger/access.py; a related lot or event the viewer may not read resolves
to null, exactly as if it did not exist.

Lists are Relay-style connections (``edges { cursor node }``, ``pageInfo``)
that page forward with ``first``/``after``. Cursors are opaque strings: pass
``pageInfo.endCursor`` back as ``after``; a cursor only fits the list it came
from (lots or events).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import datetime
from enum import Enum

import strawberry

from ledger import content, queries, state
from ledger.store import StoredRecord
from schema.context import Context
from schema.loaders import BadArgument
from schema.scalars import Grams, Long

Info = strawberry.Info[Context, None]

# --- cursors ----------------------------------------------------------------------------

_LOT, _EVENT = "L", "E"
_SEQ = re.compile(r"[0-9]{1,18}")


def _encode(kind: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode("ascii").rstrip("=")


def _decode(kind: str, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found, _, key = text.partition(":")
    if found != kind or not key or (kind == _EVENT and not _SEQ.fullmatch(key)):
        raise BadArgument(
            "after",
            "after is not a cursor of this list: pass pageInfo.endCursor of a previous "
            "page of the same query, or leave it out to start from the beginning",
        )
    return key


def lot_cursor(lot_id: str) -> str:
    return _encode(_LOT, lot_id)


def event_cursor(seq: int) -> str:
    return _encode(_EVENT, str(seq))


def after_lot(cursor: str | None) -> str | None:
    """The lot id a lots cursor stands for (BAD_USER_INPUT if it is not one)."""
    return _decode(_LOT, cursor)


def after_event(cursor: str | None) -> int | None:
    """The seq an events cursor stands for (BAD_USER_INPUT if it is not one)."""
    key = _decode(_EVENT, cursor)
    return None if key is None else int(key)


# --- organisations -------------------------------------------------------------------


@strawberry.type(
    description="A registered participant of the ledger. Readable by every participant."
)
class Organisation:
    id: strawberry.ID
    name: str
    roles: list[str] = strawberry.field(
        description="Registered roles, e.g. collector, recycler, producer, regulator, operator."
    )
    region: str = strawberry.field(description="ISO 3166-2 code (or country code), e.g. CN-GD.")

    @staticmethod
    def of(org: state.Org) -> Organisation:
        return Organisation(
            id=strawberry.ID(org.id), name=org.name, roles=list(org.roles), region=org.region
        )


async def _org(info: Info, org_id: str) -> Organisation:
    """An organisation every record and lot names; its absence is a broken ledger."""
    org = await info.context.loaders.org.load(org_id)
    if org is None:
        raise LookupError(f"organisation {org_id} is named but not registered")
    return Organisation.of(org)


# --- connections ------------------------------------------------------------------------


@strawberry.type(description="Where a page of a connection ends (Relay cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when more items follow: ask again with after: endCursor."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of this page's last item (null on an empty page)."
    )
    has_previous_page: bool = strawberry.field(
        description="Always false: these lists page forward only (first/after)."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of this page's first item (null on an empty page)."
    )


def _page_info(cursors: Sequence[str], has_next: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        end_cursor=cursors[-1] if cursors else None,
        has_previous_page=False,
        start_cursor=cursors[0] if cursors else None,
    )


# --- events ------------------------------------------------------------------------------


async def event_actor(root: Event, info: Info) -> Organisation:
    return await _org(info, root.actor_id)


async def event_lots(root: Event, info: Info) -> list[strawberry.ID]:
    found = await info.context.loaders.lots_of_event.load(root.seq)
    return [strawberry.ID(x) for x in found]


@strawberry.type(
    description="A record of the ledger: a signed envelope, its position and who signed it. "
    "Readable by its signer and by anyone who may read a lot it changed."
)
class Event:
    seq: Long = strawberry.field(description="The record's position in the ledger (1, 2, …).")
    id: strawberry.ID = strawberry.field(description="The record id chosen by its signer (a ULID).")
    hash: str = strawberry.field(description="SHA-256 of the canonical envelope, lowercase hex.")
    type: str = strawberry.field(description="The record type, e.g. create, transfer, transform.")
    key: str = strawberry.field(
        description="The id of the signing key (SHA-256 of the public key)."
    )
    at: str = strawberry.field(description="When the signer says it happened (RFC 3339, UTC).")
    recorded_at: str = strawberry.field(description="When the ledger stored it (RFC 3339, UTC).")
    envelope: str = strawberry.field(
        description="The envelope exactly as signed: canonical JSON text (RFC 8785). "
        "Verify signature over its UTF-8 bytes and hash = SHA-256 of them."
    )
    signature: str = strawberry.field(
        description="Ed25519 signature over the envelope's bytes, base64url without padding."
    )
    actor_id: strawberry.Private[str]

    @staticmethod
    def of(rec: StoredRecord) -> Event:
        return Event(
            seq=Long(rec.seq),
            id=strawberry.ID(rec.id),
            hash=rec.hash,
            type=rec.type,
            key=rec.key,
            at=rec.at,
            recorded_at=rec.recorded_at,
            envelope=rec.canonical.decode("utf-8"),
            signature=rec.sig,
            actor_id=rec.actor,
        )

    actor: Organisation = strawberry.field(
        resolver=event_actor, description="The organisation that signed the record."
    )
    lots: list[strawberry.ID] = strawberry.field(
        resolver=event_lots,
        description="The lots this record changed (created, moved, spent, voided), sorted "
        "by id. The ids are named in the envelope anyway; a lot you may not read still "
        "answers null.",
    )


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type(description="A page of events, in ledger order (by seq).")
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo

    @staticmethod
    def of(page: queries.Page[StoredRecord]) -> EventConnection:
        edges = [EventEdge(cursor=event_cursor(r.seq), node=Event.of(r)) for r in page.items]
        return EventConnection(
            edges=edges, page_info=_page_info([e.cursor for e in edges], page.has_next)
        )


@strawberry.input(description="Events matching every given field.")
class EventFilter:
    type: str | None = strawberry.field(default=None, description="The record type, exactly.")
    actor: strawberry.ID | None = strawberry.field(
        default=None, description="The signing organisation's id."
    )
    lot: strawberry.ID | None = strawberry.field(
        default=None, description="Only records that changed this lot (its history)."
    )
    from_: datetime | None = strawberry.field(
        default=None,
        name="from",
        description="Records whose at is at or after this time (with a time zone).",
    )
    to: datetime | None = strawberry.field(
        default=None, description="Records whose at is before this time (with a time zone)."
    )

    def to_ledger(self) -> queries.EventFilter:
        return queries.EventFilter(
            type=self.type,
            actor=self.actor,
            lot=self.lot,
            at_from=self.from_,
            at_to=self.to,
        )


# --- lots --------------------------------------------------------------------------------


@strawberry.type(description="A unit's second-life code and the original code it keeps.")
class UnitRecode:
    original: str
    code: str


@strawberry.type(description="Mass of one element held in a lot.")
class ElementMass:
    element: str = strawberry.field(description="Element symbol, e.g. Co, Li, Ni.")
    mass_g: Grams


async def lot_custodian(root: Lot, info: Info) -> Organisation:
    return await _org(info, root.custodian_id)


async def lot_in_transit_to(root: Lot, info: Info) -> Organisation | None:
    return None if root.transit_to_id is None else await _org(info, root.transit_to_id)


async def lot_head_event(root: Lot, info: Info) -> Event | None:
    rec = await info.context.loaders.event_by_hash.load(root.head)
    return None if rec is None else Event.of(rec)


async def lot_records(
    root: Lot, info: Info, first: int | None = queries.DEFAULT_PAGE, after: str | None = None
) -> EventConnection:
    # One statement per lot: across a list of 500 lots, aliased 30 times, a
    # 600-byte request would cost 15,000 statements (found in review).
    if any(isinstance(key, int) for key in info.path.as_list()):
        raise BadArgument(
            "records",
            "Lot.records is answered on a single lot only (lot(id) { records }), not on "
            "the lots of a list: page through events(filter: {lot: ID}) for several lots",
        )
    page = await info.context.loaders.events_page(
        queries.EventFilter(lot=root.id), first, after_event(after)
    )
    return EventConnection.of(page)


@strawberry.type(
    description="A lot of material: its current state, a projection of its records. "
    "Readable by its custodian, by an organisation it is in transit to, by any "
    "organisation that signed one of its records, by a producer whose lot it descends "
    "from or leads to, and by regulators; to anyone else it does not exist."
)
class Lot:
    id: strawberry.ID
    material: str = strawberry.field(description="Material code, e.g. steel.hms1.")
    origin: str = strawberry.field(
        description="virgin, pre_consumer, post_consumer, or transformed (made by a transform)."
    )
    mass_g: Grams = strawberry.field(description="Mass when the lot was made.")
    remaining_g: Grams = strawberry.field(description="Mass the lot still holds.")
    status: str = strawberry.field(
        description="active, in_transit, consumed, disposed, void, or a lifecycle status "
        "such as in_use or second_life."
    )
    head: str = strawberry.field(
        description="Hash of the lot's latest record: what a new record puts in parents."
    )
    created_seq: Long = strawberry.field(description="Seq of the record that made the lot.")
    updated_seq: Long = strawberry.field(description="Seq of the lot's latest record.")
    elements: list[ElementMass] = strawberry.field(description="Element content, by symbol.")
    units: list[str] = strawberry.field(description="Unit ids held, e.g. battery codes.")
    transit_loss_g: Grams = strawberry.field(
        description="Declared minus weighed mass, summed over the lot's receipts."
    )
    disposed_g: Grams = strawberry.field(description="Mass that left the loop by dispose.")
    recovered_g: Grams = strawberry.field(
        description="How much of massG is recovered material, pre- plus post-consumer, computed "
        "by the ledger from the lot's origin and lineage (recoveredContent has the detail)."
    )
    second_life_codes: list[UnitRecode] = strawberry.field(
        description="Units given a new code for their second life (GB/T 34014-2017 §4.2), "
        "each with the original code it keeps."
    )
    custodian_id: strawberry.Private[str]
    transit_to_id: strawberry.Private[str | None]

    @staticmethod
    def of(lot: state.Lot) -> Lot:
        return Lot(
            id=strawberry.ID(lot.id),
            material=lot.material,
            origin=lot.origin,
            mass_g=Grams(lot.mass_g),
            remaining_g=Grams(lot.remaining_g),
            status=lot.status,
            head=lot.head,
            created_seq=Long(lot.created_seq),
            updated_seq=Long(lot.updated_seq),
            elements=[
                ElementMass(element=k, mass_g=Grams(v)) for k, v in sorted(lot.elements.items())
            ],
            units=list(lot.units),
            transit_loss_g=Grams(lot.transit_loss_g),
            disposed_g=Grams(lot.disposed_g),
            recovered_g=Grams(content.recovered_g(lot.content)),
            second_life_codes=[
                UnitRecode(original=k, code=v) for k, v in sorted(lot.recoded.items())
            ],
            custodian_id=lot.custodian,
            transit_to_id=lot.transit_to,
        )

    custodian: Organisation = strawberry.field(
        resolver=lot_custodian,
        description="Who holds the lot (while in transit: the sender, until received).",
    )
    in_transit_to: Organisation | None = strawberry.field(
        resolver=lot_in_transit_to,
        description="The receiver while the lot is in transit; otherwise null.",
    )
    head_event: Event | None = strawberry.field(
        resolver=lot_head_event, description="The lot's latest record (the one head names)."
    )
    records: EventConnection = strawberry.field(
        resolver=lot_records,
        description="The lot's history: every record that changed it, oldest first. "
        "Only on a single lot (lot(id)); for the lots of a list, use events(filter: {lot}).",
    )


@strawberry.type
class LotEdge:
    cursor: str
    node: Lot


@strawberry.type(description="A page of lots, ordered by id.")
class LotConnection:
    edges: list[LotEdge]
    page_info: PageInfo

    @staticmethod
    def of(page: queries.Page[state.Lot]) -> LotConnection:
        edges = [LotEdge(cursor=lot_cursor(x.id), node=Lot.of(x)) for x in page.items]
        return LotConnection(
            edges=edges, page_info=_page_info([e.cursor for e in edges], page.has_next)
        )


MAX_MATERIAL = 64  # a material code's length at most (ledger/envelope.py, body.material)


def material_filter(material: str | None, argument: str = "material") -> str | None:
    """A material code or family/grade prefix to filter by; BAD_USER_INPUT when it is
    longer than any code. Found by tests/test_hostile_graphql.py: SQLite refuses a
    LIKE pattern over 50,000 bytes (SQLITE_MAX_LIKE_PATTERN_LENGTH), and that came
    back as a retryable STORE_UNAVAILABLE (tests/test_bug_overlong_material_filter.py)."""
    if material is not None and len(material) > MAX_MATERIAL:
        raise BadArgument(
            argument,
            f"{argument} is {len(material)} characters long; a material code has at most "
            f"{MAX_MATERIAL}: give a code or a family prefix such as steel or steel.hms1",
        )
    return material


@strawberry.input(description="Lots matching every given field.")
class LotFilter:
    material: str | None = strawberry.field(
        default=None,
        description="A material code, or a family or grade prefix: steel matches steel.hms1 "
        "and steel.billet; batteries.li_ion matches batteries.li_ion.nmc.",
    )
    custodian: strawberry.ID | None = strawberry.field(
        default=None, description="The holding organisation's id."
    )
    status: str | None = strawberry.field(default=None, description="The lot's status, exactly.")
    region: str | None = strawberry.field(
        default=None,
        description="The custodian's region, ISO 3166-2; a country code matches all its "
        "subdivisions (CN matches CN-GD).",
    )
    created_from: datetime | None = strawberry.field(
        default=None,
        description="Lots whose creating record's at is at or after this time (with a time zone).",
    )
    created_to: datetime | None = strawberry.field(
        default=None,
        description="Lots whose creating record's at is before this time (with a time zone).",
    )

    def to_ledger(self) -> queries.LotFilter:
        return queries.LotFilter(
            material=material_filter(self.material, "filter.material"),
            custodian=self.custodian,
            status=self.status,
            region=self.region,
            created_from=self.created_from,
            created_to=self.created_to,
        )


# --- lineage ---------------------------------------------------------------------------


@strawberry.enum(description="Which way a lineage walks along the flows of mass.")
class Direction(Enum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"

    def to_ledger(self) -> queries.Direction:
        return queries.Direction(self.value)


async def lineage_edge_record(root: LineageEdge, info: Info) -> Event | None:
    rec = await info.context.loaders.event_by_seq.load(root.seq)
    return None if rec is None else Event.of(rec)


@strawberry.type(description="Mass that flowed from one lot into another by one record.")
class LineageEdge:
    parent: strawberry.ID = strawberry.field(description="The lot the mass came from.")
    child: strawberry.ID = strawberry.field(description="The lot the mass went into.")
    mass_g: Grams
    seq: Long = strawberry.field(description="Seq of the record (split, merge, transform).")
    record_hash: str = strawberry.field(description="Hash of that record.")

    record: Event | None = strawberry.field(
        resolver=lineage_edge_record, description="The record that moved the mass."
    )


@strawberry.type(
    description="The lots a lot was made from (UPSTREAM) or went into (DOWNSTREAM), and the "
    "flows between them, walked breadth first from lot. Only lots the viewer may read appear, "
    "and the walk does not pass through a lot it may not read, so every edge joins two "
    "visible lots (a regulator sees the whole graph). Edges into or out of void lots are "
    "left out."
)
class Lineage:
    lot: Lot = strawberry.field(description="The lot the walk started from.")
    direction: Direction
    nodes: list[Lot] = strawberry.field(description="Every lot reached, the start lot first.")
    edges: list[LineageEdge]
    depth: int = strawberry.field(
        description="How far (in edges from lot) the farthest lot shown lies; 0 when none."
    )
    truncated: bool = strawberry.field(
        description=f"True when lots or edges were left out: beyond maxDepth, or past "
        f"{queries.LINEAGE_NODE_CAP} lots. Walk on from a lot at the edge of this answer."
    )

    @staticmethod
    def of(found: queries.Lineage, direction: Direction) -> Lineage:
        return Lineage(
            lot=Lot.of(found.root),
            direction=direction,
            nodes=[Lot.of(x) for x in found.nodes],
            edges=[
                LineageEdge(
                    parent=strawberry.ID(e.parent),
                    child=strawberry.ID(e.child),
                    mass_g=Grams(e.mass_g),
                    seq=Long(e.seq),
                    record_hash=e.record_hash,
                )
                for e in found.edges
            ],
            depth=found.depth,
            truncated=found.truncated,
        )
