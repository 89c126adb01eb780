"""Key files: an Ed25519 private key as PKCS#8 PEM (mode 0600) and its public
half beside it in FILE.pub, as the raw 32 bytes in base64url (the form
``key.add`` records carry)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ledger.signing import Ed25519PrivateKey, b64url_decode, b64url_encode, public_key_bytes


def write_private_key(path: Path, key: Ed25519PrivateKey | None = None) -> Ed25519PrivateKey:
    """Write a new (or the given) private key with mode 0600, and FILE.pub beside it."""
    key = key or Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    make_private_dir(path.parent)
    # O_EXCL: never overwrite a key; the mode is set at creation, never widened.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)
    public_path(path).write_text(b64url_encode(public_key_bytes(key.public_key())) + "\n")
    return key


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` and any missing parents with mode 0700 (owner only). A directory
    that already exists is left as it is: it may be the caller's own, e.g. the working
    directory of `rledger keygen --out k.key`."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)  # narrowed further by the umask, never widened
        except FileExistsError:  # made meanwhile by another process: theirs to set
            continue
        os.chmod(d, 0o700)


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def read_public_key(path: Path) -> bytes:
    """Raw public key bytes from a FILE.pub (base64url) or a PEM public key."""
    text = path.read_text().strip()
    if text.startswith("-----BEGIN"):
        pub = serialization.load_pem_public_key(text.encode())
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError(f"{path} does not hold a 32-byte Ed25519 public key")
    return raw
