"""C2SP tlog-proof (c2sp.org/tlog-proof): an offline-verifiable proof that an entry is in a log.

Pure: text in, text out. A proof is lines separated by newlines::

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, unauthenticated)
    index <decimal>           (zero-based leaf index, no leading zeros)
    <base64 hash>             (zero or more: the RFC 9162 audit path, leaf's sibling first)
    <empty line>
    <the checkpoint>          (a C2SP signed note, verbatim: ledger/checkpoints.py)

For this ledger the entry at index ``i`` is the record at ``seq = i + 1`` and its leaf is
``SHA-256(0x00 || record hash bytes)`` (ledger/merkle.py). A provenance bundle
(docs/bundle-format.md) carries each record's ``index`` and ``inclusion`` lines and one
checkpoint for all of them; :func:`render` puts them together into the record's tlog-proof,
byte for byte as the spec lays it out, and :func:`parse` reads one back, strictly (canonical
base64 and decimal, 32-byte hashes, at most 63 of them, nothing after the note).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ledger.merkle import HASH_SIZE

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PATH = 63  # an audit path in a tree of at most 2^63 - 1 leaves
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class TlogProofError(ValueError):
    """A tlog-proof that is not well formed; ``str()`` says what is wrong."""


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A parsed tlog-proof: the leaf ``index``, the audit path, the checkpoint note."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def encode_hash(h: bytes) -> str:
    """A proof line: standard base64 (RFC 4648 §4) of a 32-byte hash."""
    if len(h) != HASH_SIZE:
        raise TlogProofError(f"a proof hash is {HASH_SIZE} bytes")
    return base64.b64encode(h).decode("ascii")


def decode_hash(line: object, what: str = "a proof hash") -> bytes:
    """32 bytes from one proof line: canonical, padded standard base64 and nothing else."""
    if not isinstance(line, str):
        raise TlogProofError(f"{what} must be base64 text")
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise TlogProofError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != line:
        raise TlogProofError(f"{what} is not canonical base64")
    if len(raw) != HASH_SIZE:
        raise TlogProofError(f"{what} must be {HASH_SIZE} bytes, not {len(raw)}")
    return raw


def render(proof: TlogProof) -> str:
    """The tlog-proof text of ``proof`` (the note is copied verbatim; it ends in a newline)."""
    if proof.index < 0:
        raise TlogProofError("the index must be at least 0")
    if not proof.checkpoint.endswith("\n"):
        raise TlogProofError("a checkpoint note ends with a newline")
    lines = [HEADER]
    if proof.extra is not None:
        lines.append("extra " + base64.b64encode(proof.extra).decode("ascii"))
    lines.append(f"index {proof.index}")
    lines.extend(encode_hash(h) for h in proof.hashes)
    return "\n".join(lines) + "\n\n" + proof.checkpoint


def parse(text: str) -> TlogProof:
    """Read a tlog-proof; :class:`TlogProofError` unless it is well formed. The checkpoint
    is returned verbatim: verify it (ledger/checkpoints.py), then the path against its root
    (ledger/merkle.py)."""
    if not isinstance(text, str):
        raise TlogProofError("a tlog-proof is text")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise TlogProofError("a tlog-proof has an empty line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise TlogProofError(f"a tlog-proof starts with the line {HEADER!r}")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith("extra "):
        try:
            extra = base64.b64decode(lines[at][6:].encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise TlogProofError("the extra line is not base64") from None
        at += 1
    if at >= len(lines) or not lines[at].startswith("index "):
        raise TlogProofError("a tlog-proof gives 'index <decimal>' after its header")
    digits = lines[at][6:]
    if not _DECIMAL.fullmatch(digits) or int(digits) > 2**63 - 2:
        raise TlogProofError("the index is a decimal number without leading zeros, below 2^63")
    path = lines[at + 1 :]
    if len(path) > MAX_PATH:
        raise TlogProofError(f"an inclusion proof has at most {MAX_PATH} hashes")
    hashes = tuple(decode_hash(line, f"proof hash {i}") for i, line in enumerate(path))
    if not note.endswith("\n"):
        raise TlogProofError("the checkpoint note ends with a newline")
    return TlogProof(int(digits), hashes, note, extra)
