"""The whole authorisation matrix: every root field of schema.graphql (queries and
``recordEvents``) against every kind of caller, on SQLite and PostgreSQL (issue 8/8,
"Access"); a hidden lot, record, certificate, battery or producer answers exactly like
a missing one; and a root field added without a row here fails the run.

The world is tests/read_network.py's (lot:pack: org:maker made it, org:coll-a handled
it, org:recycler dismantled it into lot:bm and lot:casing; org:coll-b never touched
any of it), plus the EPR and refusal figures every newer field reads:

    org:maker     declares 100,000 g of plastic packaging under eu.packaging, 2026
    org:recycler  pelletises lot:bottles (20,000 g PET) into lot:pellets (19,000 g rPET),
                  certifies cert:m (5,000 g) on them and transfers it to org:maker,
                  then tries cert:over (100,000 g): refused, certificate.exceeds_output
                  (a row of the refusals log)
    org:reg-sh    a regulator of another region (CN-SH; everyone else is CN-GD / CN-GX)
    a checkpoint of the whole log is signed by the ledger key before anyone asks.

Policy (ADR 0004, ledger/access.py): regulators and the operator read everything —
of every region: a regulator's rights are not regional (DESIGN.md "regulators ...
audit any lot"), so org:reg-sh's row equals org:regulator's, on purpose, and this
matrix pins it. Participants read the lots they hold, handled or that are on their
way to them; producers also the lineage of what they placed on the market.

Tokens (the second half of this file): only SHA-256 of a token is stored; the secret is
compared with ``hmac.compare_digest`` after an indexed lookup by the token's id (never
by the secret), and an unknown id costs the same hash and comparison; a revoked token is
refused at once (no token cache) or within the cache's TTL (schema/auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from battery_test_codes import gbt_code
from conftest import World, fixed_key
from read_network import (
    COLL_A,
    COLL_B,
    MAKER,
    OPERATOR,
    RECYCLER,
    REGULATOR,
    Answer,
    Api,
    Network,
    build_network,
)
from reliability import tally
from sqlalchemy import select

from ledger.merkle_log import Checkpointer
from ledger.tables import api_tokens
from ledger.tokens import authenticate, issue_token, revoke_token, token_id_of
from producers.events import Signer
from schema.app import create_app
from schema.root import schema

REG_SH = "org:reg-sh"  # a regulator of another region

# Columns: who asks. "revoked" is a revoked token of org:coll-a; "no-token" sends none.
VIEWERS = {
    "coll-a": COLL_A,  # participant of lot:pack (handled it)
    "coll-b": COLL_B,  # unrelated participant
    "recycler": RECYCLER,  # custodian of what lot:pack became; issuer of cert:m
    "maker": MAKER,  # producer (automaker) of lot:pack; holder of cert:m
    "reg": REGULATOR,  # regulator of the region (CN-GD)
    "reg-sh": REG_SH,  # regulator of another region (CN-SH)
    "operator": OPERATOR,
    "no-token": None,
    "revoked": "revoked",
}

# V visible (the subject is in the answer) · H hidden: null, left out or empty, exactly
# like a missing subject · R refused: 401 UNAUTHENTICATED, no data · W written (Recorded)
# · X rejected as data (Rejected actor.not_authorised). Rows: "field" or "field/variant".
#
# subject of each row (P = lot:pack):
#   heads(lots: [P])  lot(P)  lot/product: lot(lot:bm)  lots: P among lots  event(P's create)
#   events(filter: {lot: P})  lineage(P, DOWNSTREAM)  recoveredContent(P)  battery(P's code)
#   organisation(coll-b)  organisations: coll-b among them  viewer: names the caller
#   checkpoint / consistencyProof(1, size): open to every token (hashes of hashes)
#   inclusionProof(P's create)  provenance(P)  eprSchemes: eu.packaging among them
#   eprReport(maker)  eprTotals / eprFlags / anomalies / planProgress(CN-GD, 2026): not null
#   certificate(cert:m)  materialFlows(batteries): the dismantling of P among the links
#   (a participant sees the flows of its own records: collected, processed, disposed)
#   avoidedEmissions(plastics): lot:pellets' output counted  refusals: cert:over's refusal
#   recordEvents: a create signed as the caller · recordEvents/as-other: signed as another
MATRIX = """
                         coll-a coll-b recycler maker reg reg-sh operator no-token revoked
heads                    V      H      V        V     V   V      V        R        R
viewer                   V      V      V        V     V   V      V        R        R
lot                      V      H      V        V     V   V      V        R        R
lot/product              H      H      V        V     V   V      V        R        R
lots                     V      H      V        V     V   V      V        R        R
event                    V      H      V        V     V   V      V        R        R
events                   V      H      V        V     V   V      V        R        R
lineage                  V      H      V        V     V   V      V        R        R
recoveredContent         V      H      V        V     V   V      V        R        R
battery                  V      H      V        V     V   V      V        R        R
organisation             V      V      V        V     V   V      V        R        R
organisations            V      V      V        V     V   V      V        R        R
checkpoint               V      V      V        V     V   V      V        R        R
inclusionProof           V      H      V        V     V   V      V        R        R
consistencyProof         V      V      V        V     V   V      V        R        R
provenance               V      H      V        V     V   V      V        R        R
eprSchemes               V      V      V        V     V   V      V        R        R
eprReport                H      H      H        V     V   V      V        R        R
eprTotals                H      H      H        H     V   V      V        R        R
eprFlags                 H      H      H        H     V   V      V        R        R
certificate              H      H      V        V     V   V      V        R        R
materialFlows            H      H      V        H     V   V      V        R        R
anomalies                H      H      H        H     V   V      V        R        R
avoidedEmissions         H      H      V        H     V   V      V        R        R
planProgress             H      H      H        H     V   V      V        R        R
refusals                 H      H      V        H     V   V      V        R        R
recordEvents             W      W      W        W     W   W      W        R        R
recordEvents/as-other    X      X      X        X     X   X      X        R        R
"""


def parse_matrix(text: str) -> dict[tuple[str, str], str]:
    header, *rows = [line.split() for line in text.strip().splitlines()]
    return {(row[0], who): cell for row in rows for who, cell in zip(header, row[1:], strict=True)}


EXPECTED = parse_matrix(MATRIX)
ROWS = [line.split()[0] for line in MATRIX.strip().splitlines()[1:]]

PACK = "lot:pack"
PACK_CODE = gbt_code(1)
SCHEME, PERIOD = "eu.packaging", "2026"
AT = "2026-04-01T09:00:00Z"
WRITE = """mutation($e: [SignedEvent!]!) { recordEvents(events: $e) {
  __typename ... on Rejected { code message } } }"""


class MatrixWorld:
    """The network, the API over it (with the ledger key, so checkpoints get signed)."""

    def __init__(self, world: World) -> None:
        self.net: Network = build_network(world)
        self.world = world
        self.regulator_sh = world.admit(REG_SH, ["regulator"], "CN-SH")
        self._epr()
        self.checkpointer = Checkpointer(world.store.engine, fixed_key("ledger"))
        self.size = self.checkpointer.checkpoint().size
        self.api = Api(world)
        self.api.app = create_app(world.store, token_ttl=0, checkpointer=self.checkpointer)
        self.revoked = self.api.revoked_token(COLL_A)

    def _epr(self) -> None:
        w, s = self.world, self.net.signers
        maker, recycler = s[MAKER], s[RECYCLER]
        declared = {"scheme": SCHEME, "category": "plastic", "period": PERIOD}
        w.ok(maker.record("declare", declared | {"mass_g": 100_000, "units": 4_000}, at=AT))
        w.ok(
            recycler.record(
                "create",
                {
                    "lot": "lot:bottles",
                    "material": "plastics.pet",
                    "mass_g": 20_000,
                    "origin": "post_consumer",
                },
                at=AT,
            )
        )
        pelletise = {
            "process": "pelletising",
            "inputs": [{"lot": "lot:bottles", "mass_g": 20_000}],
            "outputs": [
                {"lot": "lot:pellets", "material": "plastics.rpet_pellet", "mass_g": 19_000}
            ],
            "loss_g": 1_000,
        }
        w.ok(recycler.record("transform", pelletise, w.heads("lot:bottles"), at=AT))

        def certify(cert: str, mass_g: int) -> dict[str, Any]:
            lots = [{"lot": "lot:pellets", "mass_g": mass_g}]
            return declared | {"certificate": cert, "lots": lots, "mass_g": mass_g}

        w.ok(recycler.record("certify", certify("cert:m", 5_000), at=AT))
        w.ok(recycler.record("certificate.transfer", {"certificate": "cert:m", "to": MAKER}, at=AT))
        refused = w.refused(recycler.record("certify", certify("cert:over", 100_000), at=AT))
        assert refused.code == "certificate.exceeds_output"

    def signer(self, org: str) -> Signer:
        if org == OPERATOR:
            return self.world.operator
        if org == REG_SH:
            return self.regulator_sh
        return self.net.signers[org]

    def token_of(self, viewer: str) -> str | None:
        who = VIEWERS[viewer]
        return self.revoked if who == "revoked" else who

    def org_of(self, viewer: str) -> str:
        """The org whose signer writes for this viewer (coll-a's for the token-less ones)."""
        who = VIEWERS[viewer]
        return who if who is not None and who != "revoked" else COLL_A


def a_create(signer: Signer, lot: str) -> dict[str, str]:
    body = {"lot": lot, "material": "paper.occ", "mass_g": 1_000, "origin": "post_consumer"}
    signed = signer.record("create", body)
    assert isinstance(signed.envelope, str)
    return {"envelope": signed.envelope, "signature": signed.signature}


Judge = Callable[[dict[str, Any]], bool]  # the data -> is the subject visible?


def _rows(m: MatrixWorld) -> dict[str, tuple[str, dict[str, Any] | None, Judge]]:
    """Each row's operation, variables and the test of its answer's data."""
    pack_create = m.net.hashes["pack.create"]
    lot_q = "query($id: ID!) { lot(id: $id) { id } }"

    def non_null(field: str) -> Judge:
        return lambda d: d[field] is not None

    return {
        "heads": (
            "query($l: [ID!]!) { heads(lots: $l) { lot head } }",
            {"l": [PACK]},
            lambda d: [h["lot"] for h in d["heads"]] == [PACK],
        ),
        "viewer": ("{ viewer { org roles readsEverything } }", None, non_null("viewer")),
        "lot": (lot_q, {"id": PACK}, non_null("lot")),
        "lot/product": (lot_q, {"id": "lot:bm"}, non_null("lot")),
        "lots": (
            "{ lots(first: 500) { edges { node { id } } } }",
            None,
            lambda d: PACK in {e["node"]["id"] for e in d["lots"]["edges"]},
        ),
        "event": (
            "query($h: String!) { event(hash: $h) { hash } }",
            {"h": pack_create},
            non_null("event"),
        ),
        "events": (
            "query($l: ID!) { events(filter: {lot: $l}) { edges { node { hash } } } }",
            {"l": PACK},
            lambda d: bool(d["events"]["edges"]),
        ),
        "lineage": (
            "query($l: ID!) { lineage(lot: $l, direction: DOWNSTREAM) { nodes { id } } }",
            {"l": PACK},
            non_null("lineage"),
        ),
        "recoveredContent": (
            "query($l: ID!) { recoveredContent(lot: $l) { lot massG recoveredG } }",
            {"l": PACK},
            non_null("recoveredContent"),
        ),
        "battery": (
            "query($c: String!) { battery(code: $c) { code lots { lot { id } } } }",
            {"c": PACK_CODE},
            non_null("battery"),
        ),
        "organisation": (
            "query($id: ID!) { organisation(id: $id) { id } }",
            {"id": COLL_B},
            non_null("organisation"),
        ),
        "organisations": (
            "{ organisations { id } }",
            None,
            lambda d: {"id": COLL_B} in d["organisations"],
        ),
        "checkpoint": ("{ checkpoint { size root note } }", None, non_null("checkpoint")),
        "inclusionProof": (
            "query($h: String!, $n: Long!) { inclusionProof(hash: $h, treeSize: $n) "
            "{ leafIndex hashes } }",
            {"h": pack_create, "n": m.size},
            non_null("inclusionProof"),
        ),
        "consistencyProof": (
            "query($n: Long!) { consistencyProof(from: 1, to: $n) { hashes } }",
            {"n": m.size},
            lambda d: bool(d["consistencyProof"]["hashes"]),
        ),
        "provenance": (
            "query($l: ID!) { provenance(lot: $l) { lot recordCount } }",
            {"l": PACK},
            non_null("provenance"),
        ),
        "eprSchemes": (
            "{ eprSchemes { id } }",
            None,
            lambda d: {"id": SCHEME} in d["eprSchemes"],
        ),
        "eprReport": (
            "query($p: ID!, $s: String!, $y: String!) { eprReport(producer: $p, scheme: $s, "
            "period: $y) { totals { placedOnMarketG } } }",
            {"p": MAKER, "s": SCHEME, "y": PERIOD},
            lambda d: (
                d["eprReport"] is not None
                and d["eprReport"]["totals"]["placedOnMarketG"] == 100_000
            ),
        ),
        "eprTotals": (
            "query($s: String!, $y: String!) { eprTotals(scheme: $s, period: $y) { period } }",
            {"s": SCHEME, "y": PERIOD},
            non_null("eprTotals"),
        ),
        "eprFlags": (
            "query($s: String!, $y: String!) { eprFlags(scheme: $s, period: $y) { kind } }",
            {"s": SCHEME, "y": PERIOD},
            non_null("eprFlags"),
        ),
        "certificate": (
            "query($id: ID!) { certificate(id: $id) { id massG } }",
            {"id": "cert:m"},
            non_null("certificate"),
        ),
        "materialFlows": (
            '{ materialFlows(material: "batteries") { links { source target massG } } }',
            None,
            lambda d: bool(d["materialFlows"]["links"]),
        ),
        "anomalies": ("{ anomalies { kind } }", None, non_null("anomalies")),
        "avoidedEmissions": (
            '{ avoidedEmissions(material: "plastics") { outputG } }',
            None,
            lambda d: d["avoidedEmissions"]["outputG"] == 19_000,
        ),
        "planProgress": (
            '{ planProgress(region: "CN-GD", year: 2026) { region } }',
            None,
            non_null("planProgress"),
        ),
        "refusals": (
            "{ refusals { edges { node { code } } } }",
            None,
            lambda d: {"node": {"code": "certificate.exceeds_output"}} in d["refusals"]["edges"],
        ),
    }


Request = tuple[str | None, str, dict[str, Any] | None]  # token, query, variables


def request_of(m: MatrixWorld, row: str, viewer: str) -> Request:
    who = m.token_of(viewer)
    token = None if who is None else who if who.startswith("rlt_") else m.api.token(who)
    if row.startswith("recordEvents"):
        org = m.org_of(viewer)
        if row == "recordEvents":
            events = [a_create(m.signer(org), f"lot:new-{viewer}")]
        else:
            events = [a_create(m.signer(COLL_B if org != COLL_B else COLL_A), f"lot:x-{viewer}")]
        return token, WRITE, {"e": events}
    query, variables, _ = _rows(m)[row]
    return token, query, variables


def ask_all(m: MatrixWorld, requests: list[Request]) -> list[Answer]:
    """The requests in order, over one client in one event loop (one anyio.run per request
    costs a new loop and worker thread each: half this test's time)."""

    async def go() -> list[Answer]:
        transport = httpx.ASGITransport(app=m.api.app)
        out = []
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger.test") as c:
            for token, query, variables in requests:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                payload: dict[str, Any] = {"query": query}
                if variables is not None:
                    payload["variables"] = variables
                response = await c.post("/graphql", json=payload, headers=headers)
                out.append(Answer(response.status_code, response.json()))
        return out

    return anyio.run(go)


def judge(m: MatrixWorld, row: str, answer: Answer) -> str:
    """The cell an answer makes: R, W, X, V or H."""
    if answer.status == 401:
        assert answer.codes == ["UNAUTHENTICATED"] and answer.body.get("data") is None
        return "R"
    data = answer.data  # asserts 200 and no errors
    if row.startswith("recordEvents"):
        [result] = data["recordEvents"]
        if result["__typename"] == "Recorded":
            return "W"
        assert result["code"] == "actor.not_authorised", result
        return "X"
    return "V" if _rows(m)[row][2](data) else "H"


def test_root_fields_all_have_a_row() -> None:
    """A root field added to the schema without a row in MATRIX fails here: decide who
    may see it, add the row (and its query in _rows), then this passes."""
    query, mutation = schema._schema.query_type, schema._schema.mutation_type
    assert query is not None and mutation is not None
    assert schema._schema.subscription_type is None
    names = {f"Query.{n}" for n in query.fields}
    names |= {f"Mutation.{n}" for n in mutation.fields}
    in_matrix = {r.split("/")[0] for r in ROWS}
    fields = {n.split(".", 1)[1] for n in names}
    assert fields == in_matrix, (
        f"root fields without a matrix row: {sorted(fields - in_matrix)}; "
        f"rows for no field: {sorted(in_matrix - fields)}"
    )
    assert set(VIEWERS) == {k[1] for k in EXPECTED}


@pytest.fixture
def matrix_world(world: World) -> MatrixWorld:
    return MatrixWorld(world)


def test_the_whole_authorisation_matrix(matrix_world: MatrixWorld) -> None:
    m = matrix_world
    got: dict[tuple[str, str], str] = {}
    reads = [r for r in ROWS if not r.startswith("recordEvents")]
    writes = [r for r in ROWS if r.startswith("recordEvents")]
    cells = [(row, viewer) for row in reads for viewer in VIEWERS]
    answers = ask_all(m, [request_of(m, row, viewer) for row, viewer in cells])
    for (row, viewer), answer in zip(cells, answers, strict=True):  # every read first:
        got[row, viewer] = judge(m, row, answer)  # the writes below add lots
    for viewer in VIEWERS:
        before = m.world.store.last_seq()
        answers = ask_all(m, [request_of(m, row, viewer) for row in writes])
        for row, answer in zip(writes, answers, strict=True):
            got[row, viewer] = judge(m, row, answer)
        written = m.world.store.last_seq() - before
        assert written == (1 if got["recordEvents", viewer] == "W" else 0), viewer
    wrong = {cell: (got[cell], want) for cell, want in EXPECTED.items() if got[cell] != want}
    # an unauthorised read: V where H or R was expected; an unauthorised write: W or V
    # where anything else was
    unauthorised = sum(1 for cell, want in EXPECTED.items() if want in "HRX" and got[cell] in "VW")
    denied = sum(1 for want in EXPECTED.values() if want in "HRX")
    tally(
        "unauthorised reads and writes attempted (access matrix, every root field)",
        tried=denied,
        held=denied - unauthorised,
        unit="requests",
        note=f"{len(ROWS)} rows x {len(VIEWERS)} callers, SQLite and PostgreSQL",
    )
    assert not wrong, f"(row, caller): (got, expected) {wrong}"
    hidden_answers_exactly_like_missing(m)


# Hidden vs missing, asked by org:coll-b (which may read none of the subjects): the
# status and the whole body must be identical.
def _hidden_and_missing(m: MatrixWorld) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    pack_create = m.net.hashes["pack.create"]
    rows = _rows(m)

    def pair(row: str, hidden: dict[str, Any], missing: dict[str, Any]) -> Any:
        return (row, rows[row][0], hidden, missing)

    return [
        pair("heads", {"l": [PACK]}, {"l": ["lot:missing"]}),
        pair("lot", {"id": PACK}, {"id": "lot:missing"}),
        pair("lot/product", {"id": "lot:bm"}, {"id": "lot:missing"}),
        pair("event", {"h": pack_create}, {"h": "f" * 64}),
        pair("events", {"l": PACK}, {"l": "lot:missing"}),
        pair("lineage", {"l": PACK}, {"l": "lot:missing"}),
        pair("recoveredContent", {"l": PACK}, {"l": "lot:missing"}),
        pair("battery", {"c": PACK_CODE}, {"c": gbt_code(999)}),
        pair("inclusionProof", {"h": pack_create, "n": m.size}, {"h": "f" * 64, "n": m.size}),
        pair("provenance", {"l": PACK}, {"l": "lot:missing"}),
        pair(
            "eprReport",
            {"p": MAKER, "s": SCHEME, "y": PERIOD},
            {"p": "org:missing"}
            | {
                "s": SCHEME,
                "y": PERIOD,
            },
        ),
        pair("certificate", {"id": "cert:m"}, {"id": "cert:missing"}),
        (
            "lots(filter: custodian)",
            "query($c: ID!) { lots(filter: {custodian: $c}) { edges { node { id } } "
            "pageInfo { hasNextPage endCursor } } }",
            {"c": RECYCLER},
            {"c": "org:missing"},
        ),
        (
            "refusals(filter: actor)",
            "query($a: ID!) { refusals(filter: {actor: $a}) { edges { node { code } } "
            "pageInfo { hasNextPage endCursor } } }",
            {"a": RECYCLER},
            {"a": "org:missing"},
        ),
        (
            "battery(lots)",
            "query($c: String!) { battery(code: $c) { code } }",
            {"c": gbt_code(2)},
            {"c": gbt_code(998)},
        ),
    ]


def hidden_answers_exactly_like_missing(m: MatrixWorld) -> None:
    """(Run by the matrix test, on its world, after the writes.)"""
    pairs = _hidden_and_missing(m)
    same = 0
    coll_b, regulator = m.api.token(COLL_B), m.api.token(REGULATOR)
    asked: list[Request] = []
    for _row, query, hidden, missing in pairs:
        asked += [(coll_b, query, hidden), (coll_b, query, missing), (regulator, query, hidden)]
    answers = iter(ask_all(m, asked))
    for row, _query, _hidden, _missing in pairs:
        a, b, seen = next(answers), next(answers), next(answers)
        assert (a.status, a.body) == (b.status, b.body), row
        assert a.status == 200 and "errors" not in a.body, (row, a.body)
        # and a caller that may read it does see a difference (the pair is a real test)
        assert seen.body != b.body, row
        same += 1
    tally(
        "hidden subject answered exactly like a missing one",
        tried=len(pairs),
        held=same,
        unit="field pairs",
        note="status and whole body compared; SQLite and PostgreSQL",
    )


# --- tokens --------------------------------------------------------------------------


def test_the_token_table_never_holds_a_token_or_its_secret(world: World) -> None:
    world.admit("org:acme", ["collector"])
    issued = [issue_token(world.store.engine, "org:acme", label=f"t{i}") for i in range(20)]
    revoke_token(world.store.engine, token_id_of(issued[0]) or "")
    with world.store.engine.connect() as conn:
        rows = conn.execute(select(api_tokens)).all()
    stored = "\n".join(" ".join(str(v) for v in row) for row in rows)
    held = 0
    for token in issued:
        secret = token.split("_", 2)[2]  # the secret may itself hold "_"
        assert len(secret) == 43
        assert token not in stored and secret not in stored
        assert secret[:16] not in stored and secret[-16:] not in stored
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert digest in stored  # what is stored instead
        held += 1
    tally(
        "tokens checked absent from the token table (only SHA-256 stored)",
        tried=len(issued),
        held=held,
        unit="tokens",
    )


def test_the_secret_is_compared_in_constant_time_after_a_lookup_by_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ledger/tokens.py looks a token up by its id (an index on the id column, never on
    the secret or the hash) and compares SHA-256 of the whole token with
    ``hmac.compare_digest``; an unknown id costs the same hash and one comparison
    against a dummy, so all four kinds below do exactly one constant-time comparison
    of two 64-character hex strings. (Wall-clock timing is too noisy on a shared CI
    machine to assert; the call pattern is what can be tested.)"""
    world.admit("org:acme", ["collector"])
    engine = world.store.engine
    token = issue_token(engine, "org:acme")
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # ledger.tokens calls hmac.compare_digest
    token_id = token_id_of(token)
    assert token_id is not None
    wrong_secret = f"rlt_{token_id}_" + ("A" * 43 if not token.endswith("A" * 43) else "B" * 43)
    unknown_id = "rlt_aaaaaaaaaaaa_" + token.split("_", 2)[2]
    for text, ok in [(token, True), (wrong_secret, False), (unknown_id, False)]:
        calls.clear()
        assert (authenticate(engine, text) is not None) is ok
        assert calls == [(64, 64)], text[:16]
    revoke_token(engine, token_id)
    calls.clear()
    assert authenticate(engine, token) is None
    assert calls == [(64, 64)]
    # the row is found by id: a statement never carries the secret (nor the hash)
    statements: list[str] = []
    from sqlalchemy import event

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append(f"{statement} {params}")

    event.listen(engine, "before_cursor_execute", record)
    try:
        authenticate(engine, token)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    secret = token.split("_", 2)[2]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert statements and all(secret not in s and digest not in s for s in statements)
    assert any(token_id in s for s in statements)


def test_a_revoked_token_is_refused_at_once_and_others_keep_working(world: World) -> None:
    """Revocation with no token cache (token_ttl=0): the very next request is refused; the
    org's other token and other orgs' tokens still work. With the default cache (5 s),
    a revoked token is refused once its entry expires (clock injected, no sleeping)."""
    world.admit("org:acme", ["collector"])
    world.admit("org:other", ["collector"])
    engine = world.store.engine
    api = Api(world)
    tokens = [issue_token(engine, "org:acme") for _ in range(2)]
    other = issue_token(engine, "org:other")
    viewer = "{ viewer { org } }"
    for t in (*tokens, other):
        assert api.ask(t, viewer).status == 200
    assert revoke_token(engine, token_id_of(tokens[0]) or "")
    refused = api.ask(tokens[0], viewer)
    assert refused.status == 401 and refused.codes == ["UNAUTHENTICATED"]
    assert api.ask(tokens[1], viewer).data == {"viewer": {"org": "org:acme"}}
    assert api.ask(other, viewer).data == {"viewer": {"org": "org:other"}}

    # with the cache: refused once the entry is older than the TTL
    import anyio

    from schema.auth import Authenticator
    from schema.errors import ApiError

    now = [1000.0]
    auth = Authenticator(world.store, ttl=5.0, clock=lambda: now[0])
    header = f"Bearer {tokens[1]}"
    assert anyio.run(auth.viewer, header).org == "org:acme"
    assert revoke_token(engine, token_id_of(tokens[1]) or "")
    assert anyio.run(auth.viewer, header).org == "org:acme"  # cached: within the TTL
    now[0] += 5.0
    with pytest.raises(ApiError) as caught:
        anyio.run(auth.viewer, header)
    assert caught.value.code == "UNAUTHENTICATED"
