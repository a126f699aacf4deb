"""Signatures made on a device runtime, checked against CPython's signer and OpenSSL (`cryptography`).

``signing_program(messages)`` is a MicroPython program that signs ``messages`` with ``p256.sign`` and one
full reading with ``reading.sign_reading`` (COSE_Sign1), using a fixed test key; ``check_signing_output``
asserts that every signature is byte-identical to CPython's (RFC 6979 nonces: same key and message, same
bytes) and that OpenSSL accepts each one.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from carbontrace_protocol import cose, p256
from carbontrace_protocol.reading import Reading, decode_payload, sign_reading

KEY_SEED = hashlib.sha256(b"carbontrace/test-device-key/1").digest()
READING_ARGS = ("pico-lab-01", 7, 1767225600, "1.4.0")
READING_VALUES = {"flags": 0, "co2_ppm": 612, "temperature_centi_c": 2345, "humidity_centi_pct": 4120,
                  "energy_wh": 123456789, "power_deci_w": 23456}


def signing_program(messages: tuple[bytes, ...]) -> str:
    keywords = ", ".join(f"{name}={value!r}" for name, value in READING_VALUES.items())
    return f"""
import binascii
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading

def hexed(data):
    return binascii.hexlify(data).decode()

key = p256.private_key_from_bytes({KEY_SEED!r})
print("public", hexed(p256.public_key(key)))
for message in {messages!r}:
    print("sig", hexed(p256.sign(key, message)))
print("cose", hexed(sign_reading(Reading(*{READING_ARGS!r}, {keywords}), key)))
"""


def openssl_verifies(public_sec1: bytes, message: bytes, raw64: bytes) -> None:
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_sec1)
    der = encode_dss_signature(int.from_bytes(raw64[:32], "big"), int.from_bytes(raw64[32:], "big"))
    public.verify(der, message, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature


def check_signing_output(stdout: str, messages: tuple[bytes, ...]) -> None:
    lines = [line.split() for line in stdout.strip().splitlines()]
    assert [kind for kind, _ in lines] == ["public"] + ["sig"] * len(messages) + ["cose"], stdout
    key = p256.private_key_from_bytes(KEY_SEED)
    public = bytes.fromhex(lines[0][1])
    assert public == p256.public_key(key)
    for message, (_, signature_hex) in zip(messages, lines[1:-1], strict=True):
        signature = bytes.fromhex(signature_hex)
        assert signature == p256.sign(key, message), f"signature of {message[:16]!r}... differs from CPython's"
        openssl_verifies(public, message, signature)
    signed = bytes.fromhex(lines[-1][1])
    reading = Reading(*READING_ARGS, **READING_VALUES)  # type: ignore[arg-type]
    assert signed == sign_reading(reading, key), "COSE_Sign1 differs from CPython's"
    parsed = cose.parse_sign1(signed)
    assert decode_payload(parsed.payload) == reading and parsed.kid == READING_ARGS[0].encode()
    openssl_verifies(public, parsed.signed_bytes(), parsed.signature)
