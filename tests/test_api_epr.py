"""EPR end to end through the GraphQL API (httpx's ASGI transport), on SQLite and PostgreSQL:
every record goes in through recordEvents with its organisation's token — collection,
pelletising, declarations, certificates, their transfer and retirement, a double-counting
attempt — and the compliance report, the regulator's totals and flags, and a certificate
with its evidence come out of the queries.

Hand-worked (eu.packaging, 2026, plastic target 50 %): org:pet-recycler collects 200,000 g
of PET bottles and pelletises them into 190,000 g of rPET pellets (yield 950 per mille, the
lowest plausible: no flag). org:drinks declares 300,000 g (12,000 bottles) -> obligation
150,000 g; it buys cert:a (120,000 g), retires it, and buys cert:b (30,000 g) that it holds
without retiring: gap 150,000 - 120,000 = 30,000 g; compliance 120,000 / 150,000 = 8,000
bp, 80 %. The recycler then tries cert:c for 40,001 g on the same pellets, which have
190,000 - 150,000 = 40,000 g left: refused, certificate.exceeds_output, and nothing changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import World
from read_network import Api

from ledger.store import Signed
from producers.events import Signer

RECYCLER = "org:pet-recycler"
DRINKS = "org:drinks"
OTHER_PRODUCER = "org:snacks"
REGULATOR = "org:regulator"
COLLECTOR = "org:collector"
AT = "2026-04-01T09:00:00Z"

RECORD = """mutation($e: [SignedEvent!]!) { recordEvents(events: $e) {
  __typename ... on Recorded { seq } ... on Rejected { code path message }
} }"""
HEADS = "query($lots: [ID!]!) { heads(lots: $lots) { lot head } }"

REPORT = """query($p: ID!, $s: String!, $period: String!) {
  eprReport(producer: $p, scheme: $s, period: $period) {
    producer { id } period compliant scheme { id periodKind }
    totals { placedOnMarketG obligationG heldG retiredG gapG complianceBasisPoints compliance }
    categories {
      category unit targetBasisPoints placedOnMarketG placedOnMarketUnits declarations
      obligationG heldG retiredG gapG complianceBasisPoints compliance
      certificatesHeld { id massG retired holder { id } }
      certificatesRetired { id massG retired retiredPeriod issuer { id } holder { id } }
    }
    flags { kind } collection { rateBasisPoints }
  }
}"""


class Flow:
    def __init__(self, world: World) -> None:
        self.api = Api(world)
        self.s: dict[str, Signer] = {
            RECYCLER: world.admit(RECYCLER, ["recycler"]),
            DRINKS: world.admit(DRINKS, ["producer"]),
            OTHER_PRODUCER: world.admit(OTHER_PRODUCER, ["producer"]),
            REGULATOR: world.admit(REGULATOR, ["regulator"]),
            COLLECTOR: world.admit(COLLECTOR, ["collector"]),
        }

    def send(
        self, org: str, rtype: str, body: dict[str, Any], lots: list[str] | None = None
    ) -> Any:
        parents = {}
        if lots:
            found = self.api.ok(org, HEADS, lots=lots)["heads"]
            parents = {x["lot"]: x["head"] for x in found}
        signed: Signed = self.s[org].record(rtype, body, parents, at=AT)
        text = signed.envelope.decode() if isinstance(signed.envelope, bytes) else signed.envelope
        event = {"envelope": text, "signature": signed.signature}
        [result] = self.api.ok(org, RECORD, e=[event])["recordEvents"]
        return result

    def ok(self, org: str, rtype: str, body: dict[str, Any], lots: list[str] | None = None) -> None:
        result = self.send(org, rtype, body, lots)
        assert result["__typename"] == "Recorded", result


def certify(cert: str, mass_g: int) -> dict[str, Any]:
    return {
        "certificate": cert,
        "scheme": "eu.packaging",
        "category": "plastic",
        "period": "2026",
        "lots": [{"lot": "lot:pellets", "mass_g": mass_g}],
        "mass_g": mass_g,
    }


@pytest.fixture
def flow(world: World) -> Flow:
    f = Flow(world)
    bottles = {
        "lot": "lot:bottles",
        "material": "plastics.pet",
        "mass_g": 200_000,
        "origin": "post_consumer",
    }
    f.ok(RECYCLER, "create", bottles)
    pelletise = {
        "process": "pelletising",
        "inputs": [{"lot": "lot:bottles", "mass_g": 200_000}],
        "outputs": [{"lot": "lot:pellets", "material": "plastics.rpet_pellet", "mass_g": 190_000}],
        "loss_g": 10_000,
    }
    f.ok(RECYCLER, "transform", pelletise, ["lot:bottles"])
    declaration = {"scheme": "eu.packaging", "category": "plastic", "period": "2026"}
    f.ok(DRINKS, "declare", declaration | {"mass_g": 300_000, "units": 12_000})
    f.ok(RECYCLER, "certify", certify("cert:a", 120_000))
    f.ok(RECYCLER, "certify", certify("cert:b", 30_000))
    for cert in ("cert:a", "cert:b"):
        f.ok(RECYCLER, "certificate.transfer", {"certificate": cert, "to": DRINKS})
    f.ok(DRINKS, "certificate.retire", {"certificate": "cert:a", "period": "2026"})
    return f


def test_from_declarations_to_a_compliance_report(flow: Flow) -> None:
    api = flow.api
    report = api.ok(DRINKS, REPORT, p=DRINKS, s="eu.packaging", period="2026")["eprReport"]
    assert report["producer"] == {"id": DRINKS} and report["period"] == "2026"
    assert report["scheme"] == {"id": "eu.packaging", "periodKind": "year"}
    plastic = next(c for c in report["categories"] if c["category"] == "plastic")
    assert plastic == {
        "category": "plastic",
        "unit": "g",
        "targetBasisPoints": 5_000,
        "placedOnMarketG": 300_000,
        "placedOnMarketUnits": 12_000,
        "declarations": 1,
        "obligationG": 150_000,
        "heldG": 30_000,
        "retiredG": 120_000,
        "gapG": 30_000,
        "complianceBasisPoints": 8_000,
        "compliance": 80.0,
        "certificatesHeld": [
            {"id": "cert:b", "massG": 30_000, "retired": False, "holder": {"id": DRINKS}}
        ],
        "certificatesRetired": [
            {
                "id": "cert:a",
                "massG": 120_000,
                "retired": True,
                "retiredPeriod": "2026",
                "issuer": {"id": RECYCLER},
                "holder": {"id": DRINKS},
            }
        ],
    }
    assert report["totals"] == {
        "placedOnMarketG": 300_000,
        "obligationG": 150_000,
        "heldG": 30_000,
        "retiredG": 120_000,
        "gapG": 30_000,
        "complianceBasisPoints": 8_000,
        "compliance": 80.0,
    }
    assert report["compliant"] is False
    assert report["flags"] == [] and report["collection"] is None

    # Retiring the held certificate closes the gap.
    flow.ok(DRINKS, "certificate.retire", {"certificate": "cert:b", "period": "2026"})
    after = api.ok(DRINKS, REPORT, p=DRINKS, s="eu.packaging", period="2026")["eprReport"]
    assert (after["compliant"], after["totals"]["gapG"]) == (True, 0)
    assert after["totals"]["complianceBasisPoints"] == 10_000


def test_a_double_counting_attempt_is_refused_through_the_api(flow: Flow) -> None:
    api = flow.api
    before = api.ok(REGULATOR, TOTALS, s="eu.packaging", period="2026")
    result = flow.send(RECYCLER, "certify", certify("cert:c", 40_001))
    assert result["__typename"] == "Rejected"
    assert (result["code"], result["path"]) == ("certificate.exceeds_output", "body.lots[0].mass_g")
    assert "at most 40000 g" in result["message"]
    assert api.ok(REGULATOR, TOTALS, s="eu.packaging", period="2026") == before
    assert api.ok(REGULATOR, CERT, id="cert:c") == {"certificate": None}
    # The attempt is on record: regulators read every refusal, the actor its own, others none.
    [seen] = api.ok(REGULATOR, REFUSALS)["refusals"]["edges"]
    assert (
        seen["node"]["actor"] == RECYCLER and seen["node"]["code"] == "certificate.exceeds_output"
    )
    assert seen["node"]["path"] == "body.lots[0].mass_g" and '"cert:c"' in seen["node"]["envelope"]
    assert api.ok(RECYCLER, REFUSALS)["refusals"]["edges"] == [seen]
    assert api.ok(DRINKS, REFUSALS)["refusals"]["edges"] == []
    filtered = api.ok(REGULATOR, REFUSALS, code="certificate.retired")["refusals"]["edges"]
    assert filtered == []
    flow.ok(RECYCLER, "certify", certify("cert:c", 40_000))  # what is left, exactly


REFUSALS = """query($code: String) { refusals(filter: {code: $code}) {
  edges { node { recordId actor type code path message envelope } }
  pageInfo { hasNextPage }
} }"""


TOTALS = """query($s: String!, $period: String!) { eprTotals(scheme: $s, period: $period) {
  categories { category placedOnMarketG producers obligationG eligibleOutputG certifiedG
               heldG retiredG gapG }
  producers { producer { id } category obligationG retiredG gapG complianceBasisPoints }
  recyclers { recycler { id } category eligibleOutputG certifiedG retiredG }
  flags { kind }
} }"""
FLAGS = """query($s: String!, $period: String!) { eprFlags(scheme: $s, period: $period) {
  kind recycler { id } certifiedG allowedG excessG inputG yields { process permille } message
} }"""
CERT = """query($id: ID!) { certificate(id: $id) {
  id scheme category period unit massG retired issuer { id } holder { id }
  lots { lot massG material process recoveredG certifiedG
         lineage(maxDepth: 3) { nodes { id material } edges { parent child massG } } }
} }"""


def test_the_regulators_totals_and_flags(flow: Flow) -> None:
    api = flow.api
    totals = api.ok(REGULATOR, TOTALS, s="eu.packaging", period="2026")["eprTotals"]
    plastic = next(c for c in totals["categories"] if c["category"] == "plastic")
    assert plastic == {
        "category": "plastic",
        "placedOnMarketG": 300_000,
        "producers": 1,
        "obligationG": 150_000,
        "eligibleOutputG": 190_000,
        "certifiedG": 150_000,
        "heldG": 30_000,
        "retiredG": 120_000,
        "gapG": 30_000,
    }
    assert totals["producers"] == [
        {
            "producer": {"id": DRINKS},
            "category": "plastic",
            "obligationG": 150_000,
            "retiredG": 120_000,
            "gapG": 30_000,
            "complianceBasisPoints": 8_000,
        }
    ]
    assert totals["recyclers"] == [
        {
            "recycler": {"id": RECYCLER},
            "category": "plastic",
            "eligibleOutputG": 190_000,
            "certifiedG": 150_000,
            "retiredG": 120_000,
        }
    ]
    assert totals["flags"] == []
    # 1,000,000 g pelletised into 1,000,000 g, above the 990 per mille pelletising can give,
    # and all of it certified, with the 40,000 g left of the first pellets: certified
    # 150,000 + 40,000 + 1,000,000 = 1,190,000 g; inputs 200,000 + 1,000,000 = 1,200,000 g,
    # which allow 198,000 + 990,000 = 1,188,000 g: 2,000 g too many.
    bottles = {"lot": "lot:b2", "material": "plastics.pet", "mass_g": 1_000_000}
    flow.ok(RECYCLER, "create", bottles | {"origin": "post_consumer"})
    perfect = {
        "process": "pelletising",
        "inputs": [{"lot": "lot:b2", "mass_g": 1_000_000}],
        "outputs": [{"lot": "lot:p2", "material": "plastics.rpet_pellet", "mass_g": 1_000_000}],
        "loss_g": 0,
    }
    flow.ok(RECYCLER, "transform", perfect, ["lot:b2"])
    flow.ok(RECYCLER, "certify", certify("cert:c", 40_000))
    more = certify("cert:d", 1_000_000) | {"lots": [{"lot": "lot:p2", "mass_g": 1_000_000}]}
    flow.ok(RECYCLER, "certify", more)
    [flag] = api.ok(REGULATOR, FLAGS, s="eu.packaging", period="2026")["eprFlags"]
    message = flag.pop("message")
    assert flag == {
        "kind": "YIELD",
        "recycler": {"id": RECYCLER},
        "certifiedG": 1_190_000,
        "allowedG": 1_188_000,
        "excessG": 2_000,
        "inputG": 1_200_000,
        "yields": [{"process": "pelletising", "permille": 990}],
    }
    assert all(f"{g} g" in message for g in (1_190_000, 1_200_000, 1_188_000, 2_000)), message
    totals = api.ok(REGULATOR, TOTALS, s="eu.packaging", period="2026")["eprTotals"]
    assert totals["flags"] == [{"kind": "YIELD"}]
    # The producer sees it on its report: its certificates come from that recycler.
    report = api.ok(DRINKS, REPORT, p=DRINKS, s="eu.packaging", period="2026")["eprReport"]
    assert report["flags"] == [{"kind": "YIELD"}]
    # Another period: nothing certified, nothing flagged.
    assert api.ok(REGULATOR, FLAGS, s="eu.packaging", period="2025") == {"eprFlags": []}


def test_who_reads_what(flow: Flow) -> None:
    api = flow.api
    args = {"p": DRINKS, "s": "eu.packaging", "period": "2026"}
    for org in (DRINKS, REGULATOR, "org:operator"):
        assert api.ok(org, REPORT, **args)["eprReport"] is not None, org
    for org in (OTHER_PRODUCER, RECYCLER, COLLECTOR):
        assert api.ok(org, REPORT, **args) == {"eprReport": None}, org
    for org in (DRINKS, RECYCLER, COLLECTOR):
        assert api.ok(org, TOTALS, s="eu.packaging", period="2026") == {"eprTotals": None}
        assert api.ok(org, FLAGS, s="eu.packaging", period="2026") == {"eprFlags": None}
    for org in (RECYCLER, DRINKS, REGULATOR):
        assert api.ok(org, CERT, id="cert:a")["certificate"]["id"] == "cert:a", org
    for org in (OTHER_PRODUCER, COLLECTOR):
        assert api.ok(org, CERT, id="cert:a") == {"certificate": None}, org
    assert api.ok(REGULATOR, CERT, id="cert:zzz") == {"certificate": None}


def test_a_certificate_with_its_backing_lineage(flow: Flow) -> None:
    """The producer reads the pellets and the bottles they were made from through its
    certificate, though it handled neither."""
    api = flow.api
    assert api.ok(DRINKS, '{ lot(id: "lot:pellets") { id } }') == {"lot": None}
    cert = api.ok(DRINKS, CERT, id="cert:a")["certificate"]
    assert cert == {
        "id": "cert:a",
        "scheme": "eu.packaging",
        "category": "plastic",
        "period": "2026",
        "unit": "g",
        "massG": 120_000,
        "retired": True,
        "issuer": {"id": RECYCLER},
        "holder": {"id": DRINKS},
        "lots": [
            {
                "lot": "lot:pellets",
                "massG": 120_000,
                "material": "plastics.rpet_pellet",
                "process": "pelletising",
                "recoveredG": 190_000,
                "certifiedG": 150_000,
                "lineage": {
                    "nodes": [
                        {"id": "lot:pellets", "material": "plastics.rpet_pellet"},
                        {"id": "lot:bottles", "material": "plastics.pet"},
                    ],
                    "edges": [{"parent": "lot:bottles", "child": "lot:pellets", "massG": 190_000}],
                },
            }
        ],
    }


def test_schemes_and_bad_arguments(flow: Flow) -> None:
    api = flow.api
    q = """{ eprSchemes { id periodKind source battery
             categories { code unit targets { fromPeriod basisPoints percent }
                          processes outputs t: targetBasisPoints(period: "2026") } } }"""
    schemes = {s["id"]: s for s in api.ok(COLLECTOR, q)["eprSchemes"]}
    packaging = schemes["eu.packaging"]
    assert packaging["battery"] is False and "2018/852" in packaging["source"]
    plastic = next(c for c in packaging["categories"] if c["code"] == "plastic")
    assert plastic["targets"] == [
        {"fromPeriod": "2025", "basisPoints": 5_000, "percent": 50.0},
        {"fromPeriod": "2030", "basisPoints": 5_500, "percent": 55.0},
    ]
    assert (plastic["processes"], plastic["t"]) == (["pelletising"], 5_000)
    assert schemes["eu.batteries.ev"]["battery"] is True
    co = next(c for c in schemes["eu.batteries.ev"]["categories"] if c["code"] == "co")
    assert (co["unit"], co["t"]) == ("g of Co", 0)  # no target before 2028
    for variables, argument in (
        ({"p": DRINKS, "s": "eu.nothing", "period": "2026"}, "scheme"),
        ({"p": DRINKS, "s": "eu.packaging", "period": "2026-27"}, "period"),
    ):
        answer = api.ask(DRINKS, REPORT, variables)
        assert answer.codes == ["BAD_USER_INPUT"], answer.body
        assert answer.body["errors"][0]["extensions"]["argument"] == argument
