"""What the ledger answered for one record over the API: ``Recorded`` or ``Rejected``.

The GraphQL ``RecordResult`` union (COMMON.md, the HTTP/GraphQL error
contract) as small frozen values, shared by the client SDK and the
submit loop (:mod:`producers.submit`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Recorded:
    """The record is in the ledger at ``seq``; ``existing``: it already was (same id, same bytes)."""

    id: str
    hash: str
    seq: int
    existing: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """The record broke a rule and nothing of it was written.

    ``code`` is the ledger's stable code (``ledger.errors.CODES``), ``path``
    the offending field inside the envelope (``body.inputs[1].mass_g``).
    """

    id: str | None
    code: str
    message: str
    path: str | None = None

    def __str__(self) -> str:  # the same form as ledger.errors.RecordRefused
        where = f" at {self.path}" if self.path else ""
        rec = f"record {self.id}: " if self.id else ""
        return f"{rec}{self.code}{where}: {self.message}"


RecordResult = Recorded | Rejected
