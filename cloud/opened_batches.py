"""A bounded, in-memory LRU of opened batch blobs for trace's retrieve step.

Opening a sealed batch (HPKE unwrap + AES-GCM, then CBOR decode and one leaf hash per leaf) is most of what a
retrieve costs once the chain reads are settled (cloud/chain_facts.py). The entry is keyed by the blob's CID
and batch id: the CID is the hash of the sealed bytes, and retrieve still re-reads those bytes from the content
store and recomputes the CID every time, so a tampered or missing blob is still caught; only the open of the
very same bytes is skipped.

The opened batch holds raw readings (values SQL does not keep): it lives in this process's memory only, is never
written anywhere, and is bounded by ``capacity`` batches (Settings.trace_opened_batches; 0 keeps nothing).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from carbontrace_protocol.batch import Batch


@dataclass(frozen=True)
class OpenedBatch:
    batch: Batch
    leaf_hashes: list[bytes]


class OpenedBatches:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], OpenedBatch] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cid: str, batch_id: str) -> OpenedBatch | None:
        with self._lock:
            entry = self._entries.get((cid, batch_id))
            if entry is not None:
                self._entries.move_to_end((cid, batch_id))
            return entry

    def put(self, cid: str, batch_id: str, opened: OpenedBatch) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[(cid, batch_id)] = opened
            self._entries.move_to_end((cid, batch_id))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
