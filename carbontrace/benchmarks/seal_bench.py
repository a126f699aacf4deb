"""Seal: sealing and opening a batch blob (carbontrace_protocol/sealed_blob.py) next to bare AES-256-GCM.

The batch is a real one (``readings_per_batch`` signed readings and one aggregate), sealed to the three default
readers (the cloud, the enterprise, one regulator), as ingestion does; opening is one reader's unwrap + decrypt.
The section also prints what selective disclosure costs (carbontrace/benchmarks/disclosure_bench.py).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carbontrace.benchmarks import disclosure_bench
from carbontrace.benchmarks.common import DeviceKey, Row, SectionResult, best_rate
from carbontrace_protocol import p256, sealed_blob
from carbontrace_protocol.batch import ZERO_HASH, aggregate_window, build_batch
from carbontrace_protocol.cose import parse_sign1
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import decode_payload

READERS = 3


def _batch_blob(readings: int) -> tuple[str, bytes]:
    device = DeviceKey("bench-seal-1")
    signed = [device.signed(seq, 1_700_000_000 + 5 * seq) for seq in range(readings)]
    decoded = [decode_payload(parse_sign1(m).payload) for m in signed]
    window = (1_700_000_000, 1_700_000_000 + 5 * readings)
    factor = get_factor()
    aggregate = aggregate_window(device.device_id, window[0], window[1], 5, decoded, factor)
    gateway = p256.private_key_from_bytes(os.urandom(32))
    batch = build_batch(gateway, "bench-gw", "bench-site", 0, window, signed, [aggregate], ZERO_HASH, window[1])
    return batch.id, batch.encode()


def run(readings_per_batch: int, count: int) -> SectionResult:
    batch_id, blob = _batch_blob(readings_per_batch)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(READERS)]
    publics = [sealed_blob.public_key_bytes(k) for k in keys]
    sealed = sealed_blob.seal(blob, batch_id, publics)
    data_key, nonce = os.urandom(32), os.urandom(12)
    aead = AESGCM(data_key)
    bare_ct = aead.encrypt(nonce, blob, None)

    def bare_seal() -> None:
        for _ in range(count):
            AESGCM(data_key).encrypt(nonce, blob, None)

    def bare_open() -> None:
        for _ in range(count):
            AESGCM(data_key).decrypt(nonce, bare_ct, None)

    def seal() -> None:
        for _ in range(count):
            sealed_blob.seal(blob, batch_id, publics)

    def open_one() -> None:
        for _ in range(count):
            sealed_blob.open_sealed(sealed, keys[0], batch_id)

    seal_rate, open_rate = best_rate(seal, count), best_rate(open_one, count)
    bare_seal_rate, bare_open_rate = best_rate(bare_seal, count), best_rate(bare_open, count)
    result = SectionResult()
    result.rows.append(Row("seal", f"seal one batch to {READERS} readers", 1000 / seal_rate, "ms/batch",
                           1000 / bare_seal_rate, "AES-256-GCM of the same blob, no key wrap"))
    result.rows.append(Row("seal", "open one batch (unwrap + decrypt)", 1000 / open_rate, "ms/batch",
                           1000 / bare_open_rate, "AES-256-GCM decrypt of the same blob"))
    result.rows.append(Row("seal", "sealed blob overhead", float(len(sealed) - len(blob)), "bytes/batch",
                           note=f"{len(blob)} B batch of {readings_per_batch} readings"))
    result.details = {"readings_per_batch": readings_per_batch, "blob_bytes": len(blob), "sealed_bytes": len(sealed),
                      "readers": READERS}
    disclosure_rows, disclosure_details = disclosure_bench.rows(readings_per_batch, count)
    result.rows += disclosure_rows
    result.details["disclosure"] = disclosure_details
    return result
