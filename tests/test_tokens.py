"""API tokens: only a hash is stored, revocation takes effect, malformed text is refused."""

from __future__ import annotations

import hashlib

import pytest
from conftest import World
from sqlalchemy import select

from ledger.tables import api_tokens
from ledger.tokens import authenticate, issue_token, list_tokens, revoke_token, token_id_of


def test_a_token_authenticates_its_org_and_only_its_hash_is_stored(world: World) -> None:
    world.admit("org:acme", ["collector"])
    token = issue_token(world.store.engine, "org:acme", label="weighbridge PC")
    info = authenticate(world.store.engine, token)
    assert info is not None and info.org == "org:acme" and info.active
    with world.store.engine.connect() as conn:
        rows = conn.execute(select(api_tokens)).all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0])
    secret = token.split("_", 2)[2]  # rlt_<id>_<secret>: the secret itself may hold "_"
    assert secret not in stored and token not in stored
    assert rows[0].hash == hashlib.sha256(token.encode()).hexdigest()


def test_revoked_wrong_and_malformed_tokens_are_refused(world: World) -> None:
    world.admit("org:acme", ["collector"])
    engine = world.store.engine
    token = issue_token(engine, "org:acme")
    other = issue_token(engine, "org:acme")
    token_id = token_id_of(token)
    assert token_id is not None
    # Same id, another secret: refused.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert authenticate(engine, forged) is None
    for bad in ["", "Bearer x", "rlt_short_x", token + "x", token.upper()]:
        assert authenticate(engine, bad) is None
    assert revoke_token(engine, token_id)
    assert authenticate(engine, token) is None
    assert not revoke_token(engine, token_id), "revoking twice reports nothing to revoke"
    assert authenticate(engine, other) is not None, "other tokens of the org keep working"
    listed = {t.id: t for t in list_tokens(engine, "org:acme")}
    assert listed[token_id].revoked_at is not None


def test_a_token_needs_a_registered_org(world: World) -> None:
    with pytest.raises(ValueError, match="org:ghost"):
        issue_token(world.store.engine, "org:ghost")
    assert list_tokens(world.store.engine) == []
