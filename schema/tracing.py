"""GraphQL for tracing: ``recoveredContent(lot)`` and ``battery(code)`` (ledger/tracing.py).

Shapes only: every figure is one the ledger computed and stored at write time, or exact
arithmetic on those integers done by ledger/tracing.py. Grams and basis points are rounded
down (never overstating recovered content); a ``share: Float`` is for display and is computed
from the same integers. Expected outcomes that are not errors — no Art. 8 target in force on
the date asked, a lot Art. 8 does not apply to — are members of a union, not GraphQL errors.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from datetime import UTC, date, datetime
from enum import Enum
from fractions import Fraction
from typing import Annotated, Any

import strawberry

from ledger import queries, tracing
from ledger.state import VOID
from schema.scalars import Grams, Long
from schema.types import ElementMass, Info, Lot, Organisation

APPROXIMATION = (
    "Regulation (EU) 2023/1542 Art. 8 measures Co, Li and Ni as shares of the element in the "
    "battery's active materials and Pb of the whole battery; the ledger knows the element "
    "grams of the lot as a whole, so for a battery or cathode lot those grams stand for the "
    "active material. Recovered = pre- plus post-consumer."
)


def _floor(x: Fraction) -> Grams:
    return Grams(math.floor(x))


# --- recovered content ------------------------------------------------------------------


@strawberry.type(description="One element of a lot as made, and its recovered part.")
class ElementContent:
    element: str = strawberry.field(description="Element symbol, e.g. Co, Li, Ni.")
    mass_g: Grams = strawberry.field(description="Grams of the element in the lot as made.")
    recovered_g: Grams = strawberry.field(description="Of which recovered: pre + post-consumer.")
    pre_consumer_g: Grams
    post_consumer_g: Grams
    share: float = strawberry.field(description="recoveredG / massG, for display.")
    share_basis_points: int = strawberry.field(
        description="recoveredG / massG in basis points (1 = 0.01 %), rounded down."
    )

    @staticmethod
    def of(e: tracing.ElementContent) -> ElementContent:
        return ElementContent(
            element=e.element,
            mass_g=Grams(e.mass_g),
            recovered_g=Grams(e.recovered_g),
            pre_consumer_g=Grams(e.pre_g),
            post_consumer_g=Grams(e.post_g),
            share=float(e.share),
            share_basis_points=e.share_bp,
        )


@strawberry.type(description="A lot of the upstream lineage, and the record that made it.")
class ProofLot:
    lot: strawberry.ID
    material: str
    origin: str = strawberry.field(
        description="virgin, pre_consumer, post_consumer (100 % recovered), transformed, mixed."
    )
    mass_g: Grams = strawberry.field(description="Mass when the lot was made.")
    recovered_g: Grams = strawberry.field(description="Of which recovered, as made.")
    pre_consumer_g: Grams
    post_consumer_g: Grams
    made_by: str = strawberry.field(description="Hash of the record that made the lot.")
    made_seq: Long = strawberry.field(description="Seq of that record.")


@strawberry.type(description="Mass (and its element grams) that flowed from one lot into another.")
class ProofEdge:
    parent: strawberry.ID
    child: strawberry.ID
    mass_g: Grams
    elements: list[ElementMass] = strawberry.field(
        description="Element grams within that mass, by symbol."
    )
    seq: Long
    record_hash: str = strawberry.field(description="Hash of the record that moved it.")


def _once(root: ContentProof, info: Info, name: str, fn: Any, *args: Any) -> Awaitable[Any]:
    """One read per proof, however many fields want it (nodes and document both need the
    lots; recordHashes and document the records): the first asker starts it, all await it."""
    if name not in root.reads:
        root.reads[name] = asyncio.ensure_future(info.context.loaders.read(fn, *args))
    return root.reads[name]


async def _proof_nodes(root: ContentProof, info: Info) -> list[ProofLot]:
    found = await _once(root, info, "lots", tracing.proof_lots, root.found.lots)
    out = []
    for x in found:
        c = x.content
        out.append(
            ProofLot(
                lot=strawberry.ID(x.id),
                material=x.material,
                origin=x.origin,
                mass_g=Grams(x.mass_g),
                recovered_g=Grams(c.recovered_g),
                pre_consumer_g=Grams(c.pre_g),
                post_consumer_g=Grams(c.post_g),
                made_by=x.made_by,
                made_seq=Long(x.made_seq),
            )
        )
    return out


def _proof_edges(root: ContentProof) -> list[ProofEdge]:
    return [
        ProofEdge(
            parent=strawberry.ID(e.parent),
            child=strawberry.ID(e.child),
            mass_g=Grams(e.mass_g),
            elements=[
                ElementMass(element=k, mass_g=Grams(v)) for k, v in sorted(e.elements.items())
            ],
            seq=Long(e.seq),
            record_hash=e.record_hash,
        )
        for e in root.found.steps
    ]


async def _proof_hashes(root: ContentProof, info: Info) -> list[str]:
    found = await _once(root, info, "records", tracing.proof_records, root.found)
    return [h for _, h in found]


async def _proof_document(root: ContentProof, info: Info) -> str:
    lots = _once(root, info, "lots", tracing.proof_lots, root.found.lots)
    records = _once(root, info, "records", tracing.proof_records, root.found)  # both at once
    return tracing.proof_json(root.found, await lots, await records)


@strawberry.type(
    description="What justifies a lot's recovered content: its upstream lineage (every lot "
    "and flow, with the hash of the record behind each) and the hashes of the records that "
    "shaped it. Replaying those records through the ledger's rules (ISO 22095 proportional "
    "model, largest-remainder rounding) gives the same grams; each record is signed by its "
    "actor (fetch it with event(hash))."
)
class ContentProof:
    complete: bool = strawberry.field(
        description="True when the lineage reaches every origin of the lot's material: "
        "neither truncated nor hidden."
    )
    truncated: bool = strawberry.field(
        description="The walk stopped at maxDepth or maxLots: ask again with larger ones."
    )
    hidden_by_access: bool = strawberry.field(
        description="Some of the material comes from lots the token's organisation may not "
        "read; they and what lies beyond them are left out."
    )
    depth: int = strawberry.field(description="Levels walked (edges from the lot).")
    found: strawberry.Private[tracing.Walk]
    reads: strawberry.Private[dict[str, Awaitable[Any]]]

    nodes: list[ProofLot] = strawberry.field(
        resolver=_proof_nodes, description="The lot first, then breadth first."
    )
    edges: list[ProofEdge] = strawberry.field(resolver=_proof_edges)
    record_hashes: list[str] = strawberry.field(
        resolver=_proof_hashes,
        description="In ledger order: every record of the lot, and every record of an "
        "upstream lot up to the last flow out of it shown here.",
    )
    document: str = strawberry.field(
        resolver=_proof_document,
        description='The whole proof as one JSON text: {"lot", "complete", "truncated", '
        '"hiddenByAccess", "depth", "lots": [{"lot", "material", "origin", "massG", '
        '"madeSeq", "madeBy", "content"}], "flows": [{"parent", "child", "seq", "massG", '
        '"elements", "recordHash"}], "recordHashes"} (content: the lot\'s stored composition '
        "as made — pre/post grams, each element and its E.pre/E.post). The same facts as "
        "nodes, edges and recordHashes, for large proofs: thousands of lots answer in a "
        "fraction of the time as one text.",
    )

    @staticmethod
    def of(w: tracing.Walk) -> ContentProof:
        return ContentProof(
            complete=not (w.truncated or w.hidden),
            truncated=w.truncated,
            hidden_by_access=w.hidden,
            depth=w.depth,
            found=w,
            reads={},
        )


@strawberry.type(description="One element's recovered share against its Art. 8 minimum.")
class RecycledContentFinding:
    element: str
    basis: str = strawberry.field(
        description="active_material (Co, Li, Ni) or battery (Pb): what the share is of."
    )
    total_g: Grams
    recovered_g: Grams
    share_basis_points: int = strawberry.field(description="Rounded down.")
    required_basis_points: int
    meets: bool = strawberry.field(description="Exact: recoveredG / totalG >= the minimum.")


@strawberry.type(
    description="The lot's recovered shares of Co, Li, Ni and Pb against the minimum shares "
    "of Regulation (EU) 2023/1542 Art. 8 in force on the date asked."
)
class RecycledContentCheck:
    on: date
    article: str = strawberry.field(description="The paragraph whose minimums apply.")
    in_force_from: date
    meets_all: bool = strawberry.field(description="Every finding meets its minimum.")
    findings: list[RecycledContentFinding] = strawberry.field(
        description="One per targeted element the lot holds, in the regulation's order."
    )
    approximation: str = strawberry.field(description="What the shares stand for.")


@strawberry.type(description="No Art. 8 minimum applies on the date asked: no verdict.")
class NoRecycledContentTarget:
    on: date
    first_target_from: date = strawberry.field(description="When the first minimums apply.")
    message: str


@strawberry.type(description="Art. 8 does not apply to this lot; the reason says why.")
class RecycledContentNotApplicable:
    reason: str


RecycledContentResult = Annotated[
    RecycledContentCheck | NoRecycledContentTarget | RecycledContentNotApplicable,
    strawberry.union("RecycledContentResult"),
]


def check_result(outcome: tracing.Art8Outcome) -> RecycledContentResult:
    if isinstance(outcome, tracing.Art8NoTarget):
        return NoRecycledContentTarget(
            on=outcome.on, first_target_from=outcome.first_from, message=outcome.message
        )
    if isinstance(outcome, tracing.Art8NotApplicable):
        return RecycledContentNotApplicable(reason=outcome.reason)
    return RecycledContentCheck(
        on=outcome.on,
        article=outcome.article,
        in_force_from=outcome.in_force_from,
        meets_all=outcome.meets_all,
        findings=[
            RecycledContentFinding(
                element=f.element,
                basis=f.basis,
                total_g=Grams(f.total_g),
                recovered_g=Grams(f.recovered_g),
                share_basis_points=f.share_bp_floor,
                required_basis_points=int(f.required * tracing.BP),
                meets=f.meets,
            )
            for f in outcome.findings
        ],
        approximation=APPROXIMATION,
    )


async def content_proof(
    root: RecoveredContent,
    info: Info,
    max_depth: int | None = tracing.DEFAULT_PROOF_DEPTH,
    max_lots: int | None = queries.LINEAGE_NODE_CAP,
) -> ContentProof:
    loaders = info.context.loaders
    # The lot was found readable and not void by recoveredContent in this request.
    found = await loaders.read(
        tracing.walk,
        loaders.scope,
        root.content.lot,
        queries.Direction.UPSTREAM,
        tracing.DEFAULT_PROOF_DEPTH if max_depth is None else max_depth,
        queries.LINEAGE_NODE_CAP if max_lots is None else max_lots,
    )
    return ContentProof.of(found)


def content_check(root: RecoveredContent, on: date | None = None) -> RecycledContentResult:
    when = datetime.now(UTC).date() if on is None else on
    return check_result(tracing.recycled_content_check(root.content, when))


@strawberry.type(
    description="How much of a lot is recovered material, as computed by the ledger when the "
    "lot was made (ISO 22095 proportional model: collected waste is 100 % recovered, virgin "
    "input 0 %, merges, splits and transforms pass it on by mass). For the lot's mass as made."
)
class RecoveredContent:
    lot: strawberry.ID
    material: str
    mass_g: Grams = strawberry.field(description="The lot's mass as made.")
    recovered_g: Grams = strawberry.field(description="Of which recovered: pre + post-consumer.")
    pre_consumer_g: Grams = strawberry.field(
        description="Recovered from manufacturing waste (ISO 14021 §7.8.1.1 a 1)."
    )
    post_consumer_g: Grams = strawberry.field(
        description="Recovered from products at the end of their life (ISO 14021 §7.8.1.1 a 2)."
    )
    share: float = strawberry.field(description="recoveredG / massG, for display.")
    share_basis_points: int = strawberry.field(
        description="recoveredG / massG in basis points (1 = 0.01 %), rounded down."
    )
    elements: list[ElementContent] = strawberry.field(description="By symbol.")
    content: strawberry.Private[tracing.Content]

    @staticmethod
    def of(c: tracing.Content) -> RecoveredContent:
        return RecoveredContent(
            lot=strawberry.ID(c.lot),
            material=c.material,
            mass_g=Grams(c.mass_g),
            recovered_g=Grams(c.recovered_g),
            pre_consumer_g=Grams(c.pre_g),
            post_consumer_g=Grams(c.post_g),
            share=float(c.share),
            share_basis_points=c.share_bp,
            elements=[ElementContent.of(e) for e in c.elements],
            content=c,
        )

    proof: ContentProof = strawberry.field(
        resolver=content_proof,
        description=f"The lineage and records that justify these figures, walked upstream "
        f"up to maxDepth levels (at most {queries.MAX_LINEAGE_DEPTH}) and maxLots lots (at "
        f"most {queries.LINEAGE_NODE_CAP}). Only lots the token's organisation may read are "
        "walked; complete says whether the proof reaches every origin.",
    )
    check: RecycledContentResult = strawberry.field(
        resolver=content_check,
        description="These shares against the Regulation (EU) 2023/1542 Art. 8 minimum "
        "recycled-content shares in force on the date on (default: today, UTC). Before "
        "2031-08-18 no minimum applies (NoRecycledContentTarget). " + APPROXIMATION,
    )


async def recovered_content(info: Info, lot: strawberry.ID) -> RecoveredContent | None:
    found = await info.context.loaders.lot.load(str(lot))
    if found is None or found.status == VOID:
        return None
    return RecoveredContent.of(tracing.content_of(found))


# --- batteries --------------------------------------------------------------------------


@strawberry.enum(description="The stage of a battery's life an event marks.")
class BatteryStage(Enum):
    REGISTERED = "registered"
    PLACED_ON_MARKET = "placed_on_market"
    IN_USE = "in_use"
    RETIRED = "retired"
    COLLECTED = "collected"
    SECOND_LIFE = "second_life"
    DISMANTLED = "dismantled"
    DISPOSED = "disposed"
    BLACK_MASS = "black_mass"
    RECOVERED_ELEMENTS = "recovered_elements"
    REMANUFACTURED = "remanufactured"
    HANDLED = "handled"


async def _org(info: Info, org_id: str) -> Organisation:
    org = await info.context.loaders.org.load(org_id)
    if org is None:
        raise LookupError(f"organisation {org_id} is named but not registered")
    return Organisation.of(org)


async def event_actor(root: BatteryEvent, info: Info) -> Organisation:
    return await _org(info, root.actor_id)


@strawberry.type(description="A record of a battery's life.")
class BatteryEvent:
    seq: Long
    hash: str = strawberry.field(description="The record's hash: event(hash) gives it signed.")
    type: str
    at: str
    stage: BatteryStage = strawberry.field(
        description="REGISTERED (the create that registered its code), PLACED_ON_MARKET, "
        "IN_USE, RETIRED, SECOND_LIFE (status records), COLLECTED (the first status "
        "collected, or receive after retirement by an organisation other than the one that "
        "registered it), DISMANTLED (the transform of the last lot that held it), DISPOSED; "
        "downstream, the transform that made BLACK_MASS, RECOVERED_ELEMENTS or a new cathode "
        "or precursor (REMANUFACTURED); any other record is HANDLED."
    )
    lots: list[strawberry.ID] = strawberry.field(
        description="The lots of this answer the record changed or made."
    )
    status: str | None = strawberry.field(description="For a status record: the status.")
    note: str | None = strawberry.field(description="For a status record: its note.")
    voided_by: str | None = strawberry.field(
        description="The hash of the void record that reversed this one, if any."
    )
    actor_id: strawberry.Private[str]

    actor: Organisation = strawberry.field(
        resolver=event_actor, description="Who signed the record."
    )

    @staticmethod
    def of(e: tracing.BatteryEvent) -> BatteryEvent:
        return BatteryEvent(
            seq=Long(e.seq),
            hash=e.hash,
            type=e.type,
            at=e.at,
            stage=BatteryStage(e.stage.value),
            lots=[strawberry.ID(x) for x in e.lots],
            status=e.status,
            note=e.note,
            voided_by=e.voided_by,
            actor_id=e.actor,
        )


async def custody_organisation(root: Custody, info: Info) -> Organisation:
    return await _org(info, root.org_id)


@strawberry.type(description="An organisation that held the battery, from a record on.")
class Custody:
    since: str = strawberry.field(description="at of the record that gave it custody.")
    seq: Long
    lot: strawberry.ID = strawberry.field(description="The lot it held the battery in.")
    org_id: strawberry.Private[str]

    organisation: Organisation = strawberry.field(resolver=custody_organisation)


@strawberry.type(description="A lot that held the battery (it came in with the record seq).")
class BatteryLot:
    lot: Lot
    seq: Long = strawberry.field(
        description="Seq of the record that put the battery in the lot (create, split, merge)."
    )


@strawberry.type(description="Grams of one element attributed to the battery.")
class AttributedElement:
    element: str
    mass_g: Grams = strawberry.field(description="That went into the lot (rounded down).")
    remaining_g: Grams = strawberry.field(description="That the lot still holds (rounded down).")


@strawberry.type(description="The part of one lot attributed to the battery.")
class AttributedLot:
    lot: Lot
    mass_g: Grams = strawberry.field(description="Of the lot's mass as made (rounded down).")
    remaining_g: Grams = strawberry.field(description="Of what the lot still holds.")
    elements: list[AttributedElement]


@strawberry.type(description="Where the battery's grams of one element went (rounded down).")
class ElementTrace:
    element: str
    initial_g: Grams = strawberry.field(
        description="Its share of the last lot that held it (that lot's grams / its units)."
    )
    recovered_g: Grams = strawberry.field(
        description="That reached lots of recovered elements (the elements family: cobalt "
        "sulfate, lithium carbonate, …)."
    )
    held_now_g: Grams = strawberry.field(
        description="Still in the lots of this answer (the rest was lost in processing, "
        "disposed of, or lies beyond a truncated or hidden walk)."
    )


@strawberry.type(
    description="A battery's life, from its code: the lots that held it, its events and "
    "custodians, and the grams of each element attributed to it, followed downstream. "
    "Attribution: in the last lot that held it, the battery is 1/unitsInLastLot of the "
    "mass and of each element; downstream, a lot gets, of each flow into it, the battery's "
    "fraction of the parent's element (or mass) times what flowed. Exact fractions, "
    "reported rounded down: never overstated."
)
class Battery:
    code: str = strawberry.field(
        description="The original code, canonical (GB/T 34014-2017 24 characters, or "
        "(01)<GTIN>(21)<serial> for a GS1 passport id)."
    )
    scheme: str = strawberry.field(description="gbt34014 or gs1.")
    second_life_codes: list[str] = strawberry.field(
        description="New codes given when it went to second life (GB/T 34014-2017 §4.2: "
        "the new code is given and the original kept)."
    )
    lots: list[BatteryLot] = strawberry.field(description="The lots that held it, in order.")
    events: list[BatteryEvent] = strawberry.field(description="Its life, in ledger order.")
    custodians: list[Custody] = strawberry.field(description="Who held it, in order.")
    last_lot: Lot | None = strawberry.field(
        description="The last lot that held it (null when the token may not read it)."
    )
    units_in_last_lot: int = strawberry.field(
        description="How many units that lot holds: the battery's share is 1 / this."
    )
    downstream: list[AttributedLot] = strawberry.field(
        description="The last lot, then every lot made from it downstream (in the order "
        "made), with the part attributed to the battery."
    )
    elements: list[ElementTrace] = strawberry.field(description="By symbol.")
    complete: bool = strawberry.field(description="Neither truncated nor hidden.")
    truncated: bool = strawberry.field(
        description="The downstream walk stopped at maxDepth or at the lot cap."
    )
    hidden_by_access: bool = strawberry.field(
        description="A lot that held the battery or lies downstream is not readable by the "
        "token's organisation: it and what lies beyond it are left out."
    )

    @staticmethod
    def of(b: tracing.Battery) -> Battery:
        return Battery(
            code=b.code,
            scheme=b.scheme,
            second_life_codes=list(b.second_life_codes),
            lots=[BatteryLot(lot=Lot.of(h.lot), seq=Long(h.seq)) for h in b.held_in],
            events=[BatteryEvent.of(e) for e in b.events],
            custodians=[
                Custody(since=c.at, seq=Long(c.seq), lot=strawberry.ID(c.lot), org_id=c.org)
                for c in b.custodians
            ],
            last_lot=None if b.last is None else Lot.of(b.last.lot),
            units_in_last_lot=b.units_in_last,
            downstream=[
                AttributedLot(
                    lot=Lot.of(a.lot),
                    mass_g=_floor(a.mass),
                    remaining_g=_floor(a.mass_now),
                    elements=[
                        AttributedElement(
                            element=s,
                            mass_g=_floor(v),
                            remaining_g=_floor(a.elements_now.get(s, Fraction(0))),
                        )
                        for s, v in sorted(a.elements.items())
                    ],
                )
                for a in b.downstream
            ],
            elements=[
                ElementTrace(
                    element=t.element,
                    initial_g=_floor(t.initial),
                    recovered_g=_floor(t.recovered),
                    held_now_g=_floor(t.held_now),
                )
                for t in b.elements
            ],
            complete=b.complete,
            truncated=b.truncated,
            hidden_by_access=b.hidden,
        )


async def battery(
    info: Info, code: str, max_depth: int | None = tracing.DEFAULT_BATTERY_DEPTH
) -> Battery | None:
    loaders = info.context.loaders
    depth = tracing.DEFAULT_BATTERY_DEPTH if max_depth is None else max_depth
    found = await loaders.read(tracing.battery, loaders.scope, code, depth)
    if found is None:
        return None
    loaders.lot.prime_many({h.lot.id: h.lot for h in found.held_in})
    loaders.lot.prime_many({a.lot.id: a.lot for a in found.downstream})
    return Battery.of(found)
