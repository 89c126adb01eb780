"""Property tests (hypothesis) of recovered content: the rules on an in-memory state.

A state machine drives random valid sequences of create (any origin, with element
content), transfer + receive (with transit loss), split, merge, transform (partial draws,
declared element content, losses), status retired and dispose straight through
``ledger.rules.apply`` on a :class:`~ledger.state.MemoryState` — the same pure functions
the store runs, without a database, so thousands of steps run in seconds.

After every record:

- no lot holds more recovered grams than it weighs (pre + post <= remaining, and <= mass
  for what it was made with), nor more element grams than it weighs, nor more recovered
  grams of an element than of the element;
- recovered mass is conserved up to declared losses: a split, a merge or a transform
  without ``loss_g`` changes the ledger's total recovered mass by exactly 0 g; a transform,
  a transit loss or a disposal lowers it by at most the grams that left; it grows only at
  a create of collected waste (by its mass) or a retirement (by the lot's virgin part);
- the same holds for each element's recovered grams, and for each element's grams;
- the element grams on a record's edges into a new lot add up to that lot's elements.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import fixed_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from run_length import examples

from ledger import content, rules
from ledger.envelope import parse_envelope
from ledger.errors import RecordRefused
from ledger.state import MemoryState
from producers.bootstrap import admit, genesis
from producers.events import Signer

NOW = datetime.now(UTC) + timedelta(days=1)  # records are dated now; the clock check passes
ELEMENTS = ("Co", "Ni", "Li")
# One material per lot keeps merges possible; outputs become the same material.
MATERIAL = "batteries.black_mass"


def total_recovered(state: MemoryState) -> int:
    return sum(content.recovered_g(lot.recovered) for lot in state.lots.values())


def total_element(state: MemoryState, symbol: str, *, recovered: bool) -> int:
    if recovered:
        return sum(content.element_recovered_g(x.recovered, symbol) for x in state.lots.values())
    return sum(x.elements.get(symbol, 0) for x in state.lots.values())


class RecoveredMachine(RuleBasedStateMachine):
    """See the module docstring."""

    @initialize()
    def start(self) -> None:
        self.state = MemoryState()
        self.seq = 0
        operator = Signer("org:operator", fixed_key("operator"))
        self.a = Signer("org:a", fixed_key("org:a"))
        self.b = Signer("org:b", fixed_key("org:b"))
        self.apply(genesis(operator, "Operator", "CN"))
        for org in (self.a, self.b):
            records, _ = admit(operator, org.actor, org.actor, ["recycler"], "CN-GD", _raw(org))
            for r in records:
                self.apply(r)
        self.counter = 0
        self.last_type = ""
        self.leaving = 0  # grams the last record let leave the loop (loss, transit, disposal)
        self.entering = 0  # recovered grams the last record brought in

    # --- plumbing -------------------------------------------------------------------

    def apply(self, signed: Any) -> bool:
        env = parse_envelope(signed.envelope.encode("utf-8"))
        try:
            effects = rules.apply(env, self.state, self.seq + 1, NOW)
        except RecordRefused as exc:
            assert exc.code == "element.exceeds_inputs", str(exc)
            return False
        self.seq += 1
        self.state.apply(effects, rules.past_record(env, self.seq))
        self.effects = effects
        return True

    def new_id(self) -> str:
        self.counter += 1
        return f"lot:{self.counter}"

    def held(self, org: Signer | None = None) -> list[str]:
        return sorted(
            x.id
            for x in self.state.lots.values()
            if x.held and (org is None or x.custodian == org.actor)
        )

    def signer(self, lot_id: str) -> Signer:
        return self.a if self.state.lots[lot_id].custodian == "org:a" else self.b

    def heads(self, *lot_ids: str) -> dict[str, str]:
        return {x: self.state.lots[x].head for x in lot_ids}

    def record(self, rtype: str, body: dict[str, Any], who: Signer, lots: list[str]) -> bool:
        before = self.snapshot()
        if not self.apply(who.record(rtype, body, self.heads(*lots))):
            return False
        self.last_type = rtype
        self.before = before
        return True

    def snapshot(self) -> dict[str, int]:
        out = {"recovered": total_recovered(self.state)}
        for s in ELEMENTS:
            out[s] = total_element(self.state, s, recovered=False)
            out[f"{s}.recovered"] = total_element(self.state, s, recovered=True)
        return out

    # --- rules --------------------------------------------------------------------------

    @rule(
        data=st.data(),
        mass=st.integers(1, 10**7),
        origin=st.sampled_from(("virgin", "pre_consumer", "post_consumer")),
    )
    def create(self, data: st.DataObject, mass: int, origin: str) -> None:
        elements: dict[str, int] = {}
        room = mass
        for symbol in ELEMENTS:
            grams = data.draw(st.integers(0, room // 3), label=symbol)
            if grams:
                elements[symbol] = grams
                room -= grams
        body = {"lot": self.new_id(), "material": MATERIAL, "mass_g": mass, "origin": origin}
        if elements:
            body["elements"] = elements
        who = data.draw(st.sampled_from((self.a, self.b)))
        assert self.record("create", body, who, [])
        self.leaving = 0
        self.entering = mass if origin != "virgin" else 0

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        lot = self.state.lots[data.draw(st.sampled_from(self.held()))]
        if lot.remaining_g < 2:
            return
        first = data.draw(st.integers(1, lot.remaining_g - 1))
        masses = [first, lot.remaining_g - first]
        body = {
            "lot": lot.id,
            "parts": [{"lot": self.new_id(), "mass_g": m} for m in masses],
        }
        assert self.record("split", body, self.signer(lot.id), [lot.id])
        self.leaving = self.entering = 0

    @precondition(lambda self: len(self.held()) >= 2)
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from((self.a, self.b)))
        mine = self.held(who)
        if len(mine) < 2:
            return
        picked = data.draw(st.lists(st.sampled_from(mine), min_size=2, max_size=4, unique=True))
        body = {"lots": picked, "into": self.new_id()}
        assert self.record("merge", body, who, picked)
        self.leaving = self.entering = 0

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data())
    def transform(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from((self.a, self.b)))
        mine = self.held(who)
        if not mine:
            return
        picked = data.draw(st.lists(st.sampled_from(mine), min_size=1, max_size=3, unique=True))
        inputs = [
            {"lot": x, "mass_g": data.draw(st.integers(1, self.state.lots[x].remaining_g))}
            for x in picked
        ]
        total = sum(i["mass_g"] for i in inputs)
        loss = data.draw(st.integers(0, total - 1))
        out_total = total - loss
        n = data.draw(st.integers(1, min(3, out_total)))
        cuts = (
            sorted(
                data.draw(
                    st.lists(
                        st.integers(1, out_total - 1), min_size=n - 1, max_size=n - 1, unique=True
                    )
                )
            )
            if n > 1
            else []
        )
        masses = [b - a for a, b in zip([0, *cuts], [*cuts, out_total], strict=True)]
        # Declare up to the element grams the inputs hold in all (the ledger refuses more
        # than the draw gives: that refusal is allowed and changes nothing).
        outputs = []
        for m in masses:
            elements = {}
            for symbol in ELEMENTS:
                held = sum(self.state.lots[x].elements.get(symbol, 0) for x in picked)
                grams = data.draw(st.integers(0, min(held // len(masses), m // 3)))
                if grams:
                    elements[symbol] = grams
            outputs.append(
                {"lot": self.new_id(), "material": MATERIAL, "mass_g": m}
                | ({"elements": elements} if elements else {})
            )
        body = {"process": "mechanical", "inputs": inputs, "outputs": outputs, "loss_g": loss}
        if self.record("transform", body, who, picked):
            self.leaving, self.entering = loss, 0
            for out in outputs:  # each output holds exactly the element grams it declared
                assert self.state.lots[out["lot"]].elements == out.get("elements", {})

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        lot = self.state.lots[data.draw(st.sampled_from(self.held()))]
        sender = self.signer(lot.id)
        receiver = self.b if sender is self.a else self.a
        body = {"lot": lot.id, "to": receiver.actor, "mass_g": lot.remaining_g}
        assert self.record("transfer", body, sender, [lot.id])
        weighed = data.draw(st.integers(max(1, lot.remaining_g // 2), lot.remaining_g))
        assert self.record("receive", {"lot": lot.id, "mass_g": weighed}, receiver, [lot.id])
        self.leaving, self.entering = lot.remaining_g - weighed, 0

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data())
    def dispose(self, data: st.DataObject) -> None:
        lot = self.state.lots[data.draw(st.sampled_from(self.held()))]
        grams = data.draw(st.integers(1, lot.remaining_g))
        body = {"lot": lot.id, "mass_g": grams, "method": "landfill"}
        assert self.record("dispose", body, self.signer(lot.id), [lot.id])
        self.leaving, self.entering = grams, 0

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data())
    def retire(self, data: st.DataObject) -> None:
        lot = self.state.lots[data.draw(st.sampled_from(self.held()))]
        virgin = lot.remaining_g - content.recovered_g(lot.recovered)
        body = {"lot": lot.id, "status": "retired"}
        assert self.record("status", body, self.signer(lot.id), [lot.id])
        self.leaving, self.entering = 0, virgin

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def no_lot_holds_more_than_it_weighs(self) -> None:
        for lot in getattr(self, "state", MemoryState()).lots.values():
            rec = lot.recovered
            assert all(v > 0 for v in rec.values()) and all(v > 0 for v in lot.elements.values())
            assert content.recovered_g(rec) <= lot.remaining_g
            assert sum(lot.elements.values()) <= lot.remaining_g
            assert content.recovered_g(lot.content) <= lot.mass_g
            for symbol, grams in lot.elements.items():
                assert content.element_recovered_g(rec, symbol) <= grams
            for key in rec:
                if "." in key:
                    assert key.split(".")[0] in lot.elements

    @invariant()
    def recovered_mass_is_conserved_up_to_declared_losses(self) -> None:
        if not self.last_type:
            return
        before, after = self.before, self.snapshot()
        change = after["recovered"] - before["recovered"]
        if self.leaving == 0:
            assert change == self.entering, (self.last_type, change, self.entering)
        else:
            assert self.entering == 0 and -self.leaving <= change <= 0, (self.last_type, change)
        for symbol in ELEMENTS:
            for key in (symbol, f"{symbol}.recovered"):
                moved = after[key] - before[key]
                if self.last_type in ("split", "merge", "transfer"):
                    assert moved == 0, (self.last_type, key, moved)
                elif self.last_type == "status":
                    assert moved >= 0 if key.endswith("recovered") else moved == 0
                elif self.last_type != "create":
                    assert -self.leaving <= moved <= 0 or (
                        self.last_type == "transform" and moved <= 0
                    )
        self.last_type = ""

    @invariant()
    def element_edges_add_up_to_the_new_lots(self) -> None:
        effects = getattr(self, "effects", None)
        if effects is None or not effects.edges:
            return
        into: dict[str, dict[str, int]] = {}
        for edge in effects.edges:
            for symbol, grams in edge.elements.items():
                into.setdefault(edge.child, {})
                into[edge.child][symbol] = into[edge.child].get(symbol, 0) + grams
        for child, elements in into.items():
            assert elements == self.state.lots[child].elements


def _raw(signer: Signer) -> bytes:
    from ledger.signing import public_key_bytes

    return public_key_bytes(signer.private_key.public_key())


RecoveredMachine.TestCase.settings = settings(
    max_examples=examples(40, 300),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_recovered_content_properties = RecoveredMachine.TestCase
