"""The `rledger` commands, run as a user would (subprocesses), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.database import make_engine

RLEDGER = [sys.executable, "-m", "producers.cli"]


def run(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*RLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok and proc.returncode != 0:
        raise AssertionError(f"rledger {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_keygen_writes_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    run("keygen", "--out", "k.key", cwd=tmp_path)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert len((tmp_path / "k.key.pub").read_text().strip()) == 43  # 32 bytes base64url
    again = run("keygen", "--out", "k.key", cwd=tmp_path, ok=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_init_org_submit_verify_rebuild(db_url: str, tmp_path: Path) -> None:
    db = ["--db", db_url]
    run("init", *db, "--keys", "keys", cwd=tmp_path)
    assert stat.S_IMODE((tmp_path / "keys" / "operator.key").stat().st_mode) == 0o600
    second = run("init", *db, "--keys", "keys2", cwd=tmp_path, ok=False)
    assert second.returncode != 0 and "already" in second.stderr
    run("keygen", "--out", "acme.key", cwd=tmp_path)
    run(
        "org",
        "add",
        "org:acme",
        "--role",
        "collector",
        "--role",
        "processor",
        "--region",
        "CN-GD",
        "--key",
        "acme.key.pub",
        *db,
        "--keys",
        "keys",
        cwd=tmp_path,
    )
    drafts = [
        {
            "type": "create",
            "body": {
                "lot": "lot:a",
                "material": "paper.occ",
                "mass_g": 5_000_000,
                "origin": "post_consumer",
            },
        },
        {
            "type": "split",
            "body": {
                "lot": "lot:a",
                "parts": [
                    {"lot": "lot:b", "mass_g": 2_000_000},
                    {"lot": "lot:c", "mass_g": 3_000_000},
                ],
            },
        },
        {"type": "dispose", "body": {"lot": "lot:b", "mass_g": 9_000_000, "method": "landfill"}},
        {"type": "dispose", "body": {"lot": "lot:b", "mass_g": 500_000, "method": "landfill"}},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(d) for d in drafts) + "\n")
    proc = run("submit", "d.jsonl", "--key", "acme.key", *db, cwd=tmp_path, ok=False)
    assert proc.returncode == 1
    assert "line 3: refused" in proc.stderr and "mass.insufficient" in proc.stderr
    assert "3 appended, 1 refused" in proc.stdout
    assert "ok: 6 records verified" in run("verify", *db, cwd=tmp_path).stdout
    assert "rebuilt from 6 records" in run("rebuild", *db, cwd=tmp_path).stdout
    assert run("verify", *db, cwd=tmp_path).returncode == 0


def test_verify_names_the_first_bad_seq(sqlite_url: str, tmp_path: Path) -> None:
    db = ["--db", sqlite_url]
    run("init", *db, cwd=tmp_path)
    run("keygen", "--out", "a.key", cwd=tmp_path)
    run(
        "org",
        "add",
        "org:a",
        "--role",
        "collector",
        "--region",
        "CN-GD",
        "--key",
        "a.key.pub",
        *db,
        cwd=tmp_path,
    )
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER records_no_update"))
        conn.execute(
            text(
                "UPDATE records SET canonical = CAST(REPLACE(CAST(canonical AS TEXT), "
                "'collector', 'processor') AS BLOB) WHERE seq = 2"
            )
        )
    engine.dispose()
    proc = run("verify", *db, cwd=tmp_path, ok=False)
    assert proc.returncode == 1
    assert "seq 2" in proc.stdout


def test_commands_need_an_initialised_ledger(tmp_path: Path) -> None:
    proc = run("verify", "--db", str(tmp_path / "none.db"), cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and "rledger init" in proc.stderr


@pytest.mark.parametrize(
    "command", ["init", "keygen", "org", "submit", "verify", "rebuild", "serve", "token", "demo"]
)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    assert "Usage" in run(command, "--help", cwd=tmp_path).stdout


def test_demo_initialises_seeds_and_verifies_and_is_idempotent(tmp_path: Path) -> None:
    first = run("demo", "--months", "1", cwd=tmp_path)
    assert "verify: ok" in first.stdout
    assert all(f"collected {f}" in first.stdout for f in ("steel", "paper", "batteries", "tyres"))
    again = run("demo", "--months", "1", cwd=tmp_path)
    # The ledger part is the same; the demo tokens are new each run (only hashes are stored).
    ledger_part = first.stdout.split("demo tokens")[0]
    assert ledger_part == again.stdout.split("demo tokens")[0]
    tokens = re.findall(r"rlt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", first.stdout)
    again_tokens = re.findall(r"rlt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", again.stdout)
    assert len(set(tokens)) == 3 and not set(tokens) & set(again_tokens)
    assert "ok:" in run("verify", cwd=tmp_path).stdout
    listed = run("token", "list", cwd=tmp_path).stdout
    assert len(listed.splitlines()) == 6 and "rlt_" not in listed, "ids only, never secrets"


def test_token_create_prints_the_token_alone_and_revoke_stops_it(tmp_path: Path) -> None:
    run("demo", "--months", "1", cwd=tmp_path)
    made = run("token", "create", "--org", "org:gd-collector-1", cwd=tmp_path)
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and re.fullmatch(
        r"rlt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", token
    )
    token_id = token.split("_")[1]
    assert "revoked" in run("token", "revoke", token_id, cwd=tmp_path).stdout
    again = run("token", "revoke", token_id, cwd=tmp_path, ok=False)
    assert again.returncode != 0 and "no active token" in again.stderr
    ghost = run("token", "create", "--org", "org:ghost", cwd=tmp_path, ok=False)
    assert ghost.returncode != 0 and "org:ghost" in ghost.stderr and "rlt_" not in ghost.stdout
