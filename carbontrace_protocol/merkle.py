"""RFC 9162 (RFC 6962) Merkle trees: hashing, inclusion and consistency proofs. MicroPython-safe.

Leaf hash SHA-256(0x00 || data), interior node SHA-256(0x01 || left || right), the RFC's unbalanced tree
for any size (never padded). Two Merkle levels use this module: the gateway's batch tree (leaves = signed
readings and aggregates) and the cloud's append-only log (leaves = batch roots).

Verification functions return True when the proof holds and raise a ``ProofError`` subclass naming the
defect otherwise (``ProofSizeError``, ``IndexOutOfRange``, ``RootMismatch``); they never return False.

Proof generation is written against ``range_root(lo, hi)``, the root of leaves [lo, hi). The list-based
functions compute it from the leaf hashes; the cloud's log computes it from stored perfect-subtree hashes
(``CompactRange`` emits them as leaves are appended), so a proof in a log of N leaves costs O(log N).
"""

import hashlib

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

from carbontrace_protocol.errors import IndexOutOfRange, ProofError, ProofSizeError, RootMismatch  # noqa: E402

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2): the RFC's k."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _bit_length(n: int) -> int:
    if n < 0:
        raise ValueError("bit length of a negative number")
    length = 0
    while n:
        n >>= 1
        length += 1
    return length


def _range_root_from_leaves(leaf_hashes: "Sequence[bytes]", lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaf_hashes[lo]
    k = _split(hi - lo)
    return node_hash(_range_root_from_leaves(leaf_hashes, lo, lo + k), _range_root_from_leaves(leaf_hashes, lo + k, hi))


def root(leaf_hashes: "Sequence[bytes]") -> bytes:
    """MTH of the given leaf hashes (SHA-256 of the empty string for no leaves)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _range_root_from_leaves(leaf_hashes, 0, len(leaf_hashes))


def _inclusion_path(range_root: "Callable[[int, int], bytes]", index: int, lo: int, hi: int) -> list[bytes]:
    # PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, leaf upwards.
    path = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(range_root(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_root(lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def inclusion_proof_from(range_root: "Callable[[int, int], bytes]", index: int, size: int) -> list[bytes]:
    """Audit path for leaf ``index`` in a tree of ``size`` leaves, given ``range_root(lo, hi)``."""
    if not 0 <= index < size:
        raise IndexOutOfRange("leaf index %d outside a tree of size %d" % (index, size))
    return _inclusion_path(range_root, index, 0, size)


def inclusion_proof(leaf_hashes: "Sequence[bytes]", index: int) -> list[bytes]:
    """Audit path (leaf upwards, RFC 9162 §2.1.3) for ``leaf_hashes[index]``."""
    return inclusion_proof_from(lambda lo, hi: _range_root_from_leaves(leaf_hashes, lo, hi), index, len(leaf_hashes))


def _check_hashes(proof: "Sequence[object]") -> None:
    for item in proof:
        if not isinstance(item, (bytes, bytearray)) or len(item) != HASH_SIZE:
            raise ProofError("every proof element must be a 32-byte hash")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: "Sequence[bytes]") -> bytes:
    """The root that ``proof`` implies for ``leaf`` at ``index`` in a tree of ``size`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise IndexOutOfRange("leaf index %d outside a tree of size %d" % (index, size))
    _check_hashes(proof)
    fn = index
    sn = size - 1
    expected = _inclusion_length(index, size)
    if len(proof) != expected:
        raise ProofSizeError("wrong inclusion proof size %d, want %d" % (len(proof), expected))
    r = leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r


def _inclusion_length(index: int, size: int) -> int:
    # inner part: bits where index and size-1 differ below their highest differing bit; border: the rest.
    inner = _bit_length(index ^ (size - 1))
    border = _popcount(index >> inner)
    return inner + border


def _popcount(n: int) -> int:
    if n < 0:
        raise ValueError("popcount of a negative number")
    count = 0
    while n:
        count += n & 1
        n >>= 1
    return count


def verify_inclusion(leaf: bytes, index: int, size: int, proof: "Sequence[bytes]", expected_root: bytes) -> bool:
    """True if ``proof`` proves ``leaf`` (a leaf hash) at ``index`` in the tree of ``size`` with ``expected_root``."""
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    if computed != expected_root:
        raise RootMismatch("inclusion proof gives root %s, want %s" % (computed.hex(), bytes(expected_root).hex()))
    return True


def _subproof(range_root: "Callable[[int, int], bytes]", m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    # SUBPROOF(m, D[lo:hi], b) of RFC 9162 §2.1.4.1, iterative.
    proof = []
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(range_root(lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(range_root(lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_root(lo, lo + k))
            lo = lo + k
            m -= k
            complete = False
    proof.reverse()
    return proof


def consistency_proof_from(range_root: "Callable[[int, int], bytes]", size1: int, size2: int) -> list[bytes]:
    """Consistency proof between tree sizes ``size1`` <= ``size2``, given ``range_root(lo, hi)``."""
    if not 0 <= size1 <= size2:
        raise IndexOutOfRange("consistency needs 0 <= size1 <= size2, got %d and %d" % (size1, size2))
    if size1 == 0 or size1 == size2:
        return []
    return _subproof(range_root, size1, 0, size2, True)


def consistency_proof(leaf_hashes: "Sequence[bytes]", size1: int, size2: int) -> list[bytes]:
    """Proof that the tree of the first ``size1`` leaves is a prefix of the tree of ``size2`` (RFC 9162 §2.1.4)."""
    if size2 > len(leaf_hashes):
        raise IndexOutOfRange("size2 %d exceeds the %d leaves given" % (size2, len(leaf_hashes)))
    return consistency_proof_from(lambda lo, hi: _range_root_from_leaves(leaf_hashes, lo, hi), size1, size2)


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: "Sequence[bytes]") -> bool:
    """True if ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2) (RFC 9162 §2.1.4.2)."""
    _check_hashes(proof)
    if not 0 <= size1 <= size2:
        raise IndexOutOfRange("consistency needs 0 <= size1 <= size2, got %d and %d" % (size1, size2))
    if size1 == size2:
        if proof:
            raise ProofSizeError("wrong consistency proof size %d, want 0" % len(proof))
        if root1 != root2:
            raise RootMismatch("equal sizes with different roots")
        return True
    if size1 == 0:
        if proof:
            raise ProofSizeError("wrong consistency proof size %d, want 0" % len(proof))
        return True
    if not proof:
        raise ProofSizeError("empty consistency proof for sizes %d and %d" % (size1, size2))
    # If size1 is a power of two, the first tree's root starts the proof.
    if size1 & (size1 - 1) == 0:
        proof = [root1] + list(proof)
    fn = size1 - 1
    sn = size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    expected = _consistency_length(size1, size2)
    if len(proof) != expected:
        raise ProofSizeError("wrong consistency proof size %d, want %d" % (len(proof), expected))
    fr = proof[0]
    sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofSizeError("consistency proof is too long")
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
        raise ProofSizeError("consistency proof is too short")
    if fr != root1:
        raise RootMismatch("consistency proof gives first root %s, want %s" % (fr.hex(), bytes(root1).hex()))
    if sr != root2:
        raise RootMismatch("consistency proof gives second root %s, want %s" % (sr.hex(), bytes(root2).hex()))
    return True


def _consistency_length(size1: int, size2: int) -> int:
    # Length of the proof as the verifier walks it (including a prepended root1 for powers of two).
    fn = size1 - 1
    sn = size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    inner = _bit_length(fn ^ sn)
    border = _popcount(fn >> inner)
    return 1 + inner + border


class CompactRange:
    """The right frontier of a growing tree: append a leaf in O(log N) without rehashing the rest.

    ``append`` returns the perfect subtrees completed by that leaf as (level, index, hash) tuples, where
    (level, index) covers leaves [index * 2**level, (index + 1) * 2**level); storing them is enough for
    ``perfect_range_root`` to answer any proof in O(log N).
    """

    def __init__(self, size: int = 0, peaks: "Sequence[bytes] | None" = None) -> None:
        self.size = size
        self.peaks = list(peaks or [])  # perfect subtree roots, largest (leftmost) first
        if len(self.peaks) != _popcount(size):
            raise ValueError("a compact range of size %d has %d peaks" % (size, _popcount(size)))

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        created = [(0, self.size, leaf)]
        h = leaf
        index = self.size
        level = 0
        while index & 1:
            h = node_hash(self.peaks.pop(), h)
            index >>= 1
            level += 1
            created.append((level, index, h))
        self.peaks.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        h = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            h = node_hash(peak, h)
        return h


def perfect_range_root(perfect_node: "Callable[[int, int], bytes]", lo: int, hi: int) -> bytes:
    """Root of leaves [lo, hi) built from perfect subtree hashes ``perfect_node(level, index)``.

    Valid for the ranges the RFC's recursion asks for (lo a multiple of the smallest power of two >= hi-lo):
    split into perfect subtrees by the binary digits of hi-lo, largest first, then fold from the right.
    """
    parts = []
    pos = lo
    remaining = hi - lo
    level = _bit_length(remaining)
    while remaining:
        level -= 1
        width = 1 << level
        if remaining >= width:
            parts.append(perfect_node(level, pos >> level))
            pos += width
            remaining -= width
    h = parts[-1]
    for part in reversed(parts[:-1]):
        h = node_hash(part, h)
    return h
