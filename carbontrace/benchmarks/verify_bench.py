"""Verify: our ``verify_es256`` and ``verify_reading`` next to bare ``cryptography`` ECDSA P-256 verify."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from carbontrace.benchmarks.common import DeviceKey, Row, SectionResult, best_rate
from carbontrace_protocol import cose
from carbontrace_protocol.verify import verify_es256, verify_reading


def _signed(count: int) -> tuple[DeviceKey, list[bytes], list[tuple[bytes, bytes]]]:
    """A device, ``count`` of its signed readings, and each one's (signed bytes, raw r||s signature)."""
    device = DeviceKey("bench-verify-1")
    signed = [device.signed(seq, 1_700_000_000 + seq) for seq in range(count)]
    parsed = [cose.parse_sign1(m) for m in signed]
    return device, signed, [(p.signed_bytes(), bytes(p.signature)) for p in parsed]


def _verify_all(public: bytes, messages: list[tuple[bytes, bytes]]) -> None:
    for message, signature in messages:
        if not verify_es256(public, message, signature):
            raise AssertionError("a valid signature did not verify")


def verify_es256_rate(count: int) -> float:
    """One core's ``verify_es256`` rate, measured as the verify section does (the capacity section's reference)."""
    device, _signed_readings, messages = _signed(count)
    return best_rate(lambda: _verify_all(device.public, messages), count)


def run(count: int) -> SectionResult:
    device, signed, messages = _signed(count)

    # The limit: what OpenSSL does with a key object already loaded and the signature already in DER.
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), device.public)
    der = [(m, encode_dss_signature(int.from_bytes(s[:32], "big"), int.from_bytes(s[32:], "big")))
           for m, s in messages]
    algorithm = ec.ECDSA(hashes.SHA256())

    def bare() -> None:
        for message, signature in der:
            public.verify(signature, message, algorithm)

    def ours() -> None:
        _verify_all(device.public, messages)

    def full() -> None:
        for message in signed:
            verify_reading(message, device.public)

    bare_rate = best_rate(bare, count)
    ours_rate = best_rate(ours, count)
    full_rate = best_rate(full, count)
    result = SectionResult()
    result.rows.append(Row("verify", "verify_es256", ours_rate, "sig/s", bare_rate, "cryptography P-256 verify"))
    result.rows.append(Row("verify", "verify_reading (parse+verify+decode)", full_rate, "readings/s", bare_rate,
                           "cryptography P-256 verify"))
    result.details = {"signatures": count, "cose_bytes": len(signed[0])}
    return result
