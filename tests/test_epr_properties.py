"""Property test (hypothesis): certificates can never add up to more than was recovered.

A state machine drives random sequences — collected PET pelletised (eligible under
``eu.packaging``/``plastic``) or flaked (not eligible) in 2025 or 2026, certificates over
random lots and masses in random periods and by random recyclers, transfers by random
organisations, retirements, disposals and voids — straight through ``ledger.rules.apply``
on a :class:`~ledger.state.MemoryState`. Many of the records are refused (that is the
point: they try to double count); refused records change nothing.

After every record, per scheme, category and period:
Σ retired <= Σ certified <= Σ eligible recovered output;
and per lot, the grams certificates stand on never exceed its recovered output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import fixed_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from run_length import examples

from ledger import rules
from ledger.envelope import parse_envelope
from ledger.epr_schemes import default_schemes
from ledger.errors import RecordRefused
from ledger.signing import public_key_bytes
from ledger.state import MemoryState
from producers.bootstrap import admit, genesis
from producers.events import Signer

NOW = datetime.now(UTC) + timedelta(days=1)
SCHEME, CATEGORY = "eu.packaging", "plastic"
YEARS = ("2025", "2026")


class CertificateMachine(RuleBasedStateMachine):
    """See the module docstring."""

    @initialize()
    def start(self) -> None:
        self.state = MemoryState()
        self.seq = 0
        operator = Signer("org:operator", fixed_key("operator"))
        self.recyclers = [Signer(f"org:r{i}", fixed_key(f"org:r{i}")) for i in range(2)]
        self.producers = [Signer(f"org:p{i}", fixed_key(f"org:p{i}")) for i in range(2)]
        self.apply(genesis(operator, "Operator", "CN"))
        for org in self.recyclers + self.producers:
            role = "recycler" if org in self.recyclers else "producer"
            records, _ = admit(
                operator,
                org.actor,
                org.actor,
                [role],
                "DE-BY",
                public_key_bytes(org.private_key.public_key()),
            )
            for r in records:
                self.apply(r)
        self.counter = 0
        self.certs: list[str] = []
        self.category = default_schemes()[SCHEME].categories[CATEGORY]

    def apply(self, signed: Any) -> bool:
        env = parse_envelope(signed.envelope.encode("utf-8"))
        try:
            effects = rules.apply(env, self.state, self.seq + 1, NOW)
        except RecordRefused:
            return False
        self.seq += 1
        self.state.apply(effects, rules.past_record(env, self.seq))
        return True

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}:{self.counter}"

    def outputs(self) -> list[str]:
        return sorted(self.state.outputs)

    @rule(
        data=st.data(),
        mass=st.integers(10, 10**6),
        year=st.sampled_from(YEARS),
        eligible=st.booleans(),
    )
    def process(self, data: st.DataObject, mass: int, year: str, eligible: bool) -> None:
        who = data.draw(st.sampled_from(self.recyclers))
        at = f"{year}-06-01T08:00:00Z"
        bottles = self.next_id("lot")
        body = {
            "lot": bottles,
            "material": "plastics.pet",
            "mass_g": mass,
            "origin": "post_consumer",
        }
        assert self.apply(who.record("create", body, at=at))
        out = mass * 9 // 10
        transform = {
            "process": "pelletising" if eligible else "washing_flaking",
            "inputs": [{"lot": bottles, "mass_g": mass}],
            "outputs": [
                {
                    "lot": self.next_id("lot"),
                    "material": "plastics.rpet_pellet" if eligible else "plastics.pet_flake",
                    "mass_g": out,
                }
            ],
            "loss_g": mass - out,
        }
        head = {bottles: self.state.lots[bottles].head}
        assert self.apply(who.record("transform", transform, head, at=at))

    @precondition(lambda self: bool(self.state.outputs))
    @rule(data=st.data(), period=st.sampled_from(YEARS))
    def certify(self, data: st.DataObject, period: str) -> None:
        who = data.draw(st.sampled_from(self.recyclers + self.producers[:1]))
        lots = data.draw(st.lists(st.sampled_from(self.outputs()), min_size=1, max_size=3))
        items = [{"lot": x, "mass_g": data.draw(st.integers(1, 10**6))} for x in lots]
        cert = (
            self.next_id("cert")
            if data.draw(st.booleans()) or not self.certs
            else data.draw(st.sampled_from(self.certs))
        )
        body = {
            "certificate": cert,
            "scheme": SCHEME,
            "category": CATEGORY,
            "period": period,
            "lots": items,
            "mass_g": sum(i["mass_g"] for i in items),
        }
        if self.apply(who.record("certify", body)):
            self.certs.append(cert)

    @precondition(lambda self: bool(self.certs))
    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from(self.recyclers + self.producers))
        to = data.draw(st.sampled_from(self.recyclers + self.producers))
        cert = data.draw(st.sampled_from(self.certs))
        self.apply(who.record("certificate.transfer", {"certificate": cert, "to": to.actor}))

    @precondition(lambda self: bool(self.certs))
    @rule(data=st.data(), period=st.sampled_from(YEARS))
    def retire(self, data: st.DataObject, period: str) -> None:
        who = data.draw(st.sampled_from(self.recyclers + self.producers))
        cert = data.draw(st.sampled_from(self.certs))
        self.apply(who.record("certificate.retire", {"certificate": cert, "period": period}))

    @precondition(lambda self: bool(self.state.outputs))
    @rule(data=st.data())
    def dispose_or_void(self, data: st.DataObject) -> None:
        made = self.state.outputs[data.draw(st.sampled_from(self.outputs()))]
        lot = self.state.lots[made.lot]
        who = next(s for s in self.recyclers if s.actor == lot.custodian)
        if data.draw(st.booleans()) and lot.held:
            body = {"lot": lot.id, "mass_g": lot.remaining_g, "method": "landfill"}
            self.apply(who.record("dispose", body, {lot.id: lot.head}))
            return
        record = self.state.record(lot.head)
        if record is None or record.type != "transform":
            return
        [source] = [i["lot"] for i in record.body["inputs"]]
        parents = {lot.id: lot.head, source: self.state.lots[source].head}
        self.apply(who.record("void", {"record": lot.head, "reason": "test"}, parents))

    @invariant()
    def never_more_certified_than_recovered(self) -> None:
        state = getattr(self, "state", None)
        if state is None:
            return
        scheme = default_schemes()[SCHEME]
        for period in YEARS:
            eligible = sum(
                x.recovered.get("mass", 0)
                for x in state.outputs.values()
                if self.category.eligible_process(x.process)
                and self.category.eligible_output(x.material)
                and scheme.period_of(x.at) == period
                and state.lots[x.lot].status != "void"
            )
            certs = [c for c in state.certificates.values() if c.period == period]
            certified = sum(c.mass_g for c in certs)
            retired = sum(c.mass_g for c in certs if c.retired)
            assert retired <= certified <= eligible, (period, retired, certified, eligible)
        for made in state.outputs.values():
            assert made.certified.get("mass", 0) <= made.recovered.get("mass", 0)
            on_lot = sum(
                g for c in state.certificates.values() for lot, g in c.lots if lot == made.lot
            )
            assert on_lot == made.certified.get("mass", 0)


CertificateMachine.TestCase.settings = settings(
    max_examples=examples(40, 300),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_certificates_never_exceed_recovered_output = CertificateMachine.TestCase
