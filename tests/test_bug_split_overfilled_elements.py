"""Regression: a split gave one part more element grams than the part weighed.

Found by the hypothesis state machine (tests/test_properties.py): each element
was apportioned on its own, ties to the first part, so three 1 g elements of a
3 g lot all landed in the first 1 g part. Fixed by
ledger.apportion.apportion_within.
"""

from __future__ import annotations

from conftest import World


def test_a_split_part_never_holds_more_element_mass_than_its_mass(sqlite_world: World) -> None:
    """A create with these elements would be refused (element.exceeds_mass); a split
    must not be able to produce such a lot either."""
    a = sqlite_world.admit("org:a")
    elements = {"Co": 1, "Li": 1, "Ni": 1}
    sqlite_world.create(a, "lot:x", 3, material="batteries.li_ion.nmc", elements=elements)
    ids = [f"lot:x{i}" for i in range(3)]
    parts = [{"lot": p, "mass_g": 1} for p in ids]
    sqlite_world.ok(
        a.record("split", {"lot": "lot:x", "parts": parts}, sqlite_world.heads("lot:x"))
    )
    for part in ids:
        lot = sqlite_world.store.lot(part)
        assert lot is not None
        assert sum(lot.elements.values()) <= lot.mass_g, (lot.id, lot.elements)
