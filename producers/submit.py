"""Signing a file of drafts and appending them, as ``rledger submit`` does.

A draft is ``{"type", "body", "id"?, "at"?, "parents"?, "actor"?}``; a line
may also be an already signed ``{"envelope", "signature"}``, appended as it
is. Other members of a draft line (e.g. the ``ticket`` an importer notes
where a draft came from) are kept in the file and never signed.

Parents default to the lots' heads: read from the ledger, then predicted
from the records signed before it. When a record is refused, drafts signed
on top of it (and so refused as a conflict) are signed again on the real
heads and retried, so one bad line does not take its successors with it.

The loop is written once, without I/O (:func:`plan`, a generator that asks
for heads and appends and is sent the answers), and driven either
synchronously (:func:`submit_lines`: a :class:`ledger.store.Store` or a
``LedgerClient``) or asynchronously (:func:`submit_lines_async`: an
``AsyncLedgerClient``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import RecordRefused
from ledger.rules import touched_lots
from ledger.signing import record_hash
from ledger.store import Appended, Signed
from producers.events import Signer
from producers.results import Recorded, Rejected

Outcome = Appended | RecordRefused | Recorded | Rejected
AppendFn = Callable[[Sequence[Signed]], Sequence[Outcome]]
HeadsFn = Callable[[set[str]], dict[str, str]]
AsyncAppendFn = Callable[[Sequence[Signed]], Awaitable[Sequence[Outcome]]]
AsyncHeadsFn = Callable[[set[str]], Awaitable[dict[str, str]]]


@dataclass
class Line:
    number: int
    draft: dict[str, Any] | None  # None for a pre-signed line
    signed: Signed | None = None
    result: Outcome | None = None

    @property
    def lots(self) -> list[str]:
        if self.draft is None:
            return []
        existing, created = _touched(self.draft)
        return [*existing, *created]

    @property
    def refusal(self) -> Refusal | None:
        return refusal(self.result)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused record, whichever side refused it (the store or the API)."""

    record_id: str | None
    code: str
    path: str | None
    message: str

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        rec = f"record {self.record_id}: " if self.record_id else ""
        return f"{rec}{self.code}{where}: {self.message}"


def refusal(result: Outcome | None) -> Refusal | None:
    """The refusal in ``result``, or None if it was recorded (or not yet sent)."""
    if isinstance(result, RecordRefused):
        return Refusal(result.record_id, result.code, result.path, result.message)
    if isinstance(result, Rejected):
        return Refusal(result.id, result.code, result.path, result.message)
    return None


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
            envelope, signature = obj["envelope"], obj.get("signature")
            if not isinstance(envelope, str) or not isinstance(signature, str):
                raise ValueError(
                    f"line {number}: a signed line is {{'envelope': canonical JSON text, "
                    "'signature': base64url}}"
                )
            lines.append(Line(number, None, Signed(envelope, signature)))
        elif isinstance(obj.get("type"), str) and isinstance(obj.get("body"), dict):
            lines.append(Line(number, obj))
        else:
            raise ValueError(f"line {number}: a draft needs a type and a body")
    return lines


def check_actor(lines: Sequence[Line], actor: str) -> None:
    """Refuse the whole file if a draft names another actor than the signer's."""
    for line in lines:
        drafted = line.draft.get("actor") if line.draft is not None else None
        if drafted is not None and drafted != actor:
            raise ValueError(
                f"line {line.number}: drafted for {drafted} but this key signs as {actor}; "
                f"sign {drafted}'s drafts with {drafted}'s key"
            )


@dataclass(frozen=True, slots=True)
class NeedHeads:
    lots: set[str]


@dataclass(frozen=True, slots=True)
class NeedAppend:
    batch: list[Signed]


Step = NeedHeads | NeedAppend
Plan = Generator[Step, Any, None]


def plan(lines: list[Line], signer: Signer, *, atomic: bool = False) -> Plan:
    """The submit loop without I/O: yields what it needs, is sent the answer.

    ``NeedHeads(lots)`` is answered with ``{lot: head}`` for the lots that
    exist; ``NeedAppend(batch)`` with one outcome per record, in order.
    Leaves each line's final result on it.
    """
    pending = lines
    while pending:
        heads: dict[str, str] = yield NeedHeads(_lots_to_read(pending))
        heads = dict(heads)
        for line in pending:
            _sign(line, signer, heads)
        batch = [line for line in pending if line.signed is not None and not _failed(line)]
        signed = [line.signed for line in batch if line.signed is not None]
        results: Sequence[Outcome] = (yield NeedAppend(signed)) if signed else []
        if len(results) != len(batch):
            raise RuntimeError(f"{len(results)} results for a batch of {len(batch)} records")
        for line, result in zip(batch, results, strict=True):
            line.result = result
        refused = {
            record_hash(_bytes(line.signed))
            for line in batch
            if line.refusal is not None and line.signed is not None
        }
        # Drafts refused only because they were signed on top of a refused record.
        retry = [
            line
            for line in batch
            if line.draft is not None
            and not line.draft.get("parents")
            and (r := line.refusal) is not None
            and r.code == "conflict"
            and line.signed is not None
            and refused & set(_parents(line.signed).values())
        ]
        if atomic or len(retry) == len(batch):
            return
        pending = retry


def submit_lines(
    lines: list[Line], signer: Signer, append: AppendFn, heads_of: HeadsFn, *, atomic: bool = False
) -> None:
    """Sign, append and retry; leaves each line's final result on it."""
    steps = plan(lines, signer, atomic=atomic)
    try:
        step = next(steps)
        while True:
            answer = heads_of(step.lots) if isinstance(step, NeedHeads) else append(step.batch)
            step = steps.send(answer)
    except StopIteration:
        return


async def submit_lines_async(
    lines: list[Line],
    signer: Signer,
    append: AsyncAppendFn,
    heads_of: AsyncHeadsFn,
    *,
    atomic: bool = False,
) -> None:
    """:func:`submit_lines` with awaitable heads and append functions."""
    steps = plan(lines, signer, atomic=atomic)
    try:
        step = next(steps)
        while True:
            if isinstance(step, NeedHeads):
                answer: Any = await heads_of(step.lots)
            else:
                answer = await append(step.batch)
            step = steps.send(answer)
    except StopIteration:
        return


def _touched(draft: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The lots a draft touches; none if its body is malformed (the ledger then says why)."""
    try:
        existing, created = touched_lots(str(draft.get("type")), draft.get("body") or {})
    except (KeyError, TypeError, AttributeError):
        return [], []
    return (
        [lot for lot in existing if isinstance(lot, str)],
        [lot for lot in created if isinstance(lot, str)],
    )


def _lots_to_read(lines: Sequence[Line]) -> set[str]:
    """Lots whose heads come from the ledger: spent by a draft without explicit
    parents before any earlier draft creates them (later heads are predicted)."""
    wanted: set[str] = set()
    made: set[str] = set()
    for line in lines:
        if line.draft is None:
            continue
        existing, created = _touched(line.draft)
        if not line.draft.get("parents"):
            wanted.update(lot for lot in existing if lot not in made)
        made.update(existing)
        made.update(created)
    return wanted


def _failed(line: Line) -> bool:
    r = line.refusal
    return r is not None and r.code != "conflict"


def _sign(line: Line, signer: Signer, heads: dict[str, str]) -> None:
    draft = line.draft
    if draft is None:
        return
    existing, created = _touched(draft)
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
