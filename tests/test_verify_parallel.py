"""``verify`` with worker processes (``verify_store(processes=N)``, ``rledger verify
--processes N``): the workers read the records and check their form, hash, columns and
signatures a chunk at a time (ledger/record_checks.py) while the replay goes on in sequence
order — and the report must be exactly the one of the single-process verify, whatever was
tampered with, on SQLite and PostgreSQL.

The ledger is tests/test_tamper.py's (12 records: genesis, two admissions, create, transfer,
receive, split, transform, dispose, status), checked in chunks of 5 records by two workers
of one pool shared by the module's tests (``pool=``), so every chunk boundary is crossed.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
from operator_tampering import around_triggers
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from test_tamper import (
    Ledger,
    built_on,
    flip_digit,
    restore,
    set_columns,
)

from ledger import rules, verify
from ledger.signing import public_key_bytes, record_hash, sign
from ledger.store import StoredRecord
from ledger.tables import keys, lot_records, lots, merkle_hashes
from ledger.verify import Report, rebuild, verify_store

CHUNK = 5  # 12 records: chunks of 5, 5 and 2


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as workers:
        yield workers


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ledger]:
    with built_on(request, tmp_path_factory, "verify_parallel") as ledger:
        yield ledger


@pytest.fixture
def ledger(built: Ledger) -> Ledger:
    restore(built)
    rebuild(built.world.store)
    return built


def both(ledger: Ledger, pool: ProcessPoolExecutor) -> tuple[Report, Report]:
    store = ledger.world.store
    return verify_store(store), verify_store(store, processes=2, chunk=CHUNK, pool=pool)


Tamper = Callable[[Connection, StoredRecord, Ledger], None]


def same_for_every_record(ledger: Ledger, pool: ProcessPoolExecutor, tamper: Tamper) -> None:
    """Tamper with each record in turn: both verifies give the same (failing) report."""
    differ = []
    for rec in ledger.originals:
        with around_triggers(ledger.engine) as conn:
            tamper(conn, rec, ledger)
        here, workers = both(ledger, pool)
        restore(ledger)
        rebuild(ledger.world.store)
        if here != workers or here.ok:
            differ.append(f"seq {rec.seq} ({rec.type}): {here!r} / {workers!r}")
    assert not differ, "\n".join(differ)


def test_a_whole_ledger_verifies_the_same(ledger: Ledger, pool: ProcessPoolExecutor) -> None:
    assert both(ledger, pool) == (Report(True, 12), Report(True, 12))


def test_the_replay_runs_without_the_cycle_collector_and_gives_it_back(
    ledger: Ledger, pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ledger/collector.py: paused for every record of a replay and the comparison of the
    projections, on again after; a caller that had paused it keeps it paused."""
    seen: list[bool] = []
    apply, compare = rules.apply, verify._compare_projections

    def watched_apply(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return apply(*args)

    def watched_compare(*args: Any) -> None:
        seen.append(gc.isenabled())
        compare(*args)

    monkeypatch.setattr(rules, "apply", watched_apply)
    monkeypatch.setattr(verify, "_compare_projections", watched_compare)
    assert gc.isenabled()
    assert both(ledger, pool) == (Report(True, 12), Report(True, 12))
    rebuild(ledger.world.store)
    assert len(seen) == 12 + 1 + 12 + 1 + 12 and not any(seen)
    assert gc.isenabled()
    gc.disable()
    try:
        assert verify_store(ledger.world.store).ok
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("change", ["mass", "missing", "extra"])
def test_a_changed_projection_is_reported_the_same(
    ledger: Ledger, pool: ProcessPoolExecutor, change: str
) -> None:
    """A projection row changed, missing or extra: with workers or without, the comparison
    after the replay names it the same way."""
    with ledger.engine.begin() as conn:
        lot, seq = conn.execute(select(lot_records.c.lot, lot_records.c.seq).limit(1)).one()
        if change == "mass":
            conn.execute(update(lots).where(lots.c.id == lot).values(mass_g=lots.c.mass_g + 1))
        elif change == "missing":
            conn.execute(
                delete(lot_records).where(lot_records.c.lot == lot, lot_records.c.seq == seq)
            )
        else:
            conn.execute(lot_records.insert().values(lot=lot, seq=seq + 100))
    here, workers = both(ledger, pool)
    assert here == workers and not here.ok, (here, workers)
    assert "rledger rebuild" in (here.problem or ""), here
    assert ("lot_records" if change != "mass" else "projection lots") in (here.problem or "")


def _digit(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    set_columns(conn, rec.seq, canonical=flip_digit(rec.canonical))


def _digit_rehashed(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    new = flip_digit(rec.canonical)
    set_columns(conn, rec.seq, canonical=new, hash=record_hash(new))


def _broken_json(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    pos = rec.canonical.index(b":")
    set_columns(conn, rec.seq, canonical=rec.canonical[:pos] + b"=" + rec.canonical[pos + 1 :])


def _other_signature(conn: Connection, rec: StoredRecord, led: Ledger) -> None:
    set_columns(conn, rec.seq, sig=led.originals[rec.seq % len(led.originals)].sig)


def _garbage_signature(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    set_columns(conn, rec.seq, sig="not base64url!")


def _actor_column(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    set_columns(conn, rec.seq, actor="org:mallory")


def _deleted(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    conn.exec_driver_sql(f"DELETE FROM records WHERE seq = {rec.seq}")


def _recorded_out_of_order(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    """Before the record ahead of it (the first record: after the one behind it)."""
    when = "2999-01-01T00:00:00.000000Z" if rec.seq == 1 else "2000-01-01T00:00:00.000000Z"
    set_columns(conn, rec.seq, recorded_at=when)


def _leaf(conn: Connection, rec: StoredRecord, _: Ledger) -> None:
    from ledger import merkle

    conn.execute(
        update(merkle_hashes)
        .where(merkle_hashes.c.id == merkle.stored_hash_index(0, rec.seq - 1))
        .values(hash=b"\x00" * 32)
    )


TAMPERS: dict[str, Tamper] = {
    "a digit in the bytes": _digit,
    "a digit, hash recomputed": _digit_rehashed,
    "broken JSON": _broken_json,
    "another record's signature": _other_signature,
    "a made-up signature": _garbage_signature,
    "the actor column": _actor_column,
    "a deleted record": _deleted,
    "recorded_at out of order": _recorded_out_of_order,
    "the record's Merkle leaf": _leaf,
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_every_tampering_is_reported_the_same(
    case: str, ledger: Ledger, pool: ProcessPoolExecutor
) -> None:
    same_for_every_record(ledger, pool, TAMPERS[case])


def test_a_keys_row_holding_the_forgers_key_does_not_make_a_forgery_pass(
    ledger: Ledger, pool: ProcessPoolExecutor
) -> None:
    """The forger re-signs the collector's create (seq 6) with their own key and writes that
    key into the collector's ``keys`` row. A worker reads keys from that table, but uses a
    key only under the id it hashes to — so it has none for the collector's id, and the
    replay checks the signature under the key the log registered: it fails there, as in the
    single-process verify."""
    from conftest import fixed_key

    forger = fixed_key("forger")
    create = ledger.originals[5]
    assert create.type == "create" and create.actor == "org:collector"
    with around_triggers(ledger.engine) as conn:
        set_columns(conn, 6, sig=sign(forger, create.canonical))
        conn.execute(
            update(keys)
            .where(keys.c.id == create.key)
            .values(public_key=public_key_bytes(forger.public_key()))
        )
    here, workers = both(ledger, pool)
    assert here == workers == Report(False, 5, 6, "signature does not verify")


BENCHMARK = Path(__file__).resolve().parent / "benchmarks" / "verify.py"


def test_the_verify_benchmark_runs_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tests/benchmarks/verify.py --quick as a smoke test: it builds append.py's workload
    (5,000 records and the 41 of the setup), measures the raw Ed25519 rate and verifies
    the file with 1 and 2 processes, each run reporting the ledger ok. No rate is asserted:
    the suite's machine is shared; the figures are for reading."""
    spec = importlib.util.spec_from_file_location("verify_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--quick", "--db", str(tmp_path / "bench.db")])
    assert set(figures) == {"raw", "p1", "p2", "ratio"}
    assert all(v > 0 for v in figures.values())
    out = capsys.readouterr().out
    assert "verify_store(processes=2)" in out and "of twice the raw rate" in out
