"""COSE_Sign1 (RFC 9052) with ES256: building, signing and parsing. MicroPython-safe.

Verification on servers is in ``carbontrace_protocol.verify`` (OpenSSL); this module only checks the
structure and builds the bytes that are signed (the Sig_structure of RFC 9052 §4.4).
"""

from carbontrace_protocol import cbor, p256
from carbontrace_protocol.errors import MalformedCBOR, MalformedCOSE, WrongAlgorithm

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER_ALG = 1
HEADER_CONTENT_TYPE = 3
HEADER_KID = 4
ALG_ES256 = -7
# CoAP content-format number of application/senml+cbor (RFC 8428 §12.3)
CONTENT_FORMAT_SENML_CBOR = 112
SIGNATURE1_CONTEXT = "Signature1"
_SIG_STRUCTURE_HEAD = cbor.encode_head(4, 4) + cbor.encode(SIGNATURE1_CONTEXT)  # array of 4, its context


def protected_header(kid: bytes, content_type: int = CONTENT_FORMAT_SENML_CBOR) -> bytes:
    """Encoded protected header: alg ES256, content type (SenML-CBOR for a reading; CBOR, 60, for a flux
    record, carbontrace_protocol/flux.py), key id (the device id, UTF-8)."""
    return cbor.encode({HEADER_ALG: ALG_ES256, HEADER_CONTENT_TYPE: content_type, HEADER_KID: kid})


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The exact bytes an ES256 signature covers (RFC 9052 §4.4): the encoded array
    ``["Signature1", protected, external_aad, payload]``, assembled from its items (this runs once per
    verified reading, and once per reading on a device: one buffer, the payload copied into it once)."""
    out = bytearray(_SIG_STRUCTURE_HEAD)
    cbor.encode_into(protected, out)
    cbor.encode_into(external_aad, out)
    cbor.encode_into(payload, out)
    return bytes(out)


def sign1(private_key: int, kid: bytes, payload: bytes, content_type: int = CONTENT_FORMAT_SENML_CBOR) -> bytes:
    """A tagged COSE_Sign1 message over ``payload``, signed with the P-256 ``private_key``."""
    protected = protected_header(kid, content_type)
    signature = p256.sign(private_key, sig_structure(protected, payload))
    return cbor.encode(cbor.Tag(cbor.TAG_COSE_SIGN1, [protected, {}, payload, signature]))


class Sign1:
    """A parsed (not yet verified) COSE_Sign1 message."""

    def __init__(
        self, protected: bytes, headers: "dict[Any, Any]", kid: bytes, payload: bytes, signature: bytes
    ) -> None:
        self.protected = protected
        self.headers = headers
        self.kid = kid  # checked by parse_sign1: a non-empty byte string from the protected header
        self.payload = payload
        self.signature = signature

    def signed_bytes(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def parse_sign1(data: bytes | bytearray | memoryview) -> Sign1:
    """Parse a COSE_Sign1 message (tagged or untagged) that must use ES256 with a key id.

    Raises ``MalformedCBOR``, ``MalformedCOSE`` or ``WrongAlgorithm``; checks no signature.
    """
    item = cbor.decode(data)
    if isinstance(item, cbor.Tag):
        if item.tag != cbor.TAG_COSE_SIGN1:
            raise MalformedCOSE("CBOR tag %d is not COSE_Sign1 (18)" % item.tag)
        item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise MalformedCOSE("COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes):
        raise MalformedCOSE("protected header must be a byte string")
    if not isinstance(unprotected, dict):
        raise MalformedCOSE("unprotected header must be a map")
    if not isinstance(payload, bytes):
        raise MalformedCOSE("payload must be an attached byte string")
    if not isinstance(signature, bytes):
        raise MalformedCOSE("signature must be a byte string")
    try:
        headers = cbor.decode(protected) if protected else {}
    except MalformedCBOR as err:
        raise MalformedCOSE("protected header is not valid CBOR: %s" % err)
    if not isinstance(headers, dict):
        raise MalformedCOSE("protected header must encode a map")
    for label in unprotected:
        if label in headers:
            raise MalformedCOSE("header %r is both protected and unprotected" % (label,))
    if HEADER_ALG in unprotected:
        raise WrongAlgorithm("alg must be in the protected header")
    alg = headers.get(HEADER_ALG)
    if alg != ALG_ES256:
        raise WrongAlgorithm("alg %r is not ES256 (-7)" % (alg,))
    kid = headers.get(HEADER_KID)
    if not isinstance(kid, bytes) or not kid:
        raise MalformedCOSE("protected header must carry a key id (label 4) as a byte string")
    if len(signature) != 64:
        raise MalformedCOSE("ES256 signature must be 64 bytes, got %d" % len(signature))
    return Sign1(protected, headers, kid, payload, signature)
