"""API bearer tokens, one or more per organisation (DESIGN.md "API": access).

A token reads ``rlt_<id>_<secret>``: ``id`` (12 base32 characters) names the
row, ``secret`` (32 random bytes, base64url) is the credential. Only
SHA-256(token) is stored, so a copy of the database lets nobody call the
API; the comparison is constant-time (``hmac.compare_digest``). A plain hash
without a salt or key stretching is enough here because the secret has 256
bits of entropy: there is nothing to guess (the reasoning GitHub and PyPI
tokens follow).

Tokens are operational, not part of the signed ledger: issuing one proves
nothing about the records, and revoking one changes no record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from ledger.tables import api_tokens, orgs

PREFIX = "rlt_"
_TOKEN = re.compile(r"rlt_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    org: str
    label: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def issue_token(engine: Engine, org: str, *, label: str = "") -> str:
    """A new token for ``org`` (which must be registered); the text is shown once, never stored."""
    token_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:12]
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        if conn.execute(select(orgs.c.id).where(orgs.c.id == org)).first() is None:
            raise ValueError(
                f"no organisation {org!r} is registered; register it with `rledger org add`"
            )
        conn.execute(
            insert(api_tokens).values(
                id=token_id, org=org, hash=_digest(token), label=label[:200], created_at=_now()
            )
        )
    return token


def revoke_token(engine: Engine, token_id: str) -> bool:
    """Revoke a token by its id (the part after ``rlt_``); False if no active token has it."""
    with engine.begin() as conn:
        result = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        return bool(result.rowcount)


def list_tokens(engine: Engine, org: str | None = None) -> list[TokenInfo]:
    query = select(
        api_tokens.c.id,
        api_tokens.c.org,
        api_tokens.c.label,
        api_tokens.c.created_at,
        api_tokens.c.revoked_at,
    ).order_by(api_tokens.c.org, api_tokens.c.created_at, api_tokens.c.id)
    if org is not None:
        query = query.where(api_tokens.c.org == org)
    with engine.connect() as conn:
        return [TokenInfo(*row) for row in conn.execute(query)]


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token (safe to log), else None."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def authenticate(engine: Engine, token: str) -> TokenInfo | None:
    """The active token this text is, or None (malformed, unknown or revoked alike)."""
    token_id = token_id_of(token)
    if token_id is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    if row is None:
        hmac.compare_digest(_digest(token), "0" * 64)  # same work whether or not the id exists
        return None
    if not hmac.compare_digest(_digest(token), row.hash) or row.revoked_at is not None:
        return None
    return TokenInfo(row.id, row.org, row.label, row.created_at, row.revoked_at)
