"""Per-request dataloaders: every read of one request, batched and scoped to its viewer.

One :class:`Loaders` is built per operation (schema/context.py) with the
viewer's :class:`~ledger.access.ReadScope`. Resolvers ask it for rows by key
(``await loaders.org.load(id)``); keys asked for in the same tick of the
event loop are fetched by one statement (per :data:`ledger.queries.IN_CHUNK`
keys), so a page of N lots with their custodians and head events costs a
fixed number of statements, not N of each. Lots and records are
visibility-checked in the same statement: a hidden one loads as ``None``,
exactly like a missing one.

Lookups by key (the batch functions: indexed, at most a chunk of keys
each) run on the event loop's own thread: a hop to a worker thread costs
0.2–0.5 ms on this machine, several times the lookup itself (measured:
lot(id) went from ~4 ms to well under 1 ms per request). Pages and lineage
walks, which may read many rows, run in a worker thread (``anyio.to_thread``)
so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from strawberry.dataloader import DataLoader

from ledger import queries
from ledger.access import ReadScope, Viewer, read_scope
from ledger.queries import Direction, EventFilter, Lineage, LotFilter, Page, QueryRefused
from ledger.state import Lot, Org
from ledger.store import Store, StoredRecord
from schema.errors import ApiError

T = TypeVar("T")


class BadArgument(ApiError):
    """An argument the read cannot take (``first`` too large, a foreign cursor, …):
    code BAD_USER_INPUT, and ``extensions.argument`` names the argument."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__("BAD_USER_INPUT", message)
        self.argument = argument

    def extensions(self) -> dict[str, object]:
        return {**super().extensions(), "argument": self.argument}


class Loaders:
    """Batches the reads of one request, scoped to its viewer.

    ``org``, ``lot``, ``event_by_hash``, ``event_by_seq``: rows by key (``None``
    when missing or hidden). ``lots_of_event``: the ids of the lots a record
    changed, by seq. Pages and lineage are single statements; what they return
    is primed into the loaders, so later look-ups of the same rows are free.
    """

    def __init__(self, store: Store, viewer: Viewer) -> None:
        self.store = store
        self.viewer = viewer
        self.scope: ReadScope = read_scope(viewer)
        self.org: DataLoader[str, Org | None] = DataLoader(self._orgs)
        self.lot: DataLoader[str, Lot | None] = DataLoader(self._lots)
        self.event_by_hash: DataLoader[str, StoredRecord | None] = DataLoader(self._by_hash)
        self.event_by_seq: DataLoader[int, StoredRecord | None] = DataLoader(self._by_seq)
        self.lots_of_event: DataLoader[int, list[str]] = DataLoader(self._lots_of_event)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`lookup` in a worker thread: for pages and walks (see the module doc)."""
        return await anyio.to_thread.run_sync(self.lookup, fn, *args)

    def lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on this thread, on a connection of its own: for indexed
        lookups by key. A refused argument becomes :class:`BadArgument`; a database
        failure StoreUnavailable (a retryable 503, schema/errors.py)."""
        try:
            return queries.read(self.store.engine, fn, *args)
        except QueryRefused as exc:
            raise BadArgument(exc.argument, exc.message) from None

    # --- pages and graphs -------------------------------------------------------

    async def lots_page(self, where: LotFilter, first: int | None, after: str | None) -> Page[Lot]:
        page = await self.read(queries.lots_page, self.scope, where, first, after)
        self._prime_lots(page.items)
        return page

    async def events_page(
        self, where: EventFilter, first: int | None, after: int | None
    ) -> Page[StoredRecord]:
        page = await self.read(queries.records_page, self.scope, where, first, after)
        self._prime_records(page.items)
        return page

    async def lineage(self, lot: str, direction: Direction, max_depth: int) -> Lineage | None:
        found = await self.read(queries.lineage, self.scope, lot, direction, max_depth)
        if found is not None:
            self._prime_lots(found.nodes)
        return found

    async def all_orgs(self) -> list[Org]:
        found = self.lookup(queries.all_orgs)
        self.org.prime_many({o.id: o for o in found})
        return found

    # --- batch functions --------------------------------------------------------

    async def _orgs(self, ids: Sequence[str]) -> list[Org | None]:
        found = self.lookup(queries.orgs_by_id, ids)
        return [found.get(i) for i in ids]

    async def _lots(self, ids: Sequence[str]) -> list[Lot | None]:
        found = self.lookup(queries.lots_by_id, self.scope, ids)
        return [found.get(i) for i in ids]

    async def _by_hash(self, hashes: Sequence[str]) -> list[StoredRecord | None]:
        found = self.lookup(queries.records_by_hash, self.scope, hashes)
        self._prime_records(found.values(), by_hash=False)
        return [found.get(h) for h in hashes]

    async def _by_seq(self, seqs: Sequence[int]) -> list[StoredRecord | None]:
        found = self.lookup(queries.records_by_seq, self.scope, seqs)
        self._prime_records(found.values(), by_seq=False)
        return [found.get(s) for s in seqs]

    async def _lots_of_event(self, seqs: Sequence[int]) -> list[list[str]]:
        found = self.lookup(queries.lots_of_records, seqs)
        return [found.get(s, []) for s in seqs]

    def _prime_lots(self, items: Sequence[Lot]) -> None:
        self.lot.prime_many({lot.id: lot for lot in items})

    def _prime_records(self, items: Any, *, by_hash: bool = True, by_seq: bool = True) -> None:
        items = list(items)
        if by_hash:
            self.event_by_hash.prime_many({r.hash: r for r in items})
        if by_seq:
            self.event_by_seq.prime_many({r.seq: r for r in items})
