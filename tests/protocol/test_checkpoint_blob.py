"""The checkpoint blob (carbontrace_protocol/checkpoint_blob.py): what the chain's checkpoint cid names. The blob
the cloud writes lists its batches' cids; one written before that field existed still reads (batches None);
anything else is refused with its reason."""

from __future__ import annotations

import pytest

from carbontrace_protocol import cbor, checkpoint_blob
from carbontrace_protocol.checkpoint_blob import MalformedCheckpointBlob

SIGNED = b"\x84signed checkpoint bytes"
ROOT = bytes(range(32))
CID = "bafkreigl237dm55raf5tck3qlvioocin5yuzprmuypcr6vcvaqqsaj6uyq"


def test_round_trip_with_the_batches_it_adds() -> None:
    blob = checkpoint_blob.encode(SIGNED, (3, ROOT), [ROOT, ROOT], [CID, CID])
    parsed = checkpoint_blob.parse(blob)
    assert (parsed.signed, parsed.previous, parsed.consistency, parsed.batches) == (
        SIGNED, (3, ROOT), (ROOT, ROOT), (CID, CID))
    first = checkpoint_blob.parse(checkpoint_blob.encode(SIGNED, None, [], [CID]))
    assert first.previous is None and first.batches == (CID,)


def test_a_blob_written_before_batches_were_listed_reads_without_them() -> None:
    old = cbor.encode({"checkpoint": SIGNED, "previous": {"size": 3, "root": ROOT}, "consistency": [ROOT]})
    parsed = checkpoint_blob.parse(old)
    assert parsed.batches is None and parsed.previous == (3, ROOT)


@pytest.mark.parametrize("item", [
    {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": [CID], "extra": 1},
    {"checkpoint": SIGNED, "previous": None, "batches": [CID]},
    {"checkpoint": "text", "previous": None, "consistency": [], "batches": []},
    {"checkpoint": SIGNED, "previous": {"size": 0, "root": ROOT}, "consistency": [], "batches": []},
    {"checkpoint": SIGNED, "previous": {"size": 3, "root": b"short"}, "consistency": [], "batches": []},
    {"checkpoint": SIGNED, "previous": None, "consistency": [b"short"], "batches": []},
    {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": None},
    {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": [b"bytes"]},
    {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": ["../x"]},
    {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": ["a" * 65]},
])
def test_anything_else_is_refused(item: dict[str, object]) -> None:
    with pytest.raises(MalformedCheckpointBlob) as refused:
        checkpoint_blob.parse(cbor.encode(item))
    assert refused.value.reason == "malformed_checkpoint_blob"


def test_not_cbor_is_refused() -> None:
    with pytest.raises(MalformedCheckpointBlob):
        checkpoint_blob.parse(b"\xff\x00")
