"""The signed checkpoint of the cloud's log: one definition for the cloud that signs it and every verifier.

A checkpoint is a COSE_Sign1 (ES256) whose protected header names, as kid, the 32-byte fingerprint of the
cloud key that signed it (carbontrace_protocol.ids.key_fingerprint), and whose payload is the canonical
CBOR map {"v": 1, "log": "carbontrace", "size": tree size, "root": 32-byte RFC 9162 root, "time": unix s}.
Nothing else is in it; a parser that meets another field, type or value refuses the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError
from carbontrace_protocol.ids import FINGERPRINT_SIZE

CHECKPOINT_VERSION = 1
LOG_NAME = "carbontrace"
_FIELDS = {"v", "log", "size", "root", "time"}


class MalformedCheckpoint(ProtocolError):
    reason = "malformed_checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed (not yet verified) signed checkpoint."""

    signed: bytes
    message: cose.Sign1
    key_fingerprint: bytes  # the kid
    tree_size: int
    root: bytes
    time: int


def payload(tree_size: int, root: bytes, timestamp: int) -> bytes:
    return cbor.encode({"v": CHECKPOINT_VERSION, "log": LOG_NAME, "size": tree_size, "root": root, "time": timestamp})


def sign(private_key: int, key_fingerprint: bytes, tree_size: int, root: bytes, timestamp: int) -> bytes:
    return cose.sign1(private_key, key_fingerprint, payload(tree_size, root, timestamp))


def _uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse(signed: bytes) -> Checkpoint:
    try:
        message = cose.parse_sign1(signed)
        body = cbor.decode(message.payload)
    except MalformedCBOR as err:
        raise MalformedCheckpoint(f"checkpoint payload is not CBOR: {err}") from err
    if len(message.kid) != FINGERPRINT_SIZE:
        raise MalformedCheckpoint("checkpoint kid must be the 32-byte fingerprint of the cloud key")
    if not isinstance(body, dict) or set(body) != _FIELDS:
        raise MalformedCheckpoint(f"checkpoint payload must have exactly the fields {sorted(_FIELDS)}")
    if body["v"] != CHECKPOINT_VERSION or isinstance(body["v"], bool) or body["log"] != LOG_NAME:
        raise MalformedCheckpoint(f"checkpoint must be v {CHECKPOINT_VERSION} of log {LOG_NAME!r}")
    if not _uint(body["size"]) or not _uint(body["time"]):
        raise MalformedCheckpoint("checkpoint size and time must be unsigned integers")
    if not isinstance(body["root"], bytes) or len(body["root"]) != 32:
        raise MalformedCheckpoint("checkpoint root must be a 32-byte hash")
    return Checkpoint(bytes(signed), message, message.kid, body["size"], body["root"], body["time"])
