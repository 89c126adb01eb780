"""Weighbridge tickets (producers/weighbridge.py, docs/weighbridge-csv.md): exact
grams, every bad-row rule, all-or-nothing, deterministic ids, and the CLI path
import-weighbridge -> submit on a real SQLite ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import World, fixed_key
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from producers.builders import BuildError, kg_to_grams
from producers.keyfiles import write_private_key
from producers.weighbridge import (
    WeighbridgeError,
    default_lot,
    read_tickets,
    ticket_record_id,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HEADER = "ticket_no,date_time,site,direction,lot,material,gross_kg,tare_kg,origin,counterparty,vehicle,note"
GOOD = f"""{HEADER}
WB-1003,2026-03-03T14:05:00+08:00,org:gz-scrap,out,lot:gz-scrap.WB-1001,steel.hms1,27060.5,14001,,org:gd-mill,粤B·99881,
WB-1001,2026-03-02T08:15:00+08:00,org:gz-scrap,IN,,steel.hms1,24310,11250.5,post_consumer,org:collector-a,粤A·12345,"mixed, rusty"

WB-1002,2026-03-02T09:40:12.250+08:00,org:gz-scrap,in,lot:gz-scrap.c-77,paper.occ,18.1,6.055,pre_consumer,,,
WB-1004,2026-03-04T10:00:00Z,org:gz-scrap,received,lot:mill.b-1,,30000,0.001,,org:gd-mill,,returned
"""


def tickets(text: str) -> list[dict[str, object]]:
    return [t.draft() for t in read_tickets(text, now=NOW)]


def errors_of(text: str) -> list[str]:
    with pytest.raises(WeighbridgeError) as raised:
        read_tickets(text, now=NOW)
    assert "nothing was imported" in str(raised.value)
    return [str(e) for e in raised.value.errors]


def test_a_good_file_gives_exact_grams_utc_times_and_weighing_order() -> None:
    drafts = tickets(GOOD)
    assert [(d["type"], d["ticket"]["ticket_no"]) for d in drafts] == [  # type: ignore[index]
        ("create", "WB-1001"),
        ("create", "WB-1002"),
        ("transfer", "WB-1003"),
        ("receive", "WB-1004"),
    ]
    first, second, out, received = drafts
    assert first["body"] == {
        "lot": "lot:gz-scrap.WB-1001",  # the default lot: site + ticket
        "material": "steel.hms1",
        "mass_g": 13_059_500,  # 24310 kg - 11250.5 kg
        "origin": "post_consumer",
    }
    assert first["at"] == "2026-03-02T00:15:00Z" and first["actor"] == "org:gz-scrap"
    assert first["ticket"] == {
        "site": "org:gz-scrap",
        "ticket_no": "WB-1001",
        "row": 3,
        "direction": "in",
        "gross_g": 24_310_000,
        "tare_g": 11_250_500,
        "material": "steel.hms1",
        "counterparty": "org:collector-a",
        "vehicle": "粤A·12345",
        "note": "mixed, rusty",
    }
    assert second["body"]["mass_g"] == 12_045  # type: ignore[index]  # 18.1 - 6.055 kg
    assert second["body"]["origin"] == "pre_consumer"  # type: ignore[index]
    assert second["at"] == "2026-03-02T01:40:12.250000Z" and second["ticket"]["row"] == 5  # type: ignore[index]
    assert out["body"] == {"lot": "lot:gz-scrap.WB-1001", "to": "org:gd-mill", "mass_g": 13_059_500}
    assert received["body"] == {"lot": "lot:mill.b-1", "mass_g": 29_999_999}
    assert "origin" not in received["body"]
    assert all(isinstance(d["body"]["mass_g"], int) for d in drafts)  # type: ignore[index]


def test_header_may_be_in_any_order_with_optional_columns_left_out() -> None:
    text = (
        "\ufeffTare_KG,gross_kg,direction,site,date_time,ticket_no,material,origin\n"
        "1000,1500.25,in,org:a,2026-01-01T00:00:00Z,T1,tyres.elt,post_consumer\n"
    )
    [draft] = tickets(text)
    assert draft["body"] == {
        "lot": "lot:a.T1",
        "material": "tyres.elt",
        "mass_g": 500_250,
        "origin": "post_consumer",
    }


ROW = "T1,2026-03-02T08:15:00+08:00,org:s,in,,steel.hms1,1000,200,post_consumer,,,"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (ROW.replace("T1,", ",", 1), "row 2, ticket_no: required"),
        (ROW.replace("T1,", "T 1,", 1), "row 2, ticket_no: 1-32 characters"),
        (ROW.replace("+08:00", ""), "row 2, date_time: '2026-03-02T08:15:00' has no UTC offset"),
        (
            ROW.replace("2026-03-02T08", "2026-13-02T08"),
            "row 2, date_time: '2026-13-02T08:15:00+08:00' is not ISO 8601",
        ),
        (
            ROW.replace("2026-03-02", "2026-06-02"),
            "row 2, date_time: 2026-06-02T08:15:00+08:00 is in the future",
        ),
        (ROW.replace("org:s", "s"), "row 2, site: 's' is not an organisation id"),
        (ROW.replace(",in,", ",out,"), "row 2, lot: required for out tickets"),
        (ROW.replace(",in,", ",received,"), "row 2, lot: required for received tickets"),
        (
            ROW.replace(",in,", ",sideways,"),
            "row 2, direction: 'sideways' is not in, out or received",
        ),
        (ROW.replace(",in,", ",,"), "row 2, direction: required"),
        (ROW.replace(",in,,", ",in,x:1,"), "row 2, lot: a lot id starts with 'lot:'"),
        (ROW.replace("steel.hms1", ""), "row 2, material: required for in tickets"),
        (
            ROW.replace("steel.hms1", "steel.gold"),
            "row 2, material: 'steel.gold' is not a material code",
        ),
        (
            ROW.replace(",1000,", ",1000.0001,"),
            "row 2, gross_kg: 1000.0001 kg has more than 3 decimal places",
        ),
        (
            ROW.replace(",1000,", ',"1,000",'),
            "row 2, gross_kg: '1,000' is not a number of kilograms",
        ),
        (ROW.replace(",1000,", ",-1000,"), "row 2, gross_kg: '-1000' is not a number of kilograms"),
        (ROW.replace(",1000,", ",1e3,"), "row 2, gross_kg: '1e3' is not a number of kilograms"),
        (ROW.replace(",1000,", ",1000 kg,"), "row 2, gross_kg: '1000 kg' is not a number"),
        (ROW.replace(",200,", ",,"), "row 2, tare_kg: required"),
        (ROW.replace(",1000,200,", ",12.5,13,"), "row 2, net_kg: gross 12.5 kg <= tare 13 kg"),
        (ROW.replace(",1000,200,", ",7,7,"), "row 2, net_kg: gross 7 kg <= tare 7 kg"),
        (ROW.replace(",1000,", ",1000000.001,"), "row 2, gross_kg: 1000000.001 kg is over 1,000 t"),
        (ROW.replace("post_consumer", ""), "row 2, origin: required for in tickets"),
        (ROW.replace("post_consumer", "recycled"), "row 2, origin: 'recycled' is not one of"),
        (ROW.replace(",in,,", ",received,lot:x,"), "row 2, origin: only for in tickets"),
        (
            ROW.replace("post_consumer,,", ",org:s,").replace(",in,,", ",out,lot:x,"),
            "row 2, counterparty: a lot cannot go out to its own site",
        ),
        (
            ROW.replace("post_consumer,,", ",,").replace(",in,,", ",out,lot:x,"),
            "row 2, counterparty: required",
        ),
        (
            ROW.replace("post_consumer,,", "post_consumer,acme,"),
            "row 2, counterparty: 'acme' is not an organisation id",
        ),
        (ROW[:-2] + "," + "X" * 33 + ",", "row 2, vehicle: at most 32 printable characters"),
        (ROW + "n" * 501, "row 2, note: at most 500 characters"),
        (ROW + ",extra", "row 2: 13 fields but the header has 12; quote a value"),
        (ROW.rsplit(",", 3)[0], "row 2: 9 fields but the header has 12"),
    ],
)
def test_each_bad_row_rule_names_row_column_and_rule(row: str, expected: str) -> None:
    errors = errors_of(f"{HEADER}\n{row}\n")
    assert any(e.startswith(expected) for e in errors), errors


def test_rules_across_rows() -> None:
    out = "T3,2026-03-03T08:15:00+08:00,org:s,out,lot:s.T1,,1100,99.5,,org:m,,"
    early_out = "T4,2026-03-01T08:15:00+08:00,org:s,out,lot:s.T9,,1000,200,,org:m,,"
    late_in = ROW.replace("T1,2026-03-02", "T9,2026-03-02")
    errors = errors_of(
        "\n".join(
            [
                HEADER,
                ROW,
                ROW.replace("org:s", "org:other"),  # row 3: another site, and T1 again
                ROW.replace("T1,", "T2,", 1).replace(",in,,", ",in,lot:s.T1,"),  # row 4
                out,  # row 5: out 1000.5 kg, but lot:s.T1 came in at 800 kg
                early_out,  # row 6
                late_in,  # row 7
            ]
        )
    )
    assert errors == [
        "row 3, site: org:other, but row 2 is org:s; a file holds one site's tickets "
        "(each site signs its own): split the file per site",
        "row 3, ticket_no: ticket T1 is already on row 2",
        "row 4, lot: lot:s.T1 is already collected on row 2",
        "row 5, net_kg: lot:s.T1 came in on row 2 at 800 kg but goes out at 1000.5 kg; a "
        "transfer moves the whole lot as recorded: record the difference first (split or "
        "transform with loss_g) and send the rest",
        "row 6, date_time: lot:s.T9 goes out before it came in on row 7",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "row 1: the file is empty"),
        (HEADER + "\n", "row 2: no tickets"),
        (HEADER.replace("gross_kg", "grossweight"), "row 1, grossweight: unknown column"),
        (HEADER + ",note", "row 1, note: the column appears twice"),
        (HEADER.replace("tare_kg,", ""), "row 1, tare_kg: required column is missing"),
    ],
)
def test_header_and_file_errors(text: str, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(text))


def test_ids_are_deterministic_ulids_of_site_ticket_and_time() -> None:
    again = tickets(GOOD)
    assert [d["id"] for d in tickets(GOOD)] == [d["id"] for d in again]
    first = read_tickets(GOOD, now=NOW)[0]
    ulid = ULID.from_str(first.record_id)
    assert ulid.datetime == datetime(2026, 3, 2, 0, 15, tzinfo=UTC)
    at = first.weighed_at
    assert ticket_record_id("org:gz-scrap", "WB-1001", at) == first.record_id
    others = {
        ticket_record_id("org:gz-scrap", "WB-1002", at),
        ticket_record_id("org:other", "WB-1001", at),
        ticket_record_id("org:gz-scrap", "WB-10011", at),
    }
    assert first.record_id not in others and len(others) == 3
    # The time is in the id's first 48 bits only; the rest depends on site + ticket alone.
    later = ticket_record_id("org:gz-scrap", "WB-1001", at.replace(hour=5))
    assert later[10:] == first.record_id[10:] and later[:10] != first.record_id[:10]
    assert default_lot("org:gz-scrap", "WB-1001") == "lot:gz-scrap.WB-1001"


@given(st.integers(min_value=0, max_value=2**53 - 1))
def test_kg_to_grams_is_exact(grams: int) -> None:
    whole, frac = divmod(grams, 1000)
    text = f"{whole}.{frac:03d}"
    assert kg_to_grams(text) == grams
    assert kg_to_grams(text.rstrip("0").rstrip(".") or "0") == grams
    assert kg_to_grams(Decimal(text)) == grams


def test_kg_to_grams_refuses_floats_and_fractions_of_a_gram() -> None:
    with pytest.raises(BuildError, match="never a float"):
        kg_to_grams(0.1)  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="more than 3 decimal places"):
        kg_to_grams("0.0005")
    assert kg_to_grams("0.1") + kg_to_grams("0.2") == kg_to_grams("0.3") == 300


# --- the CLI: import-weighbridge, then submit ------------------------------------

RLEDGER = [sys.executable, "-m", "producers.cli"]


def rledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_import_then_submit_is_idempotent(sqlite_world: World, tmp_path: Path) -> None:
    world = sqlite_world
    world.admit("org:gz-scrap", ["collector", "processor"])
    world.admit("org:gd-mill", ["recycler"])
    write_private_key(tmp_path / "scrap.key", fixed_key("org:gz-scrap"))
    write_private_key(tmp_path / "mill.key", fixed_key("org:gd-mill"))
    (tmp_path / "scrap.csv").write_text(
        f"{HEADER}\n"
        "S-1,2026-03-02T08:15:00+08:00,org:gz-scrap,in,,steel.hms1,24310,11250.5,post_consumer,,,\n"
        "S-2,2026-03-02T09:00:00+08:00,org:gz-scrap,in,,paper.occ,18.1,6.055,post_consumer,,,\n"
        "S-3,2026-03-03T14:05:00+08:00,org:gz-scrap,out,lot:gz-scrap.S-1,,27060.5,14001,,org:gd-mill,,\n",
        encoding="utf-8",
    )
    (tmp_path / "mill.csv").write_text(
        f"{HEADER}\n"
        "M-77,2026-03-03T18:30:00+08:00,org:gd-mill,received,lot:gz-scrap.S-1,steel.hms1,25000,12000,,org:gz-scrap,,\n",
        encoding="utf-8",
    )
    db = ["--db", world.url]
    imported = rledger("import-weighbridge", "scrap.csv", "--out", "scrap.jsonl", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "3 tickets of org:gz-scrap" in imported.stdout and "13,071.545 kg net" in imported.stdout
    assert (
        rledger("import-weighbridge", "mill.csv", "--out", "mill.jsonl", cwd=tmp_path).returncode
        == 0
    )

    # The mill's key cannot submit the scrap yard's tickets: refused before anything is sent.
    before = world.store.last_seq()
    wrong = rledger("submit", "scrap.jsonl", "--key", "mill.key", *db, cwd=tmp_path)
    assert wrong.returncode == 1 and "drafted for org:gz-scrap" in wrong.stderr
    assert world.store.last_seq() == before

    first = rledger("submit", "scrap.jsonl", "--key", "scrap.key", *db, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3 appended, 0 refused" in first.stdout
    received = rledger("submit", "mill.jsonl", "--key", "mill.key", *db, cwd=tmp_path)
    assert received.returncode == 0, received.stderr
    lot = world.store.lot("lot:gz-scrap.S-1")
    assert lot is not None and lot.custodian == "org:gd-mill"
    assert lot.remaining_g == 13_000_000 and lot.transit_loss_g == 59_500
    seq = world.store.last_seq()

    # Again: the same ids, the same bytes (the transfer's parent is predicted from the
    # re-signed create, byte for byte the stored one): all already stored, nothing twice.
    again = rledger("submit", "scrap.jsonl", "--key", "scrap.key", *db, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "3 appended, 0 refused (3 of the appended were already stored)" in again.stdout
    assert world.store.last_seq() == seq
    # The receive spends a lot whose head is now the receive itself: other parents, so
    # other bytes under the same id - refused, never recorded twice.
    twice = rledger("submit", "mill.jsonl", "--key", "mill.key", *db, cwd=tmp_path)
    assert twice.returncode == 1 and "line 1: refused" in twice.stderr
    assert "id.reused" in twice.stderr
    assert world.store.last_seq() == seq
    lot = world.store.lot("lot:gz-scrap.S-1")
    assert lot is not None and lot.remaining_g == 13_000_000


def test_cli_import_of_a_bad_file_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text(
        f"{HEADER}\n{ROW}\n{ROW.replace(',1000,200,', ',12.5,13,').replace('T1', 'T7')}\n"
    )
    (tmp_path / "out.jsonl").write_text("kept\n")
    proc = rledger("import-weighbridge", "bad.csv", "--out", "out.jsonl", cwd=tmp_path)
    assert proc.returncode == 1
    assert "bad.csv: row 3, net_kg: gross 12.5 kg <= tare 13 kg" in proc.stderr
    assert "nothing was written" in proc.stderr
    assert (tmp_path / "out.jsonl").read_text() == "kept\n"
    assert not list(tmp_path.glob("*.tmp"))
    drafts = rledger("import-weighbridge", "bad.csv", "--out", "x.jsonl", cwd=tmp_path)
    assert drafts.returncode == 1 and not (tmp_path / "x.jsonl").exists()


def test_drafts_file_is_json_lines(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(GOOD, encoding="utf-8")
    proc = rledger("import-weighbridge", "t.csv", "--out", "d.jsonl", cwd=tmp_path)
    # WB-1001 .. 1004 are dated March 2026; NOW in the CLI is the real clock (later).
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["type"] for line in lines] == [
        "create",
        "create",
        "transfer",
        "receive",
    ]
