"""Ed25519 keys, key ids, signatures and record hashes (RFC 8032, FIPS 180-4).

A key id is the lowercase hex SHA-256 of the raw 32-byte public key. A
signature travels beside the envelope as base64url (RFC 4648 §5) without
padding; padded input is accepted too.

Which signatures the ledger accepts (docs/adr/0007-ed25519-verifier.md):
RFC 8032 §5.1.7 verification without the cofactor (the encoded R must equal
[S]B - [k]A), after one explicit check of the encodings — S < L, neither A
nor R of small order in any encoding, A's y canonical (< p). These are the
checks libsodium makes itself; making them here, before either library,
means libsodium and OpenSSL (through ``cryptography``) accept exactly the
same signatures, which tests/test_ed25519_vectors.py holds them to on the
"Taming the many EdDSAs" edge cases. :func:`verify` is the one place every
signature check goes through: the store, the verify workers, the
independent verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import nacl.bindings
import nacl.exceptions
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
    "strict_encoding",
    "verify",
    "verify_openssl",
    "verify_sodium",
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


# RFC 8032 §5.1: p = 2^255 - 19 and L, the prime order of the base point B.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_Y_MASK = (1 << 255) - 1
# The y coordinates of the eight points of small order (the torsion subgroup
# E[8]: orders 1, 2, 4 and 8), as they may be encoded: 1 and p + 1 (the
# identity), p - 1 (order 2), 0 and p (order 4), and the two y of the four
# points of order 8. The list libsodium's ge25519_has_small_order compares
# against; tests/test_ed25519_vectors.py rebuilds it from the curve.
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = (0, 1, _P - 1, _Y8, _P - _Y8, _P, _P + 1)
# Each with the sign bit of x clear or set (bit 255): libsodium ignores it here.
_SMALL_ORDER = frozenset(
    (y | sign << 255).to_bytes(32, "little") for y in _SMALL_ORDER_Y for sign in (0, 1)
)


def strict_encoding(public: bytes, signature: bytes) -> bool:
    """The encoding checks made before either library verifies (ADR 0007).

    S must be reduced (S < L, RFC 8032 §5.1.7 step 1), R and A must not be
    points of small order in any encoding, and A's y must be canonical
    (< p). A signature failing one of these is refused whatever the
    equation says: these are the cases where libsodium and OpenSSL differ
    ("Taming the many EdDSAs", Chalkias, Garillot, Nikolaenko, 2020).
    """
    return (
        len(public) == 32
        and len(signature) == 64
        and int.from_bytes(signature[32:], "little") < _L
        and signature[:32] not in _SMALL_ORDER
        and public not in _SMALL_ORDER
        and int.from_bytes(public, "little") & _Y_MASK < _P
    )


def verify_sodium(public: bytes, signature: bytes, message: bytes) -> bool:
    """:func:`strict_encoding`, then libsodium's ``crypto_sign_open``."""
    if not strict_encoding(public, signature):
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def verify_openssl(public: bytes, signature: bytes, message: bytes) -> bool:
    """:func:`strict_encoding`, then OpenSSL's Ed25519 (``cryptography``).

    Not on the ledger's path: kept so the tests can hold both libraries to
    the same answers, and as the fallback named in ADR 0007.
    """
    if not strict_encoding(public, signature):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify(public: Ed25519PublicKey | bytes, signature: bytes, canonical: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``canonical``.

    The ledger's one acceptance rule (ADR 0007): :func:`strict_encoding`,
    then RFC 8032 verification by libsodium: about twice OpenSSL's rate here,
    accepting exactly what :func:`verify_openssl` accepts (tests/test_ed25519_vectors.py).
    """
    raw = public if isinstance(public, bytes) else public.public_bytes_raw()
    return verify_sodium(raw, signature, canonical)
