"""Regression: ``lots.prev`` depended on where the lot's dicts came from.

``Lot.snapshot()`` (the text kept in the next version's ``prev``) wrote its
dicts in insertion order. The rules build ``content`` as ``post`` then the
elements; a lot read back from the database has them in the stored (sorted)
order. So a lot the writer had dropped from memory (another server worker
wrote meanwhile, or more than ``LOT_CACHE_SIZE`` lots) got a ``prev`` that
the replay in ``verify`` did not reproduce: the national benchmark's
100,000-record ledger over HTTP failed verify with "projection lots differs"
at one such lot. Snapshots now sort their keys.
"""

from __future__ import annotations

import json
from dataclasses import replace

from alembic import command
from conftest import World
from sqlalchemy import select, update

from ledger.database import alembic_config
from ledger.state import Lot
from ledger.tables import lots
from ledger.verify import verify_store


def test_the_snapshot_does_not_depend_on_dict_order() -> None:
    lot = Lot.from_snapshot(
        '["lot:a","batteries.li_ion.nmc","post_consumer",1000,1000,"active","org:a","h",1,1,'
        '{"Co":50,"Ni":80},[],null,null,null,0,0,0,{"post":1000,"Co":50,"Co.post":50},'
        '{"post":1000,"Co.post":50},{}]'
    )
    reordered = replace(
        lot,
        elements=dict(reversed(lot.elements.items())),
        content=dict(reversed(lot.content.items())),
        recovered=dict(reversed(lot.recovered.items())),
    )
    assert list(reordered.content) != list(lot.content)  # the orders really differ
    assert reordered.snapshot() == lot.snapshot()


def test_a_lot_read_back_from_the_database_verifies(world: World) -> None:
    """The writer forgets its cached lots between two records on the same lot, as it
    does when another worker wrote; verify must still reproduce every ``prev``."""
    a = world.admit("org:a", ["recycler"])
    world.create(
        a,
        "lot:pack",
        300_000,
        material="batteries.li_ion.nmc",
        elements={"Co": 9_000, "Ni": 15_000},
    )
    world.store._forget()
    world.ok(a.record("status", {"lot": "lot:pack", "status": "in_use"}, world.heads("lot:pack")))
    world.store._forget()
    world.ok(
        a.record(
            "dispose",
            {"lot": "lot:pack", "mass_g": 1_000, "method": "landfill"},
            world.heads("lot:pack"),
        )
    )
    report = verify_store(world.store)
    assert report.ok, report


def test_migration_0007_sorts_the_stored_snapshots(world: World) -> None:
    """A ledger written by the older code (``prev`` in insertion order) verifies again
    after ``alembic upgrade``: migration 0007 rewrites the text, not the values."""
    a = world.admit("org:a", ["recycler"])
    world.create(a, "lot:pack", 300_000, material="batteries.li_ion.nmc", elements={"Co": 9_000})
    world.ok(a.record("status", {"lot": "lot:pack", "status": "in_use"}, world.heads("lot:pack")))
    with world.store.engine.begin() as conn:
        [prev] = conn.execute(select(lots.c.prev).where(lots.c.id == "lot:pack")).one()
        values = json.loads(prev)
        values[18] = dict(reversed(values[18].items()))  # content, as the older code wrote it
        old = json.dumps(values, separators=(",", ":"))
        assert old != prev
        conn.execute(update(lots).where(lots.c.id == "lot:pack").values(prev=old))
    assert not verify_store(world.store).ok
    cfg = alembic_config(world.url)
    command.downgrade(cfg, "0006")
    command.upgrade(cfg, "head")
    world.store._forget()
    assert verify_store(world.store).ok
