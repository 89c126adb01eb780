"""Ed25519 edge cases: libsodium and OpenSSL must accept exactly the same signatures.

The vectors (tests/vectors/ed25519_speccheck.json) are the 15 cases of
ed25519-speccheck, from "Taming the many EdDSAs" (Chalkias, Garillot,
Nikolaenko, SSR 2020): signatures with S = 0, with R or A of small order
(order 1, 2, 4 or 8) or of mixed order (a torsion part and a part of order
L), a "pre-reduced" scalar, S >= L, and R or A written as "negative zero"
(x = 0 with the sign bit set). Bare, the two libraries disagree — OpenSSL
(``cryptography``) accepts cases 1, 3, 5, 6 and 14, libsodium only case 6:

- case 1: A and R of small order, S = 0: R = -[k]A holds for this message,
  so the cofactorless equation [S]B = R + [k]A passes; libsodium refuses
  small-order A and R before the equation.
- cases 3 and 5: one of A, R of small order, the other mixed; cofactorless
  passes, libsodium refuses the small-order point.
- case 6: A and R mixed, cofactorless passes: both accept.
- case 14: A = (0, -1) written with the sign bit set, order 2; OpenSSL
  decodes it, libsodium's small-order check ignores the sign bit.

``ledger.signing.strict_encoding`` (S < L, no small-order A or R in any
encoding, canonical y for A) runs before either library, so each accepts
only case 6. Beyond the 15, generated keys and signatures with every
torsion component, S + L and non-canonical encodings hold both libraries
and an independent pure-Python RFC 8032 verifier (below) to one answer.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import signing
from ledger.signing import (
    public_key_bytes,
    strict_encoding,
    verify,
    verify_openssl,
    verify_sodium,
)

VECTORS = Path(__file__).parent / "vectors" / "ed25519_speccheck.json"

# --- an independent, slow Ed25519 (RFC 8032 §5.1), for the reference answers --------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z
IDENTITY: Point = (0, 1, 1, 0)


def _add(a: Point, b: Point) -> Point:
    # RFC 8032 §5.1.4, "add-2008-hwcd-3"
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = t1 * 2 * D * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, a: Point) -> Point:
    out = IDENTITY
    while k:
        if k & 1:
            out = _add(out, a)
        a = _add(a, a)
        k >>= 1
    return out


def _neg(a: Point) -> Point:
    x, y, z, t = a
    return (-x % P, y, z, -t % P)


def _affine(a: Point) -> tuple[int, int]:
    zi = pow(a[2], P - 2, P)
    return (a[0] * zi % P, a[1] * zi % P)


def _same(a: Point, b: Point) -> bool:
    return _affine(a) == _affine(b)


def _encode(a: Point) -> bytes:
    x, y = _affine(a)
    return (y | (x & 1) << 255).to_bytes(32, "little")


@dataclass(frozen=True)
class Decoded:
    point: Point | None  # None: no point has this y
    encoding: str  # "canonical", "non-canonical y" (y >= p), "negative zero" (x = 0, sign 1)


def _decode(data: bytes) -> Decoded:
    """RFC 8032 §5.1.3, but telling how an encoding is non-canonical instead of failing."""
    v = int.from_bytes(data, "little")
    y, sign = v & ((1 << 255) - 1), v >> 255
    encoding = "canonical" if y < P else "non-canonical y"
    y %= P
    u, w = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(w, 3, P) * pow(u * pow(w, 7, P), (P - 5) // 8, P) % P
    if (w * x * x - u) % P != 0:
        x = x * SQRT_M1 % P
    if (w * x * x - u) % P != 0:
        return Decoded(None, encoding)
    if x == 0 and sign:
        encoding = "negative zero" if encoding == "canonical" else encoding
    elif x & 1 != sign:
        x = P - x
    return Decoded((x, y, 1, x * y % P), encoding)


GY = 4 * pow(5, P - 2, P) % P
_B = _decode(GY.to_bytes(32, "little")).point
assert _B is not None
B: Point = _B


def _order(a: Point) -> str:
    if _same(_mul(8, a), IDENTITY):
        return "small"
    return "prime" if _same(_mul(L, a), IDENTITY) else "mixed"


def _describe(data: bytes) -> str:
    d = _decode(data)
    return "not a point" if d.point is None else f"{d.encoding}, {_order(d.point)} order"


def _k(r: bytes, a: bytes, m: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + m).digest(), "little") % L


def reference_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """The ledger's rule written from the RFC: strict encodings, then the
    cofactorless equation R == [S]B - [k]A compared as encodings (§5.1.7)."""
    if not strict_encoding(public, signature):
        return False
    a = _decode(public).point
    if a is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    check = _add(_mul(s, B), _neg(_mul(_k(signature[:32], public, message), a)))
    return _encode(check) == signature[:32]


# --- the libraries, bare ---------------------------------------------------------------


def bare_openssl(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def bare_sodium(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _cases() -> list[dict[str, Any]]:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = data["cases"]
    return cases


def _bytes(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return (
        bytes.fromhex(case["pub_key"]),
        bytes.fromhex(case["signature"]),
        bytes.fromhex(case["message"]),
    )


def test_the_vector_file_names_its_source_and_holds_the_fifteen_cases() -> None:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert data["source"]["repository"] == "https://github.com/novifinancial/ed25519-speccheck"
    assert data["source"]["file"] == "cases.json"
    assert len(data["source"]["commit"]) == 40
    assert "Taming the many EdDSAs" in data["source"]["paper"]
    assert [c["index"] for c in data["cases"]] == list(range(15))
    # the upstream file's bytes, as committed beside the annotations
    upstream = [{k: c[k] for k in ("message", "pub_key", "signature")} for c in data["cases"]]
    assert (
        hashlib.sha256(json.dumps(upstream, separators=(",", ":")).encode()).hexdigest()
        == (data["source"]["sha256_of_cases_json"])
    )


def _equations(public: bytes, signature: bytes, message: bytes) -> tuple[bool, bool]:
    """(cofactorless as encodings, cofactored as points) for decodable A and R."""
    a, r = _decode(public).point, _decode(signature[:32]).point
    assert a is not None and r is not None
    s = int.from_bytes(signature[32:], "little")
    sb_minus_ka = _add(_mul(s, B), _neg(_mul(_k(signature[:32], public, message), a)))
    return (
        _encode(sb_minus_ka) == signature[:32],
        _same(_mul(8, _add(sb_minus_ka, _neg(r))), IDENTITY),
    )


def test_each_vector_is_what_its_annotation_says() -> None:
    """The annotations are recomputed from the curve: e.g. case 0's A is
    c7176a70…ac03fa, canonical and of order 8; its S is 0."""
    for case in _cases():
        public, signature, message = _bytes(case)
        s = int.from_bytes(signature[32:], "little")
        assert (_describe(public), _describe(signature[:32]), "S < L" if s < L else "S >= L") == (
            case["A"],
            case["R"],
            case["S"],
        ), case["index"]
        assert _equations(public, signature, message) == (
            case["cofactorless_equation"],
            case["cofactored_equation"],
        ), case["index"]


def test_bare_libraries_disagree_as_the_paper_reports() -> None:
    """Why the pre-check exists: OpenSSL accepts 1, 3, 5, 6, 14; libsodium only 6.
    If a library upgrade changes this, re-read ADR 0007 before changing the test."""
    openssl = {c["index"] for c in _cases() if bare_openssl(*_bytes(c))}
    sodium = {c["index"] for c in _cases() if bare_sodium(*_bytes(c))}
    assert openssl == {1, 3, 5, 6, 14}
    assert sodium == {6}
    for case in _cases():
        assert case["openssl_bare"] == ("accept" if case["index"] in openssl else "refuse")
        assert case["libsodium_bare"] == ("accept" if case["index"] in sodium else "refuse")


def test_with_the_strict_encoding_checks_every_verifier_accepts_the_same_vectors() -> None:
    for case in _cases():
        public, signature, message = _bytes(case)
        answers = {
            "openssl": verify_openssl(public, signature, message),
            "libsodium": verify_sodium(public, signature, message),
            "ledger": verify(public, signature, message),
            "reference": reference_verify(public, signature, message),
        }
        expected = case["index"] == 6
        assert answers == dict.fromkeys(answers, expected), case["index"]
        assert case["ledger"] == ("accept" if expected else "refuse")


def test_the_small_order_list_is_the_torsion_subgroup() -> None:
    """E[8] = the multiples of a point of order 8 (case 0's A); each y, and y + p
    where that still fits in 255 bits, with either sign bit, is refused."""
    t8 = _decode(bytes.fromhex(_cases()[0]["pub_key"])).point
    assert t8 is not None and not _same(_mul(4, t8), IDENTITY) and _same(_mul(8, t8), IDENTITY)
    ys = {_affine(_mul(i, t8))[1] for i in range(8)}
    assert len(ys) == 5
    expected = {
        (y | sign << 255).to_bytes(32, "little")
        for y in ys | {y + P for y in ys if y + P < 2**255}
        for sign in (0, 1)
    }
    assert expected == signing._SMALL_ORDER
    assert len(expected) == 14


def _torsion() -> list[Point]:
    t8 = _decode(bytes.fromhex(_cases()[0]["pub_key"])).point
    assert t8 is not None
    return [_mul(i, t8) for i in range(8)]


def _generated(n: int, seed: int) -> list[tuple[str, bytes, bytes, bytes]]:
    """Keys A = [a]B + T_A and nonces R = [r]B + T_R with every torsion part,
    S = r + k a: the cofactorless equation holds iff T_R = -[k]T_A. Some get S + L
    (non-reduced), or A or R written with y + p or the sign bit flipped."""
    rng = random.Random(seed)
    torsion = _torsion()
    out: list[tuple[str, bytes, bytes, bytes]] = []
    for i in range(n):
        a, r = rng.randrange(1, L), rng.randrange(1, L)
        t_a, t_r = rng.randrange(8), rng.randrange(8)
        message = rng.randbytes(rng.choice((0, 1, 32, 700)))
        big_a = _add(_mul(a, B), torsion[t_a])
        public = _encode(big_a)
        k_guess = None
        if i % 2 == 0:
            # choose T_R so that the equation holds for this message
            for t_r in range(8):
                encoded_r = _encode(_add(_mul(r, B), torsion[t_r]))
                k = _k(encoded_r, public, message)
                if _same(_add(torsion[t_r], _mul(k, torsion[t_a])), IDENTITY):
                    k_guess = k
                    break
        big_r = _add(_mul(r, B), torsion[t_r])
        encoded_r = _encode(big_r)
        k = k_guess if k_guess is not None else _k(encoded_r, public, message)
        s = (r + k * a) % L
        kind = f"T_A={t_a} T_R={t_r}"
        twist = rng.randrange(6)
        if twist == 1:
            s += L
            kind += " S+L"
        elif twist == 2:
            public = (int.from_bytes(public, "little") ^ 1 << 255).to_bytes(32, "little")
            kind += " A sign flipped"
        elif twist == 3:
            encoded_r = (int.from_bytes(encoded_r, "little") ^ 1 << 255).to_bytes(32, "little")
            kind += " R sign flipped"
        signature = encoded_r + s.to_bytes(32, "little")
        out.append((kind, public, signature, message))
    return out


def _non_canonical_points() -> list[bytes]:
    """Every encoding y + p (y = 2 … 18) that decodes to a point: not small order."""
    found = []
    for y in range(2, 19):
        for sign in (0, 1):
            data = (y + P | sign << 255).to_bytes(32, "little")
            if _decode(data).point is not None:
                found.append(data)
    return found


def test_generated_mixed_order_cases_get_one_answer_from_every_verifier() -> None:
    accepted = refused = 0
    for kind, public, signature, message in _generated(48, seed=1):
        answers = {
            "openssl": verify_openssl(public, signature, message),
            "libsodium": verify_sodium(public, signature, message),
            "reference": reference_verify(public, signature, message),
        }
        assert len(set(answers.values())) == 1, (kind, answers)
        accepted += answers["reference"]
        refused += not answers["reference"]
    # the generator makes both kinds; a test whose cases all pass would hold nothing
    assert accepted >= 5 and refused >= 5


def test_non_canonical_encodings_of_large_points_are_refused_by_both() -> None:
    """A with y >= p is refused by the pre-check; R with y >= p cannot equal the
    canonical encoding of [S]B - [k]A, so the equation fails in both libraries."""
    points = _non_canonical_points()
    assert points, "some y + p (2 <= y <= 18) is on the curve"
    priv = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = public_key_bytes(priv.public_key())
    signature = priv.sign(b"m")
    for data in points:
        assert not verify_openssl(data, signature, b"m") and not verify_sodium(
            data, signature, b"m"
        )
        forged = data + signature[32:]
        assert verify_openssl(public, forged, b"m") == verify_sodium(public, forged, b"m") is False


def test_ordinary_signatures_verify_and_tampering_fails() -> None:
    priv = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ordinary").digest())
    key = priv.public_key()
    message = b'{"type":"create"}'
    signature = priv.sign(message)
    assert verify(key, signature, message) and verify(public_key_bytes(key), signature, message)
    assert not verify(key, signature, message + b" ")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify(key, flipped, message)
    # S + L: the same point equation, refused as non-reduced by every verifier
    s_plus_l = signature[:32] + (int.from_bytes(signature[32:], "little") + L).to_bytes(
        32, "little"
    )
    assert bare_openssl(public_key_bytes(key), signature, message)
    assert not verify(key, s_plus_l, message)
    assert not verify_openssl(public_key_bytes(key), s_plus_l, message)
    assert not verify(key, signature[:63], message)
