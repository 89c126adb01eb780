"""Ed25519 keys, key ids, signatures and record hashes (RFC 8032, FIPS 180-4).

A key id is the lowercase hex SHA-256 of the raw 32-byte public key. A
signature travels beside the envelope as base64url (RFC 4648 §5) without
padding; padded input is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import RecordRefused

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "b64url_decode",
    "b64url_encode",
    "key_id",
    "load_public_key",
    "public_key_bytes",
    "record_hash",
    "sign",
    "verify",
]


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def record_hash(canonical: bytes) -> str:
    """A record's hash: lowercase hex SHA-256 of its canonical bytes."""
    return hashlib.sha256(canonical).hexdigest()


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; refuse anything else."""
    stripped = text.rstrip("=")
    if not _B64URL.fullmatch(stripped) or len(stripped) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes | Ed25519PublicKey) -> str:
    raw = public if isinstance(public, bytes) else public_key_bytes(public)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(private: Ed25519PrivateKey, canonical: bytes) -> str:
    """Sign canonical bytes; returns base64url without padding."""
    return b64url_encode(private.sign(canonical))


def decode_signature(signature: str) -> bytes:
    try:
        raw = b64url_decode(signature)
    except ValueError:
        raw = b""
    if len(raw) != 64:
        raise RecordRefused(
            "signature.malformed",
            "the signature must be 64 bytes of Ed25519, base64url-encoded",
            path="signature",
        )
    return raw


def verify(public: Ed25519PublicKey, signature: bytes, canonical: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``canonical``."""
    try:
        public.verify(signature, canonical)
    except InvalidSignature:
        return False
    return True
