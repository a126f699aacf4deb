"""Hand-built non-canonical and hostile signed readings: the C fast path (``verify.verify_reading``) must
give exactly the pure path's verdict and reason (``verify.verify_reading_pure``), and its own decoders must
never return a value for bytes the pure path rejects.

Each payload case is one targeted edit of the canonical payload, re-signed so the decoder (not the
signature) decides; outer cases edit the COSE_Sign1 around a valid signature. A fast path that decodes
with a lenient decoder and skips the canonical check accepts most of these.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from carbontrace_protocol import cbor, cose, fast_decode, p256
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.verify import verify_reading, verify_reading_pure

KEY = p256.private_key_from_bytes(hashlib.sha256(b"adversarial device key").digest())
PUB = p256.public_key(KEY)
_OPENSSL_KEY = ec.derive_private_key(KEY, ec.SECP256R1())

READING = Reading("dev-001", 42, 1764126317, "0.1.0", co2_ppm=612, temperature_centi_c=2345)
PAYLOAD = READING.encode()
PROTECTED = cose.protected_header(READING.device_id.encode())
SEQ = b"\x02\x18\x2a"  # key 2 (value) -> 42, in the first record
CO2 = b"\x02\x19\x02\x64"  # key 2 -> 612
DEVICE = b"\x68dev-001/"
TIME = PAYLOAD[PAYLOAD.index(b"\x22\x1a"):][:6]  # key -3 (time) -> uint32
FIRST_RECORD_END = PAYLOAD.index(b"\xa2\x00\x63fmt")
HUGE = b"\xff" * 8


def sign(payload: bytes, protected: bytes = PROTECTED) -> bytes:
    der = _OPENSSL_KEY.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def message_of(payload: bytes, protected: bytes = PROTECTED) -> bytes:
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, sign(payload, protected)]))


def replaced(old: bytes, new: bytes, data: bytes = PAYLOAD) -> bytes:
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def deep(levels: int) -> bytes:
    return b"\x81" * levels + b"\x00"


PAYLOAD_CASES: dict[str, bytes] = {
    "int_head_one_byte_too_long": replaced(SEQ, b"\x02\x19\x00\x2a"),
    "int_head_eight_bytes": replaced(SEQ, b"\x02\x1b" + (42).to_bytes(8, "big")),
    "small_int_in_one_byte_head": replaced(b"\x63fmt\x02\x01", b"\x63fmt\x02\x18\x01"),
    "key_head_too_long": replaced(b"\x00\x63seq", b"\x18\x00\x63seq"),
    "text_length_head_too_long": replaced(DEVICE, b"\x78\x08dev-001/"),
    "array_head_too_long": b"\x98\x06" + PAYLOAD[1:],
    "map_head_too_long": PAYLOAD[:1] + b"\xb8\x04" + PAYLOAD[2:],
    "indefinite_outer_array": b"\x9f" + PAYLOAD[1:] + b"\xff",
    "indefinite_record_map": PAYLOAD[:1] + b"\xbf" + PAYLOAD[2:FIRST_RECORD_END] + b"\xff"
    + PAYLOAD[FIRST_RECORD_END:],
    "indefinite_text": replaced(DEVICE, b"\x7f" + DEVICE + b"\xff"),
    "indefinite_text_chunks": replaced(DEVICE, b"\x7f\x64dev-\x64001/\xff"),
    "duplicate_key_same_value": PAYLOAD[:1] + b"\xa5" + replaced(SEQ, SEQ + SEQ, PAYLOAD[2:]),
    "duplicate_key_other_value": PAYLOAD[:1] + b"\xa5" + replaced(SEQ, SEQ + b"\x02\x18\x2b", PAYLOAD[2:]),
    "duplicate_record": b"\x87" + PAYLOAD[1:] + b"\xa2\x00\x63fmt\x02\x01",
    "unsorted_keys": replaced(b"\x00\x63seq" + SEQ, SEQ + b"\x00\x63seq"),
    "unsorted_negative_keys": replaced(b"\x21" + DEVICE + TIME, TIME + b"\x21" + DEVICE),
    "trailing_zero_byte": PAYLOAD + b"\x00",
    "trailing_break": PAYLOAD + b"\xff",
    "trailing_second_item": PAYLOAD + PAYLOAD,
    "wrong_tag_on_decimal": replaced(b"\xc4\x82", b"\xc5\x82"),
    "decimal_tag_head_too_long": replaced(b"\xc4\x82", b"\xd8\x04\x82"),
    "tag_around_int": replaced(SEQ, b"\x02\xc1\x18\x2a"),
    "bignum_for_int": replaced(SEQ, b"\x02\xc2\x41\x2a"),
    "self_describe_tag_outside": b"\xd9\xd9\xf7" + PAYLOAD,
    "nested_depth_50": replaced(SEQ, b"\x02" + deep(50)),
    "nested_depth_5000": replaced(SEQ, b"\x02" + deep(5000)),
    "nested_maps_depth_200": replaced(SEQ, b"\x02" + b"\xa1\x00" * 200 + b"\x00"),
    "huge_text_length": replaced(DEVICE, b"\x7b" + HUGE + b"dev-001/"),
    "huge_bytes_value": replaced(SEQ, b"\x02\x5b" + HUGE),
    "huge_array_length": b"\x9b" + HUGE + PAYLOAD[1:],
    "huge_map_length": PAYLOAD[:1] + b"\xbb" + HUGE + PAYLOAD[2:],
    "huge_int": replaced(SEQ, b"\x02\x1b" + HUGE),
    "float64_for_int": replaced(SEQ, b"\x02\xfb" + struct.pack(">d", 42.0)),
    "float32_for_int": replaced(SEQ, b"\x02\xfa" + struct.pack(">f", 42.0)),
    "float16_for_int": replaced(SEQ, b"\x02\xf9\x51\x40"),
    "float_for_co2": replaced(CO2, b"\x02\xfb" + struct.pack(">d", 612.0)),
    "nan_for_co2": replaced(CO2, b"\x02\xf9\x7e\x00"),
    "nan64_for_co2": replaced(CO2, b"\x02\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00"),
    "negative_zero_for_co2": replaced(CO2, b"\x02\xf9\x80\x00"),
    "negative_zero_for_time": replaced(TIME, b"\x22\xf9\x80\x00"),
    "infinity_for_co2": replaced(CO2, b"\x02\xf9\x7c\x00"),
    "true_for_int": replaced(SEQ, b"\x02\xf5"),
    "null_for_int": replaced(SEQ, b"\x02\xf6"),
    "undefined_for_int": replaced(SEQ, b"\x02\xf7"),
    "simple_value_two_byte": replaced(SEQ, b"\x02\xf8\x20"),
    "negative_seq": replaced(SEQ, b"\x02\x20"),
    "bytes_for_text": replaced(DEVICE, b"\x48dev-001/"),
    "invalid_utf8_text": replaced(DEVICE, b"\x68dev-00\xff/"),
    "reserved_additional_info": replaced(SEQ, b"\x02\x1c"),
    "lone_break": replaced(SEQ, b"\x02\xff"),
    "empty": b"",
}

SIGNATURE = sign(PAYLOAD)
VALID = message_of(PAYLOAD)
OUTER_CASES: dict[str, bytes] = {
    "trailing_byte_after_message": VALID + b"\x00",
    "wrong_tag_mac0": b"\xd1" + VALID[1:],
    "wrong_tag_sign": b"\xd8\x62" + VALID[1:],
    "tag_head_too_long": b"\xd8\x12" + VALID[1:],
    "no_tag": VALID[1:],
    "two_tags": b"\xd2" + VALID,
    "indefinite_outer_array": b"\xd2\x9f" + VALID[2:] + b"\xff",
    "array_head_too_long": b"\xd2\x98\x04" + VALID[2:],
    "array_of_five": b"\xd2\x85" + VALID[2:] + b"\x00",
    "huge_array_length": b"\xd2\x9b" + HUGE + VALID[2:],
    "huge_signature_length": VALID[: -len(SIGNATURE) - 2] + b"\x5b" + HUGE + SIGNATURE,
    "signature_length_head_too_long": VALID[: -len(SIGNATURE) - 2] + b"\x59\x00\x40" + SIGNATURE,
    "unprotected_map_not_empty": cbor.encode(cbor.Tag(18, [PROTECTED, {4: b"dev-001"}, PAYLOAD, SIGNATURE])),
    "unprotected_indefinite_empty_map": replaced(b"\xa0", b"\xbf\xff", VALID),
    "payload_as_text": cbor.encode(cbor.Tag(18, [PROTECTED, {}, PAYLOAD.decode("latin-1"), SIGNATURE])),
    "protected_kid_head_too_long": message_of(PAYLOAD, replaced(b"\x04\x47", b"\x04\x58\x07", PROTECTED)),
    "protected_duplicate_alg": message_of(PAYLOAD, b"\xa3" + PROTECTED[1:4] + PROTECTED[1:]),
    "protected_unsorted": message_of(PAYLOAD, PROTECTED[:1] + PROTECTED[4:] + PROTECTED[1:4]),
    "protected_alg_es384": message_of(PAYLOAD, replaced(b"\x01\x26", b"\x01\x38\x22", PROTECTED)),
    "protected_trailing_byte": message_of(PAYLOAD, PROTECTED + b"\x00"),
}


def outcome(verify: Any, data: bytes) -> object:
    try:
        return verify(data, PUB).as_dict()
    except ProtocolError as err:
        return err.reason


def test_the_edits_hit_the_canonical_payload() -> None:
    # the cases above are edits of this exact layout; if the encoding changes they must be rebuilt
    assert cbor.decode(PAYLOAD) == READING.to_senml()
    assert outcome(verify_reading_pure, VALID) == outcome(verify_reading, VALID) == READING.as_dict()
    assert len(PAYLOAD_CASES) >= 45 and len(OUTER_CASES) >= 18


@pytest.mark.parametrize("name", sorted(PAYLOAD_CASES))
def test_non_canonical_payload_gets_the_pure_verdict(name: str) -> None:
    payload = PAYLOAD_CASES[name]
    assert payload != PAYLOAD
    message = message_of(payload)
    pure = outcome(verify_reading_pure, message)
    assert isinstance(pure, str), f"{name}: the pure path accepted it"
    assert outcome(verify_reading, message) == pure
    assert fast_decode.decode_canonical_payload(payload) is None


@pytest.mark.parametrize("name", sorted(OUTER_CASES))
def test_non_canonical_message_gets_the_pure_verdict(name: str) -> None:
    # the outer array is not signed: the pure path may accept some of these; the fast one must agree
    message = OUTER_CASES[name]
    pure = outcome(verify_reading_pure, message)
    assert outcome(verify_reading, message) == pure
    try:
        cose.parse_sign1(message)
    except ProtocolError:
        assert fast_decode.parse_canonical_sign1(message) is None


def test_payload_truncated_at_every_byte_gets_the_pure_verdict() -> None:
    for end in range(len(PAYLOAD)):
        message = message_of(PAYLOAD[:end])
        pure = outcome(verify_reading_pure, message)
        assert isinstance(pure, str), end
        assert outcome(verify_reading, message) == pure, end
        assert fast_decode.decode_canonical_payload(PAYLOAD[:end]) is None, end


def test_message_truncated_at_every_byte_gets_the_pure_verdict() -> None:
    for end in range(len(VALID)):
        pure = outcome(verify_reading_pure, VALID[:end])
        assert isinstance(pure, str), end
        assert outcome(verify_reading, VALID[:end]) == pure, end
        assert fast_decode.parse_canonical_sign1(VALID[:end]) is None, end
