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
    blob = checkpoint_blob.encode(SIGNED, (3, ROOT), [ROOT, ROOT], [CID, CID[:-1] + "a"])
    parsed = checkpoint_blob.parse(blob)
    assert (parsed.signed, parsed.previous, parsed.consistency, parsed.batches) == (
        SIGNED, (3, ROOT), (ROOT, ROOT), (CID, CID[:-1] + "a"))
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


# Hostile blobs (recover-from-chain fetches them by a cid the chain anchored; a cid match only proves these are
# the anchored bytes, and an insider can anchor any): each is MalformedCheckpointBlob with its reason, nothing
# else escapes, and size alone costs only linear time.
_VALID = {"checkpoint": SIGNED, "previous": None, "consistency": [], "batches": [CID]}


def _with(**fields: object) -> bytes:
    return cbor.encode({**_VALID, **fields})


def _nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


HOSTILE = {
    "duplicate-cid": _with(batches=[CID, CID]),  # each leaf is another batch: accepted by the old parser
    "duplicate-cid-apart": _with(batches=[CID, CID[:-1] + "a", CID]),
    "cid-non-ascii": _with(batches=["bafkrei\u0663"]),  # an Arabic-Indic digit is alnum, not a cid
    "cid-empty": _with(batches=[""]),
    "cid-int": _with(batches=[7]),
    "batches-map": _with(batches={"a": CID}),
    "batches-text": _with(batches=CID),
    "batches-tagged": _with(batches=cbor.Tag(4, [CID])),
    "consistency-tagged-hash": _with(consistency=[cbor.Tag(2, ROOT)]),
    "previous-bool-size": _with(previous={"size": True, "root": ROOT}),
    "previous-huge-size": _with(previous={"size": 2**64 - 1, "root": ROOT[:31]}),
    "previous-negative-size": _with(previous={"size": -1, "root": ROOT}),
    "checkpoint-nested": _with(checkpoint=[[[SIGNED]]]),
    "key-not-text": cbor.encode({1: SIGNED, "previous": None, "consistency": [], "batches": [CID]}),
    "float-in-batches": cbor.encode({**_VALID})[:-len(cbor.encode([CID]))] + b"\x81\xfb" + b"\x00" * 8,
    "deep": _with(batches=[]).replace(b"\x80", _nested(5000), 1),
    "deep-not-too": _with(batches=[]).replace(b"\x80", _nested(12), 1),
    "indefinite-list": _with(batches=[]).replace(b"\x80", b"\x9f\xff", 1),
    "huge-declared-list": _with(batches=[]).replace(b"\x80", b"\x9b" + b"\xff" * 8, 1),
    "huge-declared-map": b"\xbb" + b"\xff" * 8,
    "truncated": _with()[:-3],
    "trailing": _with() + b"\x00",
    "non-shortest-head": _with(batches=[]).replace(b"\x80", b"\x98\x00", 1),
    "keys-out-of-order": b"\xa4" + b"".join(cbor.encode(k) + cbor.encode(_VALID[k]) for k in sorted(_VALID)),
    "not-a-map": cbor.encode([SIGNED, None, [], [CID]]),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_blob_is_refused_with_its_reason(name: str) -> None:
    with pytest.raises(MalformedCheckpointBlob) as refused:
        checkpoint_blob.parse(HOSTILE[name])
    assert refused.value.reason == "malformed_checkpoint_blob" and str(refused.value)
    assert len(str(refused.value)) < 500


def test_a_huge_batches_list_costs_linear_time_and_a_duplicate_at_its_end_is_found() -> None:
    import time

    cids = [f"bafkrei{i:052d}" for i in range(200_000)]
    started = time.perf_counter()
    assert len(checkpoint_blob.parse(checkpoint_blob.encode(SIGNED, None, [], cids)).batches or ()) == 200_000
    with pytest.raises(MalformedCheckpointBlob, match="more than once"):
        checkpoint_blob.parse(checkpoint_blob.encode(SIGNED, None, [], [*cids, cids[0]]))
    assert time.perf_counter() - started < 20


def test_no_mutation_of_a_valid_blob_escapes_as_anything_but_its_refusal() -> None:
    import random

    rng = random.Random(20261204)
    valid = checkpoint_blob.encode(SIGNED, (3, ROOT), [ROOT], [CID, CID[:-1] + "a"])
    for _ in range(5000):
        blob = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(blob))
            choice = rng.random()
            if choice < 0.5:
                blob[at] = rng.randrange(256)
            elif choice < 0.75:
                blob.insert(at, rng.randrange(256))
            else:
                del blob[at]
        try:
            checkpoint_blob.parse(bytes(blob))
        except MalformedCheckpointBlob:
            pass
