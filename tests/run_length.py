"""How long the randomised tests run: short in CI, long with ``RLEDGER_LONG=1``.

The README's "Testing" section documents the flag. The short versions keep the
whole suite under ten minutes on two cores; the long ones are for a change to
the rules, the store or the API, run before it lands::

    RLEDGER_LONG=1 .venv/bin/python -m pytest
"""

from __future__ import annotations

import os

__all__ = ["LONG", "examples"]

LONG = os.environ.get("RLEDGER_LONG", "") not in ("", "0")


def examples(short: int, long: int) -> int:
    """``short`` in a normal run, ``long`` with RLEDGER_LONG=1."""
    return long if LONG else short
