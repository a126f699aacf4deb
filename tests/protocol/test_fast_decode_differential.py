"""The C fast path (``verify.verify_reading``) against the pure path (``verify.verify_reading_pure``).

Both must give the same ``Reading`` or the same rejection reason for every input: the conformance
documents' COSE messages, valid readings, and a few hundred mutations of them (bit flips, truncations and
non-canonical re-encodings, re-signed so the decoder, not the signature, decides). A strictness gap in
``fast_decode`` makes one of these differ.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from carbontrace_protocol import cbor, cose, fast_decode, p256
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.reading import Reading, decode_payload, sign_reading
from carbontrace_protocol.verify import parse_sign1, verify_reading, verify_reading_pure

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = p256.private_key_from_bytes(hashlib.sha256(b"differential device key").digest())
PUB = p256.public_key(KEY)
_OPENSSL_KEY = ec.derive_private_key(KEY, ec.SECP256R1())  # signs the mutations fast; p256.sign is pure Python


def outcome(verify: Any, data: bytes) -> object:
    """What a verifier makes of ``data``: its Reading's fields, or its rejection reason."""
    try:
        return verify(data, PUB).as_dict()
    except ProtocolError as err:
        return err.reason


def reading(device_id: str = "dev-001", seq: int = 42, **optional: Any) -> Reading:
    return Reading(device_id, seq, 1764126317, "0.1.0", **optional)


VALID_READINGS = [
    reading(co2_ppm=612, temperature_centi_c=2345, humidity_centi_pct=4512, energy_wh=123456, power_deci_w=12345),
    reading(seq=0, flags=5, energy_wh=0, power_deci_w=0),
    reading("d" * 23, seq=(1 << 53) - 1, temperature_centi_c=-4000),
    reading("long-device-id-of-sixty-four-characters-" + "x" * 24, co2_ppm=40000),
]


def sign(payload: bytes, protected: bytes) -> bytes:
    der = _OPENSSL_KEY.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def noncanonical(value: object, rng: random.Random) -> bytes:
    """An encoding of ``value`` that a random choice per item may make non-canonical: longer heads,
    indefinite lengths, map keys out of order."""

    def head(major: int, n: int) -> bytes:
        shortest = cbor.encode_head(major, n)
        if rng.random() < 0.15 and len(shortest) < 9:
            width = {1: 1, 2: 2, 3: 4, 5: 8}[len(shortest)]  # one size up from the shortest
            return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[width]]) + n.to_bytes(width, "big")
        return shortest

    indefinite = rng.random() < 0.05
    if isinstance(value, bool) or value is None:
        return cbor.encode(value)
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, (bytes, str)):
        raw = value if isinstance(value, bytes) else value.encode()
        major = 2 if isinstance(value, bytes) else 3
        if indefinite:
            return bytes([major << 5 | 31]) + head(major, len(raw)) + raw + b"\xff"
        return head(major, len(raw)) + raw
    if isinstance(value, list):
        items = b"".join(noncanonical(item, rng) for item in value)
        return (b"\x9f" + items + b"\xff") if indefinite else head(4, len(value)) + items
    if isinstance(value, dict):
        keys = list(value)
        if rng.random() < 0.2:
            rng.shuffle(keys)
        else:
            keys.sort(key=cbor.encode)
        pairs = b"".join(noncanonical(k, rng) + noncanonical(value[k], rng) for k in keys)
        return (b"\xbf" + pairs + b"\xff") if indefinite else head(5, len(value)) + pairs
    if isinstance(value, cbor.Tag):
        return head(6, value.tag) + noncanonical(value.value, rng)
    raise TypeError(type(value))


def mutations(count: int) -> list[bytes]:
    """Mutated signed readings: about half change the signed payload and are re-signed."""
    rng = random.Random(14)
    out: list[bytes] = []
    for i in range(count):
        base = VALID_READINGS[i % len(VALID_READINGS)]
        protected = cose.protected_header(base.device_id.encode())
        payload = base.encode()
        kind = i % 6
        if kind == 0:  # bit flip anywhere, not re-signed (outer structure, header, payload or signature)
            message = bytearray(sign_reading_fast(base))
            bit = rng.randrange(len(message) * 8)
            message[bit // 8] ^= 1 << (bit % 8)
            out.append(bytes(message))
        elif kind == 1:  # truncation
            message = sign_reading_fast(base)
            out.append(message[: rng.randrange(len(message))])
        elif kind == 2:  # bit flip in the payload, re-signed
            flipped = bytearray(payload)
            bit = rng.randrange(len(flipped) * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
            out.append(message_of(protected, bytes(flipped)))
        elif kind == 3:  # non-canonical payload, re-signed
            out.append(message_of(protected, noncanonical(base.to_senml(), rng)))
        elif kind == 4:  # non-canonical protected header, re-signed
            headers = cbor.decode(protected)
            out.append(message_of(noncanonical(headers, rng), payload))
        else:  # non-canonical outer structure (not covered by the signature)
            signature = sign(payload, protected)
            parts: list[Any] = [protected, {}, payload, signature]
            item: object = cbor.Tag(18, parts) if rng.random() < 0.8 else parts
            out.append(noncanonical(item, rng))
    return out


def message_of(protected: bytes, payload: bytes) -> bytes:
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, sign(payload, protected)]))


def sign_reading_fast(value: Reading) -> bytes:
    return message_of(cose.protected_header(value.device_id.encode()), value.encode())


def conformance_messages() -> list[bytes]:
    """Every hex COSE_Sign1 (tag 18, array of 4) in the conformance documents and the shared vectors."""
    found: set[bytes] = set()
    roots = [REPO_ROOT / "docs" / "conformance", REPO_ROOT.parent / "shared" / "vectors"]
    for root in roots:
        for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
            for text in re.findall(r'"(d284[0-9a-f]+)"', path.read_text(errors="replace")):
                if len(text) % 2 == 0:
                    found.add(bytes.fromhex(text))
    return sorted(found)


CONFORMANCE = conformance_messages()
MUTATIONS = mutations(600)


def test_there_are_conformance_messages() -> None:
    assert len(CONFORMANCE) >= 5


def test_the_fast_path_takes_every_valid_reading() -> None:
    # falling back to the pure path would also give the same answers: this checks the speed-up applies
    for value in VALID_READINGS:
        for message in (sign_reading(value, KEY), sign_reading_fast(value)):
            assert fast_decode.parse_canonical_sign1(message) is not None
            assert fast_decode.decode_canonical_payload(value.encode()) == value
            assert verify_reading(message, PUB) == value


@pytest.mark.parametrize("index", range(len(CONFORMANCE)))
def test_conformance_messages_parse_and_decode_alike(index: int) -> None:
    message = CONFORMANCE[index]
    assert outcome(verify_reading, message) == outcome(verify_reading_pure, message)
    assert_parse_alike(message)


def test_mutated_readings_verify_alike() -> None:
    reasons: set[object] = set()
    for message in MUTATIONS:
        fast, pure = outcome(verify_reading, message), outcome(verify_reading_pure, message)
        assert fast == pure, message.hex()
        assert_parse_alike(message)
        reasons.add(pure if isinstance(pure, str) else "accepted")
    # the mutations reach every decoder decision, not just the signature check
    assert {"accepted", "malformed_cbor", "malformed_cose", "non_canonical", "bad_signature"} <= reasons


def assert_parse_alike(message: bytes) -> None:
    """The fast parse gives the pure parse's fields or its reason, and the fast payload decode only ever
    returns what the pure decode returns."""
    try:
        pure = cose.parse_sign1(message)
    except ProtocolError as err:
        with pytest.raises(ProtocolError) as fast_err:
            parse_sign1(message)
        assert fast_err.value.reason == err.reason
        return
    fast = parse_sign1(message)
    assert (fast.protected, fast.headers, fast.kid, fast.payload, fast.signature) == (
        pure.protected, pure.headers, pure.kid, pure.payload, pure.signature)
    assert fast.signed_bytes() == pure.signed_bytes()
    decoded = fast_decode.decode_canonical_payload(pure.payload)
    if decoded is not None:
        assert decoded == decode_payload(pure.payload)
