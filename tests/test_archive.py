"""Export and import of a whole ledger (ledger/archive.py, docs/ledger-archive.md), on SQLite
and PostgreSQL.

The source ledger (``source``): genesis, two organisations (2 records each), then

    seq 6  create lot:a 1,000,000 g (Cu 1,000 g)      seq 7  transfer lot:a to the recycler
    seq 8  receive 998,500 g                           seq 9  split lot:a -> a1 600,000 + a2 398,500
    seq 10 transform a1 -> lot:s 590,000 g steel       seq 11 dispose a2 (landfill)
    seq 12 status lot:s stored                         -- checkpoint of size 12 --
    seq 13 split lot:s -> s1 + s2                      seq 14 void of seq 13 (a past record:
    seq 15 create lot:b 5,000 g                               the import's replay reads it back)
    seq 16 merge lot:b + lot:s -> lot:m 595,000 g      -- checkpoint of size 16 --

An archive of it is a header, the two checkpoints, then 16 record lines. Imported into an
empty database it must give back the same records (seq, hash, recorded_at), the same Merkle
root, the same checkpoints and the same projection rows; edited by hand (a gram changed, a
line dropped, a wrong root, a signature swapped, a checkpoint altered) it is refused with the
reason and the target is left without a single record (a SQLite file is not even created).
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import World, fixed_key
from postgres_server import create_database, drop_database
from sqlalchemy import select
from test_tamper import record_the_story

from ledger.archive import ArchiveError, export_ledger, import_ledger, target_records
from ledger.checkpoints import verifier_key
from ledger.database import database_url, has_schema, make_engine
from ledger.merkle_log import Checkpointer, all_checkpoints, root_at
from ledger.signing import public_key_bytes, record_hash
from ledger.store import Store
from ledger.tables import records
from ledger.verify import verify_store
from producers.demo import seed_demo

LEDGER_KEY = fixed_key("ledger")
_names = itertools.count()


def build_source(world: World) -> None:
    _, b = record_the_story(world)  # seq 2-12
    signer = Checkpointer(world.store.engine, LEDGER_KEY, clock=lambda: 1_780_000_000)
    assert signer.checkpoint().size == 12
    halves = [{"lot": "lot:s1", "mass_g": 295_000}, {"lot": "lot:s2", "mass_g": 295_000}]
    [split] = world.ok(b.record("split", {"lot": "lot:s", "parts": halves}, world.heads("lot:s")))
    heads = world.heads("lot:s", "lot:s1", "lot:s2")
    world.ok(b.record("void", {"record": split.hash, "reason": "entered twice"}, heads))  # 14
    world.create(b, "lot:b", 5_000, material="steel.shredded")  # 15
    merge = {"lots": ["lot:b", "lot:s"], "into": "lot:m", "mass_g": 595_000}
    world.ok(b.record("merge", merge, world.heads("lot:b", "lot:s")))  # 16
    assert signer.checkpoint().size == 16
    assert world.store.last_seq() == 16


@pytest.fixture
def source(world: World) -> World:
    build_source(world)
    return world


@pytest.fixture
def target_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database on the same engine as ``world``: a SQLite path that does not
    exist yet, or a fresh PostgreSQL database without a schema."""
    if db_url.startswith("sqlite"):
        yield database_url(str(tmp_path / "target.db"))
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    name = f"archive_target_{next(_names)}"
    url = create_database(admin, name)
    yield url
    drop_database(admin, name)


def export_text(store: Store) -> str:
    out = io.BytesIO()
    export_ledger(store, out)
    return out.getvalue().decode("utf-8")


def write(tmp_path: Path, text: str, name: str = "ledger.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def the_vkey(world: World) -> str:
    return Checkpointer(world.store.engine, LEDGER_KEY).verifier_key


def assert_same_ledger(src: Store, dst: Store) -> None:
    def rows(store: Store) -> list[tuple[int, str, str, str, bytes]]:
        return [(r.seq, r.hash, r.recorded_at, r.sig, r.canonical) for r in store.records()]

    assert rows(dst) == rows(src)
    with src.engine.connect() as a, dst.engine.connect() as b:
        assert root_at(b, dst.last_seq()) == root_at(a, src.last_seq())
    assert all_checkpoints(dst.engine) == all_checkpoints(src.engine)
    assert dst.projection_rows() == src.projection_rows()


def assert_untouched(url: str) -> None:
    """Not one record, and on SQLite not even a file."""
    assert target_records(url) == 0
    if url.startswith("sqlite"):
        assert not Path(url.removeprefix("sqlite:///")).exists()
    else:
        engine = make_engine(url)
        try:
            assert not has_schema(engine)
        finally:
            engine.dispose()


# --- the round trip ----------------------------------------------------------------------


def test_round_trip_gives_the_same_root_records_checkpoints_and_projections(
    source: World, target_url: str, tmp_path: Path
) -> None:
    text = export_text(source.store)
    lines = text.splitlines()
    header = json.loads(lines[0])
    with source.store.engine.connect() as conn:
        root = root_at(conn, 16).hex()
    assert header["format"] == "rledger-archive" and header["version"] == 1
    assert (header["size"], header["root"], header["checkpoints"]) == (16, root, 2)
    assert header["origin"].startswith("recovery-ledger/")
    assert [json.loads(x)["checkpoint"]["size"] for x in lines[1:3]] == [12, 16]
    assert [json.loads(x)["seq"] for x in lines[3:]] == list(range(1, 17))
    first = json.loads(lines[3])
    assert record_hash(first["envelope"].encode()) == first["hash"]

    summary = import_ledger(target_url, write(tmp_path, text), verifier_key=the_vkey(source))
    assert (summary.records, summary.root, summary.checkpoints) == (16, root, 2)
    target = Store.open(target_url)
    try:
        assert_same_ledger(source.store, target)
        assert verify_store(target, checkpoint_key=public_key_bytes(LEDGER_KEY.public_key())).ok
        # The imported ledger carries on: it exports to the same archive (but the time).
        again = export_text(target)
        assert again.splitlines()[1:] == lines[1:]
        header_again = json.loads(again.splitlines()[0])
        assert {**header_again, "exported_at": ""} == {**header, "exported_at": ""}
    finally:
        target.close()


def test_workers_check_the_archive_and_append_it(source: World, tmp_path: Path) -> None:
    """The same import with two worker processes, a chunk of 5 records each (so the keys
    the replay learns reach chunks submitted later)."""
    path = write(tmp_path, export_text(source.store))
    url = database_url(str(tmp_path / "workers.db"))
    assert import_ledger(url, path, processes=2, chunk=5).records == 16
    target = Store.open(url)
    try:
        assert_same_ledger(source.store, target)
    finally:
        target.close()


def test_an_empty_ledger_round_trips(db_url: str, target_url: str, tmp_path: Path) -> None:
    from ledger.database import migrate

    migrate(db_url)
    empty = Store.open(db_url)
    try:
        out = io.BytesIO()
        summary = export_ledger(empty, out)
    finally:
        empty.close()
    header = json.loads(out.getvalue().splitlines()[0])
    assert (header["size"], header["origin"], summary.records) == (0, None, 0)
    assert import_ledger(target_url, write(tmp_path, out.getvalue().decode())).records == 0
    assert target_records(target_url) == 0


# --- refused archives ------------------------------------------------------------------------


def record_line(lines: list[str], seq: int) -> int:
    return next(i for i, x in enumerate(lines) if x.startswith(f'{{"seq":{seq},'))


def one_gram_more(lines: list[str]) -> list[str]:
    """lot:a created with 1,000,001 g instead of 1,000,000 (the hash left as it was)."""
    i = record_line(lines, 6)
    assert lines[i].count('\\"mass_g\\":1000000') == 1
    return [
        *lines[:i],
        lines[i].replace('\\"mass_g\\":1000000', '\\"mass_g\\":1000001'),
        *lines[i + 1 :],
    ]


def one_gram_more_rehashed(lines: list[str]) -> list[str]:
    """The same, with the line's hash recomputed: only the signature can tell."""
    edited = one_gram_more(lines)
    i = record_line(edited, 6)
    obj = json.loads(edited[i])
    obj["hash"] = record_hash(obj["envelope"].encode())
    edited[i] = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return edited


def line_dropped(lines: list[str]) -> list[str]:
    i = record_line(lines, 8)
    return lines[:i] + lines[i + 1 :]


def last_line_dropped(lines: list[str]) -> list[str]:
    return lines[:-1]


def wrong_root(lines: list[str]) -> list[str]:
    header = json.loads(lines[0])
    header["root"] = "0" * 64
    return [json.dumps(header), *lines[1:]]


def signature_swapped(lines: list[str]) -> list[str]:
    i, j = record_line(lines, 7), record_line(lines, 8)
    a, b = json.loads(lines[i]), json.loads(lines[j])
    a["signature"] = b["signature"]
    return [*lines[:i], json.dumps(a, ensure_ascii=False), *lines[i + 1 :]]


def records_reordered(lines: list[str]) -> list[str]:
    i, j = record_line(lines, 10), record_line(lines, 11)
    a, b = json.loads(lines[i]), json.loads(lines[j])
    a["seq"], b["seq"] = 11, 10
    return [*lines[:i], json.dumps(b), json.dumps(a), *lines[j + 1 :]]


def checkpoint_root_changed(lines: list[str]) -> list[str]:
    obj = json.loads(lines[1])
    obj["checkpoint"]["root"] = "1" * 64
    return [lines[0], json.dumps(obj), *lines[2:]]


def truncated_mid_line(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1][:40]]


REFUSALS: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "a gram changed": (one_gram_more, "seq 6: archived hash does not match the record's bytes"),
    "a gram changed, hash redone": (one_gram_more_rehashed, "seq 6: signature does not verify"),
    "a line dropped": (line_dropped, "seq 8: sequence gap: expected seq 8, found 9"),
    "the last line dropped": (
        last_line_dropped,
        "the header says 16 records; the archive holds 15",
    ),
    "a wrong root in the header": (wrong_root, "but its header says " + "0" * 64),
    "a signature swapped": (signature_swapped, "seq 7: signature does not verify"),
    "two records swapped": (
        records_reordered,
        "seq 11: recorded before the record ahead of it: the log was reordered",
    ),
    "a checkpoint's root changed": (checkpoint_root_changed, "its fields disagree with its note"),
    "cut off mid-line": (truncated_mid_line, "the archive ends mid-line"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_an_edited_archive_is_refused_with_the_reason_and_nothing_written(
    case: str, source: World, target_url: str, tmp_path: Path
) -> None:
    edit, reason = REFUSALS[case]
    lines = export_text(source.store).splitlines()
    path = write(tmp_path, "\n".join(edit(lines)) + ("" if case == "cut off mid-line" else "\n"))
    with pytest.raises(ArchiveError) as caught:
        import_ledger(target_url, path)
    assert reason in str(caught.value)
    assert_untouched(target_url)


def test_a_rewritten_history_is_caught_by_its_checkpoint(
    source: World, target_url: str, tmp_path: Path
) -> None:
    """Record 12 re-signed by the recycler with another status (a key holder rewriting its
    own record: its hash and signature hold, and the rules accept it), the header's root
    recomputed: the checkpoint of size 12, signed before, no longer fits."""
    lines = export_text(source.store).splitlines()
    i = record_line(lines, 12)
    obj = json.loads(lines[i])
    env = json.loads(obj["envelope"])
    assert env["body"] == {"lot": "lot:s", "status": "stored"}
    body = {"lot": "lot:s", "status": "awaiting_treatment"}
    resigned = source.orgs["org:recycler"].record(
        "status", body, env["parents"], record_id=env["id"], at=env["at"]
    )
    assert isinstance(resigned.envelope, str)
    obj.update(envelope=resigned.envelope, signature=resigned.signature)
    obj["hash"] = record_hash(resigned.envelope.encode())
    lines[i] = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(ArchiveError) as caught:
        import_ledger(target_url, write(tmp_path, "\n".join(lines) + "\n"))
    message = str(caught.value)
    assert message.startswith("seq 12: the archive's first 12 records have root ")
    assert "but its checkpoint signed at 2026-05-28T" in message
    assert_untouched(target_url)


def test_checkpoints_must_be_signed_by_the_pinned_key(
    source: World, target_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, export_text(source.store))
    other = verifier_key(json.loads(path.read_text().splitlines()[0])["origin"], b"\x07" * 32)
    with pytest.raises(ArchiveError) as caught:
        import_ledger(target_url, path, verifier_key=other)
    assert "not the one given" in str(caught.value)
    assert_untouched(target_url)


def test_only_an_empty_ledger_is_imported_into(source: World, tmp_path: Path) -> None:
    path = write(tmp_path, export_text(source.store))
    with pytest.raises(ArchiveError) as caught:
        import_ledger(source.url, path)
    assert "already holds 16 records" in str(caught.value)
    assert source.store.last_seq() == 16


def test_not_an_archive(target_url: str, tmp_path: Path) -> None:
    for text, reason in [
        ("", "the archive is empty"),
        ('{"format":"something else"}\n', "not a ledger archive"),
        ("[1,2]\n", "line 1: not a JSON object"),
    ]:
        with pytest.raises(ArchiveError) as caught:
            import_ledger(target_url, write(tmp_path, text))
        assert reason in str(caught.value)
    assert_untouched(target_url)


# --- a demo ledger and the CLI ---------------------------------------------------------------


def test_a_month_of_the_demo_exports_and_imports(sqlite_world: World, tmp_path: Path) -> None:
    summary = seed_demo(sqlite_world.store, sqlite_world.operator, months=1)
    path = tmp_path / "demo.jsonl"
    with path.open("wb") as f:
        exported = export_ledger(sqlite_world.store, f)
    assert exported.records == 1 + summary.records
    url = database_url(str(tmp_path / "imported.db"))
    assert import_ledger(url, path).root == exported.root
    target = Store.open(url)
    try:
        assert_same_ledger(sqlite_world.store, target)
        assert verify_store(target).ok
    finally:
        target.close()


RLEDGER = [sys.executable, "-m", "producers.cli"]


def run(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*RLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok and proc.returncode != 0:
        raise AssertionError(f"rledger {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_the_cli_exports_imports_and_verifies(sqlite_world: World, tmp_path: Path) -> None:
    build_source(sqlite_world)
    db = sqlite_world.url.removeprefix("sqlite:///")
    out = run("export", "--db", db, "--out", "ledger.jsonl", cwd=tmp_path)
    assert "16 records, 2 checkpoints" in out.stdout
    again = run("export", "--db", db, "--out", "ledger.jsonl", cwd=tmp_path, ok=False)
    assert again.returncode != 0 and "exists" in again.stderr
    done = run("import", "ledger.jsonl", "--db", "copy.db", "--processes", "0", cwd=tmp_path)
    assert "imported 16 records and 2 checkpoints" in done.stdout
    checked = run("verify", "--db", "copy.db", "--processes", "2", cwd=tmp_path)
    assert checked.stdout.strip() == "ok: 16 records verified"
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    write(tmp_path, "\n".join(line_dropped(lines)) + "\n", "edited.jsonl")
    refused = run("import", "edited.jsonl", "--db", "other.db", cwd=tmp_path, ok=False)
    assert refused.returncode == 1
    assert "seq 8: sequence gap: expected seq 8, found 9" in refused.stderr
    assert not (tmp_path / "other.db").exists()
    with make_engine(database_url(str(tmp_path / "copy.db"))).connect() as conn:
        assert len(conn.execute(select(records.c.seq)).all()) == 16
