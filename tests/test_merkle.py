"""ledger/merkle.py against the reference vectors and an independent implementation.

1. The transparency-dev/merkle reference vectors (tests/vectors/merkle/
   transparency-dev.json, transcribed from proof/verify_test.go, which names
   its commit): the roots of the trees of the first 1..8 leaves, and the
   inclusion and consistency proofs, generated here from a stored tree and
   checked. Every corrupted probe that verify_test.go derives from them —
   index off by one either way and ``^ 2``, tree size doubled and halved,
   wrong leaf or root, garbage or a root added before or after, a bit flipped
   in each proof element, an element removed or inserted — must fail.
2. pymerkle (PyPI, an independent RFC 9162 implementation): the same roots
   for every size up to 70, our audit paths equal to its paths, and each side's
   proofs accepted by the other's verifier.
3. Fail closed: every malformed input (wrong types, wrong lengths, bools as
   integers, strings as proofs, sizes out of range) answers False, never raises.

Hand-worked example (RFC 9162 §2.1.3, tree of 3 leaves d0 d1 d2)::

          root = H(0x01 || n01 || L2)
           /                \\
    n01 = H(0x01||L0||L1)    L2
      /      \\
    L0        L1            Li = H(0x00 || di)

  PATH(0, D[3]) = [L1, L2]: the sibling leaf first, then the root's other child;
  PATH(2, D[3]) = [n01]; stored hashes in append order: L0, L1, n01, L2
  (indexes 0, 1, 2, 3 = stored_hash_index(0,0), (0,1), (1,0), (0,2)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymerkle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    check_consistency,
    check_inclusion,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "merkle" / "transparency-dev.json").read_text()
)
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]
SOME_HASH = bytes.fromhex(VECTORS["sha256_some_hash"])
EMPTY_TREE_HASH = bytes.fromhex(VECTORS["sha256_empty_tree_hash"])


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class StoredTree:
    """A tree kept the way the database keeps it: stored hashes in append order."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.stored: list[bytes] = []
        self.frontier: list[bytes] = []
        self.size = 0
        self.reads: list[list[int]] = []
        self.append(leaves)

    def append(self, leaves: Sequence[bytes]) -> None:
        assert len(self.stored) == merkle.stored_hash_count(self.size)
        new, self.frontier = merkle.append_hashes(self.frontier, self.size, leaves)
        self.stored.extend(new)
        self.size += len(leaves)
        assert len(self.stored) == merkle.stored_hash_count(self.size)

    def read(self, ids: Sequence[int]) -> list[bytes]:
        self.reads.append(list(ids))
        return [self.stored[i] for i in ids]


REFERENCE = StoredTree(LEAF_HASHES)


# --- 1. the reference vectors ----------------------------------------------------


def test_the_vectors_name_their_source() -> None:
    source = VECTORS["source"]
    assert source["repository"] == "https://github.com/transparency-dev/merkle"
    assert source["path"] == "proof/verify_test.go"
    assert len(source["commit"]) == 40
    assert EMPTY_TREE_HASH == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_first_n_leaves(size: int) -> None:
    assert merkle.root_of(LEAF_HASHES[:size]) == ROOTS[size - 1]
    assert merkle.tree_root(size, REFERENCE.read) == ROOTS[size - 1]
    assert merkle.root_of([]) == EMPTY_ROOT


def test_the_hand_worked_three_leaf_tree() -> None:
    l0, l1, l2 = LEAF_HASHES[:3]
    n01 = node_hash(l0, l1)
    assert merkle.root_of([l0, l1, l2]) == node_hash(n01, l2) == ROOTS[2]
    tree = StoredTree([l0, l1, l2])
    assert tree.stored == [l0, l1, n01, l2]
    assert [merkle.stored_hash_index(*x) for x in [(0, 0), (0, 1), (1, 0), (0, 2)]] == [0, 1, 2, 3]
    assert merkle.inclusion_proof(0, 3, tree.read) == [l1, l2]
    assert merkle.inclusion_proof(2, 3, tree.read) == [n01]


INCLUSION = [p for p in VECTORS["inclusion_proofs"] if p["size"] > 0]
CONSISTENCY = VECTORS["consistency_proofs"]


@pytest.mark.parametrize("vector", INCLUSION, ids=lambda v: f"leaf{v['leaf']}-of-{v['size']}")
def test_inclusion_proofs_are_the_reference_ones(vector: dict[str, Any]) -> None:
    index, size = vector["leaf"] - 1, vector["size"]  # the Go vectors' leaf is 1-based
    proof = [h(x) for x in vector["proof"]]
    assert merkle.inclusion_proof(index, size, REFERENCE.read) == proof
    assert (
        merkle.root_from_inclusion_proof(index, size, LEAF_HASHES[index], proof) == ROOTS[size - 1]
    )
    check_inclusion(index, size, LEAF_HASHES[index], proof, ROOTS[size - 1])


@pytest.mark.parametrize("vector", CONSISTENCY, ids=lambda v: f"{v['size1']}-to-{v['size2']}")
def test_consistency_proofs_are_the_reference_ones(vector: dict[str, Any]) -> None:
    first, second = vector["size1"], vector["size2"]
    proof = [h(x) for x in vector["proof"]]
    assert merkle.consistency_proof(first, second, REFERENCE.read) == proof
    check_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)


@dataclass(frozen=True)
class InclusionProbe:
    index: Any
    size: Any
    root: Any
    leaf: Any
    proof: Any
    desc: str


def corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[InclusionProbe]:
    """verify_test.go's corruptInclusionProof, rule for rule."""
    probes = [
        InclusionProbe(index - 1, size, root, leaf, proof, "leafIndex - 1"),
        InclusionProbe(index + 1, size, root, leaf, proof, "leafIndex + 1"),
        InclusionProbe(index ^ 2, size, root, leaf, proof, "leafIndex ^ 2"),
        InclusionProbe(index, size * 2, root, leaf, proof, "treeSize * 2"),
        InclusionProbe(index, size // 2, root, leaf, proof, "treeSize / 2"),
        InclusionProbe(index, size, root, b"WrongLeaf", proof, "wrong leaf"),
        InclusionProbe(index, size, EMPTY_TREE_HASH, leaf, proof, "empty root"),
        InclusionProbe(index, size, SOME_HASH, leaf, proof, "random root"),
        InclusionProbe(index, size, root, leaf, [*proof, b""], "trailing garbage"),
        InclusionProbe(index, size, root, leaf, [*proof, root], "trailing root"),
        InclusionProbe(index, size, root, leaf, [b"", *proof], "preceding garbage"),
        InclusionProbe(index, size, root, leaf, [root, *proof], "preceding root"),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append(InclusionProbe(index, size, root, leaf, wrong, f"modified proof[{i}] bit 3"))
    if proof:
        probes.append(InclusionProbe(index, size, root, leaf, proof[:-1], "removed component"))
    if len(proof) > 1:
        wrong = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(InclusionProbe(index, size, root, leaf, wrong, "inserted component"))
    return probes


@pytest.mark.parametrize("vector", INCLUSION, ids=lambda v: f"leaf{v['leaf']}-of-{v['size']}")
def test_every_corrupted_inclusion_probe_fails(vector: dict[str, Any]) -> None:
    index, size = vector["leaf"] - 1, vector["size"]
    proof = [h(x) for x in vector["proof"]]
    probes = corrupt_inclusion(index, size, proof, ROOTS[size - 1], LEAF_HASHES[index])
    assert len(probes) >= 12
    accepted = [
        p.desc for p in probes if verify_inclusion(p.index, p.size, p.leaf, p.proof, p.root)
    ]
    assert accepted == [], f"corrupted probes accepted: {accepted}"
    for p in probes:  # and check_* says why, with ProofError only
        with pytest.raises(ProofError):
            check_inclusion(p.index, p.size, p.leaf, p.proof, p.root)


@dataclass(frozen=True)
class ConsistencyProbe:
    first: Any
    second: Any
    root1: Any
    root2: Any
    proof: Any
    desc: str


def corrupt_consistency(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[ConsistencyProbe]:
    """verify_test.go's corruptConsistencyProof, rule for rule."""
    P = ConsistencyProbe
    probes = [
        P(first - 1, second, root1, root2, proof, "size1 - 1"),
        P(first + 1, second, root1, root2, proof, "size1 + 1"),
        P(first ^ 2, second, root1, root2, proof, "size1 ^ 2"),
        P(first, second * 2, root1, root2, proof, "size2 * 2"),
        P(first, second // 2, root1, root2, proof, "size2 / 2"),
        P(first, second, b"WrongRoot", root2, proof, "wrong root1"),
        P(first, second, root1, b"WrongRoot", proof, "wrong root2"),
        P(first, second, root2, root1, proof, "swapped roots"),
        P(first, second, root1, root2, [], "empty proof"),
        P(first, second, root1, root2, [*proof, b""], "trailing garbage"),
        P(first, second, root1, root2, [*proof, root1], "trailing root1"),
        P(first, second, root1, root2, [*proof, root2], "trailing root2"),
        P(first, second, root1, root2, [b"", *proof], "preceding garbage"),
        P(first, second, root1, root2, [root1, *proof], "preceding root1"),
        P(first, second, root1, root2, [root2, *proof], "preceding root2"),
        P(first, second, root1, root2, [proof[0], *proof], "preceding proof[0]"),
    ]
    if proof:
        probes.append(P(first, second, root1, root2, proof[:-1], "truncated proof"))
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append(P(first, second, root1, root2, wrong, f"modified proof[{i}] bit 4"))
    return probes


NONTRIVIAL = [v for v in CONSISTENCY if v["proof"]]


@pytest.mark.parametrize("vector", NONTRIVIAL, ids=lambda v: f"{v['size1']}-to-{v['size2']}")
def test_every_corrupted_consistency_probe_fails(vector: dict[str, Any]) -> None:
    first, second = vector["size1"], vector["size2"]
    proof = [h(x) for x in vector["proof"]]
    probes = corrupt_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)
    accepted = [
        p.desc for p in probes if verify_consistency(p.first, p.second, p.root1, p.root2, p.proof)
    ]
    assert accepted == [], f"corrupted probes accepted: {accepted}"


def test_removed_or_inserted_elements_fail_for_every_probe_of_every_tree() -> None:
    """Beyond the vectors: for every index and size up to 16 leaves, dropping or inserting
    any one element, or flipping any one bit of any element, makes the proof fail."""
    leaves = [leaf_hash(bytes([i])) for i in range(16)]
    tree = StoredTree(leaves)
    for size in range(1, 17):
        root = merkle.tree_root(size, tree.read)
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, tree.read)
            assert verify_inclusion(index, size, leaves[index], proof, root)
            for i in range(len(proof)):
                assert not verify_inclusion(
                    index, size, leaves[index], proof[:i] + proof[i + 1 :], root
                )
                for bit in (0, 100, 255):
                    wrong = bytearray(proof[i])
                    wrong[bit // 8] ^= 1 << (bit % 8)
                    bad = [*proof[:i], bytes(wrong), *proof[i + 1 :]]
                    assert not verify_inclusion(index, size, leaves[index], bad, root)
            for i in range(len(proof) + 1):
                bad = [*proof[:i], SOME_HASH, *proof[i:]]
                assert not verify_inclusion(index, size, leaves[index], bad, root)
            for other in range(size):
                if other != index:
                    assert not verify_inclusion(other, size, leaves[index], proof, root)


# --- the RFC's edge cases (stricter than the Go verifier, and why) -----------------


def test_degenerate_consistency_cases() -> None:
    """verify_test.go's TestVerifyConsistency table, with one deliberate difference: the Go
    verifier accepts anything from size 0 and roots that are not 32 bytes ("don't care");
    ours fails closed — from size 0 the first root must be the empty tree's."""
    r1, r2 = ROOTS[0], ROOTS[1]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 1, EMPTY_ROOT, r1, [])
    assert verify_consistency(1, 1, r1, r1, [])
    assert not verify_consistency(0, 1, r1, r2, [])  # Go: accepted ("don't care")
    assert not verify_consistency(0, 0, b"don't care 1", b"don't care 1", [])  # Go: accepted
    assert not verify_consistency(1, 1, r1, r2, [])  # one size, two roots
    assert not verify_consistency(1, 0, r1, r2, [])  # time travel to the past
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])  # empty proof
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])  # proof not empty
    assert not verify_consistency(0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])


def test_degenerate_inclusion_cases() -> None:
    """verify_test.go's TestVerifyInclusion and TestVerifyInclusionSingleEntry."""
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        assert not verify_inclusion(index, size, SOME_HASH, [], b"")
        assert not verify_inclusion(index, size, b"", [], EMPTY_TREE_HASH)
        assert not verify_inclusion(index, size, SOME_HASH, [], EMPTY_TREE_HASH)
    one = leaf_hash(b"data")
    assert verify_inclusion(0, 1, one, [], one)  # a one-leaf tree's root is its leaf
    assert not verify_inclusion(0, 1, b"", [], one)
    assert not verify_inclusion(0, 1, one, [], b"")
    assert not verify_inclusion(0, 1, b"", [], b"")


# --- 2. pymerkle, an independent implementation --------------------------------------


def _pymerkle_tree(entries: Sequence[bytes]) -> Any:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for e in entries:
        tree.append_entry(e)
    return tree


def test_pymerkle_agrees_on_every_root_and_proof() -> None:
    """pymerkle 1-indexes leaves; its inclusion path starts with the leaf itself (its
    "base"), so its path[1:] is the RFC 9162 audit path. Its consistency proofs have
    another layout, so each side checks the other's with its own verifier."""
    entries = [bytes([i % 256]) * (i % 5) for i in range(70)]
    ours = StoredTree([leaf_hash(e) for e in entries])
    theirs = _pymerkle_tree(entries)
    for size in range(1, len(entries) + 1):
        root = merkle.tree_root(size, ours.read)
        assert root == theirs.get_root(size), size
        for index in range(0, size, max(1, size // 7)):
            path = merkle.inclusion_proof(index, size, ours.read)
            proof = theirs.prove_inclusion(index + 1, size)
            assert [bytes(x) for x in proof.path[1:]] == path, (index, size)
            pymerkle.verify_inclusion(ours.stored[merkle.stored_hash_index(0, index)], root, proof)
        for first in range(0, size + 1, max(1, size // 5)):
            mine = merkle.consistency_proof(first, size, ours.read)
            first_root = merkle.tree_root(first, ours.read)
            assert verify_consistency(first, size, first_root, root, mine)
            if 0 < first < size:
                theirs_proof = theirs.prove_consistency(first, size)
                pymerkle.verify_consistency(
                    theirs.get_root(first), theirs.get_root(size), theirs_proof
                )


def test_pymerkle_rejects_what_ours_rejects() -> None:
    """A proof pymerkle made, corrupted one bit, fails both verifiers."""
    entries = [b"record %d" % i for i in range(11)]
    theirs = _pymerkle_tree(entries)
    proof = theirs.prove_inclusion(4, 11)
    path = [bytes(x) for x in proof.path[1:]]
    leaf, root = theirs.get_leaf(4), theirs.get_root(11)
    assert verify_inclusion(3, 11, leaf, path, root)
    path[1] = bytes([path[1][0] ^ 1]) + path[1][1:]
    assert not verify_inclusion(3, 11, leaf, path, root)
    proof.path[2] = path[1]
    with pytest.raises(pymerkle.InvalidProof):
        pymerkle.verify_inclusion(leaf, root, proof)


# --- stored hashes and proofs from them (property) ----------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=6),
    st.data(),
)
def test_proofs_from_a_tree_grown_in_batches(batches: list[int], data: st.DataObject) -> None:
    """However the leaves arrive, the stored tree gives the roots and proofs of a tree built
    at once, for every size it ever had, and reads each proof in one call of O(log n)."""
    tree = StoredTree()
    leaves: list[bytes] = []
    for count in batches:
        new = [leaf_hash(b"%d" % (len(leaves) + i)) for i in range(count)]
        tree.append(new)
        leaves.extend(new)
    n = len(leaves)
    if n == 0:
        return
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(0, size))
    root = merkle.root_of(leaves[:size])
    assert merkle.tree_root(size, tree.read) == root
    tree.reads.clear()
    proof = merkle.inclusion_proof(index, size, tree.read)
    assert len(tree.reads) == 1 and len(tree.reads[0]) <= 2 * max(1, size.bit_length())
    assert verify_inclusion(index, size, leaves[index], proof, root)
    consistency = merkle.consistency_proof(first, size, tree.read)
    assert verify_consistency(first, size, merkle.root_of(leaves[:first]), root, consistency)


def test_stored_hash_indexes_are_the_append_order() -> None:
    """Every (level, n) of a tree of 64 leaves has the index at which append_hashes wrote it."""
    leaves = [leaf_hash(bytes([i])) for i in range(64)]
    tree = StoredTree(leaves)
    for level in range(7):
        for n in range(64 >> level):
            lo, hi = n << level, (n + 1) << level
            assert tree.stored[merkle.stored_hash_index(level, n)] == merkle.root_of(leaves[lo:hi])


@settings(max_examples=500)
@given(st.integers(1, 2**53 - 1).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_an_inclusion_proof_needs_only_siblings_and_the_frontier(args: tuple[int, int]) -> None:
    """What lets one statement read a proof while it finds the record (merkle_log.py)."""
    index, size = args
    needed = set(merkle.plan(merkle.inclusion_ranges(index, size)).indexes)
    given_ = set(merkle.sibling_indexes(index, size)) | set(merkle.frontier_indexes(size))
    assert needed <= given_
    assert len(given_) <= 2 * size.bit_length()


def test_siblings_and_frontier_cover_every_proof_of_small_trees() -> None:
    for size in range(1, 130):
        frontier = set(merkle.frontier_indexes(size))
        for index in range(size):
            needed = set(merkle.plan(merkle.inclusion_ranges(index, size)).indexes)
            siblings = merkle.sibling_indexes(index, size)
            assert needed <= set(siblings) | frontier, (index, size)
            assert all(i < merkle.stored_hash_count(size) for i in siblings)


def test_a_missing_stored_hash_is_an_error_not_a_wrong_proof() -> None:
    tree = StoredTree(LEAF_HASHES)
    with pytest.raises(ProofError, match="missing stored hashes"):
        merkle.inclusion_proof(0, 8, lambda ids: [tree.stored[i] for i in ids][:-1])
    with pytest.raises(ProofError):
        merkle.append_hashes([], 3, [LEAF_HASHES[0]])  # a size-3 tree has 2 frontier hashes


# --- 3. fail closed on malformed input ------------------------------------------------


GOOD = INCLUSION[2]  # leaf 6 of 8
G_INDEX, G_SIZE = GOOD["leaf"] - 1, GOOD["size"]
G_PROOF = [h(x) for x in GOOD["proof"]]
G_LEAF, G_ROOT = LEAF_HASHES[G_INDEX], ROOTS[G_SIZE - 1]

MALFORMED_INCLUSION: list[tuple[str, tuple[Any, ...]]] = [
    ("index is a bool", (True, G_SIZE, G_LEAF, G_PROOF, G_ROOT)),
    ("index is a string", (str(G_INDEX), G_SIZE, G_LEAF, G_PROOF, G_ROOT)),
    ("index is a float", (float(G_INDEX), G_SIZE, G_LEAF, G_PROOF, G_ROOT)),
    ("index is None", (None, G_SIZE, G_LEAF, G_PROOF, G_ROOT)),
    ("negative index", (-1, G_SIZE, G_LEAF, G_PROOF, G_ROOT)),
    ("size is None", (G_INDEX, None, G_LEAF, G_PROOF, G_ROOT)),
    ("size beyond 2^63", (G_INDEX, 2**64, G_LEAF, G_PROOF, G_ROOT)),
    ("leaf is hex text", (G_INDEX, G_SIZE, G_LEAF.hex(), G_PROOF, G_ROOT)),
    ("leaf too long", (G_INDEX, G_SIZE, G_LEAF + b"\0", G_PROOF, G_ROOT)),
    ("root is a bytearray", (G_INDEX, G_SIZE, G_LEAF, G_PROOF, bytearray(G_ROOT))),
    ("proof is None", (G_INDEX, G_SIZE, G_LEAF, None, G_ROOT)),
    ("proof is a string", (G_INDEX, G_SIZE, G_LEAF, "abc", G_ROOT)),
    ("proof is bytes", (G_INDEX, G_SIZE, G_LEAF, b"".join(G_PROOF), G_ROOT)),
    ("proof of hex strings", (G_INDEX, G_SIZE, G_LEAF, [x.hex() for x in G_PROOF], G_ROOT)),
    ("proof holds None", (G_INDEX, G_SIZE, G_LEAF, [None, *G_PROOF[1:]], G_ROOT)),
    ("proof is a generator", (G_INDEX, G_SIZE, G_LEAF, iter(G_PROOF), G_ROOT)),
    ("proof is a dict", (G_INDEX, G_SIZE, G_LEAF, dict(enumerate(G_PROOF)), G_ROOT)),
    ("a short hash", (G_INDEX, G_SIZE, G_LEAF, [G_PROOF[0][:31], *G_PROOF[1:]], G_ROOT)),
    ("a 64-element proof", (G_INDEX, G_SIZE, G_LEAF, G_PROOF * 22, G_ROOT)),
]


def test_the_good_proof_verifies() -> None:
    assert verify_inclusion(G_INDEX, G_SIZE, G_LEAF, G_PROOF, G_ROOT)
    assert verify_inclusion(G_INDEX, G_SIZE, G_LEAF, tuple(G_PROOF), G_ROOT)


@pytest.mark.parametrize(
    "args", [a for _, a in MALFORMED_INCLUSION], ids=[d for d, _ in MALFORMED_INCLUSION]
)
def test_malformed_inclusion_input_is_refused_without_raising(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False
    with pytest.raises(ProofError):
        check_inclusion(*args)


def test_malformed_consistency_input_is_refused_without_raising() -> None:
    proof = [h(x) for x in NONTRIVIAL[1]["proof"]]  # 6 -> 8
    good = (6, 8, ROOTS[5], ROOTS[7], proof)
    assert verify_consistency(*good)
    for bad in [
        (True, 8, ROOTS[5], ROOTS[7], proof),
        (6, "8", ROOTS[5], ROOTS[7], proof),
        (6, 8, ROOTS[5].hex(), ROOTS[7], proof),
        (6, 8, ROOTS[5], None, proof),
        (6, 8, ROOTS[5], ROOTS[7], None),
        (6, 8, ROOTS[5], ROOTS[7], "proof"),
        (6, 8, ROOTS[5], ROOTS[7], [p.hex() for p in proof]),
        (-6, 8, ROOTS[5], ROOTS[7], proof),
        (6, 2**63, ROOTS[5], ROOTS[7], proof),
    ]:
        assert verify_consistency(*bad) is False, bad
        with pytest.raises(ProofError):
            check_consistency(*bad)


def test_hashes_from_hex_accept_only_lowercase_hex_of_32_bytes() -> None:
    good = ROOTS[0].hex()
    assert merkle.hash_from_hex(good) == ROOTS[0]
    assert merkle.hashes_from_hex([good, good]) == [ROOTS[0], ROOTS[0]]
    for bad in [good.upper(), good[:-1], good + "0", " " + good[1:], good[:-2] + "zz", None, 5]:
        with pytest.raises(ProofError):
            merkle.hash_from_hex(bad)
    with pytest.raises(ProofError):
        merkle.hashes_from_hex(good)
    with pytest.raises(ProofError):
        merkle.record_leaf(good[:-2] + " 0")
