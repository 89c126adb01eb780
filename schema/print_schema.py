"""Print the API's schema (SDL); the committed copy is schema.graphql at the repo root.

    python -m schema.print_schema            # the SDL on stdout
    python -m schema.print_schema --write    # (re)write schema.graphql

tests/test_schema_printed.py fails when the committed file and the code differ,
so a change to the API shows up in review as a change to schema.graphql.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"
COMMAND = "python -m schema.print_schema --write"


def sdl() -> str:
    from schema.root import schema

    return schema.as_str() + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        SCHEMA_FILE.write_text(sdl(), encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(sdl())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
