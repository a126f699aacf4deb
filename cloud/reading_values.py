"""A reading's measured values, read back from its sealed batch blob.

SQL keeps only where a reading's signed leaf is and which measurements it carries (models.Reading); a caller
allowed to see the values gets them decoded from the leaf itself, so there is no second copy to leak at rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from carbontrace_protocol import views
from cloud import models
from cloud.ledger import Ledger
from cloud.stored_batches import BlobUnreadable, open_stored_batch


class IndexDisagrees(BlobUnreadable):
    """The leaf a reading row points at is not that reading: the SQL index and the blob differ."""


def reading_values(ledger: Ledger, session: Session, rows: Iterable[models.Reading]) -> dict[int, dict[str, Any]]:
    """views.READING_FIELDS of each row's signed reading, by row id; each batch blob is fetched and opened once."""
    leaves: dict[str, list[bytes]] = {}
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.batch_id not in leaves:
            batch = session.get(models.Batch, row.batch_id)
            assert batch is not None  # readings.batch_id is a foreign key
            leaves[row.batch_id] = open_stored_batch(ledger, row.batch_id, batch.cid).batch.leaves
        kind, content = views.leaf_content(leaves[row.batch_id][row.leaf_index])
        if kind != views.KIND_READING or (content["device_id"], content["seq"]) != (row.device_id, row.seq):
            raise IndexDisagrees(row.batch_id, f"leaf {row.leaf_index} is not {row.device_id} seq {row.seq}")
        out[row.id] = {name: content[name] for name in views.READING_FIELDS}
    return out
