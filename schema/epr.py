"""GraphQL for EPR: schemes, a producer's compliance report, scheme-wide totals and flags for
regulators, and certificates with the evidence they stand on (ledger/epr_reports.py).

Shapes only: every figure is computed by ledger/epr_reports.py in integer grams; shares are
exact basis points rounded down, with a ``Float`` percent beside them for display. Who may
read what is decided there: a report the viewer may not read answers null, exactly like one
of an organisation that does not exist. An unknown scheme or a period not of the scheme's
kind is BAD_USER_INPUT naming the argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import strawberry

from ledger import epr_reports as epr
from ledger import queries
from ledger.epr_schemes import Category, Scheme, default_schemes
from schema.scalars import Grams, Long
from schema.types import Direction, Info, Lineage, Organisation, _org

BP_PER_PERCENT = 100


def _percent_bp(bp: int) -> float:
    return bp / BP_PER_PERCENT


# --- schemes --------------------------------------------------------------------------------


@strawberry.type(description="A target of a category, in force from a period until the next.")
class EprTarget:
    from_period: str = strawberry.field(description="The first period it applies to.")
    basis_points: int = strawberry.field(description="The target, 1 bp = 0.01 %.")
    percent: float = strawberry.field(description="basisPoints / 100, for display.")


def _target_for(root: EprCategory, period: str) -> int:
    return root.spec.target_for(period)


@strawberry.type(description="One obligation of a scheme, e.g. plastic packaging recycled.")
class EprCategory:
    code: str
    name: str
    basis: str = strawberry.field(
        description="collection, recycling or material_recovery: what is counted."
    )
    element: str | None = strawberry.field(
        description="For material recovery of one element: its symbol; declared and certified "
        "grams are then grams of that element."
    )
    unit: str = strawberry.field(description='What the grams are of: "g" or "g of Co".')
    targets: list[EprTarget] = strawberry.field(
        description="Stepped targets by period; before the first, no target (obligation 0)."
    )
    declared: list[str] = strawberry.field(
        description="Materials (codes or family prefixes) producers declare under it."
    )
    processes: list[str] = strawberry.field(
        description="The processes whose outputs may back its certificates."
    )
    outputs: list[str] = strawberry.field(
        description="The output materials (codes or prefixes) that may back its certificates."
    )
    source: str | None = strawberry.field(description="Where its figures come from, if its own.")
    spec: strawberry.Private[Category]

    target_basis_points: int = strawberry.field(
        resolver=_target_for,
        description="The target in force for a period of the scheme's kind (0 before the first).",
    )

    @staticmethod
    def of(c: Category) -> EprCategory:
        return EprCategory(
            code=c.code,
            name=c.name,
            basis=c.basis,
            element=c.element,
            unit=epr.unit_of(c),
            targets=[
                EprTarget(from_period=p, basis_points=bp, percent=_percent_bp(bp))
                for p, bp in c.targets
            ],
            declared=sorted(c.declared),
            processes=sorted(c.processes),
            outputs=sorted(c.outputs),
            source=c.source or None,
            spec=c,
        )


@strawberry.type(
    description="An EPR scheme as data (ledger/data/epr_schemes.toml): a jurisdiction's "
    "obligations, counted per period, each figure's source named."
)
class EprScheme:
    id: strawberry.ID
    name: str
    jurisdiction: str = strawberry.field(description="ISO 3166 code; EU for the Union.")
    period_kind: str = strawberry.field(description="year, half, quarter or year_april.")
    period_hint: str = strawberry.field(description="How a period is written.")
    source: str = strawberry.field(description="The legal text the scheme follows.")
    battery: bool = strawberry.field(
        description="Producers declare batteries under it: its reports carry a collection "
        "rate from the producer's battery codes."
    )
    categories: list[EprCategory]

    @staticmethod
    def of(s: Scheme) -> EprScheme:
        return EprScheme(
            id=strawberry.ID(s.id),
            name=s.name,
            jurisdiction=s.jurisdiction,
            period_kind=s.period,
            period_hint=s.period_hint,
            source=s.source,
            battery=epr.is_battery_scheme(s),
            categories=[EprCategory.of(c) for c in s.categories.values()],
        )


def epr_schemes() -> list[EprScheme]:
    return [EprScheme.of(s) for s in epr.schemes()]


# --- certificates ---------------------------------------------------------------------------


async def _backing_lineage(
    root: CertificateLot, info: Info, max_depth: int | None = queries.DEFAULT_LINEAGE_DEPTH
) -> Lineage | None:
    depth = queries.DEFAULT_LINEAGE_DEPTH if max_depth is None else max_depth
    found = await info.context.loaders.read(epr.backing_lineage, root.view, root.lot, depth)
    return None if found is None else Lineage.of(found, Direction.UPSTREAM)


@strawberry.type(description="A lot a certificate stands on, and the output it is.")
class CertificateLot:
    lot: strawberry.ID
    mass_g: Grams = strawberry.field(
        description="Grams of the lot's recovered output the certificate stands on (in the "
        "category's unit)."
    )
    material: str | None
    process: str | None = strawberry.field(description="The transform that made the lot.")
    made_at: str | None
    made_seq: Long | None
    recovered_g: Grams | None = strawberry.field(
        description="The lot's recovered output when made, in the category's unit."
    )
    certified_g: Grams | None = strawberry.field(
        description="How much of it certificates (this one and any other) stand on now: "
        "never more than recoveredG."
    )
    view: strawberry.Private[epr.CertificateView]

    lineage: Lineage | None = strawberry.field(
        resolver=_backing_lineage,
        description=f"Where the lot's material came from (UPSTREAM), up to maxDepth levels "
        f"(at most {queries.MAX_LINEAGE_DEPTH}). Whoever may read the certificate sees the "
        "whole of it: the evidence the certificate stands on.",
    )


async def _issuer(root: Certificate, info: Info) -> Organisation:
    return await _org(info, root.issuer_id)


async def _holder(root: Certificate, info: Info) -> Organisation:
    return await _org(info, root.holder_id)


@strawberry.type(
    description="Recovery evidence: grams of eligible recovered output, issued by the recycler "
    "that made it, moved only by its holder, retired once. Readable by its issuer, its holder, "
    "regulators and the operator; to anyone else it does not exist."
)
class Certificate:
    id: strawberry.ID
    scheme: str
    category: str
    period: str
    unit: str = strawberry.field(description='What massG is of: "g" or "g of Co".')
    mass_g: Grams
    retired: bool
    retired_period: str | None = strawberry.field(
        description="The obligation period it was retired against."
    )
    issued_seq: Long = strawberry.field(description="Seq of the certify record.")
    updated_seq: Long = strawberry.field(description="Seq of its latest record.")
    lots: list[CertificateLot] = strawberry.field(description="The lots it stands on.")
    issuer_id: strawberry.Private[str]
    holder_id: strawberry.Private[str]

    issuer: Organisation = strawberry.field(resolver=_issuer, description="The recycler.")
    holder: Organisation = strawberry.field(
        resolver=_holder, description="Who holds it now (who retired it, once retired)."
    )

    @staticmethod
    def of(view: epr.CertificateView) -> Certificate:
        c = view.certificate
        category = _category(c.scheme, c.category)
        m = epr.measure(category) if category is not None else epr.MASS
        lots = []
        for b in view.backing:
            out = b.output
            lots.append(
                CertificateLot(
                    lot=strawberry.ID(b.lot),
                    mass_g=Grams(b.mass_g),
                    material=None if out is None else out.material,
                    process=None if out is None else out.process,
                    made_at=None if out is None else out.at,
                    made_seq=None if out is None else Long(out.seq),
                    recovered_g=None if out is None else Grams(out.recovered.get(m, 0)),
                    certified_g=None if out is None else Grams(out.certified.get(m, 0)),
                    view=view,
                )
            )
        return Certificate(
            id=strawberry.ID(c.id),
            scheme=c.scheme,
            category=c.category,
            period=c.period,
            unit="g" if category is None else epr.unit_of(category),
            mass_g=Grams(c.mass_g),
            retired=c.retired,
            retired_period=c.retired_period,
            issued_seq=Long(c.issued_seq),
            updated_seq=Long(c.updated_seq),
            lots=lots,
            issuer_id=c.issuer,
            holder_id=c.holder,
        )


def _category(scheme_id: str, code: str) -> Category | None:
    scheme = default_schemes().get(scheme_id)
    return None if scheme is None else scheme.categories.get(code)


async def certificate(info: Info, id: strawberry.ID) -> Certificate | None:
    loaders = info.context.loaders
    found = await loaders.read(epr.certificate, loaders.scope, str(id))
    return None if found is None else Certificate.of(found)


# --- flags ----------------------------------------------------------------------------------


@strawberry.enum(description="What a flag compares certified grams with.")
class EprFlagKind(Enum):
    YIELD = "yield"
    CAPACITY = "capacity"


@strawberry.type(description="A process and the highest plausible yield used for it.")
class ProcessYield:
    process: str
    permille: int


async def _flag_recycler(root: EprFlag, info: Info) -> Organisation:
    return await _org(info, root.recycler_id)


@strawberry.type(
    description="A recycler certified more than something recorded allows (computed at read "
    "time): YIELD — more than its recorded inputs to the eligible processes in the period "
    "give at the highest plausible yields; CAPACITY — more than its registered annual "
    "capacity for the material, prorated to the period. certifiedG > allowedG."
)
class EprFlag:
    kind: EprFlagKind
    scheme: str
    category: str
    period: str
    unit: str
    certified_g: Grams
    allowed_g: Grams
    excess_g: Grams = strawberry.field(description="certifiedG - allowedG.")
    message: str = strawberry.field(description="What was compared with what, in grams.")
    material: str | None = strawberry.field(description="CAPACITY: the certified material.")
    input_g: Grams | None = strawberry.field(
        description="YIELD: grams that went into its eligible transforms in the period."
    )
    yields: list[ProcessYield] = strawberry.field(
        description="YIELD: the highest plausible yield of each process (materials data)."
    )
    capacity_g_per_year: Grams | None = strawberry.field(
        description="CAPACITY: its registered capacity for the material."
    )
    months: int | None = strawberry.field(description="CAPACITY: the period's length.")
    recycler_id: strawberry.Private[str]

    recycler: Organisation = strawberry.field(resolver=_flag_recycler)

    @staticmethod
    def of(f: epr.Flag) -> EprFlag:
        return EprFlag(
            kind=EprFlagKind(f.kind.value),
            scheme=f.scheme,
            category=f.category,
            period=f.period,
            unit=f.unit,
            certified_g=Grams(f.certified_g),
            allowed_g=Grams(f.allowed_g),
            excess_g=Grams(f.excess_g),
            message=f.message,
            material=f.material,
            input_g=None if f.input_g is None else Grams(f.input_g),
            yields=[ProcessYield(process=p, permille=v) for p, v in f.yield_permille.items()],
            capacity_g_per_year=(
                None if f.capacity_g_per_year is None else Grams(f.capacity_g_per_year)
            ),
            months=f.months,
            recycler_id=f.recycler,
        )


async def epr_flags(info: Info, scheme: str, period: str) -> list[EprFlag] | None:
    loaders = info.context.loaders
    found = await loaders.read(epr.flags, loaders.scope, scheme, period)
    return None if found is None else [EprFlag.of(f) for f in found]


# --- a producer's report --------------------------------------------------------------------


@strawberry.type(
    description="The producer's collection rate for the period, from its own battery codes: "
    "units it registered (codes of lots it created) and when each was collected — the first "
    'status "collected" of a lot holding it, or after its status "retired", the first '
    "transfer of it or receive of it by another organisation. rate = collectedUnits / "
    "outstandingUnits (registered before the period's end and not collected before its start)."
)
class BatteryCollection:
    registered_units: Long = strawberry.field(
        description="Units the producer registered before the end of the period."
    )
    collected_before_units: Long = strawberry.field(
        description="Of them, collected before the period."
    )
    outstanding_units: Long = strawberry.field(
        description="registeredUnits - collectedBeforeUnits: what could be collected in it."
    )
    collected_units: Long = strawberry.field(description="Collected in the period.")
    rate_basis_points: int = strawberry.field(description="Rounded down; 0 when none are out.")
    rate: float = strawberry.field(description="The rate in percent, for display.")
    definition: str

    @staticmethod
    def of(c: epr.CollectionRate) -> BatteryCollection:
        return BatteryCollection(
            registered_units=Long(c.registered),
            collected_before_units=Long(c.collected_before),
            outstanding_units=Long(c.outstanding),
            collected_units=Long(c.collected),
            rate_basis_points=c.rate_bp,
            rate=float(c.rate * 100),
            definition=COLLECTION_DEFINITION,
        )


COLLECTION_DEFINITION = (
    "units collected in the period / units registered by the producer before the period's end "
    "and not collected before its start; a unit is collected at the first status 'collected' "
    "of a lot holding it, or, once retired, the first transfer of it or receive of it by "
    "another organisation. Regulation (EU) 2023/1542 Annex XI measures collection against "
    "the average mass placed on the market in the year and the two before: that is the "
    "declared placedOnMarketG."
)


@strawberry.type(description="One category of a producer's report. Grams in the category's unit.")
class EprCategoryReport:
    category: str
    name: str
    unit: str
    element: str | None
    target_basis_points: int = strawberry.field(description="In force for the period.")
    placed_on_market_g: Grams = strawberry.field(description="Σ of the producer's declarations.")
    placed_on_market_units: Long | None = strawberry.field(
        description="Σ of the units its declarations gave; null when none gave any."
    )
    declarations: int = strawberry.field(description="How many declare records were summed.")
    obligation_g: Grams = strawberry.field(
        description="placedOnMarketG x target, rounded up (never understated)."
    )
    held_g: Grams = strawberry.field(
        description="Certificates of the scheme, category and period it holds, not retired."
    )
    retired_g: Grams = strawberry.field(description="Certificates it retired against the period.")
    gap_g: Grams = strawberry.field(description="max(0, obligationG - retiredG).")
    compliance_basis_points: int = strawberry.field(
        description="retiredG / obligationG, rounded down; 10000 when nothing is owed; above "
        "10000 when it retired more than it owed."
    )
    compliance: float = strawberry.field(description="The same in percent, for display.")
    certificates_held: list[Certificate]
    certificates_retired: list[Certificate]

    @staticmethod
    def of(c: epr.CategoryReport, views: Mapping[str, epr.CertificateView]) -> EprCategoryReport:
        cat = c.category
        return EprCategoryReport(
            category=cat.code,
            name=cat.name,
            unit=epr.unit_of(cat),
            element=cat.element,
            target_basis_points=c.target_bp,
            placed_on_market_g=Grams(c.placed.mass_g),
            placed_on_market_units=None if c.placed.units is None else Long(c.placed.units),
            declarations=c.placed.declarations,
            obligation_g=Grams(c.obligation_g),
            held_g=Grams(c.held_g),
            retired_g=Grams(c.retired_g),
            gap_g=Grams(c.gap_g),
            compliance_basis_points=c.compliance_bp,
            compliance=float(c.compliance * 100),
            certificates_held=[Certificate.of(views[x.id]) for x in c.held if x.id in views],
            certificates_retired=[Certificate.of(views[x.id]) for x in c.retired if x.id in views],
        )


@strawberry.type(
    description="The categories added up. compliance counts at most each category's "
    "obligation, so a surplus in one does not hide a gap in another."
)
class EprReportTotals:
    placed_on_market_g: Grams
    obligation_g: Grams
    held_g: Grams
    retired_g: Grams
    gap_g: Grams
    compliance_basis_points: int
    compliance: float


async def _report_producer(root: EprReport, info: Info) -> Organisation:
    return await _org(info, root.producer_id)


@strawberry.type(
    description="A producer's compliance with an EPR scheme for one period: placed on the "
    "market, obligation, certificates held and retired, gap and compliance per category."
)
class EprReport:
    scheme: EprScheme
    period: str
    categories: list[EprCategoryReport]
    totals: EprReportTotals
    compliant: bool = strawberry.field(description="No category has a gap.")
    flags: list[EprFlag] = strawberry.field(
        description="Flags of the recyclers that issued the certificates it holds or retired."
    )
    collection: BatteryCollection | None = strawberry.field(
        description="For battery schemes: its collection rate from its own battery codes."
    )
    producer_id: strawberry.Private[str]

    producer: Organisation = strawberry.field(resolver=_report_producer)

    @staticmethod
    def of(r: epr.Report) -> EprReport:
        return EprReport(
            scheme=EprScheme.of(r.scheme),
            period=r.period,
            categories=[EprCategoryReport.of(c, r.views) for c in r.categories],
            totals=EprReportTotals(
                placed_on_market_g=Grams(r.placed_g),
                obligation_g=Grams(r.obligation_g),
                held_g=Grams(r.held_g),
                retired_g=Grams(r.retired_g),
                gap_g=Grams(r.gap_g),
                compliance_basis_points=r.compliance_bp,
                compliance=float(r.compliance * 100),
            ),
            compliant=r.compliant,
            flags=[EprFlag.of(f) for f in r.flags],
            collection=None if r.collection is None else BatteryCollection.of(r.collection),
            producer_id=r.producer.id,
        )


async def epr_report(
    info: Info, producer: strawberry.ID, scheme: str, period: str
) -> EprReport | None:
    loaders = info.context.loaders
    found = await loaders.read(epr.report, loaders.scope, str(producer), scheme, period)
    return None if found is None else EprReport.of(found)


# --- scheme-wide totals ---------------------------------------------------------------------


@strawberry.type(description="A category across the scheme: retired <= certified <= eligible.")
class EprCategoryTotals:
    category: str
    name: str
    unit: str
    target_basis_points: int
    placed_on_market_g: Grams
    placed_on_market_units: Long | None
    producers: int = strawberry.field(description="Producers that declared under it.")
    obligation_g: Grams = strawberry.field(description="Σ of the producers' obligations.")
    eligible_output_g: Grams = strawberry.field(
        description="Recovered output of eligible transforms made in the period (not void)."
    )
    certified_g: Grams
    held_g: Grams = strawberry.field(description="Certified and not retired, whoever holds it.")
    retired_g: Grams
    gap_g: Grams = strawberry.field(description="Σ of the producers' gaps.")


async def _line_org(root: EprProducerLine | EprRecyclerLine, info: Info) -> Organisation:
    return await _org(info, root.org_id)


@strawberry.type(description="One producer's figures for one category.")
class EprProducerLine:
    category: str
    placed_on_market_g: Grams
    placed_on_market_units: Long | None
    obligation_g: Grams
    held_g: Grams
    retired_g: Grams
    gap_g: Grams
    compliance_basis_points: int
    org_id: strawberry.Private[str]

    producer: Organisation = strawberry.field(resolver=_line_org)


@strawberry.type(description="One recycler's figures for one category.")
class EprRecyclerLine:
    category: str
    eligible_output_g: Grams = strawberry.field(
        description="Recovered output of its eligible transforms made in the period."
    )
    certified_g: Grams
    retired_g: Grams = strawberry.field(description="Of its certificates, retired by anyone.")
    org_id: strawberry.Private[str]

    recycler: Organisation = strawberry.field(resolver=_line_org)


@strawberry.type(description="A scheme's figures for one period, for regulators.")
class EprTotals:
    scheme: EprScheme
    period: str
    categories: list[EprCategoryTotals]
    producers: list[EprProducerLine]
    recyclers: list[EprRecyclerLine]
    flags: list[EprFlag]

    @staticmethod
    def of(t: epr.Totals) -> EprTotals:
        return EprTotals(
            scheme=EprScheme.of(t.scheme),
            period=t.period,
            categories=[
                EprCategoryTotals(
                    category=c.category.code,
                    name=c.category.name,
                    unit=epr.unit_of(c.category),
                    target_basis_points=c.target_bp,
                    placed_on_market_g=Grams(c.placed_g),
                    placed_on_market_units=None if c.placed_units is None else Long(c.placed_units),
                    producers=c.producers,
                    obligation_g=Grams(c.obligation_g),
                    eligible_output_g=Grams(c.eligible_output_g),
                    certified_g=Grams(c.certified_g),
                    held_g=Grams(c.held_g),
                    retired_g=Grams(c.retired_g),
                    gap_g=Grams(c.gap_g),
                )
                for c in t.categories
            ],
            producers=[
                EprProducerLine(
                    category=p.category,
                    placed_on_market_g=Grams(p.placed.mass_g),
                    placed_on_market_units=(
                        None if p.placed.units is None else Long(p.placed.units)
                    ),
                    obligation_g=Grams(p.obligation_g),
                    held_g=Grams(p.held_g),
                    retired_g=Grams(p.retired_g),
                    gap_g=Grams(p.gap_g),
                    compliance_basis_points=p.compliance_bp,
                    org_id=p.producer,
                )
                for p in t.producers
            ],
            recyclers=[
                EprRecyclerLine(
                    category=r.category,
                    eligible_output_g=Grams(r.eligible_output_g),
                    certified_g=Grams(r.certified_g),
                    retired_g=Grams(r.retired_g),
                    org_id=r.recycler,
                )
                for r in t.recyclers
            ],
            flags=[EprFlag.of(f) for f in t.flags],
        )


async def epr_totals(info: Info, scheme: str, period: str) -> EprTotals | None:
    loaders = info.context.loaders
    found = await loaders.read(epr.totals, loaders.scope, scheme, period)
    return None if found is None else EprTotals.of(found)


# --- the root fields (schema/queries.py puts them on Query) ----------------------------------

EPR_SCHEMES = strawberry.field(
    resolver=epr_schemes,
    description="The EPR schemes the ledger knows (ledger/data/epr_schemes.toml), with their "
    "categories, targets and the sources of their figures.",
)
EPR_REPORT = strawberry.field(
    resolver=epr_report,
    description="A producer's compliance with a scheme for one period (a period of the "
    "scheme's kind, e.g. 2026, or 2025-26 for an April-to-March year): placed on the market, "
    "obligation, certificates held and retired, gap and compliance per category. Readable by "
    "the producer itself, regulators and the operator; null for anyone else, and when the "
    "producer is not registered. An unknown scheme or a malformed period is BAD_USER_INPUT.",
)
EPR_TOTALS = strawberry.field(
    resolver=epr_totals,
    description="A scheme's figures for one period across every producer and recycler, with "
    "the flags. For regulators and the operator; null for anyone else.",
)
EPR_FLAGS = strawberry.field(
    resolver=epr_flags,
    description="Recyclers that certified more than their recorded inputs at plausible "
    "yields, or their registered capacity, allow, under a scheme for one period. For "
    "regulators and the operator; null for anyone else.",
)
CERTIFICATE = strawberry.field(
    resolver=certificate,
    description="A certificate by id, with the lots it stands on and their upstream lineage. "
    "Readable by its issuer, its holder, regulators and the operator; null for anyone else "
    "and when there is none.",
)
