"""One reading's proof bundle as the cloud writes it (a typed ``ProofBundle``) at a large log, in JSON and in CBOR.

The bundle is a real one: three keys, the signed reading, its batch of ``READINGS_PER_BATCH`` readings, the batch
header at the middle of a log of ``log_leaves`` leaves, the checkpoint that first covers it (one checkpoint per
``CHECKPOINT_INTERVAL`` log leaves) with both consistency proofs, and the newest checkpoint at the log's full
size. It verifies (``verify_bundle``) against the chain facts built beside it.

A log of 10^7 leaves need not be built to prove one leaf of it: a verifier only sees the hashes of the
subtrees beside the paths it checks. ``SparseLog`` computes every subtree that holds a leaf some proof or root
is about (the batch header, the last leaf of each checkpoint's tree) from its children and stands any other
perfect subtree in by a fixed pseudo-random hash, as a log whose other leaves are other batches' headers would
give: the proofs have the lengths and the roots the relations a real log of that size has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from carbontrace.benchmarks.common import DeviceKey
from carbontrace_protocol import cbor, checkpoint_blob, cose, merkle, p256
from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol.batch import batch_id, build_batch
from carbontrace_protocol.bundle_wire import ProofHashTable
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.ids import (
    CLOUD_SIGNER,
    KEY_ACTIVE,
    SIGNER_CLOUD,
    SIGNER_DEVICE,
    SIGNER_GATEWAY,
    key_fingerprint,
)
from carbontrace_protocol.proof_bundle import (
    BatchEntry,
    CheckpointEntry,
    ItemEntry,
    KeyEntry,
    NewestAnchor,
    ProofBundle,
    Query,
    Trust,
)
from carbontrace_protocol.proof_verify import ChainCheckpoint, ChainKey
from carbontrace_protocol.reading import decode_payload
from carbontrace_protocol.recorded_chain import RecordedChain
from carbontrace_protocol.views import KIND_READING, DataType, reading_content, view

READINGS_PER_BATCH = 100
CHECKPOINT_INTERVAL = 10_000  # log leaves between two anchors
ENTERPRISE = "ENT-0123456789ABCDEF"
GATEWAY = "gw-c9565325"
DEVICE = "dev-c441649a"
SITE = "site-a"
TRUST = Trust(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
START = 1_700_000_000


class SparseLog:
    """The perfect-subtree hashes of a log of ``size`` leaves in which only the leaves at ``known`` matter."""

    def __init__(self, leaves: dict[int, bytes], known: Iterable[int]) -> None:
        self.leaves = leaves  # index -> leaf hash of the leaves a bundle proves
        self.known = sorted(set(known) | set(leaves))
        self._nodes: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        lo, hi = index << level, (index + 1) << level
        if not any(lo <= k < hi for k in self.known):
            return hashlib.sha256(b"other subtree %d %d" % (level, index)).digest()
        if level == 0:
            return self.leaves.get(index) or hashlib.sha256(b"other batch %d" % index).digest()
        key = (level, index)
        if key not in self._nodes:
            self._nodes[key] = merkle.node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))
        return self._nodes[key]

    def range_root(self, lo: int, hi: int) -> bytes:
        return merkle.perfect_range_root(self.node, lo, hi)

    def root(self, size: int) -> bytes:
        return self.range_root(0, size)


@dataclass(frozen=True)
class SizedBundle:
    bundle: ProofBundle
    chain: RecordedChain
    log_leaves: int

    def json_bytes(self) -> int:
        """Compact JSON (no whitespace), as /api/v1/trace/bundle sends it."""
        return len(_compact_json(self.bundle))

    def cbor_bytes(self) -> int:
        return len(self.bundle.to_cbor())

    def proof_lengths(self) -> dict[str, int]:
        """How many hashes each proof of the bundle holds."""
        checkpoint = self.bundle.checkpoints[0]
        return {
            "batch": len(self.bundle.items[0].batch_proof),
            "log": len(self.bundle.batches[0].log_proof),
            "consistency from previous": len(checkpoint.consistency_from_previous),
            "consistency to newest": len(checkpoint.consistency_to_newest),
        }


def _compact_json(bundle: ProofBundle) -> bytes:
    return json.dumps(bundle.to_json(), separators=(",", ":")).encode()


def _key(seed: bytes) -> int:
    return p256.private_key_from_bytes(hashlib.sha256(seed).digest())


def build(log_leaves: int) -> SizedBundle:
    """The bundle of one CO2 reading whose batch header is the middle leaf of a log of ``log_leaves`` leaves."""
    device = DeviceKey(DEVICE, hashlib.sha256(b"bench bundle device").digest())
    gateway_key, cloud_key = _key(b"bench bundle gateway"), _key(b"bench bundle cloud")
    gateway_public, cloud_public = bytes(p256.public_key(gateway_key)), bytes(p256.public_key(cloud_key))
    signed = [device.signed(seq, START + 10 * seq) for seq in range(READINGS_PER_BATCH)]
    window = (START, START + 10 * READINGS_PER_BATCH)
    batch = build_batch(gateway_key, GATEWAY, SITE, 7, window, signed, [], bytes(32), window[1] + 1)
    ours = log_leaves // 2
    interval = min(CHECKPOINT_INTERVAL, log_leaves // 4)  # a small log still has a checkpoint before ours
    seq = ours // interval  # the first checkpoint whose tree holds leaf ``ours``
    newest_seq = (log_leaves - 1) // interval
    sizes = {s: min((s + 1) * interval, log_leaves) for s in {seq - 1, seq, newest_seq}}
    log = SparseLog({ours: merkle.leaf_hash(batch.signed_header)}, [size - 1 for size in sizes.values()])
    cloud_fingerprint = key_fingerprint(cloud_public)
    checkpoints = {}
    for s, size in sizes.items():
        signed_cp = signed_checkpoint.sign(cloud_key, cloud_fingerprint, size, log.root(size), START + 3600 + s)
        blob = checkpoint_blob.encode(signed_cp, None, [], [])  # only its cid counts here
        checkpoints[s] = (signed_cp, cid_for(blob))
    n, m, newest = sizes[seq], sizes[seq - 1], sizes[newest_seq]
    index_in_batch = READINGS_PER_BATCH // 2
    leaf = batch.leaves[index_in_batch]
    types = frozenset({DataType.CO2})
    content = reading_content(decode_payload(cose.parse_sign1(signed[index_in_batch]).payload))
    timestamp = content["timestamp"]
    bundle = ProofBundle(
        chain_id=TRUST.chain_id,
        registry=TRUST.registry,
        query=Query(ENTERPRISE, None, DEVICE, timestamp, timestamp + 1, types, 100),
        newest=NewestAnchor(newest_seq, newest, log.root(newest)),
        keys=(
            KeyEntry("device", DEVICE, device.public),
            KeyEntry("gateway", GATEWAY, gateway_public),
            KeyEntry("cloud", CLOUD_SIGNER, cloud_public),
        ),
        checkpoints=(
            CheckpointEntry(
                seq,
                checkpoints[seq][0],
                checkpoints[seq][1],
                tuple(merkle.consistency_proof_from(log.range_root, m, n)),
                tuple(merkle.consistency_proof_from(log.range_root, n, newest)),
            ),
        ),
        batches=(
            BatchEntry(
                batch_id(GATEWAY, 7),
                batch.signed_header,
                key_fingerprint(gateway_public),
                ours,
                seq,
                tuple(merkle.inclusion_proof_from(log.range_root, ours, n)),
            ),
        ),
        items=(
            ItemEntry(
                KIND_READING,
                batch_id(GATEWAY, 7),
                index_in_batch,
                DEVICE,
                key_fingerprint(device.public),
                leaf,
                tuple(merkle.inclusion_proof(batch.leaf_hashes(), index_in_batch)),
                view(KIND_READING, content, types),
            ),
        ),
        retrieval_failures=(),
    )
    enterprise_id = hashlib.sha256(ENTERPRISE.encode()).digest()

    def on_chain(kind: int, signer: str, enterprise: bytes) -> ChainKey:
        return ChainKey(KEY_ACTIVE, kind, hashlib.sha256(signer.encode()).digest(), enterprise, 0, None)

    chain = RecordedChain(
        TRUST.chain_id,
        True,
        newest_seq + 1,
        {s: ChainCheckpoint(size, log.root(size), checkpoints[s][1]) for s, size in sizes.items()},
        {
            key_fingerprint(device.public): on_chain(SIGNER_DEVICE, DEVICE, enterprise_id),
            key_fingerprint(gateway_public): on_chain(SIGNER_GATEWAY, GATEWAY, enterprise_id),
            cloud_fingerprint: on_chain(SIGNER_CLOUD, CLOUD_SIGNER, bytes(32)),
        },
        {},
    )
    return SizedBundle(bundle, chain, log_leaves)


def cbor_breakdown(bundle: ProofBundle) -> dict[str, int]:
    """Where the CBOR bytes go: proof hashes (the bundle's table of distinct hashes and the proofs' indices into
    it), public keys, the three signed objects, the rest (keys, ids, view)."""
    item, batch, checkpoint = bundle.items[0], bundle.batches[0], bundle.checkpoints[0]
    proofs = bundle.proofs()
    table = ProofHashTable.of(proofs)
    indices = sum(len(cbor.encode([table.index(h) for h in p])) for p in proofs)
    parts = {
        "proof hashes": len(cbor.encode(table.hashes)) + indices,
        "public keys": sum(len(cbor.encode(k.public_key)) for k in bundle.keys),
        "signed reading (leaf)": len(cbor.encode(item.leaf)),
        "signed batch header": len(cbor.encode(batch.signed_header)),
        "signed checkpoint": len(cbor.encode(checkpoint.signed)),
    }
    parts["everything else"] = len(bundle.to_cbor()) - sum(parts.values())
    return parts
