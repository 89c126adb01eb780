"""Checkpoints: the Merkle log's signed tree heads, as C2SP signed notes.

Pure: text in, text out; storage is in ledger/merkle_log.py.

A checkpoint (c2sp.org/tlog-checkpoint) is a signed note (c2sp.org/signed-note)
whose text is three lines — the log's *origin*, the tree size in decimal, the
root hash in standard base64 (RFC 4648 §4) — then a blank line, then
signature lines ``— <key name> <base64(key ID || signature)>``::

    rledger.example/ledger
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

    — rledger.example/ledger Az3grl…
    — rledger.example/ledger jWbPPw…

The ledger signs each checkpoint with its own Ed25519 key twice, under one
key name (the origin, as tlog-checkpoint recommends):

1. an Ed25519 note signature (signature type ``0x01``): Ed25519 over the note
   text; key ID = ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``. Any
   C2SP tool checks this one.
2. a timestamped Ed25519 signature (type ``0x04``, c2sp.org/tlog-cosignature):
   ``u64 timestamp || Ed25519 over "cosignature/v1\\ntime <t>\\n" || note text``;
   key ID with ``0x04``. It binds the time the checkpoint was made (POSIX
   seconds): "as of time t, this is the largest tree the log has". The
   different type byte and the ``cosignature/v1`` header keep the two kinds of
   signature apart (signed-note: "reusing the same cryptographic key and name
   for different signature types").

Parsing and verifying fail closed: the note must be valid UTF-8 without
control characters other than newline, within :data:`MAX_NOTE_BYTES` and
:data:`MAX_SIGNATURES`; the text must be a well-formed checkpoint (size in
canonical decimal, root 32 bytes in canonical base64). As the signed-note
spec says, signature lines of unknown keys are ignored, and every line of the
known key must verify: one bad line rejects the whole note.

A verifier is configured with the ledger's *verifier key* (signed-note's vkey
form ``<name>+<hex key ID>+<base64(0x01 || public key)>``), which pins the
name and the public key together: :func:`verifier_key`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.merkle import HASH_SIZE, MAX_TREE_SIZE
from ledger.signing import public_key_bytes

ED25519 = 0x01  # signed-note: Ed25519 over the note text
TIMESTAMPED_ED25519 = 0x04  # tlog-cosignature: timestamped Ed25519
COSIGNATURE_HEADER = "cosignature/v1\n"
MAX_NOTE_BYTES = 256 * 1024
MAX_SIGNATURES = 64  # signed-note: verifiers MUST accept at least 16
MAX_TIMESTAMP = 2**63 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_SPACE = re.compile(r"\s", re.UNICODE)


class CheckpointError(ValueError):
    """A note or checkpoint that is malformed or does not verify; says which and why."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size and its root hash (32 bytes)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        """The note text (c2sp.org/tlog-checkpoint): three lines, each ending in a newline."""
        check_key_name(self.origin, "the origin")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError("the tree size must lie in 0..2^63-1")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint whose signature by the expected key verified; ``time``: the POSIX
    seconds of its timestamped signature (``None`` when the note carries none)."""

    checkpoint: Checkpoint
    time: int | None
    note: str


def check_key_name(name: str, what: str = "the key name") -> None:
    """signed-note: key names are non-empty, with no Unicode space and no ``+``."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{what} must not be empty")
    if _SPACE.search(name) or "+" in name or _CONTROL.search(name) or "\u2014" in name:
        raise CheckpointError(f"{what} must hold no spaces, '+', em dash or control characters")


def note_key_id(name: str, public_key: bytes, signature_type: int = ED25519) -> bytes:
    """signed-note: ``SHA-256(key name || 0x0A || signature type || public key)[:4]``."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    ).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The signed-note verifier key: ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
    check_key_name(name)
    if len(public_key) != 32:
        raise CheckpointError("an Ed25519 public key is 32 bytes")
    kid = note_key_id(name, public_key).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([ED25519]) + public_key).decode('ascii')}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """``(name, 32-byte Ed25519 public key)`` from a verifier key; the key ID must match."""
    if not isinstance(vkey, str):
        raise CheckpointError("a verifier key is text")
    parts = vkey.strip().split("+", 2)  # the base64 key may itself hold a "+"
    if len(parts) != 3:
        raise CheckpointError("a verifier key is <name>+<hex key ID>+<base64 key>")
    name, kid_hex, key_b64 = parts
    check_key_name(name)
    raw = _b64(key_b64, "the verifier key's key")
    if len(raw) != 33 or raw[0] != ED25519:
        raise CheckpointError("the verifier key is not an Ed25519 (type 0x01) key")
    public_key = raw[1:]
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex) or bytes.fromhex(kid_hex) != note_key_id(
        name, public_key
    ):
        raise CheckpointError("the verifier key's key ID does not match its name and key")
    return name, public_key


def _b64(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): padded, canonical, nothing else."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise CheckpointError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def sign_checkpoint(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey, *, time: int, name: str | None = None
) -> str:
    """The signed note: ``checkpoint``'s text, a blank line, the Ed25519 signature line
    and the timestamped one (``time``: POSIX seconds). ``name`` defaults to the origin."""
    name = checkpoint.origin if name is None else name
    text = checkpoint.text()
    return (
        text
        + "\n"
        + note_signature(text, private_key, name)
        + timestamped_signature(text, private_key, name, time)
    )


def note_signature(text: str, private_key: Ed25519PrivateKey, name: str) -> str:
    """signed-note: the Ed25519 (type 0x01) signature line of ``text`` (ending in a newline)."""
    check_key_name(name)
    if not text.endswith("\n"):
        raise CheckpointError("a note's text ends with a newline")
    public = public_key_bytes(private_key.public_key())
    raw = note_key_id(name, public) + private_key.sign(text.encode("utf-8"))
    return f"\u2014 {name} {base64.b64encode(raw).decode('ascii')}\n"


def timestamped_signature(text: str, private_key: Ed25519PrivateKey, name: str, time: int) -> str:
    """tlog-cosignature: the timestamped Ed25519 (type 0x04) signature line of ``text``."""
    check_key_name(name)
    if not isinstance(time, int) or isinstance(time, bool) or not 0 <= time <= MAX_TIMESTAMP:
        raise CheckpointError("the time must be POSIX seconds in 0..2^63-1")
    public = public_key_bytes(private_key.public_key())
    raw = (
        note_key_id(name, public, TIMESTAMPED_ED25519)
        + time.to_bytes(8, "big")
        + private_key.sign(_timestamped_message(text, time))
    )
    return f"\u2014 {name} {base64.b64encode(raw).decode('ascii')}\n"


def _timestamped_message(text: str, time: int) -> bytes:
    """tlog-cosignature's Ed25519 signed message: header, time line, the note text."""
    return f"{COSIGNATURE_HEADER}time {time}\n{text}".encode()


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text (with its final newline) and its signatures."""
    if isinstance(note, bytes | bytearray):
        if len(note) > MAX_NOTE_BYTES:
            raise CheckpointError(f"the note is over {MAX_NOTE_BYTES} bytes")
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("the note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise CheckpointError("a note is text")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8
        raise CheckpointError("the note is not valid UTF-8") from None
    if size > MAX_NOTE_BYTES:
        raise CheckpointError(f"the note is over {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise CheckpointError("the note holds control characters other than newline")
    if not note.endswith("\n"):
        raise CheckpointError("a signed note ends with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("the note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block.split("\n")[:-1]  # the block ends with a newline
    if not lines:
        raise CheckpointError("the note has no signature")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"the note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith("\u2014 "):
            raise CheckpointError("a signature line starts with an em dash and a space")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise CheckpointError("a signature line is '\u2014 <key name> <base64 signature>'")
        name, sig_b64 = parts
        check_key_name(name, "a signature's key name")
        raw = _b64(sig_b64, "a signature")
        if len(raw) < 5:
            raise CheckpointError("a signature is a 4-byte key ID and at least one more byte")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note text (c2sp.org/tlog-checkpoint). Extension lines are
    refused: the ledger makes none, and they are NOT RECOMMENDED by the spec."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise CheckpointError("a checkpoint's text ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise CheckpointError("a checkpoint is three lines: origin, tree size, root hash")
    origin, size_text, root_text = lines
    check_key_name(origin, "the origin")
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError("the tree size is a decimal number without leading zeros")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError("the tree size must lie in 0..2^63-1")
    root = _b64(root_text, "the root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes")
    return Checkpoint(origin, size, root)


def verify_checkpoint(
    note: str | bytes,
    public_key: bytes,
    *,
    name: str | None = None,
    origin: str | None = None,
    require_time: bool = True,
) -> VerifiedCheckpoint:
    """Check a signed checkpoint against the ledger's public key; raise
    :class:`CheckpointError` unless it verifies.

    ``name``: the key name (default: the note's origin); ``origin``: the origin the
    caller expects (default: any). The note needs at least one Ed25519 (0x01)
    signature line of this key, and with ``require_time`` one timestamped (0x04)
    line; every line of this key must verify. Other keys' lines are ignored.
    """
    text, signatures = parse_note(note)
    checkpoint = parse_checkpoint(text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}: "
            "another log's checkpoint"
        )
    name = checkpoint.origin if name is None else name
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise CheckpointError("an Ed25519 public key is 32 bytes")
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise CheckpointError("not an Ed25519 public key") from None
    plain_id = note_key_id(name, public_key, ED25519)
    timed_id = note_key_id(name, public_key, TIMESTAMPED_ED25519)
    signed = False
    time: int | None = None
    message = text.encode("utf-8")
    for sig in signatures:
        if sig.name != name:
            continue
        if sig.key_id == plain_id:
            if not _verifies(key, sig.signature, message):
                raise CheckpointError("the ledger's signature on the checkpoint does not verify")
            signed = True
        elif sig.key_id == timed_id:
            if len(sig.signature) != 8 + 64:
                raise CheckpointError(
                    "a timestamped signature is 8 bytes of time and 64 of Ed25519"
                )
            stamp = int.from_bytes(sig.signature[:8], "big")
            if stamp > MAX_TIMESTAMP or not _verifies(
                key, sig.signature[8:], _timestamped_message(text, stamp)
            ):
                raise CheckpointError("the ledger's timestamped signature does not verify")
            if time is not None and time != stamp:
                raise CheckpointError("the checkpoint carries two different signed times")
            time = stamp
    if not signed:
        raise CheckpointError(
            "the checkpoint carries no signature by this ledger key (name and key ID); "
            "check the verifier key"
        )
    if require_time and time is None:
        raise CheckpointError("the checkpoint carries no timestamped signature by this key")
    return VerifiedCheckpoint(checkpoint, time, note if isinstance(note, str) else note.decode())


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
