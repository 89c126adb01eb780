"""GraphQL for material flows (ledger/flows.py): Sankey-ready nodes and links, stage totals,
rates and a monthly series.

Shapes only: every figure is computed by ledger/flows.py in integer grams; rates are exact
basis points rounded down, with a ``Float`` percent beside them for display. Regulators and
the operator see every flow; any other organisation the flows of the lots it may read.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from ledger import flows
from schema.scalars import Grams
from schema.types import Info, material_filter

BP_PER_PERCENT = 100


@strawberry.enum(description="How materialFlows groups its nodes.")
class FlowGroupBy(Enum):
    STAGE = "stage"
    ORGANISATION = "organisation"
    REGION = "region"


@strawberry.type(description="A Sankey node: a stage, an organisation or a region.")
class FlowNode:
    id: str = strawberry.field(
        description="A stage (collected, virgin, processed, recycled, manufactured, "
        "second_life, disposed, in_transit, loss), an organisation id or an ISO 3166-2 region."
    )
    kind: str = strawberry.field(description="stage, organisation or region.")
    mass_g: Grams = strawberry.field(
        description="The larger of the grams flowing in and out: the node's size."
    )


@strawberry.type(description="A Sankey link: grams from source into target in the period.")
class FlowLink:
    source: str
    target: str
    mass_g: Grams


@strawberry.type(description="Grams into one stage.")
class StageMass:
    stage: str
    mass_g: Grams


@strawberry.type(description="Grams disposed of by one method.")
class MethodMass:
    method: str
    mass_g: Grams


@strawberry.type(description="One calendar month (UTC) of the series: grams into each stage.")
class FlowMonth:
    month: str = strawberry.field(description="YYYY-MM.")
    stages: list[StageMass]


@strawberry.type(description="A rate in basis points of the collected mass.")
class FlowRate:
    basis_points: int = strawberry.field(description="1 bp = 0.01 %, rounded down.")
    percent: float = strawberry.field(description="basisPoints / 100, for display.")


def _rate(bp: int) -> FlowRate:
    return FlowRate(basis_points=bp, percent=bp / BP_PER_PERCENT)


def _stages(stages: dict[str, int]) -> list[StageMass]:
    return [StageMass(stage=s, mass_g=Grams(g)) for s, g in stages.items()]


@strawberry.type(
    description="Material flows in a period. Stages: collected = creates with origin pre- or "
    "post-consumer; processed / recycled / manufactured = transform inputs by preparation, "
    "recycling (recycling = true in the taxonomy) or manufacturing processes; second_life = "
    "status second_life; disposed = dispose records; in_transit = transfers not yet "
    "received; loss = transforms' loss_g. Links carry grams of lots of the source class into "
    "the target stage (groupBy STAGE), or grams each organisation or region put into each "
    "stage (ORGANISATION, REGION). Integer grams summed in SQL."
)
class MaterialFlows:
    group_by: FlowGroupBy
    nodes: list[FlowNode]
    links: list[FlowLink]
    stages: list[StageMass] = strawberry.field(description="Grams into each stage.")
    disposed_by_method: list[MethodMass]
    recovery_rate: FlowRate = strawberry.field(
        description="Grams of matching lots into recycling processes ÷ grams collected."
    )
    reuse_rate: FlowRate = strawberry.field(description="Second life ÷ collected.")
    disposal_rate: FlowRate = strawberry.field(description="Disposed ÷ collected.")
    months: list[FlowMonth]

    @staticmethod
    def of(f: flows.Flows) -> MaterialFlows:
        return MaterialFlows(
            group_by=FlowGroupBy(f.group_by.value),
            nodes=[FlowNode(id=n.id, kind=n.kind, mass_g=Grams(n.mass_g)) for n in f.nodes],
            links=[
                FlowLink(source=x.source, target=x.target, mass_g=Grams(x.mass_g)) for x in f.links
            ],
            stages=_stages(f.stages),
            disposed_by_method=[
                MethodMass(method=m, mass_g=Grams(g)) for m, g in f.disposed_by_method.items()
            ],
            recovery_rate=_rate(f.recovery_bp),
            reuse_rate=_rate(f.reuse_bp),
            disposal_rate=_rate(f.disposal_bp),
            months=[FlowMonth(month=m.month, stages=_stages(m.stages)) for m in f.months],
        )


async def material_flows(
    info: Info,
    from_: Annotated[
        datetime | None,
        strawberry.argument(
            name="from",
            description="From this UTC midnight on (flows are kept per day), e.g. 2026-05-01T00:00:00Z.",
        ),
    ] = None,
    to: Annotated[
        datetime | None, strawberry.argument(description="Before this UTC midnight.")
    ] = None,
    material: Annotated[
        str | None,
        strawberry.argument(
            description="A material code or a family/grade prefix (steel matches steel.hms1), "
            "of the lot the mass came from."
        ),
    ] = None,
    region: Annotated[
        str | None,
        strawberry.argument(
            description="The acting organisation's region, ISO 3166-2; CN matches CN-GD."
        ),
    ] = None,
    group_by: FlowGroupBy = FlowGroupBy.STAGE,
) -> MaterialFlows:
    loaders = info.context.loaders
    where = flows.FlowFilter(start=from_, end=to, material=material_filter(material), region=region)
    found = await loaders.read(
        flows.material_flows, loaders.scope, where, flows.GroupBy(group_by.value)
    )
    return MaterialFlows.of(found)


MATERIAL_FLOWS = strawberry.field(
    resolver=material_flows,
    description="Material flows between stages (or by organisation or region) in a period, "
    "for a material and region, with recovery, reuse and disposal rates and a monthly "
    "series. Regulators and the operator see every flow; others the flows of lots they may "
    "read.",
)
