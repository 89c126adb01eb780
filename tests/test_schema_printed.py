"""The committed schema.graphql is the schema the code serves."""

from __future__ import annotations

from schema.print_schema import COMMAND, SCHEMA_FILE, sdl


def test_committed_schema_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == sdl(), (
        f"{SCHEMA_FILE.name} is out of date with the code: run `{COMMAND}` and commit the result"
    )


def test_contract_shapes_are_in_the_schema() -> None:
    """The operations and types DESIGN.md "The API" fixes (the contract)."""
    text = sdl()
    for line in (
        "recordEvents(events: [SignedEvent!]!, atomic: Boolean = false): [RecordResult!]!",
        "union RecordResult = Recorded | Rejected",
        "input SignedEvent {",
        "scalar Long",
    ):
        assert line in text, line
