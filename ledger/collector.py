"""Pausing CPython's cyclic garbage collector while a replay builds the ledger's state.

A replay (``rledger verify``, ``rebuild``, an archive's check) keeps millions of
long-lived objects: every lot, edge and ``lot_records`` row of the ledger. The cyclic
collector's full passes walk all of them, and they come more often as the heap grows: at
1,000,000 records they took 27 of the replay's 114 s (tests/benchmarks/national.py's
ledger, measured in one process; docs/performance.md). The replay makes almost no
reference cycles (a collection after a 1,000,000-record replay found about 9,000 cyclic
objects), so the collector is paused for it and run once when it ends. Reference counting
frees everything else as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_cycle_collector() -> Iterator[None]:
    """No cyclic collection inside the block; as it was before afterwards, with one
    collection at the end if the block paused it (nested blocks leave it to the outermost).
    The switch is process-wide: meant for the CLI's long replays, not a serving process."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
