"""RFC 9162 Merkle trees: the transparency-dev / CT reference vectors, then properties on random trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbontrace_protocol import merkle
from carbontrace_protocol.errors import ProofError


@pytest.fixture(scope="module")
def rfc_vectors(vectors: Path) -> dict[str, Any]:
    return dict(json.loads((vectors / "rfc6962" / "merkle_vectors.json").read_text()))


def _leaves(v: dict[str, Any]) -> list[bytes]:
    return [merkle.leaf_hash(bytes.fromhex(x)) for x in v["leaf_inputs"]]


def test_leaf_and_node_hashes(rfc_vectors: dict[str, Any]) -> None:
    leaves = _leaves(rfc_vectors)
    levels = rfc_vectors["node_hashes_by_level"]
    assert [h.hex() for h in leaves] == levels[0]
    for level in range(1, len(levels)):
        below = [bytes.fromhex(h) for h in levels[level - 1]]
        built = [merkle.node_hash(below[2 * i], below[2 * i + 1]).hex() for i in range(len(below) // 2)]
        assert built == levels[level]


def test_every_root(rfc_vectors: dict[str, Any]) -> None:
    leaves = _leaves(rfc_vectors)
    roots = rfc_vectors["roots_by_size"]
    assert len(roots) == 9
    for size, want in roots.items():
        assert merkle.root(leaves[: int(size)]).hex() == want
        compact = merkle.CompactRange()
        for leaf in leaves[: int(size)]:
            compact.append(leaf)
        assert compact.root().hex() == want


def test_every_inclusion_proof(rfc_vectors: dict[str, Any]) -> None:
    leaves = _leaves(rfc_vectors)
    for case in rfc_vectors["inclusion_proofs"]:
        index, size = case["leaf_index"], case["tree_size"]
        proof = merkle.inclusion_proof(leaves[:size], index)
        assert [p.hex() for p in proof] == case["proof"]
        assert merkle.verify_inclusion(
            bytes.fromhex(case["leaf_hash"]), index, size, [bytes.fromhex(p) for p in case["proof"]],
            bytes.fromhex(case["root"]),
        )


def test_every_consistency_proof(rfc_vectors: dict[str, Any]) -> None:
    leaves = _leaves(rfc_vectors)
    for case in rfc_vectors["consistency_proofs"]:
        size1, size2 = case["size1"], case["size2"]
        proof = merkle.consistency_proof(leaves, size1, size2)
        assert [p.hex() for p in proof] == case["proof"]
        assert merkle.verify_consistency(
            size1, size2, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"]),
            [bytes.fromhex(p) for p in case["proof"]],
        )


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _rejected(check: Any) -> bool:
    try:
        check()
    except ProofError:
        return True
    return False


sizes = st.integers(min_value=1, max_value=70)


@settings(max_examples=120, deadline=None)
@given(size=sizes, data=st.data())
def test_inclusion_proofs_hold_and_every_bit_flip_fails(size: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = merkle.root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(leaves, index)
    assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    assert _rejected(lambda: merkle.verify_inclusion(_flip(leaves[index], bit), index, size, proof, root))
    assert _rejected(lambda: merkle.verify_inclusion(leaves[index], index, size, proof, _flip(root, bit)))
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        assert _rejected(lambda: merkle.verify_inclusion(leaves[index], index, size, bad, root))
        assert _rejected(lambda: merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root))
    assert _rejected(lambda: merkle.verify_inclusion(leaves[index], index, size, [*proof, root], root))
    # Any other index or size fails, single-bit changes included.
    for other_index in {index ^ (1 << b) for b in range(7)}:
        if other_index != index and 0 <= other_index < size and leaves[other_index] != leaves[index]:
            assert _rejected(lambda i=other_index: merkle.verify_inclusion(leaves[index], i, size, proof, root))
    # A changed size is rejected whenever it changes the proof's shape. Where the shape is the same (leaf 0
    # of sizes 5 and 6), the pure check cannot tell: a root means something only with its size, which is why
    # checkpoints sign (size, root) together and a bundle is checked against the signed pair.
    for other_size in {size ^ (1 << b) for b in range(7)}:
        if other_size != size and (other_size <= index or merkle._inclusion_length(index, other_size) != len(proof)):
            assert _rejected(lambda s=other_size: merkle.verify_inclusion(leaves[index], index, s, proof, root))


@settings(max_examples=120, deadline=None)
@given(size2=sizes, data=st.data())
def test_consistency_proofs_hold_and_every_bit_flip_fails(size2: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size2)]
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    root1, root2 = merkle.root(leaves[:size1]), merkle.root(leaves)
    proof = merkle.consistency_proof(leaves, size1, size2)
    assert merkle.verify_consistency(size1, size2, root1, root2, proof)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    assert _rejected(lambda: merkle.verify_consistency(size1, size2, _flip(root1, bit), root2, proof))
    assert _rejected(lambda: merkle.verify_consistency(size1, size2, root1, _flip(root2, bit), proof))
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        assert _rejected(lambda: merkle.verify_consistency(size1, size2, root1, root2, bad))
        assert _rejected(lambda: merkle.verify_consistency(size1, size2, root1, root2, proof[1:]))
    # As for inclusion: a size change is caught when it changes the proof's shape; the signed (size, root)
    # pairs of checkpoints catch the rest.
    for other in {size1 ^ (1 << b) for b in range(7)}:
        if other != size1 and 0 < other <= size2 and _consistency_shape(other, size2) != _consistency_shape(size1, size2):
            assert _rejected(lambda s=other: merkle.verify_consistency(s, size2, root1, root2, proof))
    for other in {size2 ^ (1 << b) for b in range(7)}:
        if other != size2 and other >= size1 and _consistency_shape(size1, other) != _consistency_shape(size1, size2):
            assert _rejected(lambda s=other: merkle.verify_consistency(size1, s, root1, root2, proof))


def _consistency_shape(size1: int, size2: int) -> tuple[int, bool]:
    if size1 == size2:
        return (0, False)
    return (merkle._consistency_length(size1, size2), size1 & (size1 - 1) == 0)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=300), data=st.data())
def test_proofs_from_stored_perfect_subtrees_match_the_list_ones(size: int, data: st.DataObject) -> None:
    """The cloud log's O(log N) path (CompactRange nodes + perfect_range_root) equals the reference."""
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    nodes: dict[tuple[int, int], bytes] = {}
    compact = merkle.CompactRange()
    for leaf in leaves:
        for level, index, h in compact.append(leaf):
            nodes[(level, index)] = h
    assert compact.root() == merkle.root(leaves)

    def range_root(lo: int, hi: int) -> bytes:
        return bytes(merkle.perfect_range_root(lambda lv, ix: nodes[(lv, ix)], lo, hi))

    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert merkle.inclusion_proof_from(range_root, index, size) == merkle.inclusion_proof(leaves, index)
    size1 = data.draw(st.integers(min_value=0, max_value=size))
    assert merkle.consistency_proof_from(range_root, size1, size) == merkle.consistency_proof(leaves, size1, size)
    restored = merkle.CompactRange(compact.size, compact.peaks)
    assert restored.root() == compact.root()


def test_typed_errors_name_the_defect() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(5)]
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, 2)
    with pytest.raises(merkle.ProofSizeError, match="wrong inclusion proof size 2, want 3"):
        merkle.verify_inclusion(leaves[2], 2, 5, proof[:2], root)
    with pytest.raises(merkle.IndexOutOfRange):
        merkle.verify_inclusion(leaves[2], 5, 5, proof, root)
    with pytest.raises(merkle.RootMismatch):
        merkle.verify_inclusion(leaves[3], 2, 5, proof, root)
    assert merkle.root([]) == merkle.EMPTY_ROOT
