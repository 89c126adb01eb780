"""Committed signed test vectors (tests/vectors/records.jsonl, made by
tests/vectors/make_vectors.py from fixed keys): the script still makes exactly
that file, and a fresh ledger accepts every record with exactly those hashes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ledger.database import migrate
from ledger.store import Appended, Signed, Store
from ledger.verify import verify_store

VECTORS = Path(__file__).parent / "vectors"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_vectors_are_what_the_script_makes() -> None:
    committed = (VECTORS / "records.jsonl").read_text(encoding="utf-8")
    assert _script().render() == committed, "run tests/vectors/make_vectors.py and review the diff"


def test_a_fresh_ledger_accepts_the_vectors_with_their_hashes(db_url: str) -> None:
    lines = [
        json.loads(x) for x in (VECTORS / "records.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    migrate(db_url)
    store = Store.open(db_url)
    try:
        results = store.append([Signed(x["envelope"], x["signature"]) for x in lines])
        assert [(type(r), getattr(r, "hash", None)) for r in results] == [
            (Appended, x["hash"]) for x in lines
        ]
        assert [r.seq for r in results if isinstance(r, Appended)] == list(range(1, len(lines) + 1))
        assert verify_store(store).ok
        black_mass = store.lot("lot:v2")
        assert black_mass is not None
        assert (black_mass.custodian, black_mass.remaining_g, black_mass.status) == (
            "org:recycler",
            400_000,
            "stored",
        )
        source = store.lot("lot:v1")
        assert source is not None and (source.transit_loss_g, source.status) == (2_000, "consumed")
    finally:
        store.close()
