"""Generate tests/vectors/records.jsonl: signed records from fixed test keys.

Run from the repository root: ``.venv/bin/python tests/vectors/make_vectors.py``.
Ed25519 signatures are deterministic (RFC 8032 §5.1.6), so the output is
byte-identical on every run; tests/test_vectors.py checks that the file is
what this script makes, and that a ledger accepts it with these exact hashes.
The file pins the signed format: a change to canonical bytes, hashing or
signing shows up as a diff here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.signing import (
    Ed25519PrivateKey,
    b64url_encode,
    key_id,
    public_key_bytes,
    record_hash,
    sign,
)

OUT = Path(__file__).with_name("records.jsonl")


def test_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"rledger-vectors:" + name.encode()).digest()
    )


def build() -> list[dict[str, Any]]:
    keys = {name: test_key(name) for name in ("operator", "collector", "recycler")}
    pub = {n: b64url_encode(public_key_bytes(k.public_key())) for n, k in keys.items()}
    heads: dict[str, str] = {}
    out: list[dict[str, Any]] = []

    def add(
        n: int, signer: str, rtype: str, body: dict[str, Any], lots: list[str], new: list[str]
    ) -> None:
        actor = "org:operator" if signer == "operator" else f"org:{signer}"
        env = {
            "v": 1,
            "id": f"01JD{n:022d}",
            "type": rtype,
            "actor": actor,
            "key": key_id(keys[signer].public_key()),
            "at": f"2026-01-01T00:{n:02d}:00Z",
            "parents": {lot: heads[lot] for lot in lots},
            "body": body,
        }
        data = canonical_bytes(env)
        h = record_hash(data)
        for lot in [*lots, *new]:
            heads[lot] = h
        out.append({"envelope": data.decode(), "signature": sign(keys[signer], data), "hash": h})

    add(
        1,
        "operator",
        "org.register",
        {
            "org": "org:operator",
            "name": "Operator",
            "roles": ["operator"],
            "region": "CN",
            "public_key": pub["operator"],
        },
        [],
        [],
    )
    for n, org, roles in ((2, "collector", ["collector"]), (4, "recycler", ["recycler"])):
        add(
            n,
            "operator",
            "org.register",
            {
                "org": f"org:{org}",
                "name": f"Vector {org} — 回收",
                "roles": roles,
                "region": "CN-GD",
            },
            [],
            [],
        )
        add(n + 1, "operator", "key.add", {"org": f"org:{org}", "public_key": pub[org]}, [], [])
    add(
        6,
        "collector",
        "create",
        {
            "lot": "lot:v1",
            "material": "batteries.li_ion.nmc",
            "mass_g": 1_000_000,
            "origin": "post_consumer",
            "elements": {"Co": 50_000, "Li": 20_000, "Ni": 120_000},
            "units": ["014PEA17K20001R6F0000001"],
        },
        [],
        ["lot:v1"],
    )
    add(
        7,
        "collector",
        "transfer",
        {"lot": "lot:v1", "to": "org:recycler", "mass_g": 1_000_000},
        ["lot:v1"],
        [],
    )
    add(8, "recycler", "receive", {"lot": "lot:v1", "mass_g": 998_000}, ["lot:v1"], [])
    add(
        9,
        "recycler",
        "transform",
        {
            "process": "mechanical",
            "inputs": [{"lot": "lot:v1", "mass_g": 998_000}],
            "outputs": [
                {
                    "lot": "lot:v2",
                    "material": "batteries.black_mass",
                    "mass_g": 400_000,
                    "elements": {"Co": 45_000},
                }
            ],
            "loss_g": 598_000,
        },
        ["lot:v1"],
        ["lot:v2"],
    )
    add(
        10,
        "recycler",
        "status",
        {"lot": "lot:v2", "status": "stored", "note": "bay 3 — 仓库"},
        ["lot:v2"],
        [],
    )
    return out


def render() -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in build())


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
