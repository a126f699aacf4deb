"""CarbonTraceRegistry's key records for verifiers that trust no one (issue 12): key validity from a point in the
log, the signer's enterprise in keyState, the cloud's own keys, per-enterprise signer lists for completeness.

Every test taking `chain` runs on the in-process EVM and on a Hardhat node.
"""

from __future__ import annotations

import pytest

from cloud.chain import Chain, KeyRecord, KeyState, RegistryContract, SignerKind, deploy_registry
from tests.chain.conftest import chain_kind
from tests.chain.contract_helpers import (
    CLOUD_ID,
    DEVICE,
    DEVICE_2,
    ENTERPRISE,
    GATEWAY,
    OTHER_ENTERPRISE,
    ZERO32,
    Parties,
    cid_of,
    device_fingerprint,
    expect_revert,
    merkle_root,
)

# anchorCheckpoint's gas before this change (the registry of commit 176f6ef), measured on both chains with the
# inputs of _anchor below (59-character CIDv1): the first checkpoint and any later one. Key validity must not
# make anchoring dearer.
PREVIOUS_FIRST_ANCHOR_GAS = 121_479
PREVIOUS_LATER_ANCHOR_GAS = 123_925
# Bounds on the key transactions (measured: register a new device 164,057, listing it included; register again
# after a revocation 99,566; revoke 37,470; register a cloud key 94,257; revoke it 32,262), so that making them
# much dearer is a decision, not an accident.
REGISTER_NEW_SIGNER_GAS_BOUND = 170_000
REGISTER_KEY_GAS_BOUND = 105_000
REVOKE_KEY_GAS_BOUND = 40_000


@pytest.fixture
def registered(registry: RegistryContract, parties: Parties) -> RegistryContract:
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    registry.register_enterprise(OTHER_ENTERPRISE, parties.other, "Beta Cement")
    return registry


def _anchor(registry: RegistryContract, how_many: int = 1) -> int:
    """Anchor `how_many` checkpoints (the log growing by one leaf each); returns the last one's gas."""
    gas = 0
    for _ in range(how_many):
        count = registry.checkpoint_count()
        root = merkle_root(bytes([count % 256]))
        gas = registry.anchor_checkpoint(count + 1, root, cid_of(root)).gas_used
    return gas


# ---- key validity from a point in the log ----


def test_keys_are_valid_from_their_registration_to_their_revocation(
    registered: RegistryContract, parties: Parties
) -> None:
    as_enterprise = registered.with_sender(parties.enterprise)
    key_1, key_2 = device_fingerprint(b"validity key 1"), device_fingerprint(b"validity key 2")
    _anchor(registered, 2)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_1)
    registered_1 = KeyRecord(KeyState.ACTIVE, SignerKind.DEVICE, DEVICE, ENTERPRISE, 2, None)
    assert registered.key_state(key_1) == registered_1
    _anchor(registered, 3)
    assert registered.key_state(key_1) == registered_1  # anchoring does not touch key records

    registered.revoke_device_key(ENTERPRISE, DEVICE, key_1)
    revoked_1 = KeyRecord(KeyState.REVOKED, SignerKind.DEVICE, DEVICE, ENTERPRISE, 2, 5)
    assert registered.key_state(key_1) == revoked_1
    _anchor(registered)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_2)  # rotation under the same device id
    assert registered.key_state(key_2) == KeyRecord(KeyState.ACTIVE, SignerKind.DEVICE, DEVICE, ENTERPRISE, 6, None)
    _anchor(registered, 2)
    assert registered.key_state(key_1) == revoked_1  # the old record keeps its window

    # The history anchored while key 1 was active stays valid; what came before or after does not.
    record_1, record_2 = registered.key_state(key_1), registered.key_state(key_2)
    assert [seq for seq in range(10) if record_1.valid_at(seq)] == [2, 3, 4]
    assert [seq for seq in range(10) if record_2.valid_at(seq)] == [6, 7, 8, 9]
    assert not record_1.valid_at(None) and record_2.valid_at(None)  # not anchored yet: active now or nothing


def test_a_key_registered_and_revoked_between_two_checkpoints_is_valid_nowhere(
    registered: RegistryContract, parties: Parties
) -> None:
    key = device_fingerprint(b"short-lived gateway key")
    _anchor(registered)
    registered.register_gateway_key(ENTERPRISE, GATEWAY, key)
    registered.revoke_gateway_key(ENTERPRISE, GATEWAY, key)
    record = registered.key_state(key)
    assert (record.state, record.active_from, record.revoked_at) == (KeyState.REVOKED, 1, 1)
    assert not any(record.valid_at(seq) for seq in [None, *range(5)])
    never = registered.key_state(device_fingerprint(b"never registered"))
    assert never == KeyRecord(KeyState.NONE, SignerKind.NONE, ZERO32, ZERO32, 0, None)
    assert not never.valid_at(0) and not never.valid_at(None)


def test_key_state_names_the_signers_enterprise(registered: RegistryContract, parties: Parties) -> None:
    device_key, gateway_key = device_fingerprint(b"acme device"), device_fingerprint(b"beta gateway")
    cloud_key = device_fingerprint(b"cloud key")
    registered.with_sender(parties.enterprise).register_device_key(ENTERPRISE, DEVICE, device_key)
    registered.with_sender(parties.other).register_gateway_key(OTHER_ENTERPRISE, GATEWAY, gateway_key)
    registered.register_cloud_key(CLOUD_ID, cloud_key)
    assert registered.key_state(device_key).enterprise_id == ENTERPRISE
    assert registered.key_state(gateway_key).enterprise_id == OTHER_ENTERPRISE
    assert registered.key_state(cloud_key).enterprise_id == ZERO32  # the cloud belongs to no enterprise
    registered.with_sender(parties.other).revoke_gateway_key(OTHER_ENTERPRISE, GATEWAY, gateway_key)
    assert registered.key_state(gateway_key).enterprise_id == OTHER_ENTERPRISE  # still named once revoked


# ---- the cloud's own keys ----


def test_cloud_keys_are_registered_revoked_and_rotated_by_the_operator_only(
    registered: RegistryContract, parties: Parties
) -> None:
    key_1, key_2 = device_fingerprint(b"cloud key 1"), device_fingerprint(b"cloud key 2")
    as_enterprise, as_stranger = registered.with_sender(parties.enterprise), registered.with_sender(parties.stranger)
    start_block = registered.chain.block_number()
    assert registered.cloud_key(CLOUD_ID) == ZERO32

    assert expect_revert("NotOperator", as_stranger.register_cloud_key, CLOUD_ID, key_1) == (parties.stranger.lower(),)
    expect_revert("NotOperator", as_enterprise.register_cloud_key, CLOUD_ID, key_1)
    expect_revert("ZeroId", registered.register_cloud_key, ZERO32, key_1)
    expect_revert("ZeroId", registered.register_cloud_key, CLOUD_ID, ZERO32)

    _anchor(registered)
    registered.register_cloud_key(CLOUD_ID, key_1)
    assert registered.cloud_key(CLOUD_ID) == key_1
    assert registered.key_state(key_1) == KeyRecord(KeyState.ACTIVE, SignerKind.CLOUD, CLOUD_ID, ZERO32, 1, None)
    # at most one active key per cloud id; a fingerprint belongs to one signer, ever, whatever its kind
    assert expect_revert("SignerHasActiveKey", registered.register_cloud_key, CLOUD_ID, key_2) == (CLOUD_ID, key_1)
    assert expect_revert("KeyAlreadyRegistered", as_enterprise.register_device_key, ENTERPRISE, DEVICE, key_1) == (
        key_1,
    )
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_2)
    expect_revert("KeyAlreadyRegistered", registered.register_cloud_key, DEVICE, key_2)
    key_3 = device_fingerprint(b"cloud key 3")

    expect_revert("NotOperator", as_enterprise.revoke_cloud_key, CLOUD_ID, key_1)
    assert expect_revert("KeyNotActive", registered.revoke_cloud_key, CLOUD_ID, key_3) == (key_3,)
    expect_revert("KeyNotActive", registered.revoke_cloud_key, DEVICE, key_1)  # not that cloud id's key
    _anchor(registered, 2)
    registered.revoke_cloud_key(CLOUD_ID, key_1)  # rotation: revoke, then register
    assert registered.cloud_key(CLOUD_ID) == ZERO32
    assert registered.key_state(key_1) == KeyRecord(KeyState.REVOKED, SignerKind.CLOUD, CLOUD_ID, ZERO32, 1, 3)
    expect_revert("KeyNotActive", registered.revoke_cloud_key, CLOUD_ID, key_1)
    assert expect_revert("KeyRevoked", registered.register_cloud_key, CLOUD_ID, key_1) == (key_1,)
    registered.register_cloud_key(CLOUD_ID, key_3)
    assert registered.cloud_key(CLOUD_ID) == key_3
    assert registered.key_state(key_3).active_from == 3

    trail = [(e.kind, e.signer_id, e.key_fingerprint, e.enterprise_id, e.sender)
             for e in registered.cloud_key_events(start_block)]
    assert trail == [
        ("registered", CLOUD_ID, key_1, ZERO32, parties.operator),
        ("revoked", CLOUD_ID, key_1, ZERO32, parties.operator),
        ("registered", CLOUD_ID, key_3, ZERO32, parties.operator),
    ]
    assert registered.cloud_key_events(start_block, cloud_id=DEVICE) == []
    assert [e.key_fingerprint for e in registered.device_key_events(start_block)] == [key_2]


# ---- signer lists, for completeness proofs ----


def test_every_signer_an_enterprise_registered_is_listed_once_per_kind(
    registered: RegistryContract, parties: Parties
) -> None:
    as_enterprise, as_other = registered.with_sender(parties.enterprise), registered.with_sender(parties.other)
    for enterprise_id in (ENTERPRISE, OTHER_ENTERPRISE, ZERO32):
        for kind in SignerKind:
            assert registered.signer_count(enterprise_id, kind) == 0
    assert expect_revert("SignerOutOfRange", registered.signer_at, ENTERPRISE, SignerKind.DEVICE, 0) == (
        ENTERPRISE, SignerKind.DEVICE, 0, 0
    )

    as_enterprise.register_device_key(ENTERPRISE, DEVICE, device_fingerprint(b"list d1 k1"))
    as_enterprise.register_gateway_key(ENTERPRISE, GATEWAY, device_fingerprint(b"list g1 k1"))
    as_enterprise.register_device_key(ENTERPRISE, DEVICE_2, device_fingerprint(b"list d2 k1"))
    # rotations under the same ids do not list them again
    as_enterprise.revoke_device_key(ENTERPRISE, DEVICE, device_fingerprint(b"list d1 k1"))
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, device_fingerprint(b"list d1 k2"))
    as_enterprise.revoke_gateway_key(ENTERPRISE, GATEWAY, device_fingerprint(b"list g1 k1"))
    as_enterprise.register_gateway_key(ENTERPRISE, GATEWAY, device_fingerprint(b"list g1 k2"))
    # a registration that reverts lists nothing
    expect_revert("SignerOfOtherEnterprise", as_other.register_device_key, OTHER_ENTERPRISE, DEVICE,
                  device_fingerprint(b"list stolen id"))
    expect_revert("KeyAlreadyRegistered", as_other.register_device_key, OTHER_ENTERPRISE, DEVICE_2,
                  device_fingerprint(b"list g1 k2"))
    # the same 32-byte id as a gateway of the other enterprise: its own list
    as_other.register_gateway_key(OTHER_ENTERPRISE, DEVICE, device_fingerprint(b"list other gateway"))
    registered.register_cloud_key(CLOUD_ID, device_fingerprint(b"list cloud key"))

    assert registered.signers_of(ENTERPRISE, SignerKind.DEVICE) == [DEVICE, DEVICE_2]
    assert registered.signers_of(ENTERPRISE, SignerKind.GATEWAY) == [GATEWAY]
    assert registered.signers_of(OTHER_ENTERPRISE, SignerKind.DEVICE) == []
    assert registered.signers_of(OTHER_ENTERPRISE, SignerKind.GATEWAY) == [DEVICE]
    assert registered.signer_count(ZERO32, SignerKind.CLOUD) == 0  # cloud keys belong to no enterprise's list
    assert registered.signer_at(ENTERPRISE, SignerKind.DEVICE, 1) == DEVICE_2
    assert expect_revert("SignerOutOfRange", registered.signer_at, ENTERPRISE, SignerKind.DEVICE, 2) == (
        ENTERPRISE, SignerKind.DEVICE, 2, 2
    )
    expect_revert("SignerOutOfRange", registered.signer_at, OTHER_ENTERPRISE, SignerKind.GATEWAY, 1)


# ---- gas ----


def test_anchoring_costs_no_more_than_before_and_key_transactions_stay_bounded(
    chain: Chain, parties: Parties, gas_table: dict[tuple[str, str], int]
) -> None:
    registry, _ = deploy_registry(chain, parties.operator)
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    as_enterprise = registry.with_sender(parties.enterprise)
    first_anchor = _anchor(registry)
    later_anchor = _anchor(registry)
    key_1, key_2 = device_fingerprint(b"bounded key 1"), device_fingerprint(b"bounded key 2")
    cloud_key = device_fingerprint(b"bounded cloud key")
    gas = {
        "registerDeviceKey (new device, listed)": as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_1).gas_used,
        "revokeDeviceKey": as_enterprise.revoke_device_key(ENTERPRISE, DEVICE, key_1).gas_used,
        "registerDeviceKey (same device, rotation)": as_enterprise.register_device_key(
            ENTERPRISE, DEVICE, key_2
        ).gas_used,
        "registerCloudKey": registry.register_cloud_key(CLOUD_ID, cloud_key).gas_used,
        "revokeCloudKey": registry.revoke_cloud_key(CLOUD_ID, cloud_key).gas_used,
    }
    # with keys on chain, anchoring still costs what it did: it touches no key storage
    assert _anchor(registry) == later_anchor
    kind = chain_kind(chain)
    gas_table[(kind, "anchorCheckpoint (first, 59-char CID)")] = first_anchor
    gas_table[(kind, "anchorCheckpoint (later, 59-char CID)")] = later_anchor
    for op, used in gas.items():
        gas_table[(kind, op)] = used

    assert first_anchor <= PREVIOUS_FIRST_ANCHOR_GAS
    assert later_anchor <= PREVIOUS_LATER_ANCHOR_GAS
    assert gas["registerDeviceKey (new device, listed)"] < REGISTER_NEW_SIGNER_GAS_BOUND
    assert max(gas["registerDeviceKey (same device, rotation)"], gas["registerCloudKey"]) < REGISTER_KEY_GAS_BOUND
    assert max(gas["revokeDeviceKey"], gas["revokeCloudKey"]) < REVOKE_KEY_GAS_BOUND
