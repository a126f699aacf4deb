"""Identifiers every tier and every verifier computes the same way (docs/protocol.md, "Identifiers").

MicroPython-safe: only hashlib.sha256.

- A key fingerprint is sha256 of the 65-byte uncompressed SEC1 public key (0x04 || x || y).
- A signer's, enterprise's or platform's on-chain id is sha256 of its UTF-8 text id.
- The registry's key states and signer kinds, with the numbers the contract uses.
- The cloud signs checkpoints and statements under the signer name ``CLOUD_SIGNER``; the COSE kid of a
  checkpoint is the fingerprint of the cloud key that signed it (so a rotated key is named, not guessed).
"""

import hashlib

# CarbonTraceRegistry.KeyState
KEY_NONE = 0
KEY_ACTIVE = 1
KEY_REVOKED = 2

# CarbonTraceRegistry.SignerKind
SIGNER_NONE = 0
SIGNER_DEVICE = 1
SIGNER_GATEWAY = 2
SIGNER_CLOUD = 3
SIGNER_KIND_NAMES = {SIGNER_DEVICE: "device", SIGNER_GATEWAY: "gateway", SIGNER_CLOUD: "cloud"}

CLOUD_SIGNER = "carbontrace-cloud"
PUBLIC_KEY_SIZE = 65
FINGERPRINT_SIZE = 32


def key_fingerprint(public_key: bytes) -> bytes:
    """sha256 of a 65-byte uncompressed SEC1 P-256 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE or public_key[0] != 4:
        raise ValueError("a public key is 65 bytes of uncompressed SEC1 (0x04 || x || y)")
    return hashlib.sha256(bytes(public_key)).digest()


def key_valid_at(state: int, active_from: int, revoked_at: int | None, seq: int | None) -> bool:
    """Whether a key counts for a batch first anchored under checkpoint ``seq`` (None: not anchored yet, which
    needs the key active now). Registration and revocation take effect from a point in the log: ``active_from``
    and ``revoked_at`` are the registry's checkpoint counts then, so revoking a key voids only what is anchored
    from ``revoked_at`` on, never the history before it."""
    if seq is None:
        return state == KEY_ACTIVE
    if state == KEY_ACTIVE:
        return active_from <= seq
    return state == KEY_REVOKED and revoked_at is not None and active_from <= seq < revoked_at


def chain_id_of(text_id: str) -> bytes:
    """The on-chain id (bytes32) of an enterprise, platform, device, gateway or the cloud signer."""
    return hashlib.sha256(text_id.encode()).digest()
