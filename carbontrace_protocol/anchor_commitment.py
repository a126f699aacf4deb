"""The checkpoint anchor's on-chain commitment: the one off-chain definition of what the registry stores.

The registry keeps one storage slot per checkpoint (gas: see contracts/CarbonTraceRegistry.sol), holding

    keccak256(tree_size as 8 bytes big-endian || root (32 bytes) || cid (its UTF-8 bytes))

which is Solidity's ``keccak256(abi.encodePacked(uint64 treeSize, bytes32 root, string cid))``. The fields
themselves travel in the CheckpointAnchored event. A chain reader takes the event's fields only once they hash
to the stored commitment (:func:`opened_checkpoint`), so a verifier still trusts contract storage alone: a
log entry of another contract, a node that answers with a wrong or stale event, or a swapped cid fails here.
The cid is last, so the packed encoding is unambiguous. CPython only (keccak comes from eth-hash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from carbontrace_protocol.errors import ProtocolError

MAX_CID_LENGTH = 64  # the contract's MAX_CID_LENGTH
MAX_TREE_SIZE = 2**48 - 1  # the contract's MAX_TREE_SIZE


class CommitmentMismatch(ProtocolError):
    """The fields offered for a checkpoint do not hash to what the chain stores for it."""

    reason = "commitment_mismatch"


@dataclass(frozen=True)
class AnchoredFields:
    """What a CheckpointAnchored event says about one checkpoint, before it is checked."""

    sequence: int
    tree_size: int
    root: bytes
    cid: str
    block_number: int  # where the node says the event is: a locator, checked only through the commitment

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> AnchoredFields:
        """The fields of a decoded CheckpointAnchored log (web3's event data: ``args`` and ``blockNumber``)."""
        args = log["args"]
        return cls(int(args["sequence"]), int(args["treeSize"]), bytes(args["root"]), str(args["cid"]),
                   int(log["blockNumber"]))


def checkpoint_commitment(tree_size: int, root: bytes, cid: str) -> bytes:
    """The 32 bytes the registry stores for a checkpoint of this size, root and cid."""
    if not 0 < tree_size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size {tree_size} is outside 1..2^48-1")
    if len(root) != 32:
        raise ValueError("a root is 32 bytes")
    cid_bytes = cid.encode("utf-8")
    if not 0 < len(cid_bytes) <= MAX_CID_LENGTH:
        raise ValueError(f"a cid is 1..{MAX_CID_LENGTH} bytes")
    return bytes(keccak(tree_size.to_bytes(8, "big") + root + cid_bytes))


def opened_checkpoint(sequence: int, stored: bytes, events: list[AnchoredFields]) -> AnchoredFields:
    """The one event for checkpoint `sequence` whose fields hash to `stored`, the chain's commitment.

    `events` are the CheckpointAnchored entries a node returned for that sequence. Entries that do not open the
    commitment are ignored (a node may return logs of a reorged-away block); none opening it is an error.
    """
    for event in events:
        if event.sequence != sequence:
            continue
        try:
            if checkpoint_commitment(event.tree_size, event.root, event.cid) == stored:
                return event
        except (ValueError, UnicodeEncodeError):
            continue
    raise CommitmentMismatch(
        f"no CheckpointAnchored event for checkpoint {sequence} opens the commitment {stored.hex()} stored on chain"
    )
