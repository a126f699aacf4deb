"""A small CBOR (RFC 8949) encoder and decoder. MicroPython-safe.

The encoder always writes the deterministic encoding of RFC 8949 §4.2.1 (shortest heads, definite
lengths, map keys sorted by their encoded bytes), so the same value gives the same bytes on a device
and in CPython. It refuses floats: signed readings carry integers and decimal fractions (tag 4) only,
because ESP32 MicroPython floats are single precision.

The decoder accepts any well-formed definite-length CBOR (floats included, for interoperability) and
raises ``MalformedCBOR`` for anything else: truncated input, trailing bytes, indefinite lengths,
duplicate or unhashable map keys, reserved values, nesting deeper than ``MAX_DEPTH``.
"""

import struct

from carbontrace_protocol.errors import MalformedCBOR

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 16

TAG_DECIMAL_FRACTION = 4
TAG_COSE_SIGN1 = 18

_MAJOR_UINT = 0
_MAJOR_NINT = 1
MAJOR_BYTES = 2
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5
_MAJOR_TAG = 6
_MAJOR_SIMPLE = 7


class Tag:
    """A tagged data item (major type 6)."""

    def __init__(self, tag: int, value: object) -> None:
        self.tag = tag
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self.tag, repr(self.value)))

    def __repr__(self) -> str:
        return "Tag(%d, %r)" % (self.tag, self.value)


def encode_head(major: int, n: int) -> bytes:
    """The shortest head of a major type with argument ``n`` (RFC 8949 §4.2.1)."""
    mt = major << 5
    if n < 24:
        return bytes([mt | n])
    if n < 0x100:
        return bytes([mt | 24, n])
    if n < 0x10000:
        return bytes([mt | 25]) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes([mt | 26]) + n.to_bytes(4, "big")
    if n < 0x10000000000000000:
        return bytes([mt | 27]) + n.to_bytes(8, "big")
    raise ValueError("CBOR integer out of 64-bit range")


def _encode_into(value: object, out: list[bytes]) -> None:
    if value is False:
        out.append(b"\xf4")
    elif value is True:
        out.append(b"\xf5")
    elif value is None:
        out.append(b"\xf6")
    elif isinstance(value, int):
        if value >= 0:
            out.append(encode_head(_MAJOR_UINT, value))
        else:
            out.append(encode_head(_MAJOR_NINT, -1 - value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        out.append(encode_head(MAJOR_BYTES, len(value)))
        out.append(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(encode_head(_MAJOR_TEXT, len(raw)))
        out.append(raw)
    elif isinstance(value, (list, tuple)):
        out.append(encode_head(_MAJOR_ARRAY, len(value)))
        for item in value:
            _encode_into(item, out)
    elif isinstance(value, dict):
        pairs = []
        for k in value:
            pairs.append((encode(k), encode(value[k])))
        pairs.sort(key=lambda kv: kv[0])
        for i in range(1, len(pairs)):
            if pairs[i][0] == pairs[i - 1][0]:
                raise ValueError("duplicate CBOR map key")
        out.append(encode_head(_MAJOR_MAP, len(pairs)))
        for kv in pairs:
            out.append(kv[0])
            out.append(kv[1])
    elif isinstance(value, Tag):
        out.append(encode_head(_MAJOR_TAG, value.tag))
        _encode_into(value.value, out)
    elif isinstance(value, float):
        raise ValueError("floats are not allowed in CarbonTrace CBOR; use an integer or a decimal fraction")
    else:
        raise ValueError("cannot encode %s as CBOR" % type(value).__name__)


def encode(value: object) -> bytes:
    """Deterministic CBOR encoding of ``value`` (int, bytes, str, list, tuple, dict, bool, None, Tag)."""
    out: list[bytes] = []
    _encode_into(value, out)
    return b"".join(out)


def _half_to_float(h: int) -> float:
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * 2.0**-24
    elif exp == 31:
        val = float("inf") if mant == 0 else float("nan")
    else:
        val = (mant + 1024) * 2.0 ** (exp - 25)
    return -val if h & 0x8000 else val


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise MalformedCBOR("truncated CBOR: need %d bytes at offset %d" % (n, self.pos))
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def argument(self, info: int) -> int:
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return int.from_bytes(self.take(2), "big")
        if info == 26:
            return int.from_bytes(self.take(4), "big")
        if info == 27:
            return int.from_bytes(self.take(8), "big")
        if info == 31:
            raise MalformedCBOR("indefinite-length CBOR items are not supported")
        raise MalformedCBOR("reserved CBOR additional info %d at offset %d" % (info, self.pos - 1))

    def item(self, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise MalformedCBOR("CBOR nested deeper than %d" % MAX_DEPTH)
        initial = self.take(1)[0]
        major = initial >> 5
        info = initial & 0x1F
        if major == _MAJOR_SIMPLE:
            return self.simple(info)
        arg = self.argument(info)
        if major == _MAJOR_UINT:
            return arg
        if major == _MAJOR_NINT:
            return -1 - arg
        if major == MAJOR_BYTES:
            return bytes(self.take(arg))
        if major == _MAJOR_TEXT:
            try:
                return bytes(self.take(arg)).decode("utf-8")
            except UnicodeError:
                raise MalformedCBOR("CBOR text string is not valid UTF-8")
        if major == _MAJOR_ARRAY:
            if arg > len(self.data) - self.pos:
                raise MalformedCBOR("truncated CBOR: array of %d items" % arg)
            return [self.item(depth + 1) for _ in range(arg)]
        if major == _MAJOR_MAP:
            if 2 * arg > len(self.data) - self.pos:
                raise MalformedCBOR("truncated CBOR: map of %d pairs" % arg)
            result: dict[object, object] = {}
            for _ in range(arg):
                key = self.item(depth + 1)
                if isinstance(key, (list, dict)):
                    raise MalformedCBOR("CBOR map key must be a scalar")
                if key in result:
                    raise MalformedCBOR("duplicate CBOR map key %r" % (key,))
                result[key] = self.item(depth + 1)
            return result
        return Tag(arg, self.item(depth + 1))

    def simple(self, info: int) -> bool | float | None:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return _half_to_float(int.from_bytes(self.take(2), "big"))
        if info == 26:
            single: float = struct.unpack(">f", self.take(4))[0]
            return single
        if info == 27:
            double: float = struct.unpack(">d", self.take(8))[0]
            return double
        raise MalformedCBOR("unsupported CBOR simple value %d" % info)


def decode(data: bytes | bytearray | memoryview) -> "Any":
    """Decode exactly one CBOR item from ``data``; raises ``MalformedCBOR`` on any defect.

    The result is whatever the input holds (int, float, bool, None, bytes, str, list, dict, ``Tag``), so it is
    typed like ``json.loads``: callers check its shape before they use it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedCBOR("CBOR input must be bytes")
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if reader.pos != len(reader.data):
        raise MalformedCBOR("%d trailing bytes after CBOR item" % (len(reader.data) - reader.pos))
    return value
