"""The one way the cloud reads a stored batch back: fetch the sealed blob by its CID, open it, decode it.

Trace's retrieve step and the raw-value reads (cloud/reading_values.py) both go through ``open_stored_batch``,
so they cannot differ on what counts as readable. The content store recomputes the CID of whatever bytes it
returns (a corrupt or swapped blob is ``CidMismatch``), so only the open of those very bytes may come from the
in-memory cache (cloud/opened_batches.py); the fetch and the CID check happen every time.
"""

from __future__ import annotations

from carbontrace_protocol.batch import decode_batch
from carbontrace_protocol.errors import ProtocolError
from cloud.content_store import ContentStoreError
from cloud.ledger import Ledger
from cloud.opened_batches import OpenedBatch


class BlobUnreadable(RuntimeError):
    """A batch blob cannot be read back (missing, corrupt, not openable with the cloud's key, not a batch): the
    API answers 503 naming the batch, trace fails its content_store step, nothing is served from elsewhere."""

    def __init__(self, batch_id: str, why: str) -> None:
        super().__init__(f"batch {batch_id}: {why}")
        self.batch_id = batch_id
        self.why = why


def open_stored_batch(ledger: Ledger, batch_id: str, cid: str) -> OpenedBatch:
    """The batch ``batch_id`` stored under ``cid``, opened, with its leaf hashes; BlobUnreadable says why not."""
    try:
        blob = ledger.store.get(cid)
    except (ContentStoreError, KeyError, ValueError) as err:
        raise BlobUnreadable(batch_id, f"blob {cid}: {type(err).__name__}: {err}") from err
    opened = ledger.opened_batches.get(cid, batch_id)
    if opened is not None:
        return opened
    try:
        plain = ledger.sealer.open(blob, batch_id)
    except ProtocolError as err:
        raise BlobUnreadable(batch_id, f"sealed blob {cid} does not open with the cloud's key: {err}") from err
    try:
        batch = decode_batch(plain)
    except ProtocolError as err:
        raise BlobUnreadable(batch_id, f"blob {cid} is not a batch: {err}") from err
    opened = OpenedBatch(batch, batch.leaf_hashes())
    ledger.opened_batches.put(cid, batch_id, opened)
    return opened
