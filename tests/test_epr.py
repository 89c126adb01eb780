"""EPR at write time: declarations, certificates, and every double-counting attempt refused.

The network: a plastics recycler and a second recycler, each pelletising collected PET
bottles (post-consumer, so their pellets are 100 % recovered); a producer that declares
plastic packaging and buys certificates; another producer. Each refusal test checks its
own error code and that nothing changed (``World.refused`` compares every projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from conftest import World
from sqlalchemy import select

from ledger.epr_schemes import default_schemes
from ledger.store import Appended
from ledger.tables import refused_records
from ledger.verify import verify_store
from producers.events import Signer

SCHEME = "eu.packaging"
CATEGORY = "plastic"
PERIOD = "2026"
KG = 1_000
AT = "2026-03-02T08:00:00Z"


@dataclass
class Net:
    world: World
    recycler: Signer
    other: Signer
    producer: Signer
    producer2: Signer

    def pellets(self, who: Signer, lot: str, mass_g: int, *, at: str = AT) -> None:
        """Collect ``mass_g`` of PET bottles and pelletise them, 10 % lost."""
        w = self.world
        w.create(who, f"{lot}-in", mass_g, "plastics.pet", "post_consumer")
        body = {
            "process": "pelletising",
            "inputs": [{"lot": f"{lot}-in", "mass_g": mass_g}],
            "outputs": [
                {"lot": lot, "material": "plastics.rpet_pellet", "mass_g": mass_g * 9 // 10}
            ],
            "loss_g": mass_g - mass_g * 9 // 10,
        }
        w.ok(who.record("transform", body, w.heads(f"{lot}-in"), at=at))

    def certify(self, who: Signer, cert: str, lots: list[tuple[str, int]], **over: Any) -> Any:
        body = {
            "certificate": cert,
            "scheme": SCHEME,
            "category": CATEGORY,
            "period": PERIOD,
            "lots": [{"lot": x, "mass_g": g} for x, g in lots],
            "mass_g": sum(g for _, g in lots),
        } | over
        return who.record("certify", body)


@pytest.fixture
def net(world: World) -> Net:
    assert SCHEME in default_schemes(), "the test's scheme must be one the package ships"
    return Net(
        world,
        world.admit("org:recycler", ["recycler"]),
        world.admit("org:other-recycler", ["recycler"]),
        world.admit("org:producer", ["producer"]),
        world.admit("org:producer2", ["producer"]),
    )


def test_a_certificate_is_issued_moved_and_retired_once(net: Net) -> None:
    """100 kg of bottles -> 90 kg of pellets, all recovered: a 60 kg certificate goes to the
    producer, who retires it against 2026."""
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", 60 * KG)]))
    w.ok(
        net.recycler.record("certificate.transfer", {"certificate": "cert:1", "to": "org:producer"})
    )
    w.ok(net.producer.record("certificate.retire", {"certificate": "cert:1", "period": PERIOD}))
    [cert] = [r for r in w.store.projection_rows()["certificates"]]
    assert "org:producer" in cert and PERIOD in cert
    assert verify_store(w.store).ok


def test_the_same_output_certified_twice_past_its_mass_is_refused(net: Net) -> None:
    """90 kg of recovered pellets: 60 kg certified, then 31 kg more is 1 kg too many."""
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", 60 * KG)]))
    refusal = w.refused(net.certify(net.recycler, "cert:2", [("lot:pel", 31 * KG)]))
    assert (refusal.code, refusal.path) == ("certificate.exceeds_output", "body.lots[0].mass_g")
    assert "at most 30000 g" in refusal.message
    # Nothing entered the ledger, but the attempt is in the refusals log, signed bytes and all.
    with w.store.engine.connect() as conn:
        [logged] = conn.execute(select(refused_records)).all()
    assert (logged.actor, logged.type, logged.code) == (
        "org:recycler",
        "certify",
        "certificate.exceeds_output",
    )
    assert logged.path == "body.lots[0].mass_g" and b'"cert:2"' in bytes(logged.canonical)
    w.ok(net.certify(net.recycler, "cert:2", [("lot:pel", 30 * KG)]))


def test_the_refusals_log_keeps_attempts_but_not_routine_conflicts(net: Net) -> None:
    """An atomic batch's refused record is logged after the rollback; a stale head is not."""
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    heads = w.heads("lot:pel")
    w.ok(net.recycler.record("status", {"lot": "lot:pel", "status": "stored"}, heads))
    stale = w.refused(net.recycler.record("status", {"lot": "lot:pel", "status": "active"}, heads))
    assert stale.code == "conflict"
    good = net.certify(net.recycler, "cert:1", [("lot:pel", KG)])
    bad = net.certify(net.other, "cert:2", [("lot:pel", KG)])
    results = w.append(good, bad, atomic=True)
    assert [getattr(r, "code", None) for r in results] == [
        "batch.aborted",
        "certificate.not_producer",
    ]
    with w.store.engine.connect() as conn:
        rows = conn.execute(select(refused_records.c.code, refused_records.c.actor)).all()
    assert [tuple(r) for r in rows] == [("certificate.not_producer", "org:other-recycler")]


def test_the_same_certificate_retired_twice_is_refused(net: Net) -> None:
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", 60 * KG)]))
    retire = {"certificate": "cert:1", "period": PERIOD}
    w.ok(net.recycler.record("certificate.retire", retire))
    again = w.refused(net.recycler.record("certificate.retire", retire))
    assert again.code == "certificate.retired"
    moved = w.refused(
        net.recycler.record("certificate.transfer", {"certificate": "cert:1", "to": "org:producer"})
    )
    assert moved.code == "certificate.retired"


def test_a_transfer_by_a_non_holder_is_refused(net: Net) -> None:
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", 60 * KG)]))
    w.ok(
        net.recycler.record("certificate.transfer", {"certificate": "cert:1", "to": "org:producer"})
    )
    # The issuer no longer holds it, and a stranger never did.
    for who in (net.recycler, net.producer2):
        refusal = w.refused(
            who.record("certificate.transfer", {"certificate": "cert:1", "to": "org:producer2"})
        )
        assert (refusal.code, refusal.path) == ("certificate.not_holder", "actor")
    refusal = w.refused(
        net.producer2.record("certificate.retire", {"certificate": "cert:1", "period": PERIOD})
    )
    assert refusal.code == "certificate.not_holder"


def test_certifying_another_recyclers_output_is_refused(net: Net) -> None:
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    refusal = w.refused(net.certify(net.other, "cert:1", [("lot:pel", 10 * KG)]))
    assert (refusal.code, refusal.path) == ("certificate.not_producer", "body.lots[0].lot")


def test_certifying_disposed_or_unprocessed_mass_is_refused(net: Net) -> None:
    """Pellets that went to landfill back nothing; nor does collected waste never processed."""
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    w.ok(
        net.recycler.record(
            "dispose",
            {"lot": "lot:pel", "mass_g": 90 * KG, "method": "landfill"},
            w.heads("lot:pel"),
        )
    )
    disposed = w.refused(net.certify(net.recycler, "cert:1", [("lot:pel", 10 * KG)]))
    assert (disposed.code, disposed.path) == ("certificate.disposed", "body.lots[0].lot")
    w.create(net.recycler, "lot:bottles", 50 * KG, "plastics.pet", "post_consumer")
    raw = w.refused(net.certify(net.recycler, "cert:1", [("lot:bottles", 10 * KG)]))
    assert raw.code == "certificate.not_output"


def test_a_voided_output_backs_nothing_and_a_certified_output_cant_be_voided(net: Net) -> None:
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    net.pellets(net.recycler, "lot:pel2", 100 * KG)
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", 10 * KG)]))
    [transform] = [
        r for r in w.store.records() if r.type == "transform" and b'lot:pel"' in r.canonical
    ]
    refusal = w.refused(
        net.recycler.record(
            "void", {"record": transform.hash, "reason": "test"}, w.heads("lot:pel", "lot:pel-in")
        )
    )
    assert refusal.code == "void.certified"
    [second] = [
        r for r in w.store.records() if r.type == "transform" and b'lot:pel2"' in r.canonical
    ]
    w.ok(
        net.recycler.record(
            "void",
            {"record": second.hash, "reason": "entered twice"},
            w.heads("lot:pel2", "lot:pel2-in"),
        )
    )
    voided = w.refused(net.certify(net.recycler, "cert:2", [("lot:pel2", 10 * KG)]))
    assert voided.code == "certificate.disposed"


def test_scheme_category_and_period_are_checked(net: Net) -> None:
    w = net.world
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    cases = [
        ({"scheme": "nowhere"}, "epr.scheme_unknown", "body.scheme"),
        ({"category": "nothing"}, "epr.category_unknown", "body.category"),
        ({"period": "2026-13"}, "epr.period", "body.period"),
        ({"period": "2025"}, "epr.period", "body.period"),  # the output was made in 2026
    ]
    for over, code, path in cases:
        refusal = w.refused(net.certify(net.recycler, "cert:1", [("lot:pel", KG)], **over))
        assert (refusal.code, refusal.path) == (code, path), over
    w.create(net.recycler, "lot:bottles", 10 * KG, "plastics.pet", "post_consumer")
    flakes = {
        "process": "washing_flaking",
        "inputs": [{"lot": "lot:bottles", "mass_g": 10 * KG}],
        "outputs": [{"lot": "lot:flake", "material": "plastics.pet_flake", "mass_g": 8 * KG}],
        "loss_g": 2 * KG,
    }
    w.ok(net.recycler.record("transform", flakes, w.heads("lot:bottles"), at=AT))
    ineligible = w.refused(net.certify(net.recycler, "cert:1", [("lot:flake", KG)]))
    assert (ineligible.code, ineligible.path) == ("certificate.ineligible", "body.lots[0].lot")
    unbalanced = w.refused(net.certify(net.recycler, "cert:1", [("lot:pel", KG)], mass_g=2 * KG))
    assert unbalanced.code == "mass.unbalanced"
    w.ok(net.certify(net.recycler, "cert:1", [("lot:pel", KG)]))
    exists = w.refused(net.certify(net.recycler, "cert:1", [("lot:pel", KG)]))
    assert exists.code == "certificate.exists"
    wrong_period = w.refused(
        net.recycler.record("certificate.retire", {"certificate": "cert:1", "period": "2027"})
    )
    assert wrong_period.code == "epr.period"


def test_only_producers_declare_and_only_recyclers_certify(net: Net) -> None:
    w = net.world
    declaration = {"scheme": SCHEME, "category": CATEGORY, "period": PERIOD, "mass_g": 500 * KG}
    refusal = w.refused(net.recycler.record("declare", declaration))
    assert (refusal.code, refusal.path) == ("org.not_permitted", "actor")
    [done] = w.ok(net.producer.record("declare", declaration | {"units": 12_000}))
    assert isinstance(done, Appended)
    net.pellets(net.recycler, "lot:pel", 100 * KG)
    refusal = w.refused(net.certify(net.producer, "cert:1", [("lot:pel", KG)]))
    assert refusal.code == "org.not_permitted"
    parents = w.refused(net.producer.record("declare", declaration, w.heads("lot:pel")))
    assert parents.code == "parents.unexpected"
    assert verify_store(w.store).ok
