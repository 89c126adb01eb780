"""The records that start a ledger and admit organisations (signed by the operator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ledger.signing import b64url_encode, key_id
from ledger.store import Signed
from producers.events import Signer


def genesis(operator: Signer, name: str, region: str) -> Signed:
    """The first record: the operator registers itself with its own public key."""
    body = {
        "org": operator.actor,
        "name": name,
        "roles": ["operator"],
        "region": region,
        "public_key": operator.public_key,
    }
    return operator.record("org.register", body)


def admit(
    operator: Signer,
    org: str,
    name: str,
    roles: Sequence[str],
    region: str,
    public_key: bytes,
    *,
    capacity: Mapping[str, int] | None = None,
) -> tuple[list[Signed], str]:
    """``org.register`` + ``key.add`` for a new organisation; returns them and the key id.

    ``capacity``: its permitted annual capacity per material, grams per year.
    """
    body: dict[str, object] = {"org": org, "name": name, "roles": list(roles), "region": region}
    if capacity:
        body["capacity"] = dict(capacity)
    register = operator.record("org.register", body)
    add = operator.record("key.add", {"org": org, "public_key": b64url_encode(public_key)})
    return [register, add], key_id(public_key)
