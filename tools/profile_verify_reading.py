"""Where ``verify_reading`` spends its time on a server: each step timed alone, then a cProfile run.

    .venv/bin/python tools/profile_verify_reading.py [--count 3000]

Times (best of 5 rounds of ``count`` calls, µs per call, no profiler) bare OpenSSL verify with the key object
loaded and the signature already in DER (the bench's reference), ``verify_es256``, the fast COSE parse, the fast
payload decode (with the Reading's own checks), the DER wrapping of r||s and the whole ``verify_reading``; then
prints the top rows of a cProfile run of ``verify_reading`` sorted by own time. A measuring tool for
docs/benchmarks.md ("Hot path"), not a test: figures depend on the host and its load.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import timeit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from carbontrace.benchmarks.common import DeviceKey
from carbontrace_protocol import fast_decode, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    count = parser.parse_args().count
    device = DeviceKey("bench-verify-1")
    message = device.signed(1, 1_700_000_000)
    parsed = fast_decode.parse_canonical_sign1(message)
    if parsed is None:
        raise SystemExit("the bench reading did not take the fast path")
    signed, raw = parsed.signed_bytes(), parsed.signature
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), device.public)
    algorithm = ec.ECDSA(hashes.SHA256())
    steps = {
        "bare OpenSSL verify (reference)": lambda: key.verify(der, signed, algorithm),
        "verify_es256": lambda: verify.verify_es256(device.public, signed, raw),
        "DER wrap of r||s": lambda: encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                         int.from_bytes(raw[32:], "big")),
        "fast COSE parse": lambda: fast_decode.parse_canonical_sign1(message),
        "fast payload decode + Reading checks": lambda: fast_decode.decode_canonical_payload(parsed.payload),
        "verify_reading": lambda: verify.verify_reading(message, device.public),
    }
    out = sys.stdout
    out.write(f"{len(message)}-byte COSE_Sign1, {len(parsed.payload)}-byte payload; µs per call, best of 5 × {count}\n")
    for name, step in steps.items():
        best = min(timeit.repeat(step, number=count, repeat=5)) / count
        out.write(f"  {name:40s} {best * 1e6:8.1f}\n")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(count):
        verify.verify_reading(message, device.public)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
