"""Shared names and helpers of the contract tests (ids, real keys and CIDs, revert assertions)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from multiformats import CID, multihash

from carbontrace_protocol import p256
from carbontrace_protocol.ids import CLOUD_SIGNER, chain_id_of
from cloud.chain import Chain, ContractReverted, key_fingerprint

ZERO32 = bytes(32)
ZERO_ADDRESS = "0x" + "00" * 20
ENTERPRISE = hashlib.sha256(b"enterprise:acme-steel").digest()
OTHER_ENTERPRISE = hashlib.sha256(b"enterprise:beta-cement").digest()
PLATFORM = hashlib.sha256(b"platform:green-exchange").digest()
DEVICE = hashlib.sha256(b"device:esp32-0001").digest()
DEVICE_2 = hashlib.sha256(b"device:picow-0002").digest()
GATEWAY = hashlib.sha256(b"gateway:gw-0001").digest()
CLOUD_ID = chain_id_of(CLOUD_SIGNER)  # what the cloud registers its signing keys under
# issue 14's target: one storage slot per checkpoint (a commitment), the fields in the event
ANCHOR_GAS_BOUND = 60_000


def device_fingerprint(seed: bytes) -> bytes:
    """The fingerprint of a real P-256 device key, as the cloud computes it."""
    return key_fingerprint(p256.public_key(p256.private_key_from_bytes(hashlib.sha256(seed).digest())))


def cid_of(data: bytes) -> str:
    """A real CIDv1 (raw, sha2-256, base32): what the cloud anchors for a checkpoint's IPFS object."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def merkle_root(tag: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + tag).digest()


def expect_revert(name: str, call: Callable[..., object], *args: object) -> tuple[object, ...]:
    """Call, expect a revert with the custom error `name`, return the error's decoded arguments."""
    with pytest.raises(ContractReverted) as info:
        call(*args)
    assert info.value.error_name == name, f"expected {name}, got {info.value}"
    return info.value.args_decoded


class Parties:
    """The node's unlocked accounts, by role."""

    def __init__(self, chain: Chain) -> None:
        accounts = chain.accounts
        self.operator, self.enterprise, self.platform, self.stranger, self.other = accounts[:5]
