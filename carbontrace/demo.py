"""`make demo`: the pipeline on embedded defaults, printed as plain steps.

It grows with the tiers; each stage uses the real code path of its tier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from decimal import Decimal
from pathlib import Path

from carbontrace.readout import reading_json
from carbontrace_protocol import merkle, p256
from carbontrace_protocol.batch import aggregate_window, build_batch
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.verify import verify_reading


def step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}")  # noqa: T201 - the demo talks to a person


def protocol_walkthrough(out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    step(1, "Provision: each device makes its own P-256 key; only the public key leaves it")
    devices = {}
    for name in ("dev-boiler-1", "dev-office-2"):
        key = p256.private_key_from_bytes(hashlib.sha256(name.encode()).digest())
        devices[name] = (key, p256.public_key(key))
        print(f"    {name}: public key {devices[name][1].hex()[:24]}…")  # noqa: T201
    gateway_key = p256.private_key_from_bytes(hashlib.sha256(b"gw-site-1").digest())

    step(2, "Measure and sign: SenML-CBOR readings as COSE_Sign1 (ES256)")
    start = int(time.time()) // 900 * 900
    signed: list[bytes] = []
    readings: dict[str, list[Reading]] = {}
    for name, (key, _pub) in devices.items():
        for seq in range(15):
            reading = Reading(
                name, seq, start + 60 * seq, "0.1.0", co2_ppm=600 + 7 * seq, temperature_centi_c=2150 + seq,
                humidity_centi_pct=4500, energy_wh=10_000 + 35 * seq, power_deci_w=21_000,
            )
            signed.append(sign_reading(reading, key))
            readings.setdefault(name, []).append(reading)
    (out / "reading.cose").write_bytes(signed[0])
    print(f"    {len(signed)} signed readings, {len(signed[0])} bytes each; first written to {out / 'reading.cose'}")  # noqa: T201
    print("    " + json.dumps(reading_json(verify_reading(signed[0], devices['dev-boiler-1'][1]))))  # noqa: T201

    step(3, "Gateway: aggregate the window (emissions = energy x grid factor) and sign a Merkle batch")
    factor = get_factor()
    aggregates = [
        aggregate_window(name, start, start + 900, 60, rs, factor, None) for name, rs in readings.items()
    ]
    batch = build_batch(gateway_key, "gw-site-1", "site-1", 0, (start, start + 900), signed, aggregates,
                        bytes(32), int(time.time()))
    blob = batch.encode()
    print(f"    batch {batch.id}: {len(batch.leaves)} leaves, root {batch.root.hex()[:16]}…, blob {len(blob)} bytes")  # noqa: T201
    for agg in aggregates:
        emissions = agg["emissions_g"].value
        print(f"    {agg['device']}: {agg['energy']['delta_wh']} Wh x {factor.kg_per_kwh} kg/kWh "  # noqa: T201
              f"= {Decimal(emissions[1]).scaleb(emissions[0])} g CO2 ({factor.id}; {factor.source[:60]}…)")

    step(4, "Cloud: re-verify everything, name the blob by content (IPFS CID)")
    keys = {name: pub for name, (_k, pub) in devices.items()}
    verified = verify_batch(blob, p256.public_key(gateway_key), keys.get,
                            lambda fid: factor if fid == factor.id else None, lambda _d: None)
    cid = cid_for(blob)
    print(f"    verified {len(verified.readings)} readings and {len(verified.aggregates)} aggregates; CID {cid}")  # noqa: T201

    step(5, "Trace one reading: inclusion proof from its leaf to the batch root")
    leaf_hashes = batch.leaf_hashes()
    proof = merkle.inclusion_proof(leaf_hashes, 3)
    assert merkle.verify_inclusion(leaf_hashes[3], 3, len(leaf_hashes), proof, batch.root)
    print(f"    leaf 3 proven with {len(proof)} sibling hashes")  # noqa: T201

    step(6, "Tamper: change one byte of one reading in the stored blob")
    tampered = bytearray(blob)
    tampered[blob.index(signed[3]) + 40] ^= 1
    try:
        verify_batch(bytes(tampered), p256.public_key(gateway_key), keys.get,
                     lambda fid: factor if fid == factor.id else None, lambda _d: None)
        caught = "NOT CAUGHT"
    except BatchRejected as err:
        caught = f"caught: {err.reason} ({err})"
    print(f"    {caught}")  # noqa: T201
    return {"readings": len(signed), "leaves": len(batch.leaves), "cid": cid, "tamper": caught}


def main() -> None:
    parser = argparse.ArgumentParser(description="CarbonTrace demo on embedded defaults")
    parser.add_argument("--out", default="demo-out", help="where proof files are written")
    args = parser.parse_args()
    summary = protocol_walkthrough(Path(args.out))
    print("\nSummary")  # noqa: T201
    for key, value in summary.items():
        print(f"  {key:10} {value}")  # noqa: T201


if __name__ == "__main__":
    main()
