"""Valid GB/T 34014-2017 battery codes for tests (checked by ledger.battery_codes)."""

from __future__ import annotations


def gbt_code(serial: int, *, maker: str = "GZM", product: str = "P") -> str:
    """A 24-character code: maker, product type (P pack), E (NMC), spec A1, trace 7K20001,
    year R, month 6, day F (15), then the 7-digit serial (1..9999999)."""
    return f"{maker}{product}EA17K20001R6F{serial:07d}"
