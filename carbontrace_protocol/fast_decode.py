"""The fast decode path for servers (CPython only). Not for devices.

Each function here answers only "this is certainly the canonical, valid form": it returns the decoded
value when the bytes are exactly the canonical encoding of what they decode to, and ``None`` otherwise. It
never decides a rejection: a caller that gets ``None`` runs the pure-Python path (``cose.parse_sign1``,
``reading.decode_payload``), which raises the same reason it always has.

Both functions read the bytes once, front to back, against the one layout the encoders write
(``cose.sign1`` and ``Reading.to_senml`` + ``cbor.encode``): every fixed part is compared as bytes, every
variable part (an integer, a string) is read with its shortest head only, and the whole input must be used.
So a byte string is taken here exactly when it equals the encoding of the value returned; nothing is
re-encoded to check it, and no general CBOR decoder runs. A C decode plus a C re-encode (cbor2) was the
previous path: cbor2's per-call cost on a ~150-byte reading (loads ~9 µs, dumps ~19 µs) plus a separate
pass over the decoded SenML came to ~60 µs, against ~15 µs here (docs/benchmarks.md, "Hot path").
tests/protocol/test_fast_decode_differential.py checks, over vectors, mutations and adversarial inputs,
that the verdict and the reason equal the pure path's.
"""

from __future__ import annotations

from functools import lru_cache

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.reading import (
    FORMAT_BOOT_CLOCK,
    FORMAT_VERSION,
    MEASUREMENTS,
    SENML_BASE_NAME,
    SENML_BASE_TIME,
    SENML_NAME,
    SENML_STRING_VALUE,
    SENML_UNIT,
    SENML_VALUE,
    Reading,
)

_COSE_SIGN1_PREFIX = b"\xd2\x84"  # tag 18, array of 4
_EMPTY_MAP = b"\xa0"
_SIGNATURE_HEAD = b"\x58\x40"  # byte string of 64
_EMPTY_BSTR = b"\x40"  # the external AAD in the Sig_structure
_SIG_STRUCTURE_HEAD = cbor.encode_head(4, 4) + cbor.encode(cose.SIGNATURE1_CONTEXT)
_PROTECTED_PREFIX = cose.protected_header(b"k")[:-2]  # the header map up to the key id's byte-string head


class _NotCanonical(Exception):
    """The bytes leave the canonical layout here (the pure path, run next, names the reason)."""


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """The argument of a head whose additional info is ``info`` (its first byte at ``pos - 1``), written in
    its shortest form only (RFC 8949 §4.2.1); the position after it."""
    if info < 24:
        return info, pos
    if info == 24:
        value = data[pos]
        if value >= 24:
            return value, pos + 1
    elif info == 25:
        end = pos + 2
        value = int.from_bytes(data[pos:end], "big")
        if value >= 0x100 and end <= len(data):
            return value, end
    elif info == 26:
        end = pos + 4
        value = int.from_bytes(data[pos:end], "big")
        if value >= 0x10000 and end <= len(data):
            return value, end
    elif info == 27:
        end = pos + 8
        value = int.from_bytes(data[pos:end], "big")
        if value >= 0x100000000 and end <= len(data):
            return value, end
    raise _NotCanonical  # a longer head than needed, an indefinite length, a reserved value, or truncated


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    initial = data[pos]
    if initial < 24:  # most values of a reading: the head is the value
        return initial, pos + 1
    if initial >= 0x20:
        raise _NotCanonical
    return _argument(data, pos + 1, initial)


def _int(data: bytes, pos: int) -> tuple[int, int]:
    initial = data[pos]
    if initial < 24:
        return initial, pos + 1
    if initial < 0x20:
        return _argument(data, pos + 1, initial)
    if initial < 0x40:
        value, pos = _argument(data, pos + 1, initial - 0x20)
        return -1 - value, pos
    raise _NotCanonical


def _text(data: bytes, pos: int) -> tuple[str, int]:
    initial = data[pos]
    if 0x60 <= initial < 0x78:
        length, start = initial - 0x60, pos + 1
    elif 0x78 <= initial < 0x80:
        length, start = _argument(data, pos + 1, initial - 0x60)
    else:
        raise _NotCanonical
    end = start + length
    if end > len(data):
        raise _NotCanonical
    return data[start:end].decode("utf-8"), end  # UnicodeDecodeError is a ValueError: caught by the caller


def _bytes(data: bytes, pos: int) -> tuple[int, int]:
    """Start and end of the byte string whose head is at ``pos``."""
    initial = data[pos]
    if not 0x40 <= initial < 0x60:
        raise _NotCanonical
    length, start = _argument(data, pos + 1, initial - 0x40)
    end = start + length
    if end > len(data):
        raise _NotCanonical
    return start, end


class CanonicalSign1(cose.Sign1):
    """A ``Sign1`` read from the canonical envelope: its Sig_structure is cut from the message's own bytes
    (the envelope holds the protected header and the payload with the very heads the Sig_structure uses)."""

    def __init__(self, protected: bytes, headers: dict[int, object], kid: bytes, payload: bytes,
                 signature: bytes, signed: bytes) -> None:
        super().__init__(protected, headers, kid, payload, signature)
        self._signed = signed

    def signed_bytes(self) -> bytes:
        return self._signed


@lru_cache(maxsize=4096)
def _protected_header(kid: bytes) -> bytes:
    # cached like verify.load_public_key: a gateway sees the same few hundred device ids over and over
    return cose.protected_header(kid)


def parse_canonical_sign1(data: bytes) -> cose.Sign1 | None:
    """The ``Sign1`` of a tagged COSE_Sign1 in exactly the form ``cose.sign1`` writes, else ``None``.

    The form: tag 18, array of 4, the protected header ``cose.protected_header(kid)`` as a byte string, the
    empty unprotected map, the payload as a byte string, the 64-byte signature; shortest heads, nothing after.
    """
    if type(data) is not bytes or not data.startswith(_COSE_SIGN1_PREFIX):
        return None
    try:
        protected_start, protected_end = _bytes(data, 2)
        protected = data[protected_start:protected_end]
        if not protected.startswith(_PROTECTED_PREFIX):
            return None
        kid_start, kid_end = _bytes(protected, len(_PROTECTED_PREFIX))
        kid = protected[kid_start:kid_end]
        if not kid or kid_end != len(protected) or protected != _protected_header(kid):
            return None
        if data[protected_end] != 0xA0:  # the empty unprotected map
            return None
        payload_start, payload_end = _bytes(data, protected_end + 1)
    except (_NotCanonical, IndexError):
        return None
    if data[payload_end : payload_end + 2] != _SIGNATURE_HEAD or len(data) != payload_end + 66:
        return None
    signed = b"".join((_SIG_STRUCTURE_HEAD, data[2:protected_end], _EMPTY_BSTR, data[protected_end + 1 : payload_end]))
    headers: dict[int, object] = {cose.HEADER_ALG: cose.ALG_ES256,
                                  cose.HEADER_CONTENT_TYPE: cose.CONTENT_FORMAT_SENML_CBOR, cose.HEADER_KID: kid}
    return CanonicalSign1(protected, headers, kid, data[payload_start:payload_end], data[payload_end + 2 :], signed)


# -- the SenML payload: the records Reading.to_senml writes, each as its fixed bytes up to its value ----------

def _key(label: int) -> bytes:
    return cbor.encode(label)


def _record_prefix(labels: int, name: str, *fixed: tuple[int, object]) -> bytes:
    """A record map of ``labels`` pairs: its head, the name, ``fixed`` (label, value) pairs, up to the head of
    the value. The labels here are in canonical order (0, 1, 2, 3 encode as 0x00-0x03)."""
    out = cbor.encode_head(5, labels) + _key(SENML_NAME) + cbor.encode(name)
    for label, value in fixed:
        out += _key(label) + cbor.encode(value)
    return out


_FIRST_3 = _record_prefix(3, "seq") + _key(SENML_VALUE)  # seq, base name; base time absent
_FIRST_4 = _record_prefix(4, "seq") + _key(SENML_VALUE)  # seq, base name, base time
_BASE_NAME = _key(SENML_BASE_NAME)[0]
_BASE_TIME = _key(SENML_BASE_TIME)[0]
_FMT = _record_prefix(2, "fmt") + _key(SENML_VALUE)
_FW = _record_prefix(2, "fw") + _key(SENML_STRING_VALUE)
_FLAGS = _record_prefix(2, "flags") + _key(SENML_VALUE)
_BOOT = _record_prefix(2, "boot") + _key(SENML_VALUE)
_UP = _record_prefix(3, "up", (SENML_UNIT, "s")) + _key(SENML_VALUE)
# (attribute, the record's bytes up to its integer): name, unit, and for a decimal fraction tag 4 [exp, …]
_MEASUREMENTS = tuple(
    (attr, _record_prefix(3, name, (SENML_UNIT, unit)) + _key(SENML_VALUE)
     + (b"" if exp is None else cbor.encode_head(6, cbor.TAG_DECIMAL_FRACTION) + cbor.encode_head(4, 2)
        + cbor.encode(exp)))
    for name, unit, attr, exp, _low, _high in MEASUREMENTS
)
_MAX_RECORDS = 4 + 2 + len(MEASUREMENTS)


def _expect(data: bytes, pos: int, fixed: bytes) -> int:
    if not data.startswith(fixed, pos):
        raise _NotCanonical
    return pos + len(fixed)


def _read_reading(data: bytes) -> Reading:
    """The one pass: the pack's head, then each record in the order ``Reading.to_senml`` writes them."""
    records = data[0] - 0x80
    if not 4 <= records <= _MAX_RECORDS:
        raise _NotCanonical
    if data.startswith(_FIRST_4, 1):
        seq, pos = _uint(data, 1 + len(_FIRST_4))
        with_time = True
    else:
        seq, pos = _uint(data, _expect(data, 1, _FIRST_3))
        with_time = False
    if data[pos] != _BASE_NAME:
        raise _NotCanonical
    base_name, pos = _text(data, pos + 1)
    if not base_name.endswith("/"):
        raise _NotCanonical
    timestamp = None
    if with_time:
        if data[pos] != _BASE_TIME:
            raise _NotCanonical
        timestamp, pos = _uint(data, pos + 1)
    fmt, pos = _uint(data, _expect(data, pos, _FMT))
    firmware, pos = _text(data, _expect(data, pos, _FW))
    flags, pos = _uint(data, _expect(data, pos, _FLAGS))
    boot = up = None
    seen = 4
    if fmt == FORMAT_BOOT_CLOCK:
        boot, pos = _uint(data, _expect(data, pos, _BOOT))
        up, pos = _uint(data, _expect(data, pos, _UP))
        seen = 6
    elif fmt != FORMAT_VERSION:
        raise _NotCanonical
    values: dict[str, int] = {}
    for attr, fixed in _MEASUREMENTS:
        if seen < records and data.startswith(fixed, pos):
            values[attr], pos = _int(data, pos + len(fixed))
            seen += 1
    if seen != records or pos != len(data):
        raise _NotCanonical
    # Reading checks every range and the combination of time fields, as reading_from_senml's caller does
    return Reading(base_name[:-1], seq, timestamp, firmware, flags=flags, boot=boot, up=up, **values)


def decode_canonical_payload(payload: bytes) -> Reading | None:
    """The ``Reading`` whose canonical encoding ``payload`` is, else ``None`` (the pure path says why)."""
    if type(payload) is not bytes or not payload:
        return None
    try:
        return _read_reading(payload)
    except (_NotCanonical, IndexError, ValueError, ProtocolError):  # ValueError: a text string not UTF-8
        return None
