"""What the reliability and security tests tried and what held (issue 8/8).

A test reports its figures with :func:`tally`; at the end of the run the
figures are summed per row and written to ``docs/reliability.md`` (see
``pytest_sessionfinish`` in conftest.py), so the published table is the last
run's, never typed by hand::

    tally("kill -9 of the server mid-batch (SQLite)", tried=25, held=25, unit="kills")
    tally("generated GraphQL queries", tried=3000, held=3000, unit="queries",
          note="no 5xx, no stack trace, every refusal with a code")

``held`` counts the attempts after which every invariant the test checks was
true; a test asserts ``held == tried`` itself, so a row with ``held < tried``
only appears for a run that failed. Each process (also each pytest-xdist
worker) appends JSON lines to its own file under ``TALLY_DIR``; the
controller clears the directory at the start of the run and renders it at
the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DOC", "TALLY_DIR", "clear", "render", "tally"]

ROOT = Path(__file__).resolve().parent.parent
TALLY_DIR = ROOT / ".pytest_cache" / "reliability"
DOC = ROOT / "docs" / "reliability.md"


def tally(row: str, *, tried: int, held: int, unit: str, note: str = "") -> None:
    """Add one test's figures to the row ``row`` of the published table."""
    if tried < 0 or held < 0 or held > tried:
        raise ValueError(f"tally {row!r}: held ({held}) must be between 0 and tried ({tried})")
    TALLY_DIR.mkdir(parents=True, exist_ok=True)
    line = {"row": row, "tried": tried, "held": held, "unit": unit, "note": note}
    with (TALLY_DIR / f"{os.getpid()}.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def clear() -> None:
    if TALLY_DIR.exists():
        for path in TALLY_DIR.glob("*.jsonl"):
            path.unlink()


def _lines() -> Iterable[dict[str, object]]:
    for path in sorted(TALLY_DIR.glob("*.jsonl")):
        for text in path.read_text(encoding="utf-8").splitlines():
            if text.strip():
                yield json.loads(text)


def render(long_run: bool) -> bool:
    """Write docs/reliability.md from this run's tallies; False when there were none
    (a run of other tests leaves the published table alone)."""
    rows: dict[str, dict[str, object]] = {}
    for line in _lines():
        row = rows.setdefault(
            str(line["row"]), {"tried": 0, "held": 0, "unit": line["unit"], "notes": []}
        )
        row["tried"] = int(row["tried"]) + int(str(line["tried"]))  # type: ignore[call-overload]
        row["held"] = int(row["held"]) + int(str(line["held"]))  # type: ignore[call-overload]
        notes = row["notes"]
        assert isinstance(notes, list)
        if line["note"] and line["note"] not in notes:
            notes.append(line["note"])
    if not rows:
        return False
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    kind = "long run (RLEDGER_LONG=1)" if long_run else "short versions, as CI runs them"
    out = [
        "# Reliability and security: what was tried, what held",
        "",
        f"Written by the test suite at the end of its last run ({kind}, {when});",
        "do not edit by hand. `tests/reliability.py` collects the figures; each test",
        "asserts that everything it tried held, so a run with a failure fails.",
        "",
        "| what was tried | tried | held | failed | notes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name in sorted(rows):
        row = rows[name]
        tried, held = int(str(row["tried"])), int(str(row["held"]))
        notes = "; ".join(str(n) for n in row["notes"])  # type: ignore[attr-defined]
        out.append(f"| {name} | {tried:,} {row['unit']} | {held:,} | {tried - held:,} | {notes} |")
    out.append("")
    DOC.write_text("\n".join(out), encoding="utf-8")
    return True
