"""Signing a file of drafts and appending them, as ``rledger submit`` does.

A draft is ``{"type", "body", "id"?, "at"?, "parents"?}``; a line may also
be an already signed ``{"envelope", "signature"}``, appended as it is.
Parents default to the lots' heads: read from the ledger, then predicted
from the records signed before it. When a record is refused, drafts signed
on top of it (and so refused as a conflict) are signed again on the real
heads and retried, so one bad line does not take its successors with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import RecordRefused
from ledger.rules import touched_lots
from ledger.signing import record_hash
from ledger.store import Result, Signed
from producers.events import Signer

AppendFn = Callable[[Sequence[Signed]], list[Result]]
HeadsFn = Callable[[set[str]], dict[str, str]]


@dataclass
class Line:
    number: int
    draft: dict[str, Any] | None  # None for a pre-signed line
    signed: Signed | None = None
    result: Result | None = None

    @property
    def lots(self) -> list[str]:
        if self.draft is None:
            return []
        existing, created = touched_lots(str(self.draft.get("type")), self.draft.get("body") or {})
        return [*existing, *created]


def parse_lines(chunk: Sequence[tuple[int, str]]) -> list[Line]:
    lines: list[Line] = []
    for number, text in chunk:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {number}: a line is a JSON object")
        if "envelope" in obj:
            lines.append(Line(number, None, Signed(obj["envelope"], str(obj.get("signature", "")))))
        elif isinstance(obj.get("type"), str) and isinstance(obj.get("body"), dict):
            lines.append(Line(number, obj))
        else:
            raise ValueError(f"line {number}: a draft needs a type and a body")
    return lines


def submit_lines(
    lines: list[Line], signer: Signer, append: AppendFn, heads_of: HeadsFn, *, atomic: bool = False
) -> None:
    """Sign, append and retry; leaves each line's final result on it."""
    pending = lines
    while pending:
        heads = heads_of({lot for line in pending for lot in line.lots})
        for line in pending:
            _sign(line, signer, heads)
        batch = [line for line in pending if line.signed is not None and not _failed(line)]
        results = (
            append([line.signed for line in batch if line.signed is not None]) if batch else []
        )
        for line, result in zip(batch, results, strict=True):
            line.result = result
        refused = {
            record_hash(_bytes(line.signed))
            for line in batch
            if isinstance(line.result, RecordRefused) and line.signed is not None
        }
        # Drafts refused only because they were signed on top of a refused record.
        retry = [
            line
            for line in batch
            if line.draft is not None
            and not line.draft.get("parents")
            and isinstance(line.result, RecordRefused)
            and line.result.code == "conflict"
            and line.signed is not None
            and refused & set(_parents(line.signed).values())
        ]
        if atomic or len(retry) == len(batch):
            return
        pending = retry


def _failed(line: Line) -> bool:
    return isinstance(line.result, RecordRefused) and line.result.code != "conflict"


def _sign(line: Line, signer: Signer, heads: dict[str, str]) -> None:
    draft = line.draft
    if draft is None:
        return
    existing, created = touched_lots(draft["type"], draft["body"])
    parents = draft.get("parents") or {lot: heads[lot] for lot in existing if lot in heads}
    try:
        line.signed = signer.record(
            draft["type"], draft["body"], parents, record_id=draft.get("id"), at=draft.get("at")
        )
    except RecordRefused as exc:
        line.signed, line.result = None, exc.for_record(draft.get("id"))
        return
    line.result = None
    new_head = record_hash(_bytes(line.signed))
    for lot in [*existing, *created]:
        heads[lot] = new_head


def _bytes(signed: Signed) -> bytes:
    return signed.envelope.encode() if isinstance(signed.envelope, str) else signed.envelope


def _parents(signed: Signed) -> dict[str, str]:
    parents = json.loads(_bytes(signed)).get("parents", {})
    return parents if isinstance(parents, dict) else {}
