"""A battery loop for the tracing tests (tests/test_tracing.py, tests/test_api_tracing.py).

Every record goes through the normal signed path. Masses in grams; ``Co/Ni/Li/Mn`` element
grams. Who did what, in ledger order::

    org:maker (producer)   creates lot:packs, batteries.li_ion.nmc, 1,600,000 g, virgin,
                           Co 48,000 Ni 144,000 Li 24,000 Mn 48,000, four packs B11..B14;
                           placed_on_market; transfers it to org:fleet
    org:fleet (taxi fleet) receives it (a delivery, not a collection: not retired yet); in_use;
                           splits it: lot:fleet-a 1,200,000 g (B11, B12, B13: Co 36,000
                           Ni 108,000 Li 18,000 Mn 36,000) and lot:fleet-b 400,000 g (B14);
                           lot:fleet-b goes to second_life, B14 recoded to S91 (GB/T 34014 §4.2);
                           lot:fleet-a retired (now 100 % post-consumer), sent to org:recycler
    org:recycler           receives lot:fleet-a (collected);
                           dismantling: fleet-a -> lot:modules 900,000 g (all its Co Ni Li Mn)
                                        + lot:casing steel.hms2 280,000 g, loss 20,000;
                           mechanical: modules -> lot:bm black mass 540,000 g
                                        (Co 35,100 Ni 105,300 Li 17,100 Mn 35,000), loss 360,000;
                           creates lot:bm-other, black mass bought in, 460,000 g post-consumer
                                        (Co 24,900 Ni 74,700 Li 12,900 Mn 25,000);
                           merges bm + bm-other -> lot:campaign 1,000,000 g
                                        (Co 60,000 Ni 180,000 Li 30,000 Mn 60,000);
                           hydrometallurgy: campaign -> lot:coso4 240,000 g (Co 50,400),
                                        lot:niso4 600,000 g (Ni 132,000),
                                        lot:li2co3 120,000 g (Li 22,560), loss 40,000 (Mn lost);
                           sends the three salts to org:cathode
    org:cathode            receives them; creates lot:co-mined, virgin cobalt sulfate,
                           100,000 g (Co 21,000); cathode synthesis: coso4 + niso4 + li2co3 +
                           60,000 g of co-mined -> lot:cathode batteries.cathode.nmc 400,000 g
                           (Co 63,000 Ni 132,000 Li 22,560), loss 620,000;
                           then (after the cathode was made) co-mined -> stored, cathode ->
                           placed_on_market
    org:regulator          reads everything
    org:outsider           a collector that handled none of it

Plus, for the GS1 scheme: org:maker creates lot:gs1-pack (one pack, GS1 element string
(01)09521234543213(21)PACK-0001; GTIN 09521234543213 is GS1's own example number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from battery_test_codes import gbt_code
from conftest import World

from producers.events import Signer

MAKER = "org:maker"
FLEET = "org:fleet"
RECYCLER = "org:recycler"
CATHODE = "org:cathode"
REGULATOR = "org:regulator"
OUTSIDER = "org:outsider"

ROLES = {
    MAKER: ["producer", "manufacturer"],
    FLEET: ["transporter"],
    RECYCLER: ["recycler"],
    CATHODE: ["manufacturer"],
    REGULATOR: ["regulator"],
    OUTSIDER: ["collector"],
}

B11, B12, B13, B14 = (gbt_code(n) for n in (11, 12, 13, 14))
S91 = gbt_code(91, maker="HDS")  # B14's second-life code (a storage integrator's)
GS1_KEY = "(01)09521234543213(21)PACK-0001"
GS1_LINK = "https://id.gs1.org/01/09521234543213/21/PACK-0001"


@dataclass
class Loop:
    world: World
    signers: dict[str, Signer]
    hashes: dict[str, str] = field(default_factory=dict)  # step name -> record hash
    seqs: dict[str, int] = field(default_factory=dict)  # step name -> seq


def _lots_of(body: dict[str, Any]) -> list[str]:
    found = [body["lot"]] if isinstance(body.get("lot"), str) else []
    found += [i["lot"] for i in body.get("inputs", [])]
    found += list(body.get("lots", []))
    return found


def build_loop(world: World) -> Loop:
    s = {org: world.admit(org, roles, "CN-GD") for org, roles in ROLES.items()}
    loop = Loop(world, s)

    def put(name: str, who: str, rtype: str, body: dict[str, Any], at: str) -> None:
        touched = _lots_of(body)
        parents = world.heads(*touched) if touched else {}
        [done] = world.ok(s[who].record(rtype, body, parents, at=at))
        loop.hashes[name] = done.hash
        loop.seqs[name] = done.seq

    def transfer(name: str, who: str, lot: str, to: str, mass_g: int, at: str) -> None:
        put(f"{name}.transfer", who, "transfer", {"lot": lot, "to": to, "mass_g": mass_g}, at)

    def receive(name: str, who: str, lot: str, mass_g: int, at: str) -> None:
        put(f"{name}.receive", who, "receive", {"lot": lot, "mass_g": mass_g}, at)

    elements = {"Co": 48_000, "Ni": 144_000, "Li": 24_000, "Mn": 48_000}
    put(
        "packs.create",
        MAKER,
        "create",
        {
            "lot": "lot:packs",
            "material": "batteries.li_ion.nmc",
            "mass_g": 1_600_000,
            "origin": "virgin",
            "elements": elements,
            "units": [B11, B12, B13, B14],
        },
        "2024-01-05T08:00:00Z",
    )
    put(
        "packs.market",
        MAKER,
        "status",
        {"lot": "lot:packs", "status": "placed_on_market", "note": "sold to the taxi fleet"},
        "2024-01-06T08:00:00Z",
    )
    transfer("packs", MAKER, "lot:packs", FLEET, 1_600_000, "2024-01-07T08:00:00Z")
    receive("packs", FLEET, "lot:packs", 1_600_000, "2024-01-08T08:00:00Z")
    put(
        "packs.in_use",
        FLEET,
        "status",
        {"lot": "lot:packs", "status": "in_use"},
        "2024-01-09T08:00:00Z",
    )
    put(
        "packs.split",
        FLEET,
        "split",
        {
            "lot": "lot:packs",
            "parts": [
                {"lot": "lot:fleet-a", "mass_g": 1_200_000, "units": [B11, B12, B13]},
                {"lot": "lot:fleet-b", "mass_g": 400_000, "units": [B14]},
            ],
        },
        "2026-06-01T08:00:00Z",
    )
    put(
        "fleet-b.second_life",
        FLEET,
        "status",
        {
            "lot": "lot:fleet-b",
            "status": "second_life",
            "note": "stationary storage at the depot",
            "recode": {B14: S91},
        },
        "2026-06-02T08:00:00Z",
    )
    put(
        "fleet-a.retired",
        FLEET,
        "status",
        {"lot": "lot:fleet-a", "status": "retired", "note": "state of health below 70 %"},
        "2026-06-03T08:00:00Z",
    )
    transfer("fleet-a", FLEET, "lot:fleet-a", RECYCLER, 1_200_000, "2026-06-04T08:00:00Z")
    receive("fleet-a", RECYCLER, "lot:fleet-a", 1_200_000, "2026-06-05T08:00:00Z")
    put(
        "dismantling",
        RECYCLER,
        "transform",
        {
            "process": "dismantling",
            "inputs": [{"lot": "lot:fleet-a", "mass_g": 1_200_000}],
            "outputs": [
                {
                    "lot": "lot:modules",
                    "material": "batteries.li_ion.module",
                    "mass_g": 900_000,
                    "elements": {"Co": 36_000, "Ni": 108_000, "Li": 18_000, "Mn": 36_000},
                },
                {"lot": "lot:casing", "material": "steel.hms2", "mass_g": 280_000},
            ],
            "loss_g": 20_000,
        },
        "2026-06-10T08:00:00Z",
    )
    put(
        "mechanical",
        RECYCLER,
        "transform",
        {
            "process": "mechanical",
            "inputs": [{"lot": "lot:modules", "mass_g": 900_000}],
            "outputs": [
                {
                    "lot": "lot:bm",
                    "material": "batteries.black_mass",
                    "mass_g": 540_000,
                    "elements": {"Co": 35_100, "Ni": 105_300, "Li": 17_100, "Mn": 35_000},
                }
            ],
            "loss_g": 360_000,
        },
        "2026-06-12T08:00:00Z",
    )
    put(
        "bm-other.create",
        RECYCLER,
        "create",
        {
            "lot": "lot:bm-other",
            "material": "batteries.black_mass",
            "mass_g": 460_000,
            "origin": "post_consumer",
            "elements": {"Co": 24_900, "Ni": 74_700, "Li": 12_900, "Mn": 25_000},
        },
        "2026-06-13T08:00:00Z",
    )
    put(
        "campaign.merge",
        RECYCLER,
        "merge",
        {"lots": ["lot:bm", "lot:bm-other"], "into": "lot:campaign"},
        "2026-06-15T08:00:00Z",
    )
    put(
        "hydrometallurgy",
        RECYCLER,
        "transform",
        {
            "process": "hydrometallurgy",
            "inputs": [{"lot": "lot:campaign", "mass_g": 1_000_000}],
            "outputs": [
                {
                    "lot": "lot:coso4",
                    "material": "elements.cobalt_sulfate",
                    "mass_g": 240_000,
                    "elements": {"Co": 50_400},
                },
                {
                    "lot": "lot:niso4",
                    "material": "elements.nickel_sulfate",
                    "mass_g": 600_000,
                    "elements": {"Ni": 132_000},
                },
                {
                    "lot": "lot:li2co3",
                    "material": "elements.lithium_carbonate",
                    "mass_g": 120_000,
                    "elements": {"Li": 22_560},
                },
            ],
            "loss_g": 40_000,
        },
        "2026-06-20T08:00:00Z",
    )
    for lot, mass in (("lot:coso4", 240_000), ("lot:niso4", 600_000), ("lot:li2co3", 120_000)):
        transfer(lot, RECYCLER, lot, CATHODE, mass, "2026-07-01T08:00:00Z")
        receive(lot, CATHODE, lot, mass, "2026-07-02T08:00:00Z")
    put(
        "co-mined.create",
        CATHODE,
        "create",
        {
            "lot": "lot:co-mined",
            "material": "elements.cobalt_sulfate",
            "mass_g": 100_000,
            "origin": "virgin",
            "elements": {"Co": 21_000},
        },
        "2026-07-03T08:00:00Z",
    )
    put(
        "cathode.make",
        CATHODE,
        "transform",
        {
            "process": "cathode_synthesis",
            "inputs": [
                {"lot": "lot:coso4", "mass_g": 240_000},
                {"lot": "lot:niso4", "mass_g": 600_000},
                {"lot": "lot:li2co3", "mass_g": 120_000},
                {"lot": "lot:co-mined", "mass_g": 60_000},
            ],
            "outputs": [
                {
                    "lot": "lot:cathode",
                    "material": "batteries.cathode.nmc",
                    "mass_g": 400_000,
                    "elements": {"Co": 63_000, "Ni": 132_000, "Li": 22_560},
                }
            ],
            "loss_g": 620_000,
        },
        "2026-07-10T08:00:00Z",
    )
    put(
        "co-mined.stored",
        CATHODE,
        "status",
        {"lot": "lot:co-mined", "status": "stored"},
        "2026-07-11T08:00:00Z",
    )
    put(
        "cathode.market",
        CATHODE,
        "status",
        {"lot": "lot:cathode", "status": "placed_on_market"},
        "2026-07-12T08:00:00Z",
    )
    put(
        "gs1.create",
        MAKER,
        "create",
        {
            "lot": "lot:gs1-pack",
            "material": "batteries.li_ion.nmc",
            "mass_g": 450_000,
            "origin": "virgin",
            "elements": {"Co": 13_000, "Ni": 40_000},
            "units": [GS1_KEY],
        },
        "2026-08-01T08:00:00Z",
    )
    return loop
