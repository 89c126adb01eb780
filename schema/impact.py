"""GraphQL for impact figures: avoided emissions (ledger/emissions.py) and progress towards
national plan targets (ledger/plan_targets.py).

Shapes only: every figure is computed by the ledger modules in integer grams; shares are
exact basis points rounded down, with a ``Float`` percent beside them for display.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from ledger import emissions, plan_targets
from ledger.flows import FlowFilter
from schema.scalars import Grams
from schema.types import Info, material_filter

BP_PER_PERCENT = 100
METHOD_TEXT = (
    "Estimate. Avoided burden, cut-off (recycled-content) approach: the recovered grams of "
    "each recycling transform's output, times a published factor (grams CO2e per tonne: "
    "primary route less secondary route, one-for-one substitution), floored to whole grams."
)


@strawberry.type(
    description="Recycled output of one material by one organisation and the CO2e it "
    "avoided: an ESTIMATE (avoided burden, cut-off approach)."
)
class AvoidedEmissionsRow:
    material: str = strawberry.field(description="The output lots' material code.")
    org: str = strawberry.field(description="The recycler that made them.")
    output_g: Grams = strawberry.field(description="The output lots' whole mass.")
    recycled_g: Grams = strawberry.field(
        description="Their recovered grams when made (the ledger's recovered content): the "
        "mass the factor multiplies."
    )
    rerecycled_g: Grams = strawberry.field(
        description="Recovered grams of outputs made from an earlier recycling output (a "
        "re-melted ingot): not credited, they displaced primary material once already."
    )
    factor_id: str | None = strawberry.field(
        description="The emission factor used (ledger/data/emission_factors.toml); null when "
        "no confirmed factor covers the material and process (then avoidedG is 0)."
    )
    factor_g_per_t: int | None = strawberry.field(
        description="Grams CO2e avoided per tonne of recovered output; null without a factor."
    )
    avoided_g: Grams = strawberry.field(
        description="Estimated grams CO2e avoided: recycledG x factorGPerT // 1,000,000."
    )
    source: str | None = strawberry.field(description="The factor's published source.")
    method: str = strawberry.field(description="How the figure is estimated.")

    @staticmethod
    def of(r: emissions.Row) -> AvoidedEmissionsRow:
        f = r.factor
        return AvoidedEmissionsRow(
            material=r.material,
            org=r.org,
            output_g=Grams(r.output_g),
            recycled_g=Grams(r.recycled_g),
            rerecycled_g=Grams(r.rerecycled_g),
            factor_id=None if f is None else f.id,
            factor_g_per_t=None if f is None else f.g_per_t,
            avoided_g=Grams(r.avoided_g),
            source=None if f is None else f"{f.source} <{f.url}>",
            method=METHOD_TEXT,
        )


@strawberry.type(
    description="A producer's share of the avoided CO2e (an ESTIMATE): the recovered grams "
    "its retired EPR certificates counted in mass stand on, times the same factor."
)
class ProducerAvoidedEmissions:
    producer: str
    material: str = strawberry.field(description="The certified output lots' material.")
    certified_g: Grams = strawberry.field(
        description="Grams of recovered output its retired certificates stand on."
    )
    factor_id: str | None
    factor_g_per_t: int | None
    avoided_g: Grams
    source: str | None
    method: str

    @staticmethod
    def of(p: emissions.ProducerRow) -> ProducerAvoidedEmissions:
        f = p.factor
        return ProducerAvoidedEmissions(
            producer=p.producer,
            material=p.material,
            certified_g=Grams(p.certified_g),
            factor_id=None if f is None else f.id,
            factor_g_per_t=None if f is None else f.g_per_t,
            avoided_g=Grams(p.avoided_g),
            source=None if f is None else f"{f.source} <{f.url}>",
            method=METHOD_TEXT,
        )


@strawberry.type(
    description="Avoided greenhouse-gas emissions of recycled output in a period: an "
    "ESTIMATE by the avoided-burden method with the cut-off approach, from published "
    "factors (each row names its source), not a measured inventory."
)
class AvoidedEmissions:
    estimate: bool = strawberry.field(description="Always true: these figures are estimates.")
    method: str
    output_g: Grams = strawberry.field(description="Whole mass of the recycling outputs.")
    recycled_g: Grams = strawberry.field(description="Their recovered grams credited.")
    rerecycled_g: Grams = strawberry.field(
        description="Recovered grams of outputs made from earlier recycling output: not credited."
    )
    unfactored_g: Grams = strawberry.field(
        description="Recovered grams no confirmed factor covers (counted as 0 g avoided)."
    )
    avoided_g: Grams = strawberry.field(description="Estimated grams CO2e avoided: the rows' sum.")
    rows: list[AvoidedEmissionsRow] = strawberry.field(
        description="Per output material and organisation."
    )
    producers: list[ProducerAvoidedEmissions] = strawberry.field(
        description="Per producer, from its retired mass certificates; never more than the "
        "totals (the rest is unattributed). A participant sees only its own share."
    )

    @staticmethod
    def of(a: emissions.Avoided) -> AvoidedEmissions:
        return AvoidedEmissions(
            estimate=True,
            method=METHOD_TEXT,
            output_g=Grams(a.output_g),
            recycled_g=Grams(a.recycled_g),
            rerecycled_g=Grams(a.rerecycled_g),
            unfactored_g=Grams(a.unfactored_g),
            avoided_g=Grams(a.avoided_g),
            rows=[AvoidedEmissionsRow.of(r) for r in a.rows],
            producers=[ProducerAvoidedEmissions.of(p) for p in a.producers],
        )


async def avoided_emissions(
    info: Info,
    from_: Annotated[
        datetime | None,
        strawberry.argument(name="from", description="At or after this time (with a time zone)."),
    ] = None,
    to: Annotated[
        datetime | None, strawberry.argument(description="Before this time (with a time zone).")
    ] = None,
    material: Annotated[
        str | None,
        strawberry.argument(
            description="A material code or family/grade prefix of the output lots."
        ),
    ] = None,
    region: Annotated[
        str | None,
        strawberry.argument(description="The recycler's region, ISO 3166-2; CN matches CN-GD."),
    ] = None,
) -> AvoidedEmissions:
    loaders = info.context.loaders
    where = FlowFilter(start=from_, end=to, material=material_filter(material), region=region)
    found = await loaders.read(emissions.avoided_emissions, loaders.scope, where)
    return AvoidedEmissions.of(found)


AVOIDED_EMISSIONS = strawberry.field(
    resolver=avoided_emissions,
    description="Estimated greenhouse-gas emissions avoided by recycled output in a period "
    "(avoided burden, cut-off approach; factors from published sources, named per row), per "
    "material and organisation and per producer. Regulators and the operator see everything; "
    "others the outputs of lots they may read and their own producer share.",
)


@strawberry.type(description="A national plan target (ledger/data/plan_targets.toml).")
class PlanTarget:
    id: str
    country: str = strawberry.field(description="ISO 3166-1 alpha-2.")
    year: int = strawberry.field(description="The year the annual target is set for.")
    name: str
    measure: str = strawberry.field(
        description="recycling_input: grams of non-virgin lots of the materials that went "
        "into recycling transforms; recycled_output: recovered grams of recycling outputs of "
        "the materials."
    )
    materials: list[str] = strawberry.field(description="Material codes or prefixes.")
    target_g: Grams = strawberry.field(description="The annual target in grams.")
    plan: str
    source: str
    url: str


@strawberry.type(description="Recorded progress of a region in a year towards one target.")
class PlanProgress:
    target: PlanTarget
    region: str
    year: int
    recorded_g: Grams = strawberry.field(
        description="Grams recorded in the region in the calendar year (UTC), by the target's "
        "measure."
    )
    share_basis_points: int = strawberry.field(
        description="recordedG x 10,000 // targetG: the region's share of the national "
        "annual target, rounded down."
    )
    share_percent: float = strawberry.field(description="shareBasisPoints / 100, for display.")

    @staticmethod
    def of(p: plan_targets.Progress) -> PlanProgress:
        t = p.target
        return PlanProgress(
            target=PlanTarget(
                id=t.id,
                country=t.country,
                year=t.year,
                name=t.name,
                measure=t.measure,
                materials=list(t.materials),
                target_g=Grams(t.target_g),
                plan=t.plan,
                source=t.source,
                url=t.url,
            ),
            region=p.region,
            year=p.year,
            recorded_g=Grams(p.recorded_g),
            share_basis_points=p.share_bp,
            share_percent=p.share_bp / BP_PER_PERCENT,
        )


async def plan_progress(
    info: Info,
    region: Annotated[
        str, strawberry.argument(description="ISO 3166-2 region or country code, e.g. CN-GD.")
    ],
    year: Annotated[int, strawberry.argument(description="Calendar year (UTC).")],
) -> list[PlanProgress] | None:
    loaders = info.context.loaders
    if not loaders.scope.everything:
        return None
    found = await loaders.read(plan_targets.plan_progress, region, year)
    return [PlanProgress.of(p) for p in found]


PLAN_PROGRESS = strawberry.field(
    resolver=plan_progress,
    description="Progress of a region in a calendar year towards its country's national plan "
    "targets (e.g. China's 14th Five-Year Plan for Circular Economy Development, 2025), from "
    "the recorded flows. Regulators and the operator only; null for others.",
)
