"""Pausing CPython's cyclic garbage collector while a replay builds the ledger's state.

A replay (``rledger verify``, ``rebuild``, an archive's check) keeps millions of
long-lived objects: every lot, edge and ``lot_records`` row of the ledger. The cyclic
collector's full passes walk all of them, each pass longer as the heap grows: at
1,000,000 records they took 27 of the replay's 114 s (tests/benchmarks/national.py's
ledger, measured in one process; docs/performance.md). The replay makes almost no
reference cycles (a collection after a 1,000,000-record replay found about 9,000 cyclic
objects), so the collector is paused for it; its next pass after the replay takes those
few. Reference counting frees everything else as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_cycle_collector() -> Iterator[None]:
    """No cyclic collection inside the block; as it was before afterwards (a nested block
    leaves it to the outermost). No collection is forced at the end: a full one costs about
    0.1 s in a process of modest size, and the tests verify small ledgers hundreds of times.
    The switch is process-wide: meant for the CLI's long replays, not a serving process."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
