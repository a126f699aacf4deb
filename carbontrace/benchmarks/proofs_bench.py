"""Proofs: the bytes a verifier needs for one reading and the time to check them offline, as the log grows.

A reading's proof has two Merkle levels (docs/protocol.md): its leaf in the gateway's batch tree, and the
batch's signed header in the cloud's append-only log, whose root the anchored checkpoint signs. With
``readings_per_batch`` readings per batch, a log holding N readings has N / readings_per_batch leaves. The
other log leaves stand for other batches' headers (random hashes: the verifier only sees their hashes).
The log is built the way the cloud builds it (``merkle.CompactRange`` + ``perfect_range_root``).

The bundle here is that evidence as one CBOR map (binary: the JSON bundle of docs/proof-bundle.md carries
the same items hex-encoded, about twice the bytes). Offline verification runs the protocol core's
functions (the same the bundle verifier, carbontrace_protocol/proof_verify.py, runs); the chain lookup of
the anchored root is not part of the timed work (it is a network call).

Beside it, the proof bundle itself (carbontrace_protocol/proof_bundle.py, as the cloud writes it) for one
reading at ``BUNDLE_LOG_LEAVES`` log leaves, in JSON and in its CBOR encoding, with where the CBOR bytes go
(carbontrace/benchmarks/bundle_size.py builds it; it verifies in both encodings before it is measured).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any

from carbontrace.benchmarks import bundle_size
from carbontrace.benchmarks.common import DeviceKey, Row, SectionResult, log2_slope
from carbontrace_protocol import cbor, merkle, p256
from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol.batch import build_batch, parse_header, reading_leaf
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.proof_verify import verify_bundle, verify_bundle_cbor
from carbontrace_protocol.verify import verify_es256, verify_reading

GATEWAY_ID = "gw-bench"
BUNDLE_LOG_LEAVES = 10**7
CBOR_TARGET_BYTES = 3 * 1024  # issue 14: one reading at 10^7 log leaves


class _MemoryLog:
    """The cloud log's arithmetic in memory: perfect-subtree hashes kept as ``CompactRange`` emits them."""

    def __init__(self) -> None:
        self.compact = merkle.CompactRange()
        self.nodes: dict[tuple[int, int], bytes] = {}

    def append(self, leaf_data: bytes | None = None, leaf_hash: bytes | None = None) -> int:
        index = self.compact.size
        digest = leaf_hash if leaf_hash is not None else merkle.leaf_hash(leaf_data or b"")
        for level, position, node in self.compact.append(digest):
            self.nodes[(level, position)] = node
        return index

    def range_root(self, lo: int, hi: int) -> bytes:
        return merkle.perfect_range_root(lambda level, index: self.nodes[(level, index)], lo, hi)

    def inclusion_proof(self, index: int) -> list[bytes]:
        return list(merkle.inclusion_proof_from(self.range_root, index, self.compact.size))


def build_bundle(total_readings: int, readings_per_batch: int, device: DeviceKey, gateway_key: int,
                 cloud_key: int) -> bytes:
    """Evidence for one reading in a log holding ``total_readings`` readings, as one CBOR blob."""
    in_batch = min(readings_per_batch, total_readings)
    signed = [device.signed(seq, 1_700_000_000 + seq) for seq in range(in_batch)]
    batch = build_batch(gateway_key, GATEWAY_ID, "site-bench", 0, (1_700_000_000, 1_700_000_900), signed, [],
                        bytes(32), 1_700_000_901)
    index_in_batch = in_batch // 2
    batch_path = merkle.inclusion_proof(batch.leaf_hashes(), index_in_batch)

    log = _MemoryLog()
    batches = max(1, total_readings // readings_per_batch)
    ours = batches // 2
    for position in range(batches):
        if position == ours:
            log.append(leaf_data=batch.signed_header)
        else:
            log.append(leaf_hash=hashlib.sha256(b"other batch %d" % position).digest())
    log_path = log.inclusion_proof(ours)
    kid = key_fingerprint(bytes(p256.public_key(cloud_key)))
    checkpoint = signed_checkpoint.sign(cloud_key, kid, batches, log.compact.root(), 1_700_001_000)
    return bytes(cbor.encode({
        "reading": signed[index_in_batch],
        "batch": {"index": index_in_batch, "size": len(batch.leaves), "path": batch_path},
        "header": batch.signed_header,
        "log": {"index": ours, "size": batches, "path": log_path},
        "checkpoint": checkpoint,
    }))


def verify_bundle_offline(blob: bytes, device_public: bytes, gateway_public: bytes, cloud_public: bytes) -> None:
    """Check everything a bundle claims; raises on the first defect (a chain lookup of the root is not timed)."""
    bundle = cbor.decode(blob)
    verify_reading(bundle["reading"], device_public)
    header_message, header = parse_header(bundle["header"])
    if not verify_es256(gateway_public, header_message.signed_bytes(), header_message.signature):
        raise ValueError("gateway signature")
    b = bundle["batch"]
    merkle.verify_inclusion(merkle.leaf_hash(reading_leaf(bundle["reading"])), b["index"], b["size"], b["path"],
                            bytes(header["root"]))
    checkpoint = signed_checkpoint.parse(bundle["checkpoint"])
    if not verify_es256(cloud_public, checkpoint.message.signed_bytes(), checkpoint.message.signature):
        raise ValueError("checkpoint signature")
    log = bundle["log"]
    if log["size"] != checkpoint.tree_size:
        raise ValueError("log size is not the checkpoint's")
    merkle.verify_inclusion(merkle.leaf_hash(bundle["header"]), log["index"], log["size"], log["path"],
                            checkpoint.root)


def bundle_encodings(log_leaves: int) -> tuple[list[Row], dict[str, Any]]:
    """Rows and details of one reading's proof bundle in JSON and CBOR at ``log_leaves`` log leaves."""
    sized = bundle_size.build(log_leaves)
    cbor_blob = sized.bundle.to_cbor()
    verdicts = {
        "json": verify_bundle(sized.bundle, sized.chain, bundle_size.TRUST).status,
        "cbor": verify_bundle_cbor(cbor_blob, sized.chain, bundle_size.TRUST).status,
    }
    if set(verdicts.values()) != {"valid"}:
        raise RuntimeError(f"the measured bundle does not verify: {verdicts}")
    lengths = sized.proof_lengths()
    at = f"1 reading @ {log_leaves:,} log leaves"
    json_bytes, cbor_bytes = sized.json_bytes(), len(cbor_blob)
    breakdown = bundle_size.cbor_breakdown(sized.bundle)
    hashes = ", ".join(f"{name} {n}" for name, n in lengths.items())
    rows = [
        Row("proofs", f"proof bundle JSON bytes, {at}", json_bytes, "bytes", note="compact JSON, as /trace/bundle"),
        Row("proofs", f"proof bundle CBOR bytes, {at}", cbor_bytes, "bytes", reference=json_bytes,
            reference_name="the same bundle in JSON",
            note=f"target <= {CBOR_TARGET_BYTES:,} (3 KiB): {'met' if cbor_bytes <= CBOR_TARGET_BYTES else 'not met'}"),
        Row("proofs", f"proof bundle CBOR bytes in proof hashes, {at}", breakdown["proof hashes"], "bytes",
            reference=cbor_bytes, reference_name="the whole CBOR bundle", note=hashes),
    ]
    details = {"log_leaves": log_leaves, "json_bytes": json_bytes, "cbor_bytes": cbor_bytes,
               "cbor_target_bytes": CBOR_TARGET_BYTES, "proof_hashes": lengths, "cbor_breakdown": breakdown,
               "verdicts": verdicts}
    return rows, details


def run(sizes: list[int], readings_per_batch: int, repeats: int) -> SectionResult:
    device = DeviceKey("bench-proof-1")
    gateway_key = p256.private_key_from_bytes(hashlib.sha256(b"bench gateway").digest())
    cloud_key = p256.private_key_from_bytes(hashlib.sha256(b"bench cloud").digest())
    gateway_public, cloud_public = bytes(p256.public_key(gateway_key)), bytes(p256.public_key(cloud_key))
    result = SectionResult()
    points: list[dict[str, Any]] = []
    for total in sizes:
        blob = build_bundle(total, readings_per_batch, device, gateway_key, cloud_key)
        bundle = cbor.decode(blob)
        proof_hashes = len(bundle["batch"]["path"]) + len(bundle["log"]["path"])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            verify_bundle_offline(blob, device.public, gateway_public, cloud_public)
            times.append(time.perf_counter() - start)
        points.append({"readings": total, "bundle_bytes": len(blob), "proof_hashes": proof_hashes,
                       "proof_bytes": 32 * proof_hashes, "verify_ms": 1000 * statistics.median(times)})
    for point in points:
        result.rows.append(Row("proofs", f"bundle bytes @ {point['readings']:,} readings", point["bundle_bytes"],
                               "bytes", note=f"{point['proof_hashes']} hashes"))
    for point in points:
        result.rows.append(Row("proofs", f"offline verify @ {point['readings']:,} readings", point["verify_ms"], "ms"))
    ns = [p["readings"] for p in points]
    bytes_slope = log2_slope(ns, [p["bundle_bytes"] for p in points])
    time_slope = log2_slope(ns, [p["verify_ms"] for p in points])
    result.rows.append(Row("proofs", "bundle bytes per doubling of N (fit vs log2 N)", bytes_slope, "bytes",
                           note="32 = one hash per doubling: logarithmic"))
    result.rows.append(Row("proofs", "verify time per doubling of N (fit vs log2 N)", time_slope, "ms"))
    encoding_rows, encodings = bundle_encodings(BUNDLE_LOG_LEAVES)
    result.rows.extend(encoding_rows)
    result.details = {"points": points, "readings_per_batch": readings_per_batch,
                      "verifier": "carbontrace_protocol functions",
                      "bytes_per_log2": bytes_slope, "ms_per_log2": time_slope, "bundle_encodings": encodings}
    return result
