"""The ``Query`` root: reading lots, events, lineage and organisations.

Thin resolvers: each turns its arguments into a ledger read through this
request's loaders (schema/loaders.py, scoped to the token's organisation)
and the result into GraphQL types (schema/types.py). Who may read what is
decided in ledger/access.py; a lot or event the viewer may not read answers
exactly like one that does not exist (null, or absent from a list).

Bad arguments — ``first`` above the cap, ``maxDepth`` out of range, a cursor
of another list, a time without a zone, a malformed region — are GraphQL
errors with ``extensions.code = "BAD_USER_INPUT"`` and
``extensions.argument`` naming the argument.
"""

from __future__ import annotations

import strawberry

from ledger import queries
from schema import anomalies as anomaly_list
from schema import epr, flows, impact, tracing, transparency
from schema import provenance as provenance_bundles
from schema import refusals as refusal_log
from schema.loaders import BadArgument
from schema.types import (
    Direction,
    Event,
    EventConnection,
    EventFilter,
    Info,
    Lineage,
    Lot,
    LotConnection,
    LotFilter,
    Organisation,
    after_event,
    after_lot,
)


async def lot(info: Info, id: strawberry.ID) -> Lot | None:
    found = await info.context.loaders.lot.load(str(id))
    return None if found is None else Lot.of(found)


async def lots(
    info: Info,
    filter: LotFilter | None = None,
    first: int | None = queries.DEFAULT_PAGE,
    after: str | None = None,
) -> LotConnection:
    where = filter.to_ledger() if filter is not None else queries.LotFilter()
    page = await info.context.loaders.lots_page(where, first, after_lot(after))
    return LotConnection.of(page)


async def event(info: Info, hash: str) -> Event | None:
    found = await info.context.loaders.event_by_hash.load(hash.lower())
    return None if found is None else Event.of(found)


async def events(
    info: Info,
    filter: EventFilter | None = None,
    first: int | None = queries.DEFAULT_PAGE,
    after: str | None = None,
) -> EventConnection:
    where = filter.to_ledger() if filter is not None else queries.EventFilter()
    page = await info.context.loaders.events_page(where, first, after_event(after))
    return EventConnection.of(page)


async def lineage(
    info: Info,
    lot: strawberry.ID,
    direction: Direction | None = Direction.UPSTREAM,
    max_depth: int | None = queries.DEFAULT_LINEAGE_DEPTH,
) -> Lineage | None:
    way = direction or Direction.UPSTREAM
    depth = queries.DEFAULT_LINEAGE_DEPTH if max_depth is None else max_depth
    found = await info.context.loaders.lineage(str(lot), way.to_ledger(), depth)
    return None if found is None else Lineage.of(found, way)


async def organisation(info: Info, id: strawberry.ID) -> Organisation | None:
    found = await info.context.loaders.org.load(str(id))
    return None if found is None else Organisation.of(found)


async def organisations(info: Info) -> list[Organisation]:
    return [Organisation.of(o) for o in await info.context.loaders.all_orgs()]


@strawberry.type(description="Who the API token acts for.")
class Viewer:
    org: strawberry.ID = strawberry.field(
        description="The token's organisation: the only actor it may write as."
    )
    roles: list[str]
    reads_everything: bool = strawberry.field(
        description="True for regulators and the operator; others read the lots they hold or "
        "handled (and, for producers, the lineage of what they placed on the market)."
    )


async def viewer(info: Info) -> Viewer:
    who = info.context.viewer
    return Viewer(
        org=strawberry.ID(who.org), roles=sorted(who.roles), reads_everything=who.reads_everything
    )


MAX_HEADS = 5_000  # as many as one recordEvents batch may name


@strawberry.type(description="A lot's latest record hash: what a client puts in parents.")
class LotHead:
    lot: strawberry.ID
    head: str


async def heads(info: Info, lots: list[strawberry.ID]) -> list[LotHead]:
    if len(lots) > MAX_HEADS:
        raise BadArgument("lots", f"at most {MAX_HEADS} lots per call; split the list")
    found = await info.context.loaders.lot.load_many([str(x) for x in lots])
    return [LotHead(lot=strawberry.ID(x.id), head=x.head) for x in found if x is not None]


@strawberry.type(description="Reads. Every operation needs an API token (Authorization: Bearer).")
class Query:
    heads: list[LotHead] = strawberry.field(
        resolver=heads,
        description=f"The heads of many lots at once (at most {MAX_HEADS}), for signing a "
        "batch: the lots that exist and the token may read, in no particular order; the "
        "others are left out.",
    )
    viewer: Viewer = strawberry.field(
        resolver=viewer, description="The token's organisation and roles."
    )
    lot: Lot | None = strawberry.field(
        resolver=lot,
        description="A lot by id; null when there is none or the token's organisation may "
        "not read it (the two are indistinguishable).",
    )
    lots: LotConnection = strawberry.field(
        resolver=lots,
        description=f"The lots the token's organisation may read that match filter, ordered "
        f"by id; first at most {queries.MAX_PAGE}. Page on with after: pageInfo.endCursor.",
    )
    event: Event | None = strawberry.field(
        resolver=event,
        description="A record by its hash (lowercase hex); null when there is none or the "
        "token's organisation may not read it.",
    )
    events: EventConnection = strawberry.field(
        resolver=events,
        description=f"The records the token's organisation may read that match filter, in "
        f"ledger order (by seq); first at most {queries.MAX_PAGE}.",
    )
    lineage: Lineage | None = strawberry.field(
        resolver=lineage,
        description=f"Where a lot came from (UPSTREAM) or went (DOWNSTREAM): the lots and "
        f"the masses between them, up to maxDepth levels (at most "
        f"{queries.MAX_LINEAGE_DEPTH}) and {queries.LINEAGE_NODE_CAP} lots. Null when the lot "
        "is missing or not readable. Only lots the token's organisation may read are walked "
        "and shown.",
    )
    recovered_content: tracing.RecoveredContent | None = strawberry.field(
        resolver=tracing.recovered_content,
        description="How much of a lot is recovered material (pre- and post-consumer, overall "
        "and per element), with the lineage and records that prove it and a check against the "
        "EU 2023/1542 Art. 8 minimum shares. Null when the lot is missing, not readable, or "
        "void.",
    )
    battery: tracing.Battery | None = strawberry.field(
        resolver=tracing.battery,
        description="A battery by its code: a GB/T 34014-2017 code, a GS1 battery-passport id "
        "(https://…/01/<GTIN>/21/<serial> or (01)<GTIN>(21)<serial>) or a second-life code. "
        "Its lots, life, custodians and the element grams attributed to it downstream, walked "
        "up to maxDepth levels (at most 50). Null when no lot registered it or the token's "
        "organisation may not read the first lot that held it. A malformed code is "
        "BAD_USER_INPUT.",
    )
    organisation: Organisation | None = strawberry.field(
        resolver=organisation, description="An organisation by id; null when none is registered."
    )
    organisations: list[Organisation] = strawberry.field(
        resolver=organisations, description="Every registered organisation, by id."
    )
    # The transparency log (schema/transparency.py).
    checkpoint: transparency.Checkpoint | None = transparency.CHECKPOINT
    inclusion_proof: transparency.InclusionProof | None = transparency.INCLUSION_PROOF
    consistency_proof: transparency.ConsistencyProof = transparency.CONSISTENCY_PROOF
    provenance: provenance_bundles.Provenance | None = provenance_bundles.PROVENANCE
    # EPR (schema/epr.py).
    epr_schemes: list[epr.EprScheme] = epr.EPR_SCHEMES
    epr_report: epr.EprReport | None = epr.EPR_REPORT
    epr_totals: epr.EprTotals | None = epr.EPR_TOTALS
    epr_flags: list[epr.EprFlag] | None = epr.EPR_FLAGS
    certificate: epr.Certificate | None = epr.CERTIFICATE
    # Material flows for regulators (schema/flows.py).
    material_flows: flows.MaterialFlows = flows.MATERIAL_FLOWS
    anomalies: list[anomaly_list.Anomaly] | None = anomaly_list.ANOMALIES
    # Impact estimates for regulators (schema/impact.py).
    avoided_emissions: impact.AvoidedEmissions = impact.AVOIDED_EMISSIONS
    plan_progress: list[impact.PlanProgress] | None = impact.PLAN_PROGRESS
    # The refusals log (schema/refusals.py).
    refusals: refusal_log.RefusalConnection = refusal_log.REFUSALS
