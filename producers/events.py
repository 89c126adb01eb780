"""Building and signing envelopes: what a producer runs before submitting.

:class:`Signer` holds one organisation's key and turns a type, a body and
the lots' heads into a :class:`ledger.store.Signed` record, with a fresh
ULID as the record id (the idempotency key: keep it to retry safely).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from ledger.canonical import canonical_bytes
from ledger.signing import Ed25519PrivateKey, b64url_encode, key_id, public_key_bytes, sign
from ledger.store import Signed


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Signer:
    actor: str
    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    @property
    def public_key(self) -> str:
        return b64url_encode(public_key_bytes(self.private_key.public_key()))

    def envelope(
        self,
        rtype: str,
        body: dict[str, Any],
        parents: dict[str, str] | None = None,
        *,
        record_id: str | None = None,
        at: str | None = None,
    ) -> dict[str, Any]:
        return {
            "v": 1,
            "id": record_id or str(ULID()),
            "type": rtype,
            "actor": self.actor,
            "key": self.key_id,
            "at": at or utc_now(),
            "parents": parents or {},
            "body": body,
        }

    def sign_envelope(self, envelope: dict[str, Any]) -> Signed:
        data = canonical_bytes(envelope)
        return Signed(data.decode("utf-8"), sign(self.private_key, data))

    def record(
        self,
        rtype: str,
        body: dict[str, Any],
        parents: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Signed:
        return self.sign_envelope(self.envelope(rtype, body, parents, **kwargs))
