"""Typed protocol errors. MicroPython-safe.

Every rejection names its reason with a stable ``reason`` string, which the gateway and the cloud count
and report (for example ``bad_signature``); the message says what exactly was wrong.
"""


SHOWN_CHARS = 80


def shown(value: object) -> str:
    """``repr(value)`` cut to ``SHOWN_CHARS`` characters, for a refusal that names an input's value: a hostile
    value of a megabyte is named, not echoed back whole into every report and log line that carries it."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return text[:SHOWN_CHARS] + "... (%d characters)" % len(text)


class ProtocolError(ValueError):
    reason: str = "protocol_error"


class MalformedCBOR(ProtocolError):
    reason = "malformed_cbor"


class MalformedCOSE(ProtocolError):
    reason = "malformed_cose"


class WrongAlgorithm(ProtocolError):
    reason = "wrong_alg"


class MalformedReading(ProtocolError):
    reason = "malformed_reading"


class MissingField(MalformedReading):
    reason = "missing_field"


class NonCanonical(ProtocolError):
    reason = "non_canonical"


class KeyIdMismatch(ProtocolError):
    reason = "kid_mismatch"


class BadSignature(ProtocolError):
    reason = "bad_signature"


class BadPublicKey(ProtocolError):
    reason = "bad_public_key"


class ProofError(ProtocolError):
    reason = "bad_proof"


class ProofSizeError(ProofError):
    reason = "bad_proof_size"


class RootMismatch(ProofError):
    reason = "root_mismatch"


class IndexOutOfRange(ProofError):
    reason = "index_out_of_range"


# The cloud's 401 detail for an API key of a revoked (decommissioned) gateway: the gateway halts its uploads on it
# (a key that never works again) instead of retrying. Part of the gateway ↔ cloud HTTP contract.
GATEWAY_REVOKED = "gateway_revoked"
