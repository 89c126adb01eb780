"""Who is asking: ``Authorization: Bearer <token>`` → :class:`ledger.access.Viewer`.

The token is checked by ledger.tokens.authenticate (only its SHA-256 is
stored; constant-time compare), then its organisation's registered roles are
read from the ledger. Missing, malformed, unknown and revoked tokens all get
the same 401 (UNAUTHENTICATED), so a caller learns nothing about which.

Cache: a token that checked out is remembered in this process for ``ttl``
seconds (5 by default), so a busy client costs one database lookup per token
every 5 s instead of one per request. Consequence, by design: a revoked token
— or a change to its organisation's roles — takes effect within ``ttl``
seconds in every server process, not instantly. Only good tokens are kept
(keyed by SHA-256 of the token; the text itself is never kept), least
recently used out first past ``max_entries``: a flood of made-up tokens
costs one indexed lookup each and can't push the real clients' entries out
(it once could, by emptying the cache; found in review).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from ledger.access import Viewer
from ledger.store import Store
from ledger.tokens import authenticate
from schema.errors import ApiError, unauthenticated

DEFAULT_TTL = 5.0


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1;
    the scheme is case-insensitive, RFC 9110 §11.1)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Viewer]] = OrderedDict()

    async def viewer(self, authorization: str | None) -> Viewer:
        """The viewer behind this ``Authorization`` header, or ApiError UNAUTHENTICATED
        (STORE_UNAVAILABLE if the database cannot be asked)."""
        token = bearer_token(authorization)
        if token is None:
            raise unauthenticated()
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        viewer = await anyio.to_thread.run_sync(self._lookup, token)
        if viewer is None:
            self._cache.pop(key, None)
            raise unauthenticated()
        self._cache[key] = (now + self.ttl, viewer)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return viewer

    def _lookup(self, token: str) -> Viewer | None:
        try:
            info = authenticate(self.store.engine, token)
            org = self.store.org(info.org) if info is not None else None
        except SQLAlchemyError:
            raise ApiError(
                "STORE_UNAVAILABLE",
                "the ledger's database did not answer while checking the API token; retry shortly",
            ) from None
        if org is None:
            return None
        return Viewer(org.id, frozenset(org.roles))
