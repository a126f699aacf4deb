"""The append-only log (RFC 9162) kept in SQL: one leaf per accepted batch = its signed batch header.

Only perfect-subtree hashes are stored (what `merkle.CompactRange.append` emits), so appending costs
O(log N) rows and any root or proof is assembled from O(log N) of them with `merkle.perfect_range_root`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from carbontrace_protocol import merkle
from cloud.models import LogNode, LogState


def peak_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up a tree of ``size`` leaves, largest first."""
    peaks: list[tuple[int, int]] = []
    pos = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            peaks.append((level, pos >> level))
            pos += 1 << level
    return peaks


class SqlLog:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._cache: dict[tuple[int, int], bytes] = {}

    def size(self) -> int:
        state = self.session.get(LogState, 1)
        return state.size if state is not None else 0

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            row = self.session.get(LogNode, key)
            if row is None:
                raise LookupError(f"log node {key} missing")
            self._cache[key] = row.hash
        return self._cache[key]

    def _prefetch(self, keys: list[tuple[int, int]]) -> None:
        wanted = [k for k in keys if k not in self._cache]
        if wanted:
            # OR of key equalities, not a row-value IN: SQLite answers that with one primary-key probe per node
            # (its row-value IN scanned the table: 3 ms a proof at 10^4 leaves); PostgreSQL with a BitmapOr
            matches = [and_(LogNode.level == level, LogNode.index == index) for level, index in set(wanted)]
            rows = self.session.execute(select(LogNode.level, LogNode.index, LogNode.hash).where(or_(*matches)))
            for level, index, digest in rows:
                self._cache[(level, index)] = digest

    def append(self, leaf_data: bytes) -> int:
        """Append one leaf inside the caller's transaction; returns its index. Serialized by a row lock."""
        state = self.session.execute(select(LogState).where(LogState.id == 1).with_for_update()).scalar_one_or_none()
        if state is None:
            state = LogState(id=1, size=0)
            self.session.add(state)
        size = state.size
        peaks = peak_positions(size)
        self._prefetch(peaks)
        compact = merkle.CompactRange(size, [self.node(level, index) for level, index in peaks])
        for level, index, digest in compact.append(merkle.leaf_hash(leaf_data)):
            self.session.add(LogNode(level=level, index=index, hash=digest))
            self._cache[(level, index)] = digest
        state.size = size + 1
        return size

    def range_root(self, lo: int, hi: int) -> bytes:
        return merkle.perfect_range_root(self.node, lo, hi)

    def root(self, size: int | None = None) -> bytes:
        size = self.size() if size is None else size
        if size == 0:
            return merkle.EMPTY_ROOT
        return self.range_root(0, size)

    def leaf_hash(self, index: int) -> bytes:
        return self.node(0, index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._prefetch(_nodes_read(lambda root: merkle.inclusion_proof_from(root, index, size)))
        return list(merkle.inclusion_proof_from(self.range_root, index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._prefetch(_nodes_read(lambda root: merkle.consistency_proof_from(root, size1, size2)))
        return list(merkle.consistency_proof_from(self.range_root, size1, size2))


_PLACEHOLDER = bytes(32)


def _nodes_read(proof: Callable[[Callable[[int, int], bytes]], Iterable[bytes]]) -> list[tuple[int, int]]:
    """The (level, index) of every stored node a proof reads, found by a dry run on placeholder hashes: which
    nodes a proof needs depends only on the positions, so they come in one indexed query instead of one each."""
    wanted: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return _PLACEHOLDER

    list(proof(lambda lo, hi: merkle.perfect_range_root(record, lo, hi)))
    return wanted
