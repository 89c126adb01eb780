"""Where a flow of material stands: the stages of ``materialFlows`` (ledger/flows.py), and
the class of a lot — the stage of the step that made it.

Pure: the rules use it at write time (:func:`flow_rows`, the ``flow_days`` rollup that
lets ``materialFlows`` sum a year in a few hundred rows), the reads to label.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ledger.apportion import apportion
from ledger.materials import default_taxonomy
from ledger.state import FlowKey, StateView

# Processes that make products (not recycling, not preparation): the "manufactured" stage.
MANUFACTURING = frozenset(
    {"cathode_synthesis", "cell_manufacture", "pack_assembly", "papermaking", "manufacturing"}
)
RECOVERED_ORIGINS = ("pre_consumer", "post_consumer")


class Stage(StrEnum):
    COLLECTED = "collected"
    VIRGIN = "virgin"
    PROCESSED = "processed"
    RECYCLED = "recycled"
    MANUFACTURED = "manufactured"
    SECOND_LIFE = "second_life"
    DISPOSED = "disposed"
    IN_TRANSIT = "in_transit"
    LOSS = "loss"


def process_stage(process: str) -> Stage:
    """recycled (``recycling = true`` in the taxonomy), manufactured, or processed."""
    found = default_taxonomy().process(process)
    if found is not None and found.recycling:
        return Stage.RECYCLED
    if process in MANUFACTURING:
        return Stage.MANUFACTURED
    return Stage.PROCESSED


def lot_class(origin: str, made_by: str | None) -> Stage:
    """A lot's class: the stage of the process that made it (``made_by``), else collected for
    pre-/post-consumer origin, virgin for virgin, else processed (parts of split or merged
    intermediate lots)."""
    if made_by is not None:
        return process_stage(made_by)
    if origin in RECOVERED_ORIGINS:
        return Stage.COLLECTED
    if origin == "virgin":
        return Stage.VIRGIN
    return Stage.PROCESSED


def flow_rows(
    rtype: str, body: dict[str, Any], actor: str, at: str, state: StateView
) -> list[tuple[FlowKey, int]]:
    """What a record adds to the ``flow_days`` rollup (ledger/flows.py's stages): a create
    of collected waste, a transform's inputs (by their lots' class, into the process's stage)
    and its loss (shared over the inputs by mass, largest remainder), a disposal. Everything
    else adds nothing; a ``void`` subtracts what the voided record added."""
    day = at[:10]
    if rtype == "create":
        if body["origin"] not in RECOVERED_ORIGINS:
            return []
        return [((day, "", Stage.COLLECTED, actor, body["material"], ""), body["mass_g"])]
    if rtype == "transform":
        target = process_stage(body["process"])
        rows: list[tuple[FlowKey, int]] = []
        inputs = body["inputs"]
        losses = apportion(body["loss_g"], [i["mass_g"] for i in inputs])
        for item, loss in zip(inputs, losses, strict=True):
            lot = state.lot(item["lot"])
            if lot is None:
                continue
            made = state.output(lot.id)
            source = lot_class(lot.origin, None if made is None else made.process)
            rows.append(((day, source, target, actor, lot.material, ""), item["mass_g"]))
            if loss:
                rows.append(((day, target, Stage.LOSS, actor, lot.material, ""), loss))
        return rows
    if rtype == "dispose":
        lot = state.lot(body["lot"])
        if lot is None:
            return []
        made = state.output(lot.id)
        source = lot_class(lot.origin, None if made is None else made.process)
        key = (day, source, Stage.DISPOSED, actor, lot.material, body["method"])
        return [(key, body["mass_g"])]
    return []
