"""The national-network simulator (producers/simulate.py, ``rledger simulate``).

Every simulated record must be accepted by the real store, in the order and
batches the simulator gives (one organisation a batch, parents first), and the
ledger must verify afterwards; the same ``(records, seed)`` must give the same
bytes, however the batches are cut.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server_process import running_server

from ledger.access import ReadScope
from ledger.anomalies import Kind, Window, anomalies
from ledger.battery_codes import classify_unit_code
from ledger.database import database_url, migrate
from ledger.store import Appended, Store
from ledger.verify import verify_store
from producers.cli import main
from producers.simulate import SimBatch, simulate

FAMILIES = {"steel", "nonferrous", "paper", "plastics", "tyres", "batteries"}


def _append_all(url: str, records: int, seed: int = 1) -> tuple[Any, list[SimBatch]]:
    """Append the setup, then every batch in order — consecutive batches joined into one
    Store.append of up to 5,000 records (a commit per tiny batch would be slow; the order is
    the same) — and verify the ledger."""
    sim = simulate(records, seed)
    batches = list(sim.batches(500))
    joined: list[tuple[list[Any], list[str]]] = [([], [])]
    for b in batches:
        if len(joined[-1][0]) + len(b.records) > 5_000:
            joined.append(([], []))
        joined[-1][0].extend(b.records)
        joined[-1][1].extend(b.hashes)
    migrate(url)
    store = Store.open(url)
    try:
        for chunk, hashes in [(sim.setup, sim.setup_hashes), *joined]:
            results = store.append(chunk)
            refused = [(i, r) for i, r in enumerate(results) if not isinstance(r, Appended)]
            assert not refused, refused[:3]
            assert [r.hash for r in results] == hashes  # type: ignore[union-attr]
        assert store.last_seq() == len(sim.setup) + records
        report = verify_store(store, processes=0)
        assert report.ok, str(report)
    finally:
        store.close()
    return sim, batches


def _envelopes(batches: list[SimBatch]) -> list[dict[str, Any]]:
    return [json.loads(r.envelope) for b in batches for r in b.records]


def test_a_national_network_is_accepted_record_for_record(sqlite_url: str) -> None:
    """3,000 records of a network of 300 collectors and ~130 other firms: every record
    appended as built (same hash), the ledger verifies, and what makes it a national
    network is there: all six families, GB/T 34014 codes on packs, second life, recycling
    to black mass and salts, EPR declarations, certificates and retirements, voids; and the
    regulators' anomaly list stays quiet about yields, transit losses and roles."""
    sim, batches = _append_all(sqlite_url, 3_000)
    kinds = Counter(o.kind for o in sim.orgs)
    assert kinds["collector"] >= 300
    assert kinds["processor"] + kinds["paper_mill"] + kinds["plastics"] + kinds["tyres"] >= 80
    assert len({o.region for o in sim.orgs}) >= 15
    envs = _envelopes(batches)
    assert len(envs) == 3_000
    for batch in batches:
        assert 0 < len(batch.records) <= 500
        assert {json.loads(r.envelope)["actor"] for r in batch.records} == {batch.org}
    types = Counter(e["type"] for e in envs)
    for rtype in (
        "create",
        "transfer",
        "receive",
        "split",
        "merge",
        "transform",
        "status",
        "dispose",
        "declare",
        "certify",
        "certificate.transfer",
        "certificate.retire",
    ):
        assert types[rtype] > 0, rtype
    created = {e["body"]["material"].split(".")[0] for e in envs if e["type"] == "create"}
    assert created >= FAMILIES
    codes = [u for e in envs if e["type"] == "create" for u in e["body"].get("units", [])]
    assert codes and all(classify_unit_code(c).key for c in codes[:50])
    statuses = {e["body"]["status"] for e in envs if e["type"] == "status"}
    assert {"placed_on_market", "in_use", "retired", "collected"} <= statuses
    processes = {e["body"]["process"] for e in envs if e["type"] == "transform"}
    assert {"shredding", "pulping", "pelletising", "granulating", "melting"} <= processes
    assert {"dismantling", "mechanical"} <= processes
    store = Store.open(sqlite_url)
    try:
        with store.engine.connect() as conn:
            found = anomalies(
                conn,
                ReadScope("org:operator", True, frozenset()),
                Window(),
                [Kind.YIELD, Kind.TRANSIT_LOSS, Kind.MISSING_ROLE],
            )
    finally:
        store.close()
    assert found == []


def test_postgresql_accepts_the_same_network(pg_url: str) -> None:
    _append_all(pg_url, 600, seed=3)


def test_chunks_are_the_batches_rejoined() -> None:
    sim = simulate(700, seed=6)
    batches = list(sim.batches(300))
    chunks = list(sim.chunks(250))
    assert [len(c.records) for c in chunks] == [250, 250, 200]
    assert [h for c in chunks for h in c.hashes] == [h for b in batches for h in b.hashes]
    assert chunks[0].org == batches[0].org


def test_same_seed_same_bytes_different_seed_other_bytes() -> None:
    """The bytes depend on (records, seed) only: not on the batch size, nor on a second call."""
    a, again = simulate(600, seed=7), simulate(600, seed=7)
    first = [h for b in a.batches(500) for h in b.hashes]
    assert len(first) == 600
    assert [h for b in a.batches(37) for h in b.hashes] == first
    assert [h for b in again.batches(100) for h in b.hashes] == first
    assert again.setup_hashes == a.setup_hashes
    other = simulate(600, seed=8)
    assert not set(first) & {h for x in other.batches() for h in x.hashes}
    assert other.setup_hashes != a.setup_hashes


@pytest.mark.parametrize("records", [0, 25, 1_200])
def test_exactly_the_records_asked_for(records: int) -> None:
    sim = simulate(records, seed=2)
    batches = list(sim.batches(64))
    assert sum(len(b.records) for b in batches) == records
    assert all(0 < len(b.records) <= 64 for b in batches)
    if records:
        envs = _envelopes(batches)
        assert all(e["at"] < "2026-11-01" for e in envs)


def test_cli_db_appends_setup_and_records(tmp_path: Path) -> None:
    """`simulate --db` migrates a new database, writes init's keys (0600) and appends the
    setup and every record; it refuses a ledger that already holds records."""
    db = tmp_path / "sim.db"
    runner = CliRunner()
    done = runner.invoke(main, ["simulate", "--records", "400", "--db", str(db)])
    assert done.exit_code == 0, done.output
    assert "400 records" in done.output
    keys = tmp_path / "sim.keys"
    assert stat.S_IMODE(os.stat(keys / "ledger.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys / "operator.key").st_mode) == 0o600
    store = Store.open(database_url(str(db)))
    try:
        assert store.last_seq() == len(simulate(400).setup) + 400
    finally:
        store.close()
    again = runner.invoke(
        main, ["simulate", "--records", "10", "--db", str(db), "--keys", str(tmp_path / "k2")]
    )
    assert again.exit_code != 0 and "already holds a ledger" in again.output


def test_cli_out_writes_ndjson_setup_first(tmp_path: Path) -> None:
    out = tmp_path / "sim.ndjson"
    done = CliRunner().invoke(
        main, ["simulate", "--records", "120", "--seed", "4", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    lines = out.read_text().splitlines()
    sim = simulate(120, seed=4)
    assert len(lines) == len(sim.setup) + 120
    first = json.loads(lines[0])
    assert json.loads(first["envelope"])["type"] == "org.register"
    assert first["signature"] == sim.setup[0].signature
    usage = CliRunner().invoke(main, ["simulate", "--records", "1"])
    assert usage.exit_code == 2 and "exactly one of" in usage.output


def test_cli_over_http_with_a_token_per_organisation(tmp_path: Path) -> None:
    """--db --setup-only --tokens-out makes the ledger and a 0600 token file; `serve` runs
    on it; --url --tokens then submits every batch with its organisation's token; `verify`
    and `checkpoint` (with the ledger key simulate wrote) work on the result."""
    db = tmp_path / "http.db"
    tokens = tmp_path / "tokens.json"
    runner = CliRunner()
    args = ["simulate", "--records", "150", "--seed", "5"]
    setup = runner.invoke(
        main, [*args, "--db", str(db), "--setup-only", "--tokens-out", str(tokens)]
    )
    assert setup.exit_code == 0, setup.output
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    sim = simulate(150, seed=5)
    assert set(json.loads(tokens.read_text())) == {o.id for o in sim.orgs}
    with running_server(database_url(str(db))) as server:
        done = runner.invoke(main, [*args, "--url", server.url, "--tokens", str(tokens)])
    assert done.exit_code == 0, done.output
    assert "150 records submitted" in done.output
    store = Store.open(database_url(str(db)))
    try:
        assert store.last_seq() == len(sim.setup) + 150
    finally:
        store.close()
    verified = runner.invoke(main, ["verify", "--db", str(db), "--processes", "0"])
    assert verified.exit_code == 0 and "ok" in verified.output, verified.output
    note = runner.invoke(main, ["checkpoint", "--db", str(db)])  # with the ledger key written
    assert note.exit_code == 0 and note.output.count("\n") >= 3, note.output


def test_cli_http_needs_a_token_for_every_organisation(tmp_path: Path) -> None:
    partial = tmp_path / "tokens.json"
    partial.write_text(json.dumps({"org:operator": "x"}))
    done = CliRunner().invoke(
        main,
        ["simulate", "--records", "5", "--url", "http://127.0.0.1:9", "--tokens", str(partial)],
    )
    assert done.exit_code != 0 and "has no token for org:" in done.output
    assert "--setup-only --tokens-out" in done.output
