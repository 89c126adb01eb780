"""The Merkle log's arithmetic: RFC 9162 §2.1 hashing, proofs, and their verification.

Pure: no database, no I/O. ledger/merkle_log.py keeps the tree in the
database and calls these functions with a *hash reader*.

Hashing (RFC 9162 §2.1.1; DESIGN.md "Records"): a leaf is
``SHA-256(0x00 || data)`` — for the ledger, ``data`` is the 32 bytes of a
record hash, and leaf ``i`` is the record at ``seq = i + 1`` — and an interior
node is ``SHA-256(0x01 || left || right)``. The root of ``n`` leaves splits
at ``k``, the largest power of two smaller than ``n``; the empty tree's root is
``SHA-256("")``.

Stored hashes (the layout of golang.org/x/mod/sumdb/tlog, "stored hash
index"): every *complete* subtree — ``2**level`` leaves starting at a
multiple of ``2**level`` — has one hash, numbered in the order an
append-only writer produces them: leaf ``i``, then each subtree that leaf
completes, lowest first. A tree of ``n`` leaves holds
``stored_hash_count(n) = 2n - popcount(n)`` of them, and appending never
changes one, so the numbers are a dense, append-only key. Any subtree the
proofs need is one stored hash or the fold of at most ``log2(n)`` of them,
so a proof costs O(log n) reads, all known before the first read (one
``WHERE id IN (...)`` query).

Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) fails closed: it checks the
types and sizes of every input, that the index lies inside the tree, and
that the proof has exactly the number of hashes RFC 9162 gives for that
index and size, before it hashes anything. ``check_*`` raise
:class:`ProofError` with the reason; ``verify_*`` answer ``True`` or
``False`` and never raise, whatever they are given.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = SHA-256()
MAX_TREE_SIZE = 2**63 - 1  # sizes travel as signed 64-bit integers (and JSON within 2^53)

HashReader = Callable[[Sequence[int]], Sequence[bytes]]
"""Reads stored hashes by their stored-hash index; one hash per index, in the order asked."""

_sha256 = hashlib.sha256
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ProofError(ValueError):
    """A proof, hash or size that does not check out; ``str()`` says which and why."""


# --- hashing (RFC 9162 §2.1.1) ---------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def record_leaf(record_hash: str) -> bytes:
    """The leaf of a record: ``SHA-256(0x00 || record hash bytes)`` (DESIGN.md "Records").

    ``record_hash`` is the record's hash as the ledger writes it: 64 lowercase hex digits.
    """
    return leaf_hash(hash_from_hex(record_hash, "a record hash"))


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaves already hashed with :func:`leaf_hash` (RFC 9162 §2.1.1).

    Linear time, constant extra space per level: it folds complete subtrees
    the way an append-only writer does (:func:`append_hashes`).
    """
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaf_hashes):
        frontier.append(leaf)
        n = i
        while n & 1:
            right = frontier.pop()
            frontier[-1] = node_hash(frontier[-1], right)
            n >>= 1
    return fold(frontier) if frontier else EMPTY_ROOT


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root over consecutive complete subtrees given left to right, largest first.

    RFC 9162 splits a range at the largest power of two below its size, so a
    range whose size has bits ``2**a > 2**b > ...`` hashes as
    ``node(h_a, node(h_b, ...))``: fold from the right.
    """
    if not hashes:
        raise ProofError("nothing to fold")
    out = hashes[-1]
    for h in reversed(hashes[:-1]):
        out = node_hash(h, out)
    return out


# --- stored hashes (golang.org/x/mod/sumdb/tlog) ----------------------------------


def stored_hash_index(level: int, n: int) -> int:
    """The stored-hash index of the subtree of ``2**level`` leaves starting at leaf
    ``n << level``: the count of hashes a writer stores before it, plus its level."""
    last = ((n + 1) << level) - 1  # the leaf whose append completes this subtree
    return 2 * last - last.bit_count() + level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of ``size`` leaves stores: ``2 * size - popcount(size)``."""
    return 2 * size - size.bit_count()


def _subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees (level, index) that make up leaves ``[lo, hi)``, left to
    right. Valid for the ranges RFC 9162's recursion produces (``lo`` a multiple of
    a power of two at least ``hi - lo``), which is every range asked for here."""
    out = []
    size = hi - lo
    while size:
        level = size.bit_length() - 1
        out.append((level, lo >> level))
        lo += 1 << level
        size -= 1 << level
    return out


def frontier_indexes(size: int) -> list[int]:
    """Stored-hash indexes of the complete subtrees that make up a tree of ``size``
    leaves, left to right (the "right frontier" an appender needs)."""
    return [stored_hash_index(level, n) for level, n in _subtrees(0, size)]


def sibling_indexes(index: int, size: int) -> list[int]:
    """Stored-hash indexes of the complete subtrees beside leaf ``index``'s ancestors: at
    each level ``l``, the subtree of ``2**l`` leaves next to the one holding the leaf, when
    it lies wholly inside a tree of ``size`` leaves.

    With :func:`frontier_indexes` of ``size`` these hold every stored hash of the leaf's
    inclusion proof (RFC 9162 §2.1.3.1): each range of the proof either sits inside a
    complete subtree, where it is such a sibling, or ends at ``size``, where it is made of
    the frontier's subtrees. merkle_log.py computes the same list in SQL, so that a proof
    can be read in the statement that finds its record; tests/test_merkle.py holds both."""
    out = []
    for level in range(size.bit_length()):
        n = (index >> level) ^ 1
        if (n + 1) << level <= size:
            out.append(stored_hash_index(level, n))
    return out


def append_hashes(
    frontier: Sequence[bytes], size: int, leaves: Sequence[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """Append ``leaves`` (leaf hashes) to a tree of ``size`` leaves whose frontier
    (:func:`frontier_indexes`) hashes are ``frontier``.

    Returns the new stored hashes — their indexes are consecutive from
    ``stored_hash_count(size)`` — and the frontier of the grown tree.
    """
    if len(frontier) != size.bit_count():
        raise ProofError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes")
    stack = list(frontier)
    new: list[bytes] = []
    for i, leaf in enumerate(leaves, size):
        new.append(leaf)
        stack.append(leaf)
        n = i
        while n & 1:  # this leaf completes the subtree of every trailing one bit
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            new.append(stack[-1])
            n >>= 1
    return new, stack


# --- proofs (RFC 9162 §2.1.3.1, §2.1.4.1) -----------------------------------------


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes make PATH(index, D[size]), in proof order
    (the leaf's sibling first, the root's other child last)."""
    _check_index(index, size)
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes make PROOF(first, D[second]) (RFC 9162
    §2.1.4.1, SUBPROOF), in proof order. Empty when ``first`` is 0 or ``second``."""
    _check_sizes(first, second)
    if first in (0, second):
        return []
    ranges = []
    lo, hi, whole = 0, second, True
    while True:
        size, m = hi - lo, first - lo
        if m == size:
            if not whole:
                ranges.append((lo, hi))
            break
        k = _largest_power_below(size)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    ranges.reverse()
    return ranges


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Which stored hashes a proof needs, and how to assemble it from them."""

    indexes: list[int]  # distinct stored-hash indexes, ascending: read these
    parts: list[list[int]]  # per proof element: the indexes to fold, left to right

    def assemble(self, read: HashReader) -> list[bytes]:
        """Read the hashes (one call) and build the proof."""
        got = read(self.indexes)
        if len(got) != len(self.indexes):
            raise ProofError("the tree is missing stored hashes the proof needs")
        by_index = dict(zip(self.indexes, got, strict=True))
        return [fold([by_index[i] for i in part]) for part in self.parts]


def plan(ranges: Sequence[tuple[int, int]]) -> ReadPlan:
    parts = [[stored_hash_index(level, n) for level, n in _subtrees(lo, hi)] for lo, hi in ranges]
    return ReadPlan(sorted({i for part in parts for i in part}), parts)


def inclusion_proof(index: int, size: int, read: HashReader) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1)."""
    return plan(inclusion_ranges(index, size)).assemble(read)


def consistency_proof(first: int, second: int, read: HashReader) -> list[bytes]:
    """The consistency proof from size ``first`` to ``second`` (RFC 9162 §2.1.4.1)."""
    return plan(consistency_ranges(first, second)).assemble(read)


def tree_root(size: int, read: HashReader) -> bytes:
    """The root of the first ``size`` leaves, from at most ``log2(size)`` stored hashes."""
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return plan([(0, size)]).assemble(read)[0]


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) ------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_size(size: object, what: str) -> None:
    if not _is_int(size):
        raise ProofError(f"the {what} must be an integer")
    assert isinstance(size, int)
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"the {what} must lie in 0..2^63-1")


def _check_index(index: object, size: object) -> None:
    _check_size(size, "tree size")
    if not _is_int(index):
        raise ProofError("the leaf index must be an integer")
    assert isinstance(index, int) and isinstance(size, int)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not inside a tree of {size} leaves")


def _check_sizes(first: object, second: object) -> None:
    _check_size(first, "first tree size")
    _check_size(second, "second tree size")
    assert isinstance(first, int) and isinstance(second, int)
    if first > second:
        raise ProofError(f"tree size {first} is larger than {second}: logs only grow")


def _check_hash(h: object, what: str) -> bytes:
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes")
    return h


def _check_proof(proof: object, expected: int) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise ProofError("the proof must be a list of hashes")
    if len(proof) != expected:
        raise ProofError(
            f"the proof has {len(proof)} hashes; RFC 9162 gives {expected} for this "
            "index and tree size"
        )
    return [_check_hash(h, f"proof hash {i}") for i, h in enumerate(proof)]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``
    (RFC 9162 §2.1.3.2 steps 1-5). Raises :class:`ProofError` on a malformed proof."""
    _check_index(index, size)
    leaf = _check_hash(leaf, "the leaf hash")
    hashes = _check_proof(proof, len(inclusion_ranges(index, size)))
    fn, sn, r = index, size - 1, leaf
    for p in hashes:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path to the root")
    return r


def check_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows ``leaf`` at ``index`` in the
    tree of ``size`` leaves whose root is ``root``."""
    root = _check_hash(root, "the root hash")
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if not hmac.compare_digest(got, root):
        raise ProofError(f"the inclusion proof for leaf {index} does not lead to the root")


def check_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows that the tree of ``first``
    leaves with root ``first_root`` is a prefix of the tree of ``second`` leaves with
    root ``second_root`` (RFC 9162 §2.1.4.2).

    Stricter than RFC 9162 on its edge cases (fail closed): both roots must be
    32 bytes; from size 0 the first root must be the empty tree's root and the
    proof empty; for equal sizes the roots must be equal and the proof empty.
    """
    _check_sizes(first, second)
    first_root = _check_hash(first_root, "the first root")
    second_root = _check_hash(second_root, "the second root")
    hashes = _check_proof(proof, len(consistency_ranges(first, second)))
    if first == 0:
        if not hmac.compare_digest(first_root, EMPTY_ROOT):
            raise ProofError("the root of an empty tree is SHA-256 of nothing")
        return
    if first == second:
        if not hmac.compare_digest(first_root, second_root):
            raise ProofError(f"two different roots for the same tree size {first}")
        return
    # RFC 9162 §2.1.4.2 step 2: a power-of-two first tree is itself a node of the second.
    if first & (first - 1) == 0:
        hashes = [first_root, *hashes]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path to the root")
    if not hmac.compare_digest(fr, first_root):
        raise ProofError(f"the consistency proof does not lead to the root of size {first}")
    if not hmac.compare_digest(sr, second_root):
        raise ProofError(f"the consistency proof does not lead to the root of size {second}")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """:func:`check_inclusion` as a yes/no answer; ``False`` for any malformed input."""
    try:
        check_inclusion(index, size, leaf, proof, root)
    except (ProofError, TypeError, ValueError, OverflowError):
        return False
    return True


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """:func:`check_consistency` as a yes/no answer; ``False`` for any malformed input."""
    try:
        check_consistency(first, second, first_root, second_root, proof)
    except (ProofError, TypeError, ValueError, OverflowError):
        return False
    return True


# --- hex, as the API carries hashes -------------------------------------------------


def hash_from_hex(text: object, what: str = "a hash") -> bytes:
    """32 bytes from 64 lowercase hex digits (DESIGN.md: hashes are lowercase hex)."""
    if not isinstance(text, str) or not _HEX64.fullmatch(text):
        raise ProofError(f"{what} must be 64 lowercase hex digits")
    return bytes.fromhex(text)


def hashes_from_hex(texts: object, what: str = "the proof") -> list[bytes]:
    """A proof's hashes from a list of lowercase hex strings."""
    if not isinstance(texts, list | tuple):
        raise ProofError(f"{what} must be a list of hex hashes")
    return [hash_from_hex(t, f"{what}'s hash {i}") for i, t in enumerate(texts)]
