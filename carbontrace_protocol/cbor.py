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
MAJOR_ARRAY = 4
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


def write_head(out: bytearray, major: int, n: int) -> None:
    """Append the shortest head of a major type with argument ``n`` (RFC 8949 §4.2.1) to ``out``."""
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        out.append(mt | 27)
        out.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("CBOR integer out of 64-bit range")


def encode_head(major: int, n: int) -> bytes:
    """The shortest head of a major type with argument ``n`` (RFC 8949 §4.2.1)."""
    out = bytearray()
    write_head(out, major, n)
    return bytes(out)


def _encoded_key(pair: "tuple[bytes, Any]") -> bytes:
    return pair[0]


def encode_into(value: object, out: bytearray) -> None:
    """Append the deterministic CBOR encoding of ``value`` to ``out``.

    Every item is written straight into the one buffer (only map keys are encoded apart, to sort them): on a
    device the live heap of an encode is its output, not one small object per item until a final join.
    """
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if value >= 0:
            write_head(out, _MAJOR_UINT, value)
        else:
            write_head(out, _MAJOR_NINT, -1 - value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if isinstance(value, memoryview):
            value = bytes(value)  # its length in bytes, whatever its item format
        write_head(out, MAJOR_BYTES, len(value))
        out.extend(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        write_head(out, _MAJOR_TEXT, len(raw))
        out.extend(raw)
    elif isinstance(value, (list, tuple)):
        write_head(out, MAJOR_ARRAY, len(value))
        for item in value:
            encode_into(item, out)
    elif isinstance(value, dict):
        keys = [(encode(k), k) for k in value]
        keys.sort(key=_encoded_key)
        for i in range(1, len(keys)):
            if keys[i][0] == keys[i - 1][0]:
                raise ValueError("duplicate CBOR map key")
        write_head(out, _MAJOR_MAP, len(keys))
        for encoded_key, key in keys:
            out.extend(encoded_key)
            encode_into(value[key], out)
    elif isinstance(value, Tag):
        write_head(out, _MAJOR_TAG, value.tag)
        encode_into(value.value, out)
    elif isinstance(value, float):
        raise ValueError("floats are not allowed in CarbonTrace CBOR; use an integer or a decimal fraction")
    else:
        raise ValueError("cannot encode %s as CBOR" % type(value).__name__)


def encode(value: object) -> bytes:
    """Deterministic CBOR encoding of ``value`` (int, bytes, str, list, tuple, dict, bool, None, Tag)."""
    out = bytearray()
    encode_into(value, out)
    return bytes(out)


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
        if major == MAJOR_ARRAY:
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
