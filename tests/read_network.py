"""A small network for the read-side tests (queries, access, statement counts).

Who did what (every record signed through the normal path)::

    org:maker (producer)   creates lot:pack (battery pack, 2 battery codes)      2026-01-05
                           transfers it to org:coll-a, which receives it (1 kg transit loss)
    org:coll-a (collector) transfers lot:pack to org:recycler, which receives it
    org:recycler           dismantles lot:pack -> lot:bm (black mass) + lot:casing   2026-03-10
                           splits lot:casing -> lot:cs-1 + lot:cs-2, then voids that split
                           (lot:cs-1/2 are void, their edges stay in lot_edges)
    org:coll-a             creates lot:occ (paper), splits it -> lot:occ-1 + lot:occ-2,
                           sends lot:occ-2 to org:recycler (still in transit)
    org:coll-b (collector) creates lot:hms (steel) and lot:cu (copper); nothing else
    org:regulator          reads everything
    org:operator           (genesis) reads everything

Regions: coll-a CN-GX, everyone else CN-GD, the operator CN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from battery_test_codes import gbt_code
from conftest import World

from ledger.tokens import issue_token, revoke_token
from producers.events import Signer
from schema.app import create_app

MAKER = "org:maker"
COLL_A = "org:coll-a"
COLL_B = "org:coll-b"
RECYCLER = "org:recycler"
REGULATOR = "org:regulator"
OPERATOR = "org:operator"

ROLES = {
    MAKER: ["producer", "manufacturer"],
    COLL_A: ["collector"],
    COLL_B: ["collector"],
    RECYCLER: ["recycler"],
    REGULATOR: ["regulator"],
}
REGIONS = {COLL_A: "CN-GX"}


@dataclass
class Network:
    world: World
    signers: dict[str, Signer]
    hashes: dict[str, str] = field(default_factory=dict)  # name -> record hash
    bulk: list[str] = field(default_factory=list)  # extra lots, in id order


def build_network(world: World, *, bulk_lots: int = 0) -> Network:
    s = {org: world.admit(org, roles, REGIONS.get(org, "CN-GD")) for org, roles in ROLES.items()}
    net = Network(world, s)
    maker, a, b, rec, reg = (s[x] for x in (MAKER, COLL_A, COLL_B, RECYCLER, REGULATOR))

    def put(name: str, signer: Signer, rtype: str, body: dict[str, object], at: str) -> None:
        touched = [v for k, v in body.items() if k == "lot" and isinstance(v, str)]
        touched += [i["lot"] for i in body.get("inputs", [])]  # type: ignore[attr-defined]
        parents = world.heads(*touched) if touched else {}
        [done] = world.ok(signer.record(rtype, body, parents, at=at))
        net.hashes[name] = done.hash

    put(
        "pack.create",
        maker,
        "create",
        {
            "lot": "lot:pack",
            "material": "batteries.li_ion.nmc",
            "mass_g": 400_000,
            "origin": "virgin",
            "elements": {"Co": 20_000, "Ni": 60_000},
            "units": [gbt_code(1), gbt_code(2)],
        },
        "2026-01-05T08:00:00Z",
    )
    put(
        "pack.t1",
        maker,
        "transfer",
        {"lot": "lot:pack", "to": COLL_A, "mass_g": 400_000},
        "2026-03-01T08:00:00Z",
    )
    put("pack.r1", a, "receive", {"lot": "lot:pack", "mass_g": 399_000}, "2026-03-02T08:00:00Z")
    put(
        "pack.t2",
        a,
        "transfer",
        {"lot": "lot:pack", "to": RECYCLER, "mass_g": 399_000},
        "2026-03-05T08:00:00Z",
    )
    put("pack.r2", rec, "receive", {"lot": "lot:pack", "mass_g": 399_000}, "2026-03-06T08:00:00Z")
    put(
        "dismantle",
        rec,
        "transform",
        {
            "process": "dismantling",
            "inputs": [{"lot": "lot:pack", "mass_g": 399_000}],
            "outputs": [
                {
                    "lot": "lot:bm",
                    "material": "batteries.black_mass",
                    "mass_g": 250_000,
                    "elements": {"Co": 19_000},
                },
                {"lot": "lot:casing", "material": "steel.shredded", "mass_g": 140_000},
            ],
            "loss_g": 9_000,
        },
        "2026-03-10T08:00:00.250Z",
    )
    put(
        "casing.split",
        rec,
        "split",
        {
            "lot": "lot:casing",
            "parts": [{"lot": "lot:cs-1", "mass_g": 70_000}, {"lot": "lot:cs-2", "mass_g": 70_000}],
        },
        "2026-03-11T08:00:00Z",
    )
    split_hash = net.hashes["casing.split"]
    parents = world.heads("lot:casing", "lot:cs-1", "lot:cs-2")
    [void] = world.ok(
        rec.record(
            "void",
            {"record": split_hash, "reason": "entered twice"},
            parents,
            at="2026-03-11T09:00:00Z",
        )
    )
    net.hashes["casing.void"] = void.hash
    put(
        "occ.create",
        a,
        "create",
        {"lot": "lot:occ", "material": "paper.occ", "mass_g": 500_000, "origin": "post_consumer"},
        "2026-02-01T08:00:00.5Z",
    )
    put(
        "occ.split",
        a,
        "split",
        {
            "lot": "lot:occ",
            "parts": [
                {"lot": "lot:occ-1", "mass_g": 200_000},
                {"lot": "lot:occ-2", "mass_g": 300_000},
            ],
        },
        "2026-02-02T08:00:00Z",
    )
    put(
        "occ.t",
        a,
        "transfer",
        {"lot": "lot:occ-2", "to": RECYCLER, "mass_g": 300_000},
        "2026-02-03T08:00:00Z",
    )
    put(
        "hms.create",
        b,
        "create",
        {
            "lot": "lot:hms",
            "material": "steel.hms1",
            "mass_g": 1_000_000,
            "origin": "post_consumer",
        },
        "2026-02-10T08:00:00Z",
    )
    put(
        "cu.create",
        b,
        "create",
        {
            "lot": "lot:cu",
            "material": "nonferrous.cu_bright",
            "mass_g": 50_000,
            "origin": "post_consumer",
        },
        "2026-02-11T08:00:00Z",
    )
    if bulk_lots:
        makers = [a, b, rec]
        batch = []
        for i in range(bulk_lots):
            lot = f"lot:bulk-{i:04d}"
            net.bulk.append(lot)
            body = {
                "lot": lot,
                "material": "plastics.pet",
                "mass_g": 1_000 + i,
                "origin": "post_consumer",
            }
            batch.append(makers[i % 3].record("create", body, at="2026-04-01T08:00:00Z"))
        world.ok(*batch)
    del reg
    return net


# Every lot of the network (without bulk lots), and who may read which.
ALL_LOTS = [
    "lot:bm",
    "lot:casing",
    "lot:cs-1",
    "lot:cs-2",
    "lot:cu",
    "lot:hms",
    "lot:occ",
    "lot:occ-1",
    "lot:occ-2",
    "lot:pack",
]
VISIBLE_LOTS: dict[str, set[str]] = {
    # created it; lineage of lot:pack both ways (never into the void lots cs-1/2)
    MAKER: {"lot:pack", "lot:bm", "lot:casing"},
    # handled lot:pack; made lot:occ and its parts
    COLL_A: {"lot:pack", "lot:occ", "lot:occ-1", "lot:occ-2"},
    COLL_B: {"lot:hms", "lot:cu"},
    # handled lot:pack, made bm/casing (custodian), made and voided cs-1/2, occ-2 is in transit to it
    RECYCLER: {"lot:pack", "lot:bm", "lot:casing", "lot:cs-1", "lot:cs-2", "lot:occ-2"},
    REGULATOR: set(ALL_LOTS),
    OPERATOR: set(ALL_LOTS),
}


@dataclass
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        assert not self.body.get("errors"), self.body
        assert self.status == 200, self.body
        data: dict[str, Any] = self.body["data"]
        return data

    @property
    def codes(self) -> list[str]:
        return [e["extensions"]["code"] for e in self.body.get("errors", [])]


class Api:
    """The GraphQL API over the world's store (httpx's ASGI transport), one token per org."""

    def __init__(self, world: World, *, token_ttl: float | None = 0) -> None:
        self.world = world
        # token_ttl=0: no token cache, so a revoked token is refused at once.
        self.app = create_app(world.store, token_ttl=token_ttl)
        self.tokens: dict[str, str] = {}

    def token(self, org: str) -> str:
        if org not in self.tokens:
            self.tokens[org] = issue_token(self.world.store.engine, org, label="test")
        return self.tokens[org]

    def revoked_token(self, org: str) -> str:
        token = issue_token(self.world.store.engine, org, label="revoked")
        assert revoke_token(self.world.store.engine, token.split("_")[1])
        return token

    def ask(
        self,
        who: str | None,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        authorization: str | None = None,
    ) -> Answer:
        """Run one operation; ``who``: an org id (its token), a raw token (rlt_…), or
        None (no header, unless ``authorization`` gives the header's whole value)."""
        headers = {}
        if who is not None:
            token = who if who.startswith("rlt_") else self.token(who)
            headers["Authorization"] = f"Bearer {token}"
        elif authorization is not None:
            headers["Authorization"] = authorization
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables

        async def post() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ledger.test") as c:
                return await c.post("/graphql", json=payload, headers=headers)

        response = anyio.run(post)
        return Answer(response.status_code, response.json())

    def ok(self, who: str | None, query: str, **variables: Any) -> dict[str, Any]:
        return self.ask(who, query, variables or None).data
