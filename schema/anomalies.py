"""``anomalies(from, to, kinds, transitDays)``: what doesn't add up, for regulators
(ledger/anomalies.py has each kind's rule). Null for anyone else."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry

from ledger import anomalies as ledger_anomalies
from schema.loaders import BadArgument
from schema.types import Info


@strawberry.enum(description="What kind of thing doesn't add up.")
class AnomalyKind(Enum):
    TRANSIT_LOSS = "transit_loss"
    YIELD = "yield"
    OVER_CERTIFICATION = "over_certification"
    STUCK_IN_TRANSIT = "stuck_in_transit"
    MISSING_ROLE = "missing_role"


@strawberry.type(description="One anomaly, with the records that raise it.")
class Anomaly:
    kind: AnomalyKind
    org: strawberry.ID = strawberry.field(description="Whose step it is.")
    message: str = strawberry.field(description="What was compared with what.")
    records: list[str] = strawberry.field(description="Hashes of the records that raise it.")
    lot: strawberry.ID | None

    @staticmethod
    def of(x: ledger_anomalies.Anomaly) -> Anomaly:
        return Anomaly(
            kind=AnomalyKind(x.kind.value),
            org=strawberry.ID(x.org),
            message=x.message,
            records=list(x.records),
            lot=None if x.lot is None else strawberry.ID(x.lot),
        )


MAX_TRANSIT_DAYS = 36_500
# The years EPR periods cover (ledger/epr_schemes.py): the over-certification check walks
# the periods of the window, and a bound outside them was a ValueError, so INTERNAL
# (found by tests/test_hostile_graphql.py, RLEDGER_LONG=1;
# tests/test_bug_anomalies_window_beyond_epr_years.py).
EARLIEST = datetime(1901, 1, 1, tzinfo=UTC)  # an April-March year of 1900 starts in 1899
LATEST = datetime(9998, 1, 1, tzinfo=UTC)


async def anomalies(
    info: Info,
    from_: Annotated[
        datetime | None,
        strawberry.argument(name="from", description="At or after this time (with a time zone)."),
    ] = None,
    to: Annotated[
        datetime | None, strawberry.argument(description="Before this time (with a time zone).")
    ] = None,
    kinds: list[AnomalyKind] | None = None,
    transit_days: Annotated[
        int | None,
        strawberry.argument(description="Days in transit before a lot is flagged (default 14)."),
    ] = None,
) -> list[Anomaly] | None:
    if transit_days is not None and transit_days > MAX_TRANSIT_DAYS:
        # now - transitDays left the calendar (year 1) and overflowed: INTERNAL, found by
        # tests/test_hostile_graphql.py (tests/test_bug_transit_days_overflow.py).
        raise BadArgument(
            "transitDays",
            f"transitDays may be at most {MAX_TRANSIT_DAYS} (a century), got {transit_days}",
        )
    for name, bound in (("from", from_), ("to", to)):
        if bound is not None and bound.utcoffset() is not None and not EARLIEST <= bound <= LATEST:
            raise BadArgument(
                name,
                f"{name} must lie from 1901-01-01T00:00:00Z to 9998-01-01T00:00:00Z "
                "(the years EPR periods cover)",
            )
    loaders = info.context.loaders
    found = await loaders.read(
        ledger_anomalies.anomalies,
        loaders.scope,
        ledger_anomalies.Window(from_, to),
        None if kinds is None else [ledger_anomalies.Kind(k.value) for k in kinds],
        transit_days,
    )
    return None if found is None else [Anomaly.of(x) for x in found]


ANOMALIES = strawberry.field(
    resolver=anomalies,
    description="Transit losses beyond tolerance, implausible yields, over-certification, "
    "lots left in transit, steps by organisations without the role: each with the records "
    "that raise it. Regulators and the operator only; null for others.",
)
