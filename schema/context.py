"""What every resolver gets as ``info.context``: the request's store, viewer and loaders.

Strawberry passes whatever object the transport builds as the context; a
plain dataclass keeps it typed. Annotate resolvers with
``info: strawberry.Info[Context, None]`` and read ``info.context.store``,
``.viewer`` (who is asking: ledger.access.Viewer) and ``.loaders`` (this
request's dataloaders, scoped to that viewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from ledger.access import Viewer
from ledger.merkle_log import Checkpointer
from ledger.store import Store
from schema.limits import DEFAULT_LIMITS, Limits
from schema.loaders import Loaders


@dataclass(slots=True)
class Context:
    request: Request | None
    store: Store
    viewer: Viewer
    loaders: Loaders
    limits: Limits = field(default=DEFAULT_LIMITS)
    checkpointer: Checkpointer | None = None  # signs checkpoints when the server holds the key

    @classmethod
    def for_viewer(
        cls,
        store: Store,
        viewer: Viewer,
        *,
        request: Request | None = None,
        limits: Limits = DEFAULT_LIMITS,
        checkpointer: Checkpointer | None = None,
    ) -> Context:
        """A fresh context (new loaders) for one operation by ``viewer``."""
        return cls(request, store, viewer, Loaders(store, viewer), limits, checkpointer)
