"""Signed readings: round trips, independent implementations both ways, and every rejection typed."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ecdsa import NIST256p, VerifyingKey
from ecdsa.util import sigdecode_string
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message

from carbontrace_protocol import cbor, cose, errors, p256
from carbontrace_protocol.reading import (
    ALL_FLAGS,
    FLAG_TIME_NOT_SYNCED,
    MAX_BOOT,
    MAX_SEQ,
    MAX_TIMESTAMP,
    MAX_UPTIME,
    MEASUREMENTS,
    Reading,
    decode_payload,
    sign_reading,
)
from carbontrace_protocol.verify import verify_es256, verify_reading

KEY = p256.private_key_from_bytes(hashlib.sha256(b"test device key").digest())
PUB = p256.public_key(KEY)


def full_reading(**overrides: Any) -> Reading:
    fields: dict[str, Any] = dict(
        device_id="dev-001", seq=42, timestamp=1764126317, firmware="0.1.0", co2_ppm=612,
        temperature_centi_c=2345, humidity_centi_pct=4512, energy_wh=123456, power_deci_w=12345,
    )
    fields.update(overrides)
    return Reading(**fields)


def test_round_trip_all_fields() -> None:
    reading = full_reading(flags=FLAG_TIME_NOT_SYNCED)
    assert verify_reading(sign_reading(reading, KEY), PUB) == reading
    assert decode_payload(reading.encode()) == reading


def test_optional_measurements_may_be_absent() -> None:
    reading = Reading("meter-7", 0, 0, "1")
    assert verify_reading(sign_reading(reading, KEY), PUB) == reading


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_record_by_record_encoding_is_the_packs_encoding(data: st.DataObject) -> None:
    # Reading.encode writes the pack record by record into one buffer (a device's heap peak is then one record,
    # not the pack): it must be exactly the deterministic CBOR of the pack to_senml builds
    values = {attr: data.draw(st.none() | st.integers(low, high)) for _n, _u, attr, _e, low, high in MEASUREMENTS}
    boot = data.draw(st.none() | st.integers(0, MAX_BOOT))
    up = None if boot is None else data.draw(st.integers(0, MAX_UPTIME))
    flags = data.draw(st.integers(0, ALL_FLAGS))
    unsynced = boot is not None and flags & FLAG_TIME_NOT_SYNCED
    timestamp = None if unsynced else data.draw(st.integers(0, MAX_TIMESTAMP))
    reading = Reading(data.draw(st.sampled_from(["d", "pico-lab-01", "x" * 64])), data.draw(st.integers(0, MAX_SEQ)),
                      timestamp, "0.1.0", flags=flags, boot=boot, up=up, **values)
    assert reading.encode() == cbor.encode(reading.to_senml())
    assert decode_payload(reading.encode()) == reading


def test_signature_verifies_with_the_ecdsa_package() -> None:
    message = cose.parse_sign1(sign_reading(full_reading(), KEY))
    vk = VerifyingKey.from_string(PUB, curve=NIST256p, hashfunc=hashlib.sha256)
    assert vk.verify(message.signature, message.signed_bytes(), sigdecode=sigdecode_string)


def test_pycose_made_reading_verifies_with_ours() -> None:
    key = EC2Key(crv=P256, d=KEY.to_bytes(32, "big"), x=PUB[1:33], y=PUB[33:])
    reading = full_reading()
    msg = Sign1Message(phdr={Algorithm: Es256, KID: b"dev-001", ContentType: 112}, payload=reading.encode())
    msg.key = key
    assert verify_reading(msg.encode(), PUB) == reading


def test_our_reading_verifies_with_pycose() -> None:
    signed = sign_reading(full_reading(), KEY)
    parsed = cose.parse_sign1(signed)
    key = EC2Key(crv=P256, x=PUB[1:33], y=PUB[33:])
    # pycose 1.1's decode() trips over cbor2 6's tuple tags, so hand it the already-split structure.
    msg = Sign1Message.from_cose_obj([parsed.protected, {}, parsed.payload, parsed.signature], allow_unknown_attributes=False)
    msg.key = key
    assert msg.verify_signature()


def _resign(payload: bytes, protected: bytes | None = None) -> bytes:
    protected = protected if protected is not None else cose.protected_header(b"dev-001")
    signature = p256.sign(KEY, cose.sig_structure(protected, payload))
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, signature]))


def _payload_with(mutate: Any) -> bytes:
    pack = full_reading().to_senml()
    mutate(pack)
    return cbor.encode(pack)


REJECTIONS: list[tuple[str, Any, type[errors.ProtocolError], str]] = [
    ("random bytes", lambda: b"\xff\x00garbage", errors.MalformedCBOR, "malformed_cbor"),
    ("truncated", lambda: sign_reading(full_reading(), KEY)[:-5], errors.MalformedCBOR, "malformed_cbor"),
    ("not an array", lambda: cbor.encode({"a": 1}), errors.MalformedCOSE, "malformed_cose"),
    ("wrong tag", lambda: cbor.encode(cbor.Tag(98, [b"", {}, b"", b""])), errors.MalformedCOSE, "malformed_cose"),
    ("ES384", lambda: _resign(full_reading().encode(), cbor.encode({1: -35, 4: b"dev-001"})),
     errors.WrongAlgorithm, "wrong_alg"),
    ("no kid", lambda: _resign(full_reading().encode(), cbor.encode({1: -7})), errors.MalformedCOSE, "malformed_cose"),
    ("bad signature", lambda: sign_reading(full_reading(), KEY)[:-1] + b"\x00", errors.BadSignature, "bad_signature"),
    ("other key", lambda: sign_reading(full_reading(), KEY + 1), errors.BadSignature, "bad_signature"),
    ("kid mismatch", lambda: _resign(full_reading().encode(), cose.protected_header(b"dev-002")),
     errors.KeyIdMismatch, "kid_mismatch"),
    ("missing flags", lambda: _resign(_payload_with(lambda p: p.pop(3))), errors.MissingField, "missing_field"),
    ("unknown record", lambda: _resign(_payload_with(lambda p: p.append({0: "x", 2: 1}))),
     errors.MalformedReading, "malformed_reading"),
    # co2 612 is `02 19 02 64` in the payload: swap in a half-precision float 1.0 (`f9 3c 00`)
    ("float value", lambda: _resign(full_reading().encode().replace(b"\x02\x19\x02\x64", b"\x02\xf9\x3c\x00")),
     errors.MalformedReading, "malformed_reading"),
    ("wrong exponent", lambda: _resign(full_reading().encode().replace(b"\xc4\x82\x21\x19\x09\x29", b"\xc4\x82\x20\x18\xea")),
     errors.MalformedReading, "malformed_reading"),
    ("non-canonical", lambda: _resign(full_reading().encode().replace(b"\x02\x18\x2a", b"\x02\x19\x00\x2a")),
     errors.NonCanonical, "non_canonical"),
    ("co2 out of range", lambda: _resign(full_reading().encode().replace(b"\x02\x19\x02\x64", b"\x02\x1a\x00\x01\x00\x00")),
     errors.MalformedReading, "malformed_reading"),
]


@pytest.mark.parametrize("name, make, error, reason", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_every_rejection_is_typed(name: str, make: Any, error: type[errors.ProtocolError], reason: str) -> None:
    with pytest.raises(error) as info:
        verify_reading(make(), PUB)
    assert info.value.reason == reason


def test_bad_public_key_is_its_own_error() -> None:
    signed = sign_reading(full_reading(), KEY)
    with pytest.raises(errors.BadPublicKey):
        verify_reading(signed, b"\x04" + bytes(64))
    assert not verify_es256(b"\x04" + bytes(64), b"m", bytes(64))


def test_building_an_invalid_reading_fails_early() -> None:
    for bad in ({"device_id": "has space"}, {"seq": -1}, {"co2_ppm": 1.5}, {"flags": 64}, {"firmware": ""}):
        with pytest.raises(errors.MalformedReading):
            full_reading(**bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_input_only_raises_protocol_errors(data: bytes) -> None:
    try:
        verify_reading(data, PUB)
    except errors.ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_byte_flip_of_a_signed_reading_is_rejected(data: st.DataObject) -> None:
    signed = bytearray(sign_reading(full_reading(), KEY))
    position = data.draw(st.integers(min_value=0, max_value=len(signed) - 1))
    signed[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(errors.ProtocolError):
        verify_reading(bytes(signed), PUB)
