"""Several client processes spending, splitting, transferring and receiving the same lots
at once, over HTTP, against ``rledger serve --workers 2`` on PostgreSQL and on SQLite.

Three organisations: two recyclers that hold and move lots and a regulator
whose token reads every lot. Three lots of 1,000,000 g to start. Three client
processes (tests/crash_clients.py ``race_client``), each holding both
recyclers' keys and tokens, then

* play rounds: every process reads the live lots, takes the same one (the
  round's), builds a record valid against what it read — a split into two
  fresh lots, a partial dispose, a transfer of the whole lot to the other
  recycler, or, for a lot in transit, the receiver's receive with up to 99 g
  of transit loss — and says ready; when all are ready they all send. All
  three name the same parent, so exactly one wins and the two others must be
  told ``conflict``;
* then run free: each does a number of operations on a random one of the first
  three live lots, at its own pace.

Afterwards, from the database: ``verify_store`` passes (it replays every rule,
so no record overdrew a lot); walking the log independently, no lot's
remaining mass ever went below zero, every record that touches an existing lot
names that lot's previous record as its parent (one chain per lot, no fork)
and the stored heads are the chains' ends; and the grams are conserved:
created = remaining + disposed + transit losses, in the walk and in the
projections. Every refusal any client saw is ``conflict``, and the number of
wins is the number of records the ledger gained.

The last test pins a bug those runs found (ledger/store.py read the clock
before taking the writer lock, so ``recorded_at`` could go back along ``seq``).

``RLEDGER_LONG=1``: 150 rounds and 60 free operations per process (CI: 10 and 6).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from crash_clients import RaceConfig, forked_server, forkserver, race_client, tally
from run_length import examples
from sqlalchemy import func, select

import ledger.database
import ledger.store
from ledger import rules
from ledger.errors import Overloaded
from ledger.store import Appended, Signed, Store
from ledger.tables import lots
from ledger.tokens import issue_token
from ledger.verify import verify_store
from producers.events import Signer

PROCESSES = 3
ROUNDS = examples(10, 150)
FREE_OPS = examples(6, 60)
START_G = 1_000_000
ORGS = ("org:race-a", "org:race-b")


@dataclass
class Walk:
    """The log replayed by hand: masses and chains, independent of ledger/rules.py."""

    remaining: dict[str, int] = field(default_factory=dict)
    in_transit: dict[str, int] = field(default_factory=dict)  # declared grams
    heads: dict[str, str] = field(default_factory=dict)
    created: int = 0
    disposed: int = 0
    transit_loss: int = 0
    lowest: int = 0  # the lowest remaining mass any lot ever had
    forks: list[str] = field(default_factory=list)

    def record(self, rtype: str, body: dict[str, Any], parents: dict[str, str], h: str) -> None:
        existing, made = rules.touched_lots(rtype, body)
        for lot in existing:
            if parents.get(lot) != self.heads.get(lot):
                self.forks.append(f"{h}: {lot} parent {parents.get(lot)}, head {self.heads[lot]}")
            self.heads[lot] = h
        for lot in made:
            if lot in self.heads:
                self.forks.append(f"{h}: {lot} made twice")
            self.heads[lot] = h
        if rtype == "create":
            self.remaining[body["lot"]] = body["mass_g"]
            self.created += body["mass_g"]
        elif rtype == "split":
            assert sum(p["mass_g"] for p in body["parts"]) == self.remaining[body["lot"]], h
            self.remaining[body["lot"]] = 0
            for p in body["parts"]:
                self.remaining[p["lot"]] = p["mass_g"]
        elif rtype == "dispose":
            self.remaining[body["lot"]] -= body["mass_g"]
            self.disposed += body["mass_g"]
        elif rtype == "transfer":
            assert body["mass_g"] == self.remaining[body["lot"]], h
            self.in_transit[body["lot"]] = body["mass_g"]
        elif rtype == "receive":
            declared = self.in_transit.pop(body["lot"])
            assert body["mass_g"] <= declared, h
            self.transit_loss += declared - body["mass_g"]
            self.remaining[body["lot"]] = body["mass_g"]
        self.lowest = min([self.lowest, *self.remaining.values()])


@dataclass
class Race:
    world: World
    tokens: dict[str, str]
    reader: str
    start_seq: int


def _setup(world: World) -> Race:
    a = world.admit(ORGS[0], ["recycler"])
    world.admit(ORGS[1], ["recycler"])
    regulator = world.admit("org:race-regulator", ["regulator"])
    for n in range(3):
        world.create(a, f"lot:a{n}", START_G)
    engine = world.store.engine
    tokens = {org: issue_token(engine, org) for org in ORGS}
    return Race(world, tokens, issue_token(engine, regulator.actor), world.store.last_seq())


def _race(race: Race, url: str, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Run the client processes against ``url``; every outcome, and the rounds played."""
    ctx = forkserver()
    pipes, procs = [], []
    for i in range(PROCESSES):
        parent, child = ctx.Pipe()
        config = RaceConfig(url, i, seed * 100 + i, race.tokens, race.reader)
        proc = ctx.Process(target=race_client, args=(child, config), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    outcomes: list[dict[str, Any]] = []
    try:
        for k in range(ROUNDS):
            for p in pipes:
                p.send(("round", k))
            ready = [_recv(p) for p in pipes]
            assert all(r[0] == "ready" for r in ready), ready
            assert len({(r[1], r[2]) for r in ready}) == 1, f"round {k}: not one lot+head: {ready}"
            for p in pipes:
                p.send("go")
            played = [_recv(p) for p in pipes]
            winners = [o for o in played if o["won"]]
            assert len(winners) == 1, f"round {k}: {len(winners)} winners: {played}"
            outcomes += played
        for p in pipes:
            p.send(("free", FREE_OPS, 3))
        for p in pipes:
            outcomes += _recv(p)
        for p in pipes:
            p.send(("quit",))
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return outcomes, ROUNDS


def _recv(pipe: Any) -> Any:
    if not pipe.poll(60):
        raise AssertionError("a client process did not answer within 60 s")
    message = pipe.recv()
    if isinstance(message, tuple) and message and message[0] == "error":
        raise AssertionError(f"a client process failed: {message[1]}")
    return message


def _check(race: Race, outcomes: list[dict[str, Any]]) -> tuple[int, int]:
    """Every invariant of the module docstring; returns (wins, conflicts)."""
    store = race.world.store
    report = verify_store(store)
    assert report.ok, str(report)

    walk = Walk()
    for rec in store.records():
        env = json.loads(rec.canonical)
        walk.record(env["type"], env["body"], env["parents"], rec.hash)
    assert walk.forks == [], walk.forks[:5]
    assert walk.lowest >= 0
    assert walk.created == walk.disposed + walk.transit_loss + sum(walk.remaining.values())
    assert walk.in_transit.keys() <= walk.remaining.keys()

    with store.engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(lots))}
        totals = conn.execute(
            select(
                func.sum(lots.c.remaining_g),
                func.sum(lots.c.disposed_g),
                func.sum(lots.c.transit_loss_g),
                func.min(lots.c.remaining_g),
            )
        ).one()
    assert {lot: r.head for lot, r in stored.items()} == walk.heads
    assert {lot: r.remaining_g for lot, r in stored.items()} == walk.remaining
    remaining, disposed, lost, lowest = (int(x) for x in totals)
    assert lowest >= 0
    assert remaining + disposed + lost == walk.created

    wins = [o for o in outcomes if o["won"]]
    losers = [o for o in outcomes if not o["won"]]
    codes: defaultdict[str, int] = defaultdict(int)
    for o in losers:
        codes[o["code"]] += 1
    assert set(codes) <= {"conflict"}, dict(codes)
    assert len(wins) == store.last_seq() - race.start_seq
    assert len({o["hash"] for o in wins}) == len(wins)
    return len(wins), len(losers)


def test_client_processes_racing_on_the_same_lots(
    world: World, db_url: str, tmp_path: Path
) -> None:
    engine = "SQLite" if db_url.startswith("sqlite") else "PostgreSQL"
    race = _setup(world)
    with forked_server(db_url, tmp_path, workers=2) as server:
        assert len(server.group()) == 3  # uvicorn's supervisor and its two workers
        outcomes, rounds = _race(race, server.url, seed=7 if engine == "SQLite" else 8)
    wins, conflicts = _check(race, outcomes)
    assert conflicts >= rounds * (PROCESSES - 1)  # every round had its losers
    tally(
        f"concurrent client processes on the same lots ({engine}, 2 server workers)",
        tried=len(outcomes),
        held=wins + conflicts,
        unit="writes",
        note=(
            f"{PROCESSES} client processes; {wins} won, {conflicts} told conflict, 0 other "
            "refusals; 0 lots below zero, 0 forked chains, grams conserved"
        ),
    )


def test_a_writer_waiting_for_the_lock_is_not_overtaken_in_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``recorded_at`` never goes back along ``seq``, however the writers queue.

    Found by the kill tests (two clients, one server): batch A read the clock
    (…21.567490Z), then waited for the writer lock while the other client's
    batches — clock read later — went first; A was stored at seq 108 after a
    record at 21.625242Z, and ``verify`` called the log reordered. Here, on a
    clock of our own: writer A reads the time, and at that very moment a second
    store (another server worker) tries to write. It must not get in before A
    (it waits, and is told Overloaded after its lock timeout of 200 ms); A is
    stored, then B on retry, and the times follow the seqs.
    """
    monkeypatch.setattr(ledger.store, "LOCK_TIMEOUT_MS", 200)
    monkeypatch.setattr(ledger.database, "BUSY_TIMEOUT_MS", 200)
    a = world.admit("org:clock-a", ["recycler"])
    b = world.admit("org:clock-b", ["recycler"])
    other = Store.open(world.url)  # a second writer, as a second server worker has
    start = world.store.last_seq()
    base = datetime.now(UTC) + timedelta(seconds=1)  # after every record so far
    ticks = itertools.count()
    nested: list[str] = []

    def record(who: Signer, lot: str) -> Signed:
        body = {"lot": lot, "material": "steel.hms1", "mass_g": 5, "origin": "virgin"}
        return who.record("create", body)

    def clock() -> datetime:
        now = base + timedelta(milliseconds=next(ticks))
        if not nested:  # writer A has just read the clock: B tries to write now
            nested.append("trying")
            try:
                [result] = other.append([record(b, "lot:clock-b")])
                nested.append(
                    f"B stored at seq {result.seq}" if isinstance(result, Appended) else "B refused"
                )
            except Overloaded:
                nested.append("B overloaded")
        return now

    monkeypatch.setattr(ledger.store, "now_utc", clock)
    try:
        [stored_a] = world.store.append([record(a, "lot:clock-a")])
        assert isinstance(stored_a, Appended)
        if nested[-1] == "B overloaded":
            [stored_b] = other.append([record(b, "lot:clock-b")])
            assert isinstance(stored_b, Appended) and stored_b.seq == stored_a.seq + 1
    finally:
        other.close()
    times = [r.recorded_at for r in world.store.records(start + 1)]
    assert times == sorted(times), (nested, times)
    assert verify_store(world.store).ok
