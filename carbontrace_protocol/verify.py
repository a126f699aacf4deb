"""Signature verification for servers (CPython, OpenSSL through ``cryptography``).

``verify_es256`` is the one place an ES256 signature is checked on the gateway and in the cloud;
``verify_reading`` turns signed-reading bytes into a ``Reading`` or raises a typed ``ProtocolError``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from carbontrace_protocol import cose, fast_decode, p256
from carbontrace_protocol.errors import BadPublicKey, BadSignature, KeyIdMismatch, MalformedCOSE
from carbontrace_protocol.flux import Flux, parse_signed_flux
from carbontrace_protocol.reading import Reading, decode_payload

_ES256 = ec.ECDSA(hashes.SHA256())


@lru_cache(maxsize=4096)
def load_public_key(public_key_sec1: bytes) -> ec.EllipticCurvePublicKey:
    """An OpenSSL key object for an uncompressed SEC1 P-256 key (cached: devices sign many readings)."""
    if len(public_key_sec1) != 65 or public_key_sec1[0] != 4:
        raise BadPublicKey("public key must be 65-byte uncompressed SEC1 (0x04 || X || Y)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key_sec1)
    except ValueError as err:
        raise BadPublicKey(f"not a point on P-256: {err}") from err


def _verify_with_key(key: ec.EllipticCurvePublicKey, message: bytes, signature_raw64: bytes) -> bool:
    if len(signature_raw64) != 64:
        return False
    r = int.from_bytes(signature_raw64[:32], "big")
    s = int.from_bytes(signature_raw64[32:], "big")
    if not (0 < r < p256.N and 0 < s < p256.N):
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, _ES256)
    except InvalidSignature:
        return False
    return True


def verify_es256(public_key_sec1: bytes, message: bytes, signature_raw64: bytes) -> bool:
    """True when ``signature_raw64`` (r || s, 32 bytes each) is a valid ES256 signature of ``message``.

    Returns False for any invalid signature, out-of-range r or s, wrong length or invalid key.
    """
    try:
        key = load_public_key(bytes(public_key_sec1))
    except BadPublicKey:
        return False
    return _verify_with_key(key, message, signature_raw64)


def der_signature_to_raw(der: bytes) -> bytes:
    """Strict DER ``ECDSA-Sig-Value`` → raw r || s. Raises ``MalformedCOSE`` for any non-DER encoding.

    Strict means: one SEQUENCE of exactly two INTEGERs, short-form or minimal long-form lengths, minimal
    positive integers (no superfluous leading zero, no negative), nothing trailing, r and s below 2^256.
    """

    def read_len(buf: bytes, pos: int) -> tuple[int, int]:
        if pos >= len(buf):
            raise MalformedCOSE("DER: truncated length")
        first = buf[pos]
        if first < 0x80:
            return first, pos + 1
        count = first & 0x7F
        if count == 0 or count > 2 or pos + 1 + count > len(buf):
            raise MalformedCOSE("DER: unsupported length form")
        value = int.from_bytes(buf[pos + 1 : pos + 1 + count], "big")
        if value < 0x80 or buf[pos + 1] == 0:
            raise MalformedCOSE("DER: non-minimal length")
        return value, pos + 1 + count

    def read_int(buf: bytes, pos: int) -> tuple[int, int]:
        if pos >= len(buf) or buf[pos] != 0x02:
            raise MalformedCOSE("DER: expected INTEGER")
        length, pos = read_len(buf, pos + 1)
        if length == 0 or pos + length > len(buf):
            raise MalformedCOSE("DER: bad INTEGER length")
        body = buf[pos : pos + length]
        if body[0] & 0x80:
            raise MalformedCOSE("DER: negative INTEGER")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise MalformedCOSE("DER: non-minimal INTEGER")
        value = int.from_bytes(body, "big")
        if value >= 1 << 256:
            raise MalformedCOSE("DER: INTEGER too large for P-256")
        return value, pos + length

    if len(der) < 2 or der[0] != 0x30:
        raise MalformedCOSE("DER: expected SEQUENCE")
    length, pos = read_len(der, 1)
    if pos + length != len(der):
        raise MalformedCOSE("DER: SEQUENCE length does not match the input")
    r, pos = read_int(der, pos)
    s, pos = read_int(der, pos)
    if pos != len(der):
        raise MalformedCOSE("DER: trailing data in SEQUENCE")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def parse_sign1(cose_bytes: bytes) -> cose.Sign1:
    """``cose.parse_sign1`` with the C fast path for the canonical form every device writes (same result)."""
    message = fast_decode.parse_canonical_sign1(cose_bytes)
    return message if message is not None else cose.parse_sign1(cose_bytes)


def decode_reading_payload(payload: bytes) -> Reading:
    """``reading.decode_payload`` with the fast path for the canonical form every device writes (same result,
    same reasons: tests/protocol/test_fast_decode_differential.py)."""
    reading = fast_decode.decode_canonical_payload(payload)
    return reading if reading is not None else decode_payload(payload)


def unverified_reading(signed: bytes) -> Reading:
    """The ``Reading`` inside signed-reading bytes whose signature was checked before (a spool's or a stored
    batch's leaves) or is not the question (a view of a leaf): parse and decode only, on the fast path. Raises
    the ``ProtocolError`` the pure path names."""
    return decode_reading_payload(parse_sign1(signed).payload)


def verify_sign1(
    message: cose.Sign1, public_key_sec1: bytes, decode: Callable[[bytes], Reading] = decode_reading_payload
) -> Reading:
    """The ``Reading`` of an already parsed COSE_Sign1 (a caller that parsed it to route it parses once).

    Raises as ``verify_reading`` does after parsing; ``decode`` turns the verified payload into the reading.
    """
    key = load_public_key(bytes(public_key_sec1))  # raises BadPublicKey before a misleading BadSignature
    if not _verify_with_key(key, message.signed_bytes(), message.signature):
        raise BadSignature("ES256 signature does not verify with the given public key")
    reading = decode(message.payload)
    if message.kid != reading.device_id.encode():
        raise KeyIdMismatch(f"key id {message.kid!r} is not the reading's device id {reading.device_id!r}")
    return reading


def verify_reading(cose_bytes: bytes, public_key_sec1: bytes) -> Reading:
    """Verify a signed reading against the device's public key and return the ``Reading``.

    Raises (all ``ProtocolError``): ``MalformedCBOR``, ``MalformedCOSE``, ``WrongAlgorithm``,
    ``BadPublicKey``, ``BadSignature``, ``MalformedReading``/``MissingField``, ``NonCanonical``,
    ``KeyIdMismatch`` (the COSE key id is not the reading's device id).
    """
    return verify_sign1(parse_sign1(cose_bytes), public_key_sec1)


def verify_reading_pure(cose_bytes: bytes, public_key_sec1: bytes) -> Reading:
    """``verify_reading`` on the pure-Python decoder only (the devices' decoder): the reference the fast
    path is tested against."""
    return verify_sign1(cose.parse_sign1(cose_bytes), public_key_sec1, decode_payload)


def verify_flux(cose_bytes: bytes, public_key_sec1: bytes) -> Flux:
    """Verify a signed chamber flux (carbontrace_protocol/flux.py) against its device's key: the same key and
    signature rule as a reading, its own content type and record. Raises the ``ProtocolError``s of
    ``flux.parse_signed_flux`` (``not_a_flux`` for a signed reading), ``BadPublicKey``, ``BadSignature``."""
    message, record = parse_signed_flux(cose_bytes)
    load_public_key(bytes(public_key_sec1))
    if not verify_es256(public_key_sec1, message.signed_bytes(), message.signature):
        raise BadSignature("ES256 signature does not verify with the given public key")
    return record
