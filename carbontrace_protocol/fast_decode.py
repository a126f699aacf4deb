"""A C-accelerated decode path for servers (CPython only: cbor2's C decoder and encoder). Not for devices.

Each function here answers only "this is certainly the canonical, valid form": it returns the decoded
value when the bytes are exactly the canonical encoding of what they decode to, and ``None`` otherwise. It
never decides a rejection: a caller that gets ``None`` runs the pure-Python path (``cose.parse_sign1``,
``reading.decode_payload``), which raises the same reason it always has. Canonical bytes always decode the
same way in both decoders, so accepting only canonical bytes here cannot accept anything the pure path
rejects; tests/protocol/test_fast_decode_differential.py checks that over vectors and mutations.
"""

from __future__ import annotations

from functools import lru_cache

import cbor2

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.reading import Reading, reading_from_senml

_COSE_SIGN1_PREFIX = b"\xd2\x84"  # tag 18, array of 4
_EMPTY_MAP = b"\xa0"


def _decimal_fraction(value: object, _immutable: bool) -> cbor.Tag:
    # Keep tag 4 as the protocol's Tag (cbor2 would make a Decimal); the reading checks its exponent.
    return cbor.Tag(cbor.TAG_DECIMAL_FRACTION, value)


_SEMANTIC_DECODERS = {cbor.TAG_DECIMAL_FRACTION: _decimal_fraction}


@lru_cache(maxsize=4096)
def _protected_header(kid: bytes) -> bytes:
    # cached like verify.load_public_key: a gateway sees the same few hundred device ids over and over
    return cose.protected_header(kid)


def _bstr_head(length: int) -> bytes:
    return cbor.encode_head(cbor.MAJOR_BYTES, length)


def parse_canonical_sign1(data: bytes) -> cose.Sign1 | None:
    """The ``Sign1`` of a tagged COSE_Sign1 in exactly the form ``cose.sign1`` writes, else ``None``.

    One C decode of the message, then a byte comparison with its canonical re-encoding: the protected
    header must be the canonical ``cose.protected_header(kid)`` and the unprotected header empty.
    """
    if not isinstance(data, bytes) or not data.startswith(_COSE_SIGN1_PREFIX):
        return None
    try:
        item = cbor2.loads(data, allow_indefinite=False)
    except Exception:  # anything odd goes to the pure path, which names the reason
        return None
    if not isinstance(item, cbor2.CBORTag) or item.tag != cbor.TAG_COSE_SIGN1:
        return None
    parts = item.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:  # cbor2 makes a tagged array a tuple
        return None
    protected, _unprotected, payload, signature = parts  # the unprotected map is checked as bytes below
    if not (type(protected) is bytes and type(payload) is bytes and type(signature) is bytes):
        return None
    if len(signature) != 64 or len(protected) < 8:
        return None
    kid = protected[9:] if protected[7] == 0x58 else protected[8:]  # one- or two-byte head of the key id
    if not kid or protected != _protected_header(kid):
        return None
    canonical = b"".join(
        (_COSE_SIGN1_PREFIX, _bstr_head(len(protected)), protected, _EMPTY_MAP, _bstr_head(len(payload)), payload,
         _bstr_head(64), signature)
    )
    if canonical != data:
        return None
    headers = {cose.HEADER_ALG: cose.ALG_ES256, cose.HEADER_CONTENT_TYPE: cose.CONTENT_FORMAT_SENML_CBOR,
               cose.HEADER_KID: kid}
    return cose.Sign1(protected, headers, kid, payload, signature)


def _cbor2_tag(tag: int, value: object) -> cbor2.CBORTag:
    return cbor2.CBORTag(tag, value)


def decode_canonical_payload(payload: bytes) -> Reading | None:
    """The ``Reading`` whose canonical encoding ``payload`` is, else ``None`` (the pure path says why)."""
    try:
        pack = cbor2.loads(payload, semantic_decoders=_SEMANTIC_DECODERS, allow_indefinite=False)
        reading = reading_from_senml(pack)
        # to_senml keeps labels in canonical order, so the plain (order-keeping) encode is the canonical one
        canonical = cbor2.dumps(reading.to_senml(_cbor2_tag))
    except Exception:
        return None
    return reading if canonical == payload else None
