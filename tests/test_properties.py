"""Property tests (hypothesis) of the ledger's mass balance and refusals.

1. :class:`LedgerMachine` drives random *valid* sequences of create, transfer,
   receive, split, merge, transform, status, dispose and void against a real
   SQLite ledger (a fresh file per example), sometimes several records to a
   batch. A pure-Python model predicts every lot; after each batch the
   projections must agree with the model, conserve mass exactly against the
   log, keep every lot's hash chain intact, and at the end ``verify_store``
   passes and ``rebuild`` reproduces the projections byte for byte.
2. ``test_invalid_record_is_refused_and_changes_nothing`` mutates valid
   records into invalid ones (overspending, wrong custodian, stale or missing
   parents, unknown lots and materials, bad masses, unbalanced splits and
   transforms, floats, foreign signatures, tampered bytes, reused ids, ...)
   and asserts each is refused with its own code and writes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import World, fixed_key, make_world
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from run_length import examples

from ledger import rules
from ledger.database import database_url
from ledger.envelope import LIFECYCLE_STATUSES, parse_envelope
from ledger.errors import RecordRefused
from ledger.materials import default_taxonomy
from ledger.signing import b64url_encode, sign
from ledger.store import Appended, Signed
from ledger.tables import lot_edges, lots
from ledger.verify import rebuild, verify_store
from producers.events import Signer

MATERIALS = ("steel.hms1", "paper.occ", "plastics.pet", "tyres.elt", "batteries.li_ion.nmc")
OUTPUT_MATERIALS = (
    "steel.shredded",
    "paper.pulp_recycled",
    "plastics.pet_flake",
    "tyres.granulate",
    "batteries.black_mass",
)
PROCESSES = ("sorting", "shredding", "baling", "pulping", "dismantling")
ORIGINS = ("virgin", "pre_consumer", "post_consumer")
METHODS = ("landfill", "incineration", "energy_recovery")
STATUSES = tuple(sorted(LIFECYCLE_STATUSES))
NOT_HELD = ("in_transit", "consumed", "disposed", "void")
MAX_MASS = 10**9

LOT_COLUMNS = [c.name for c in lots.columns]
EDGE_COLUMNS = [c.name for c in lot_edges.columns]

masses = st.integers(1, MAX_MASS)


def envelope_bytes(record: Signed) -> bytes:
    env = record.envelope
    return env.encode("utf-8") if isinstance(env, str) else bytes(env)


def hash_of(record: Signed) -> str:
    return hashlib.sha256(envelope_bytes(record)).hexdigest()


def composition(data: st.DataObject, total: int, max_parts: int) -> list[int]:
    """Positive integers summing exactly to ``total`` (1..max_parts of them)."""
    if total == 1 or max_parts == 1:
        return [total]
    cuts = data.draw(
        st.lists(st.integers(1, total - 1), unique=True, max_size=max_parts - 1), label="cuts"
    )
    points = [0, *sorted(cuts), total]
    return [b - a for a, b in itertools.pairwise(points)]


# --- the model ---------------------------------------------------------------------


@dataclass
class MLot:
    """What the model expects of one lot (the fields the rules define)."""

    material: str
    custodian: str
    mass_g: int
    remaining_g: int
    status: str
    head: str
    by_create: bool
    held_status: str | None = None
    transit_to: str | None = None
    transit_g: int | None = None
    transit_loss_g: int = 0
    disposed_g: int = 0

    @property
    def held(self) -> bool:
        return self.status not in NOT_HELD

    def expected_row(self) -> dict[str, Any]:
        return {
            "material": self.material,
            "custodian": self.custodian,
            "mass_g": self.mass_g,
            "remaining_g": self.remaining_g,
            "status": self.status,
            "head": self.head,
            "held_status": self.held_status,
            "transit_to": self.transit_to,
            "transit_g": self.transit_g,
            "transit_loss_g": self.transit_loss_g,
            "disposed_g": self.disposed_g,
        }


@dataclass
class MRecord:
    """A lot record the model appended: what a void of it must undo."""

    type: str
    actor: str
    before: dict[str, MLot | None]  # every lot it touched -> its state before (None: created)
    voided: bool = False


@dataclass
class LogFacts:
    """What the stored log alone says (independent of the model and the projections)."""

    created_g: int = 0
    transform_loss_g: int = 0
    created_elements: dict[str, int] = field(default_factory=dict)
    last_touch: dict[str, str] = field(default_factory=dict)


def read_log(world: World) -> LogFacts:
    """Replay the log by hand: live creates and transform losses, and each lot's chain."""
    creates: dict[str, dict[str, Any]] = {}
    losses: dict[str, int] = {}
    voided: set[str] = set()
    touched_by: dict[str, list[str]] = {}
    facts = LogFacts()
    for rec in world.store.records():
        env = json.loads(rec.canonical)
        body = env["body"]
        if rec.type == "void":
            target = body["record"]
            voided.add(target)
            touched = touched_by[target]
            assert env["parents"] == {lot: facts.last_touch[lot] for lot in touched}, rec.seq
        elif rec.type in rules.VOIDABLE:
            existing, created = rules.touched_lots(rec.type, body)
            touched = [*existing, *created]
            touched_by[rec.hash] = touched
            # The chain: a record names, for each lot it spends, that lot's latest record.
            assert env["parents"] == {lot: facts.last_touch[lot] for lot in existing}, rec.seq
        else:
            continue
        for lot in touched:
            facts.last_touch[lot] = rec.hash
        if rec.type == "create":
            creates[rec.hash] = body
        elif rec.type == "transform":
            losses[rec.hash] = body["loss_g"]
    for h, body in creates.items():
        if h not in voided:
            facts.created_g += body["mass_g"]
            for k, v in body.get("elements", {}).items():
                facts.created_elements[k] = facts.created_elements.get(k, 0) + v
    facts.transform_loss_g = sum(v for h, v in losses.items() if h not in voided)
    return facts


# --- 1. random valid sequences -----------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Valid operations only; every append must succeed and match the model."""

    ORGS = ("org:alpha", "org:beta", "org:gamma")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rledger-prop-"))
        self.world = make_world(database_url(str(self.dir / "ledger.db")))
        self.signers = {org: self.world.admit(org, ["recycler"]) for org in self.ORGS}
        self.regulator = self.world.admit("org:regulator", ["regulator"])
        self.lots: dict[str, MLot] = {}
        self.records: dict[str, MRecord] = {}
        self.pending: list[tuple[Signed, str]] = []
        self.batch_size = 1
        self.ids = itertools.count()
        self.busy = False  # True while a step runs: a step that raised skips teardown's checks

    # --- plumbing ---------------------------------------------------------------

    @initialize(batch_size=st.integers(1, 3), data=st.data())
    def start(self, batch_size: int, data: st.DataObject) -> None:
        """Records go to the ledger in batches of ``batch_size``; a few lots to begin with."""
        self.batch_size = batch_size
        for _ in range(data.draw(st.integers(1, 4), label="initial lots")):
            self.create(data)

    def new_lot_id(self) -> str:
        return f"lot:p{next(self.ids)}"

    def held_lots(self, custodian: str | None = None) -> list[str]:
        return sorted(
            k
            for k, v in self.lots.items()
            if v.held and (custodian is None or v.custodian == custodian)
        )

    def submit(
        self,
        signer: Signer,
        rtype: str,
        body: dict[str, Any],
        changes: Callable[[str], dict[str, MLot]],
    ) -> str:
        """Sign a record against the model's heads, update the model, queue or append it."""
        self.busy = True
        event(rtype)
        existing, created = rules.touched_lots(rtype, body)
        record = signer.record(rtype, body, {lot: self.lots[lot].head for lot in existing})
        h = hash_of(record)
        before: dict[str, MLot | None] = {lot: replace(self.lots[lot]) for lot in existing}
        before.update(dict.fromkeys(created))
        self.records[h] = MRecord(rtype, signer.actor, before)
        self.lots.update(changes(h))
        self.pending.append((record, h))
        if len(self.pending) >= self.batch_size:
            self.flush()
        self.busy = False
        return h

    def flush(self) -> None:
        if not self.pending:
            return
        records = [r for r, _ in self.pending]
        results = self.world.append(*records)
        refused = [r for r in results if not isinstance(r, Appended)]
        assert not refused, f"a valid record was refused: {refused[0]}"
        assert [r.hash for r in results if isinstance(r, Appended)] == [h for _, h in self.pending]
        seqs = [r.seq for r in results if isinstance(r, Appended)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers have gaps"
        assert self.world.store.last_seq() == seqs[-1]
        self.pending.clear()

    # --- operations ---------------------------------------------------------------

    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        org = data.draw(st.sampled_from(self.ORGS), label="custodian")
        material = data.draw(st.sampled_from(MATERIALS), label="material")
        mass = data.draw(masses, label="mass_g")
        lot = self.new_lot_id()
        body: dict[str, Any] = {
            "lot": lot,
            "material": material,
            "mass_g": mass,
            "origin": data.draw(st.sampled_from(ORIGINS), label="origin"),
        }
        if material.startswith("batteries.") and data.draw(st.booleans(), label="elements"):
            co = data.draw(st.integers(0, mass // 2), label="Co")
            body["elements"] = {"Co": co, "Ni": data.draw(st.integers(0, mass - co), label="Ni")}
        self.submit(
            self.signers[org],
            "create",
            body,
            lambda h: {lot: MLot(material, org, mass, mass, "active", h, by_create=True)},
        )

    @precondition(lambda self: bool(self.held_lots()))
    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        lot_id = data.draw(st.sampled_from(self.held_lots()), label="lot")
        lot = self.lots[lot_id]
        to = data.draw(st.sampled_from([o for o in self.ORGS if o != lot.custodian]), label="to")
        body = {"lot": lot_id, "to": to, "mass_g": lot.remaining_g}
        self.submit(
            self.signers[lot.custodian],
            "transfer",
            body,
            lambda h: {
                lot_id: replace(
                    lot,
                    status="in_transit",
                    held_status=lot.status,
                    transit_to=to,
                    transit_g=lot.remaining_g,
                    head=h,
                )
            },
        )
        if data.draw(st.booleans(), label="received at once"):
            self.receive(data, lot_id)

    def in_transit(self) -> list[str]:
        return sorted(k for k, v in self.lots.items() if v.status == "in_transit")

    @precondition(lambda self: bool(self.in_transit()))
    @rule(data=st.data())
    def receive(self, data: st.DataObject, lot_id: str | None = None) -> None:
        if lot_id is None:
            lot_id = data.draw(st.sampled_from(self.in_transit()), label="lot")
        lot = self.lots[lot_id]
        assert lot.transit_to is not None and lot.transit_g is not None
        declared, to = lot.transit_g, lot.transit_to
        weighed = data.draw(st.one_of(st.just(declared), st.integers(1, declared)), label="weighed")
        self.submit(
            self.signers[to],
            "receive",
            {"lot": lot_id, "mass_g": weighed},
            lambda h: {
                lot_id: replace(
                    lot,
                    custodian=to,
                    remaining_g=weighed,
                    status=lot.held_status or "active",
                    held_status=None,
                    transit_to=None,
                    transit_g=None,
                    transit_loss_g=lot.transit_loss_g + declared - weighed,
                    head=h,
                )
            },
        )

    @precondition(lambda self: bool(self.held_lots()))
    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        lot_id = data.draw(st.sampled_from(self.held_lots()), label="lot")
        lot = self.lots[lot_id]
        parts = [(self.new_lot_id(), m) for m in composition(data, lot.remaining_g, 4)]
        body = {"lot": lot_id, "parts": [{"lot": p, "mass_g": m} for p, m in parts]}

        def changes(h: str) -> dict[str, MLot]:
            out = {lot_id: replace(lot, remaining_g=0, status="consumed", head=h)}
            for p, m in parts:
                out[p] = MLot(lot.material, lot.custodian, m, m, "active", h, by_create=False)
            return out

        self.submit(self.signers[lot.custodian], "split", body, changes)

    def merge_groups(self) -> list[tuple[str, str]]:
        groups: dict[tuple[str, str], int] = {}
        for lot_id in self.held_lots():
            lot = self.lots[lot_id]
            groups[lot.custodian, lot.material] = groups.get((lot.custodian, lot.material), 0) + 1
        return sorted(k for k, n in groups.items() if n >= 2)

    @precondition(lambda self: bool(self.merge_groups()))
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        org, material = data.draw(st.sampled_from(self.merge_groups()), label="group")
        candidates = [k for k in self.held_lots(org) if self.lots[k].material == material]
        inputs = data.draw(
            st.lists(st.sampled_from(candidates), unique=True, min_size=2, max_size=4),
            label="lots",
        )
        into = self.new_lot_id()
        total = sum(self.lots[k].remaining_g for k in inputs)
        body: dict[str, Any] = {"lots": inputs, "into": into}
        if data.draw(st.booleans(), label="state mass_g"):
            body["mass_g"] = total

        def changes(h: str) -> dict[str, MLot]:
            out = {
                k: replace(self.lots[k], remaining_g=0, status="consumed", head=h) for k in inputs
            }
            out[into] = MLot(material, org, total, total, "active", h, by_create=False)
            return out

        self.submit(self.signers[org], "merge", body, changes)

    @precondition(lambda self: bool(self.held_lots()))
    @rule(data=st.data())
    def transform(self, data: st.DataObject) -> None:
        first = data.draw(st.sampled_from(self.held_lots()), label="lot")
        org = self.lots[first].custodian
        inputs = data.draw(
            st.lists(st.sampled_from(self.held_lots(org)), unique=True, min_size=1, max_size=3),
            label="inputs",
        )
        spent = {
            k: data.draw(
                st.one_of(
                    st.just(self.lots[k].remaining_g), st.integers(1, self.lots[k].remaining_g)
                ),
                label=f"spend {k}",
            )
            for k in inputs
        }
        total = sum(spent.values())
        loss = data.draw(st.one_of(st.just(0), st.integers(0, total - 1)), label="loss_g")
        outputs = [
            (self.new_lot_id(), data.draw(st.sampled_from(OUTPUT_MATERIALS), label="out"), m)
            for m in composition(data, total - loss, 3)
        ]
        body = {
            "process": data.draw(st.sampled_from(PROCESSES), label="process"),
            "inputs": [{"lot": k, "mass_g": m} for k, m in spent.items()],
            "outputs": [{"lot": o, "material": mat, "mass_g": m} for o, mat, m in outputs],
            "loss_g": loss,
        }

        def changes(h: str) -> dict[str, MLot]:
            out: dict[str, MLot] = {}
            for k, m in spent.items():
                lot = self.lots[k]
                left = lot.remaining_g - m
                status = lot.status if left else "consumed"
                out[k] = replace(lot, remaining_g=left, status=status, head=h)
            for o, mat, m in outputs:
                out[o] = MLot(mat, org, m, m, "active", h, by_create=False)
            return out

        self.submit(self.signers[org], "transform", body, changes)

    @precondition(lambda self: bool(self.held_lots()))
    @rule(data=st.data())
    def status(self, data: st.DataObject) -> None:
        lot_id = data.draw(st.sampled_from(self.held_lots()), label="lot")
        lot = self.lots[lot_id]
        status = data.draw(st.sampled_from(STATUSES), label="status")
        self.submit(
            self.signers[lot.custodian],
            "status",
            {"lot": lot_id, "status": status, "note": "property test"},
            lambda h: {lot_id: replace(lot, status=status, head=h)},
        )

    @precondition(lambda self: bool(self.held_lots()))
    @rule(data=st.data())
    def dispose(self, data: st.DataObject) -> None:
        lot_id = data.draw(st.sampled_from(self.held_lots()), label="lot")
        lot = self.lots[lot_id]
        mass = data.draw(
            st.one_of(st.just(lot.remaining_g), st.integers(1, lot.remaining_g)), label="mass_g"
        )
        left = lot.remaining_g - mass
        body = {"lot": lot_id, "mass_g": mass, "method": data.draw(st.sampled_from(METHODS))}
        self.submit(
            self.signers[lot.custodian],
            "dispose",
            body,
            lambda h: {
                lot_id: replace(
                    lot,
                    remaining_g=left,
                    disposed_g=lot.disposed_g + mass,
                    status=lot.status if left else "disposed",
                    head=h,
                )
            },
        )

    def voidable(self) -> list[str]:
        """Records that are still the head of every lot they touched, oldest first.

        (In append order, never sorted by hash: hashes differ from run to run,
        and hypothesis must see the same choices when it replays an example.)
        """
        return [
            h
            for h, rec in self.records.items()
            if not rec.voided and all(self.lots[lot].head == h for lot in rec.before)
        ]

    @precondition(lambda self: bool(self.voidable()))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.voidable()), label="record")
        rec = self.records[target]
        event(f"void of {rec.type}")
        signer = data.draw(
            st.sampled_from([self.signers[rec.actor], self.regulator]), label="voided by"
        )
        self.busy = True
        record = signer.record(
            "void",
            {"record": target, "reason": "property test"},
            dict.fromkeys(rec.before, target),
        )
        h = hash_of(record)
        for lot_id, before in rec.before.items():
            if before is None:  # created by the voided record: emptied and marked void
                self.lots[lot_id] = replace(self.lots[lot_id], remaining_g=0, status="void", head=h)
            else:
                self.lots[lot_id] = replace(before, head=h)
        rec.voided = True
        self.pending.append((record, h))
        if len(self.pending) >= self.batch_size:
            self.flush()
        self.busy = False

    # --- invariants -------------------------------------------------------------

    @invariant()
    def projections_agree_and_conserve_mass(self) -> None:
        if self.pending:  # checked once the batch is written
            return
        self.busy = True
        self.check_projections()
        self.busy = False

    def check_projections(self) -> None:
        rows = self.world.store.projection_rows()
        db = {r[0]: dict(zip(LOT_COLUMNS, r, strict=True)) for r in rows["lots"]}
        assert set(db) == set(self.lots)
        for lot_id, lot in self.lots.items():
            row = db[lot_id]
            assert {k: row[k] for k in lot.expected_row()} == lot.expected_row(), lot_id
            assert 0 <= row["remaining_g"] <= row["mass_g"], lot_id
            assert row["transit_loss_g"] >= 0 and row["disposed_g"] >= 0, lot_id
            if row["status"] in ("consumed", "disposed", "void"):
                assert row["remaining_g"] == 0, lot_id
            if row["status"] == "in_transit":
                assert row["transit_g"] == row["remaining_g"], lot_id
            elements = json.loads(row["elements"])
            assert all(v > 0 for v in elements.values()), lot_id

        facts = read_log(self.world)
        # Every lot's head is the last record that touched it (from the log alone).
        assert {k: r["head"] for k, r in db.items()} == facts.last_touch
        # Conservation: every created gram is still in a lot, lost in transit,
        # disposed of, or a transform's loss_g; voided records count for nothing.
        held = sum(r["remaining_g"] for r in db.values())
        transit_loss = sum(r["transit_loss_g"] for r in db.values())
        disposed = sum(r["disposed_g"] for r in db.values())
        assert facts.created_g == held + transit_loss + disposed + facts.transform_loss_g
        # Element content is never created except by a create record.
        for symbol in {k for r in db.values() for k in json.loads(r["elements"])}:
            total = sum(json.loads(r["elements"]).get(symbol, 0) for r in db.values())
            assert total <= facts.created_elements.get(symbol, 0), symbol
        # Lineage: a split part, merged lot or transform output has incoming edges
        # adding up to exactly its mass; a created lot has none.
        incoming: dict[str, int] = {}
        for edge in rows["lot_edges"]:
            e = dict(zip(EDGE_COLUMNS, edge, strict=True))
            assert e["parent"] in db and e["child"] in db and e["mass_g"] > 0
            incoming[e["child"]] = incoming.get(e["child"], 0) + e["mass_g"]
        for lot_id, lot in self.lots.items():
            assert incoming.get(lot_id, 0) == (0 if lot.by_create else lot.mass_g), lot_id

    def teardown(self) -> None:
        try:
            if not self.busy:
                self.flush()
                self.check_projections()
                report = verify_store(self.world.store)
                assert report.ok, str(report)
                assert report.records == self.world.store.last_seq()
                before = self.world.store.projection_rows()
                rebuild(self.world.store)
                assert self.world.store.projection_rows() == before
        finally:
            self.world.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(
    max_examples=examples(40, 500),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase


# --- 2. random invalid records -------------------------------------------------------


@dataclass
class Ctx:
    """A shared ledger: refusals change nothing, so every example can use it."""

    world: World
    a: Signer
    b: Signer
    c: Signer
    key_add_hash: str
    ids: Iterator[int] = field(default_factory=itertools.count)

    def lot_id(self) -> str:
        return f"lot:r{next(self.ids)}"

    def lot(
        self, data: st.DataObject, *, material: str | None = None, min_mass: int = 1
    ) -> tuple[str, int]:
        """A fresh lot held by ``a``: (id, mass)."""
        lot = self.lot_id()
        mass = data.draw(st.integers(min_mass, MAX_MASS), label="mass_g")
        material = material or data.draw(st.sampled_from(MATERIALS), label="material")
        self.world.create(self.a, lot, mass, material=material)
        return lot, mass

    def in_transit(self, data: st.DataObject) -> tuple[str, int]:
        """A fresh lot sent by ``a`` to ``b``, not yet received."""
        lot, mass = self.lot(data)
        body = {"lot": lot, "to": self.b.actor, "mass_g": mass}
        self.world.ok(self.a.record("transfer", body, self.world.heads(lot)))
        return lot, mass

    def heads(self, *lots: str) -> dict[str, str]:
        return self.world.heads(*lots)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    world = make_world(database_url(str(tmp_path_factory.mktemp("refusals") / "ledger.db")))
    a = world.admit("org:a", ["collector"])
    b = world.admit("org:b", ["recycler"])
    c = world.admit("org:c", ["processor"])
    key_add = next(r.hash for r in world.store.records() if r.type == "key.add")
    yield Ctx(world, a, b, c, key_add)
    world.store.close()


Mutation = Callable[[Ctx, st.DataObject], tuple[Signed, str]]
MUTATIONS: dict[str, Mutation] = {}


def mutation(fn: Mutation) -> Mutation:
    MUTATIONS[fn.__name__] = fn
    return fn


def create_body(lot: str, mass: Any, material: str = "steel.hms1") -> dict[str, Any]:
    return {"lot": lot, "material": material, "mass_g": mass, "origin": "post_consumer"}


def transform_body(
    inputs: list[tuple[str, int]], outputs: list[tuple[str, str, int]], loss: int
) -> dict[str, Any]:
    return {
        "process": "shredding",
        "inputs": [{"lot": k, "mass_g": m} for k, m in inputs],
        "outputs": [{"lot": o, "material": mat, "mass_g": m} for o, mat, m in outputs],
        "loss_g": loss,
    }


excess = st.integers(1, 10**12)
non_positive = st.integers(-(10**9), 0)


@mutation
def overspend_dispose(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    body = {"lot": lot, "mass_g": mass + data.draw(excess), "method": "landfill"}
    return x.a.record("dispose", body, x.heads(lot)), "mass.insufficient"


@mutation
def overspend_transform_input(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    spend = mass + data.draw(excess)
    body = transform_body([(lot, spend)], [(x.lot_id(), "steel.shredded", spend)], 0)
    return x.a.record("transform", body, x.heads(lot)), "mass.insufficient"


@mutation
def partial_transfer(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data, min_mass=2)
    declared = data.draw(st.integers(1, 2 * mass).filter(lambda m: m != mass))
    body = {"lot": lot, "to": x.b.actor, "mass_g": declared}
    return x.a.record("transfer", body, x.heads(lot)), "mass.mismatch"


@mutation
def receive_more_than_declared(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.in_transit(data)
    body = {"lot": lot, "mass_g": mass + data.draw(excess)}
    return x.b.record("receive", body, x.heads(lot)), "mass.gain"


@mutation
def wrong_custodian(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    op = data.draw(st.sampled_from(["dispose", "transfer", "split", "status", "transform"]))
    bodies: dict[str, dict[str, Any]] = {
        "dispose": {"lot": lot, "mass_g": mass, "method": "landfill"},
        "transfer": {"lot": lot, "to": x.c.actor, "mass_g": mass},
        "split": {"lot": lot, "parts": [{"lot": x.lot_id(), "mass_g": mass}]},
        "status": {"lot": lot, "status": "stored"},
        "transform": transform_body([(lot, mass)], [(x.lot_id(), "steel.shredded", mass)], 0),
    }
    return x.b.record(op, bodies[op], x.heads(lot)), "actor.not_custodian"


@mutation
def sender_acts_on_lot_in_transit(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.in_transit(data)
    op = data.draw(st.sampled_from(["dispose", "status", "receive"]))
    bodies: dict[str, dict[str, Any]] = {
        "dispose": {"lot": lot, "mass_g": mass, "method": "landfill"},
        "status": {"lot": lot, "status": "stored"},
        "receive": {"lot": lot, "mass_g": mass},
    }
    return x.a.record(op, bodies[op], x.heads(lot)), "lot.state"


@mutation
def receiver_spends_before_receiving(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.in_transit(data)
    body = {"lot": lot, "mass_g": mass, "method": "landfill"}
    return x.b.record("dispose", body, x.heads(lot)), "lot.state"


@mutation
def third_party_receives(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.in_transit(data)
    return x.c.record("receive", {"lot": lot, "mass_g": mass}, x.heads(lot)), "lot.state"


@mutation
def stale_parents(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    stale = x.heads(lot)
    x.world.ok(x.a.record("status", {"lot": lot, "status": "stored"}, stale))
    body = {"lot": lot, "mass_g": mass, "method": "landfill"}
    return x.a.record("dispose", body, stale), "conflict"


@mutation
def made_up_parent(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    fake = data.draw(st.binary(min_size=32, max_size=32)).hex()
    if fake == x.heads(lot)[lot]:
        fake = "0" * 64
    return x.a.record("status", {"lot": lot, "status": "stored"}, {lot: fake}), "conflict"


@mutation
def missing_parents(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    other, _ = x.lot(data)
    op = data.draw(st.sampled_from(["status", "merge"]))
    if op == "status":
        return x.a.record("status", {"lot": lot, "status": "stored"}), "parents.missing"
    # A merge that names the head of only one of its lots.
    body = {"lots": [lot, other], "into": x.lot_id()}
    return x.a.record("merge", body, x.heads(lot)), "parents.missing"


@mutation
def unexpected_parents(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    other, _ = x.lot(data)
    if data.draw(st.booleans(), label="on a create"):
        return x.a.record("create", create_body(x.lot_id(), 5), x.heads(other)), (
            "parents.unexpected"
        )
    parents = x.heads(lot, other)
    return x.a.record("status", {"lot": lot, "status": "stored"}, parents), "parents.unexpected"


@mutation
def unknown_lot(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    ghost = x.lot_id()  # never created
    fake = {ghost: "ab" * 32}
    op = data.draw(st.sampled_from(["dispose", "transfer", "split", "status", "merge"]))
    if op == "merge":
        real, _ = x.lot(data)
        body: dict[str, Any] = {"lots": [real, ghost], "into": x.lot_id()}
        return x.a.record("merge", body, {**x.heads(real), **fake}), "lot.unknown"
    bodies: dict[str, dict[str, Any]] = {
        "dispose": {"lot": ghost, "mass_g": 1, "method": "landfill"},
        "transfer": {"lot": ghost, "to": x.b.actor, "mass_g": 1},
        "split": {"lot": ghost, "parts": [{"lot": x.lot_id(), "mass_g": 1}]},
        "status": {"lot": ghost, "status": "stored"},
    }
    return x.a.record(op, bodies[op], fake), "lot.unknown"


NOT_A_MATERIAL = st.one_of(
    st.sampled_from(
        ["steel", "steel.unobtainium", "wood.pallet", "batteries.li_ion", "STEEL.HMS1"]
    ),
    st.from_regex(r"[a-z]{1,8}\.[a-z_]{1,12}", fullmatch=True),
).filter(lambda code: default_taxonomy().material(code) is None)


@mutation
def unknown_material(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    material = data.draw(NOT_A_MATERIAL, label="material")
    if data.draw(st.booleans(), label="in a create"):
        body = create_body(x.lot_id(), data.draw(masses), material)
        return x.a.record("create", body, {}), "material.unknown"
    lot, mass = x.lot(data)
    body = transform_body([(lot, mass)], [(x.lot_id(), material, mass)], 0)
    return x.a.record("transform", body, x.heads(lot)), "material.unknown"


@mutation
def unknown_process(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    body = transform_body([(lot, mass)], [(x.lot_id(), "steel.shredded", mass)], 0)
    body["process"] = data.draw(
        st.from_regex(r"[a-z_]{1,20}", fullmatch=True).filter(
            lambda p: default_taxonomy().process(p) is None
        )
    )
    return x.a.record("transform", body, x.heads(lot)), "process.unknown"


@mutation
def non_positive_mass(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    bad = data.draw(non_positive, label="bad mass")
    op = data.draw(
        st.sampled_from(
            ["create", "dispose", "transfer", "split", "transform_in", "transform_out", "merge"]
        )
    )
    if op == "create":
        return x.a.record("create", create_body(x.lot_id(), bad)), "mass.not_positive"
    lot, mass = x.lot(data)
    heads = x.heads(lot)
    if op == "dispose":
        body: dict[str, Any] = {"lot": lot, "mass_g": bad, "method": "landfill"}
    elif op == "transfer":
        body = {"lot": lot, "to": x.b.actor, "mass_g": bad}
    elif op == "split":  # still adds up to the lot's mass
        parts = [(x.lot_id(), mass - bad), (x.lot_id(), bad)]
        body = {"lot": lot, "parts": [{"lot": p, "mass_g": m} for p, m in parts]}
    elif op == "transform_in":
        body = transform_body([(lot, bad)], [(x.lot_id(), "steel.shredded", 1)], 0)
        op = "transform"
    elif op == "transform_out":
        outputs = [(x.lot_id(), "steel.shredded", mass - bad), (x.lot_id(), "steel.shredded", bad)]
        body = transform_body([(lot, mass)], outputs, 0)
        op = "transform"
    else:
        one, _ = x.lot(data, material="steel.hms1")
        two, _ = x.lot(data, material="steel.hms1")
        body = {"lots": [one, two], "into": x.lot_id(), "mass_g": bad}
        heads = x.heads(one, two)
    return x.a.record(op, body, heads), "mass.not_positive"


@mutation
def receive_nothing(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.in_transit(data)
    bad = data.draw(non_positive)
    return x.b.record("receive", {"lot": lot, "mass_g": bad}, x.heads(lot)), "mass.not_positive"


@mutation
def negative_loss(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    loss = -data.draw(st.integers(1, 10**9))
    body = transform_body([(lot, mass)], [(x.lot_id(), "steel.shredded", mass - loss)], loss)
    return x.a.record("transform", body, x.heads(lot)), "mass.negative"


@mutation
def unbalanced_transform(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data, min_mass=2)
    spend = data.draw(st.integers(2, mass), label="spend")
    loss = data.draw(st.integers(0, spend - 1), label="loss")
    out = spend - loss + data.draw(st.integers(-(spend - loss) + 1, 10**9).filter(bool))
    outputs = [(x.lot_id(), "steel.shredded", out)]
    return x.a.record("transform", transform_body([(lot, spend)], outputs, loss), x.heads(lot)), (
        "mass.unbalanced"
    )


@mutation
def unbalanced_split(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data, min_mass=2)
    total = mass + data.draw(st.integers(-(mass - 1), 10**9).filter(bool), label="delta")
    parts = composition(data, total, 4)
    body = {"lot": lot, "parts": [{"lot": x.lot_id(), "mass_g": m} for m in parts]}
    return x.a.record("split", body, x.heads(lot)), "mass.unbalanced"


@mutation
def merge_wrong_mass(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    one, m1 = x.lot(data, material="paper.occ")
    two, m2 = x.lot(data, material="paper.occ")
    stated = data.draw(st.integers(1, 3 * MAX_MASS).filter(lambda m: m != m1 + m2))
    body = {"lots": [one, two], "into": x.lot_id(), "mass_g": stated}
    return x.a.record("merge", body, x.heads(one, two)), "mass.unbalanced"


@mutation
def merge_mixed_materials(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    first, second = data.draw(
        st.lists(st.sampled_from(MATERIALS), min_size=2, max_size=2, unique=True)
    )
    one, _ = x.lot(data, material=first)
    two, _ = x.lot(data, material=second)
    body = {"lots": [one, two], "into": x.lot_id()}
    return x.a.record("merge", body, x.heads(one, two)), "material.mismatch"


@mutation
def merge_a_lot_with_itself(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    body = {"lots": [lot, lot], "into": x.lot_id()}
    return x.a.record("merge", body, x.heads(lot)), "lot.duplicate"


@mutation
def create_existing_lot(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    if data.draw(st.booleans(), label="as a split part"):
        other, m2 = x.lot(data)
        body = {"lot": other, "parts": [{"lot": lot, "mass_g": m2}]}
        return x.a.record("split", body, x.heads(other)), "lot.exists"
    return x.a.record("create", create_body(lot, data.draw(masses))), "lot.exists"


@mutation
def transfer_to_self_or_stranger(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, mass = x.lot(data)
    if data.draw(st.booleans(), label="to self"):
        body = {"lot": lot, "to": x.a.actor, "mass_g": mass}
        return x.a.record("transfer", body, x.heads(lot)), "envelope.field"
    body = {"lot": lot, "to": "org:nobody", "mass_g": mass}
    return x.a.record("transfer", body, x.heads(lot)), "org.unknown"


@mutation
def elements_exceed_mass(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    mass = data.draw(st.integers(1, MAX_MASS))
    co = data.draw(st.integers(0, mass))
    ni = mass - co + data.draw(st.integers(1, 10**6))
    body = {
        **create_body(x.lot_id(), mass, "batteries.li_ion.nmc"),
        "elements": {"Co": co, "Ni": ni},
    }
    return x.a.record("create", body), "element.exceeds_mass"


@mutation
def float_mass(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    """A mass written as a float (signed correctly over the float text)."""
    lot, mass = x.lot(data)
    record = x.a.record("dispose", {"lot": lot, "mass_g": mass, "method": "landfill"}, x.heads(lot))
    spelled = data.draw(st.sampled_from([f"{mass}.0", f"{mass}.5", f"{mass}e0", f"{mass}E+0"]))
    text = envelope_bytes(record).replace(
        f'"mass_g":{mass}'.encode(), f'"mass_g":{spelled}'.encode()
    )
    assert text != envelope_bytes(record)
    return Signed(text, sign(x.a.private_key, text)), "json.float"


@mutation
def signed_by_another_key(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    record = x.a.record("create", create_body(x.lot_id(), data.draw(masses)))
    text = envelope_bytes(record)
    forger = data.draw(st.sampled_from(["b", "c", "stranger", "random"]))
    if forger == "random":
        sig = b64url_encode(data.draw(st.binary(min_size=64, max_size=64)))
        return Signed(text, sig), "signature.invalid"
    key = {"b": x.b.private_key, "c": x.c.private_key}.get(forger) or fixed_key(forger)
    return Signed(text, sign(key, text)), "signature.invalid"


@mutation
def key_of_another_org(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    impostor = Signer(x.a.actor, data.draw(st.sampled_from([x.b, x.c])).private_key)
    return impostor.record("create", create_body(x.lot_id(), data.draw(masses))), "key.wrong_actor"


@mutation
def unregistered_key(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    stranger = Signer(x.a.actor, fixed_key(f"stranger-{data.draw(st.integers(0, 99))}"))
    return stranger.record("create", create_body(x.lot_id(), data.draw(masses))), "key.unknown"


@mutation
def dated_in_the_future(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    year = data.draw(st.integers(2100, 9999))
    body = create_body(x.lot_id(), data.draw(masses))
    return x.a.record("create", body, at=f"{year}-01-01T00:00:00Z"), "at.future"


@mutation
def tampered_after_signing(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    """Sign, then change one byte of the text: refused, whatever the byte becomes."""
    lot, mass = x.lot(data)
    record = x.a.record("dispose", {"lot": lot, "mass_g": mass, "method": "landfill"}, x.heads(lot))
    text = bytearray(envelope_bytes(record))
    i = data.draw(st.integers(0, len(text) - 1), label="position")
    text[i] = data.draw(st.integers(0, 255).filter(lambda b: b != text[i]), label="byte")
    tampered = bytes(text)
    # The code the ledger owes us: the parse error if it no longer parses;
    # otherwise the signature (or, if the key id itself was hit, the key) fails.
    try:
        env = parse_envelope(tampered)
    except RecordRefused as exc:
        expected = exc.code
    else:
        expected = "key.unknown" if env.key != x.a.key_id else "signature.invalid"
    return Signed(tampered, record.signature), expected


@mutation
def reused_id_other_bytes(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot = x.lot_id()
    [stored] = x.world.ok(x.a.record("create", create_body(lot, data.draw(masses))))
    other = create_body(x.lot_id(), data.draw(masses))
    return x.a.record("create", other, record_id=stored.id), "id.reused"


@mutation
def void_by_a_third_party(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    head = x.heads(lot)[lot]
    body = {"record": head, "reason": "not mine"}
    return x.b.record("void", body, {lot: head}), "void.not_permitted"


@mutation
def void_of_an_old_record(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    lot, _ = x.lot(data)
    created = x.heads(lot)[lot]
    x.world.ok(x.a.record("status", {"lot": lot, "status": "stored"}, x.heads(lot)))
    body = {"record": created, "reason": "too late"}
    return x.a.record("void", body, x.heads(lot)), "void.not_head"


@mutation
def void_of_what_cannot_be_voided(x: Ctx, data: st.DataObject) -> tuple[Signed, str]:
    if data.draw(st.booleans(), label="unknown record"):
        body = {"record": data.draw(st.binary(min_size=32, max_size=32)).hex(), "reason": "?"}
        return x.a.record("void", body), "record.unknown"
    body = {"record": x.key_add_hash, "reason": "keys are revoked, not voided"}
    return x.world.operator.record("void", body), "void.unsupported"


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_invalid_record_is_refused_and_changes_nothing(
    ctx: Ctx, kind: str, data: st.DataObject
) -> None:
    record, code = MUTATIONS[kind](ctx, data)
    refusal = ctx.world.refused(record)  # asserts last_seq and every projection unchanged
    assert refusal.code == code, str(refusal)
    assert refusal.message
    match = re.search(rb'"id":"([^"]*)"', envelope_bytes(record))
    if refusal.record_id is not None and match:
        assert refusal.record_id == match.group(1).decode("utf-8", "replace")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_id_same_bytes_is_answered_with_the_stored_record(
    ctx: Ctx, data: st.DataObject
) -> None:
    record = ctx.a.record("create", create_body(ctx.lot_id(), data.draw(masses)))
    [stored] = ctx.world.ok(record)
    before = (ctx.world.store.last_seq(), ctx.world.store.projection_rows())
    [again] = ctx.world.ok(record)
    assert again.existing and (again.id, again.hash, again.seq) == (
        stored.id,
        stored.hash,
        stored.seq,
    )
    assert (ctx.world.store.last_seq(), ctx.world.store.projection_rows()) == before
