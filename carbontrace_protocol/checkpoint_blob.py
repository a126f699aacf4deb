"""The checkpoint blob: what the chain's checkpoint cid names, one definition for the cloud that writes it and
every reader (the cloud's recovery from the chain, cloud/chain_recovery.py).

A canonical CBOR map of

  "checkpoint"   the signed checkpoint (carbontrace_protocol.checkpoint)
  "previous"     {"size": tree size, "root": 32-byte root} of the checkpoint before, or null for the first
  "consistency"  [32-byte hashes]: the RFC 9162 consistency proof from "previous" to this checkpoint
  "batches"      [cid text, ...]: the content-store cid of the (sealed) batch blob of each log leaf this
                 checkpoint adds, in log order (leaves previous.size .. size-1), each cid once

Blobs written before "batches" existed have only the first three fields; they are read, and say so
(``batches`` is None): the batches of such a checkpoint cannot be found from the chain alone. Any other field,
type or value is ``MalformedCheckpointBlob``.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbontrace_protocol import cbor
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError

_FIELDS = frozenset({"checkpoint", "previous", "consistency"})
_FIELDS_WITH_BATCHES = _FIELDS | {"batches"}
MAX_CID_LENGTH = 64  # the registry's bound on a cid (carbontrace_protocol.anchor_commitment)


class MalformedCheckpointBlob(ProtocolError):
    reason = "malformed_checkpoint_blob"


@dataclass(frozen=True)
class CheckpointBlob:
    signed: bytes  # the signed checkpoint, not yet parsed or verified
    previous: tuple[int, bytes] | None  # (size, root) of the checkpoint before
    consistency: tuple[bytes, ...]
    batches: tuple[str, ...] | None  # None: written before the field existed


def encode(signed: bytes, previous: tuple[int, bytes] | None, consistency: list[bytes], batches: list[str]) -> bytes:
    return cbor.encode({
        "checkpoint": signed,
        "previous": None if previous is None else {"size": previous[0], "root": previous[1]},
        "consistency": list(consistency),
        "batches": list(batches),
    })


def _hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def parse(blob: bytes) -> CheckpointBlob:
    try:
        item = cbor.decode(blob)
    except MalformedCBOR as err:
        raise MalformedCheckpointBlob(f"checkpoint blob is not CBOR: {err}") from err
    if not isinstance(item, dict) or set(item) not in (_FIELDS, _FIELDS_WITH_BATCHES):
        raise MalformedCheckpointBlob(f"checkpoint blob must be a map of exactly {sorted(_FIELDS_WITH_BATCHES)} "
                                      f"(or, written before batches were listed, {sorted(_FIELDS)})")
    signed, previous, consistency = item["checkpoint"], item["previous"], item["consistency"]
    if not isinstance(signed, bytes):
        raise MalformedCheckpointBlob("checkpoint must be the signed checkpoint's bytes")
    parsed_previous: tuple[int, bytes] | None = None
    if previous is not None:
        if not isinstance(previous, dict) or set(previous) != {"size", "root"}:
            raise MalformedCheckpointBlob("previous must be null or a map of exactly size and root")
        size = previous["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1 or not _hash(previous["root"]):
            raise MalformedCheckpointBlob("previous size must be a positive integer and root a 32-byte hash")
        parsed_previous = (size, previous["root"])
    if not isinstance(consistency, list) or not all(_hash(h) for h in consistency):
        raise MalformedCheckpointBlob("consistency must be a list of 32-byte hashes")
    batches = item.get("batches")
    if batches is not None and (
        not isinstance(batches, list)
        or not all(isinstance(c, str) and c.isascii() and c.isalnum() and 0 < len(c) <= MAX_CID_LENGTH
                   for c in batches)
    ):
        raise MalformedCheckpointBlob(f"batches must be a list of cids (alphanumeric text, 1..{MAX_CID_LENGTH})")
    if "batches" in item and batches is None:
        raise MalformedCheckpointBlob("batches must be a list of cids, not null")
    if batches is not None and len(set(batches)) != len(batches):
        # each leaf is another batch, and each batch blob names its own batch: one cid twice is no log's
        seen: set[str] = set()
        for cid in batches:
            if cid in seen:
                raise MalformedCheckpointBlob(f"batches lists cid {cid} more than once")
            seen.add(cid)
    if cbor.encode(item) != bytes(blob):
        raise MalformedCheckpointBlob("checkpoint blob is not in canonical CBOR")
    return CheckpointBlob(bytes(signed), parsed_previous, tuple(consistency),
                          None if batches is None else tuple(batches))
