"""CarbonTraceRegistry and NaiveHashStore on two real EVMs: the in-process py-evm and a Hardhat 2 node.

Every test taking `chain` runs on both. Reverts are checked by their custom error name and arguments.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from carbontrace_protocol.anchor_commitment import checkpoint_commitment
from cloud import consent
from cloud.chain import (
    REGISTRY_ARTIFACT,
    BindingState,
    Chain,
    KeyRecord,
    KeyState,
    RegistryContract,
    SignerKind,
    deploy_naive_store,
    deploy_registry,
)
from cloud.chain_signer import LocalKeySigner
from cloud.consent import ConsentAction
from tests.chain.conftest import chain_kind
from tests.chain.contract_helpers import (
    ANCHOR_GAS_BOUND,
    CLOUD_ID,
    DEVICE,
    DEVICE_2,
    ENTERPRISE,
    OTHER_ENTERPRISE,
    PLATFORM,
    ZERO32,
    ZERO_ADDRESS,
    Parties,
    cid_of,
    device_fingerprint,
    expect_revert,
    merkle_root,
)


@pytest.fixture
def registered(registry: RegistryContract, parties: Parties) -> RegistryContract:
    """A registry with one enterprise (and a second one) and one platform registered."""
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    registry.register_enterprise(OTHER_ENTERPRISE, parties.other, "Beta Cement")
    registry.register_platform(PLATFORM, parties.platform, "Green Exchange")
    return registry


# ---- deployment ----


def test_deployed_code_is_the_artifact(chain: Chain, registry: RegistryContract) -> None:
    code = bytearray(chain.w3.eth.get_code(registry.contract.address))
    # immutables (the predecessor link, the deployment block) are written into the code at deployment
    references = json.loads(REGISTRY_ARTIFACT.read_text())["immutableReferences"]
    assert references, "the registry's link is immutable: the artifact must say where"
    for ranges in references.values():
        for span in ranges:
            code[span["start"]:span["start"] + span["length"]] = bytes(span["length"])
    assert "0x" + bytes(code).hex() == registry.artifact.deployed_bytecode


# ---- operator ----


def test_operator_handover_is_two_step(registry: RegistryContract, parties: Parties) -> None:
    assert registry.operator() == parties.operator
    stranger = registry.with_sender(parties.stranger)
    assert expect_revert("NotOperator", stranger.transfer_operator, parties.stranger) == (parties.stranger.lower(),)
    expect_revert("ZeroAddress", registry.transfer_operator, ZERO_ADDRESS)

    registry.transfer_operator(parties.other)
    assert registry.pending_operator() == parties.other
    assert registry.operator() == parties.operator  # nothing changes until accepted
    expect_revert("NotPendingOperator", stranger.accept_operator)

    registry.with_sender(parties.other).accept_operator()
    assert registry.operator() == parties.other
    assert registry.pending_operator() == ZERO_ADDRESS
    expect_revert("NotOperator", registry.register_platform, PLATFORM, parties.platform, "x")
    registry.with_sender(parties.other).register_platform(PLATFORM, parties.platform, "Green Exchange")


# ---- parties ----


def test_register_enterprise_and_platform(registry: RegistryContract, parties: Parties) -> None:
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    registry.register_platform(PLATFORM, parties.platform, "Green Exchange")
    enterprise = registry.enterprise(ENTERPRISE)
    assert (enterprise.account, enterprise.name) == (parties.enterprise, "Acme Steel")
    platform = registry.platform(PLATFORM)
    assert (platform.account, platform.name) == (parties.platform, "Green Exchange")
    assert registry.enterprise(OTHER_ENTERPRISE).account == ZERO_ADDRESS

    logs = registry.contract.events.EnterpriseRegistered.get_logs(from_block=0)
    assert [(bytes(e["args"]["enterpriseId"]), e["args"]["account"], e["args"]["name"]) for e in logs] == [
        (ENTERPRISE, parties.enterprise, "Acme Steel")
    ]

    stranger = registry.with_sender(parties.enterprise)
    expect_revert("NotOperator", stranger.register_enterprise, OTHER_ENTERPRISE, parties.other, "x")
    expect_revert("NotOperator", stranger.register_platform, OTHER_ENTERPRISE, parties.other, "x")
    assert expect_revert(
        "EnterpriseAlreadyRegistered", registry.register_enterprise, ENTERPRISE, parties.other, "x"
    ) == (ENTERPRISE,)
    expect_revert("PlatformAlreadyRegistered", registry.register_platform, PLATFORM, parties.other, "x")
    expect_revert("ZeroId", registry.register_enterprise, ZERO32, parties.other, "x")
    expect_revert("ZeroAddress", registry.register_platform, OTHER_ENTERPRISE, ZERO_ADDRESS, "x")


# ---- bindings ----


def test_binding_state_machine(registered: RegistryContract, parties: Parties) -> None:
    as_enterprise = registered.with_sender(parties.enterprise)
    as_platform = registered.with_sender(parties.platform)
    as_stranger = registered.with_sender(parties.stranger)
    state = registered.binding_state

    assert state(ENTERPRISE, PLATFORM) is BindingState.NONE
    expect_revert("InvalidBindingState", as_platform.confirm_binding, ENTERPRISE, PLATFORM)
    assert expect_revert("NotEnterpriseAccount", as_stranger.request_binding, ENTERPRISE, PLATFORM) == (
        ENTERPRISE,
        parties.stranger.lower(),
    )
    expect_revert("NotEnterpriseAccount", as_platform.request_binding, ENTERPRISE, PLATFORM)
    expect_revert("UnknownEnterprise", as_enterprise.request_binding, ZERO32, PLATFORM)
    expect_revert("UnknownPlatform", as_enterprise.request_binding, ENTERPRISE, ZERO32)

    as_enterprise.request_binding(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.REQUESTED
    assert expect_revert("InvalidBindingState", as_enterprise.request_binding, ENTERPRISE, PLATFORM) == (1,)
    # only the platform's own account consents: not the enterprise, not the operator
    expect_revert("NotPlatformAccount", as_enterprise.confirm_binding, ENTERPRISE, PLATFORM)
    expect_revert("NotPlatformAccount", registered.confirm_binding, ENTERPRISE, PLATFORM)
    as_platform.confirm_binding(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.BOUND
    assert expect_revert("InvalidBindingState", as_platform.reject_binding, ENTERPRISE, PLATFORM) == (2,)

    expect_revert("NotBindingParty", as_stranger.unbind, ENTERPRISE, PLATFORM)
    as_platform.unbind(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.REVOKED
    expect_revert("InvalidBindingState", as_enterprise.unbind, ENTERPRISE, PLATFORM)

    # the operator cannot ask in the enterprise's name: a request is the enterprise's own consent
    expect_revert("NotEnterpriseAccount", registered.request_binding, ENTERPRISE, PLATFORM)
    as_enterprise.request_binding(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.REQUESTED
    expect_revert("NotPlatformAccount", as_stranger.reject_binding, ENTERPRISE, PLATFORM)
    as_platform.reject_binding(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.REJECTED
    assert expect_revert("InvalidBindingState", as_platform.confirm_binding, ENTERPRISE, PLATFORM) == (3,)

    as_enterprise.request_binding(ENTERPRISE, PLATFORM)
    as_platform.confirm_binding(ENTERPRISE, PLATFORM)
    as_enterprise.unbind(ENTERPRISE, PLATFORM)
    assert state(ENTERPRISE, PLATFORM) is BindingState.REVOKED
    assert state(OTHER_ENTERPRISE, PLATFORM) is BindingState.NONE  # bindings are per pair

    events = [(e.kind, e.sender) for e in registered.binding_events()]
    assert events == [
        ("requested", parties.enterprise),
        ("confirmed", parties.platform),
        ("revoked", parties.platform),
        ("requested", parties.enterprise),
        ("rejected", parties.platform),
        ("requested", parties.enterprise),
        ("confirmed", parties.platform),
        ("revoked", parties.enterprise),
    ]
    assert all(e.enterprise_id == ENTERPRISE and e.platform_id == PLATFORM for e in registered.binding_events())


def test_binding_by_signed_consent(chain: Chain, parties: Parties, gas_table: dict[tuple[str, str], int]) -> None:
    """Enterprise and platform hold keys the node never saw; the operator relays their EIP-712 consents, and the
    contract accepts each only from the registered account's key, once."""
    registry, _ = deploy_registry(chain, parties.operator)
    enterprise_key, platform_key, stranger_key = (LocalKeySigner.generate() for _ in range(3))
    registry.register_enterprise(ENTERPRISE, enterprise_key.address, "Acme Steel")
    registry.register_platform(PLATFORM, platform_key.address, "Green Exchange")

    def sign(signer: LocalKeySigner, action: ConsentAction, nonce: int | None = None) -> bytes:
        nonce = registry.consent_nonce(signer.address) if nonce is None else nonce
        return signer.sign_typed_data(
            consent.domain(chain.chain_id, registry.address),
            consent.CONSENT_TYPES,
            consent.message(ENTERPRISE, PLATFORM, action, nonce),
        )

    request = sign(enterprise_key, ConsentAction.REQUEST)
    expect_revert(
        "BadSignature", registry.request_binding_signed, ENTERPRISE, PLATFORM, sign(stranger_key, ConsentAction.REQUEST)
    )
    expect_revert("BadSignature", registry.request_binding_signed, ENTERPRISE, PLATFORM, request[:64])
    # the platform's signature over a request, or the enterprise's over a confirmation, is no consent
    expect_revert(
        "BadSignature", registry.request_binding_signed, ENTERPRISE, PLATFORM, sign(platform_key, ConsentAction.REQUEST)
    )
    gas = {"requestBindingSigned (relayed consent)": registry.request_binding_signed(ENTERPRISE, PLATFORM, request)}
    assert registry.binding_state(ENTERPRISE, PLATFORM) is BindingState.REQUESTED
    assert registry.consent_nonce(enterprise_key.address) == 1
    expect_revert(
        "BadSignature",
        registry.confirm_binding_signed,
        ENTERPRISE,
        PLATFORM,
        sign(enterprise_key, ConsentAction.CONFIRM),
    )
    expect_revert(
        "BadSignature", registry.confirm_binding_signed, ENTERPRISE, PLATFORM, sign(platform_key, ConsentAction.REJECT)
    )
    confirm = sign(platform_key, ConsentAction.CONFIRM)
    gas["confirmBindingSigned (relayed consent)"] = registry.confirm_binding_signed(ENTERPRISE, PLATFORM, confirm)
    assert registry.binding_state(ENTERPRISE, PLATFORM) is BindingState.BOUND
    for operation, result in gas.items():
        gas_table[(chain_kind(chain), operation)] = result.gas_used

    registry.unbind(ENTERPRISE, PLATFORM)
    # replaying the old signatures after an unbind does nothing: their nonces are used up
    expect_revert("BadSignature", registry.request_binding_signed, ENTERPRISE, PLATFORM, request)
    registry.request_binding_signed(ENTERPRISE, PLATFORM, sign(enterprise_key, ConsentAction.REQUEST))
    expect_revert("BadSignature", registry.confirm_binding_signed, ENTERPRISE, PLATFORM, confirm)
    registry.reject_binding_signed(ENTERPRISE, PLATFORM, sign(platform_key, ConsentAction.REJECT))
    assert registry.binding_state(ENTERPRISE, PLATFORM) is BindingState.REJECTED
    senders = [(e.kind, e.sender) for e in registry.binding_events()]
    assert senders == [
        ("requested", enterprise_key.address),
        ("confirmed", platform_key.address),
        ("revoked", parties.operator),
        ("requested", enterprise_key.address),
        ("rejected", platform_key.address),
    ]


# ---- device keys ----


def test_device_key_registry(registered: RegistryContract, parties: Parties) -> None:
    key_1 = device_fingerprint(b"device-1 key 1")
    key_2 = device_fingerprint(b"device-1 key 2")
    as_enterprise = registered.with_sender(parties.enterprise)
    as_other = registered.with_sender(parties.other)
    as_stranger = registered.with_sender(parties.stranger)
    start_block = registered.chain.block_number()

    expect_revert("NotEnterpriseAccount", as_stranger.register_device_key, ENTERPRISE, DEVICE, key_1)
    expect_revert("NotEnterpriseAccount", as_other.register_device_key, ENTERPRISE, DEVICE, key_1)
    expect_revert("ZeroId", as_enterprise.register_device_key, ENTERPRISE, DEVICE, ZERO32)

    as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_1)
    assert registered.device_key(DEVICE) == (ENTERPRISE, key_1)
    assert registered.key_state(key_1) == KeyRecord(KeyState.ACTIVE, SignerKind.DEVICE, DEVICE, ENTERPRISE, 0, None)
    assert expect_revert("KeyAlreadyRegistered", registered.register_device_key, ENTERPRISE, DEVICE_2, key_1) == (
        key_1,
    )
    assert expect_revert("SignerHasActiveKey", as_enterprise.register_device_key, ENTERPRISE, DEVICE, key_2) == (
        DEVICE,
        key_1,
    )
    assert expect_revert("SignerOfOtherEnterprise", as_other.register_device_key, OTHER_ENTERPRISE, DEVICE, key_2) == (
        DEVICE,
        ENTERPRISE,
    )

    expect_revert("NotEnterpriseAccount", as_stranger.revoke_device_key, ENTERPRISE, DEVICE, key_1)
    expect_revert("SignerOfOtherEnterprise", as_other.revoke_device_key, OTHER_ENTERPRISE, DEVICE, key_1)
    expect_revert("KeyNotActive", as_enterprise.revoke_device_key, ENTERPRISE, DEVICE, key_2)
    registered.revoke_device_key(ENTERPRISE, DEVICE, key_1)  # the operator, e.g. after a key compromise
    assert registered.device_key(DEVICE) == (ENTERPRISE, ZERO32)
    assert registered.key_state(key_1) == KeyRecord(KeyState.REVOKED, SignerKind.DEVICE, DEVICE, ENTERPRISE, 0, 0)
    expect_revert("KeyNotActive", registered.revoke_device_key, ENTERPRISE, DEVICE, key_1)

    # a revoked key stays revoked, for its device and for any other
    assert expect_revert("KeyRevoked", as_enterprise.register_device_key, ENTERPRISE, DEVICE, key_1) == (key_1,)
    expect_revert("KeyRevoked", registered.register_device_key, ENTERPRISE, DEVICE_2, key_1)
    # rotation: a new key for the same device, and the device still belongs to its enterprise
    expect_revert("SignerOfOtherEnterprise", as_other.register_device_key, OTHER_ENTERPRISE, DEVICE, key_2)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_2)
    assert registered.device_key(DEVICE) == (ENTERPRISE, key_2)
    assert registered.key_state(device_fingerprint(b"never registered")) == KeyRecord(
        KeyState.NONE, SignerKind.NONE, ZERO32, ZERO32, 0, None
    )

    trail = [(e.kind, e.key_fingerprint, e.sender) for e in registered.device_key_events(start_block, device_id=DEVICE)]
    assert trail == [
        ("registered", key_1, parties.enterprise),
        ("revoked", key_1, parties.operator),
        ("registered", key_2, parties.enterprise),
    ]
    assert registered.device_key_events(start_block, device_id=DEVICE_2) == []


def test_gateway_keys_are_registered_and_revoked_in_their_own_id_space(
    registered: RegistryContract, parties: Parties
) -> None:
    gateway_key, device_key = device_fingerprint(b"gateway key 1"), device_fingerprint(b"device key 1")
    as_enterprise = registered.with_sender(parties.enterprise)
    as_other = registered.with_sender(parties.other)
    start_block = registered.chain.block_number()

    expect_revert(
        "NotEnterpriseAccount",
        registered.with_sender(parties.stranger).register_gateway_key,
        ENTERPRISE,
        DEVICE,
        gateway_key,
    )
    # the same 32-byte id names a gateway and a device independently: separate records, separate events
    as_enterprise.register_gateway_key(ENTERPRISE, DEVICE, gateway_key)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, device_key)
    assert registered.gateway_key(DEVICE) == (ENTERPRISE, gateway_key)
    assert registered.device_key(DEVICE) == (ENTERPRISE, device_key)
    assert registered.key_state(gateway_key) == KeyRecord(
        KeyState.ACTIVE, SignerKind.GATEWAY, DEVICE, ENTERPRISE, 0, None
    )
    assert registered.key_state(device_key) == KeyRecord(
        KeyState.ACTIVE, SignerKind.DEVICE, DEVICE, ENTERPRISE, 0, None
    )
    # a fingerprint belongs to one signer, ever: a device key cannot become a gateway key
    expect_revert("KeyAlreadyRegistered", as_enterprise.register_gateway_key, ENTERPRISE, DEVICE_2, device_key)
    assert expect_revert(
        "SignerHasActiveKey",
        as_enterprise.register_gateway_key,
        ENTERPRISE,
        DEVICE,
        device_fingerprint(b"gateway key 2"),
    ) == (DEVICE, gateway_key)
    expect_revert("SignerOfOtherEnterprise", as_other.revoke_gateway_key, OTHER_ENTERPRISE, DEVICE, gateway_key)
    expect_revert("KeyNotActive", as_enterprise.revoke_gateway_key, ENTERPRISE, DEVICE, device_key)

    as_enterprise.revoke_gateway_key(ENTERPRISE, DEVICE, gateway_key)
    assert registered.gateway_key(DEVICE) == (ENTERPRISE, ZERO32)
    assert registered.key_state(gateway_key).state == KeyState.REVOKED
    assert registered.device_key(DEVICE) == (ENTERPRISE, device_key)  # the device is untouched
    expect_revert("KeyRevoked", as_enterprise.register_gateway_key, ENTERPRISE, DEVICE, gateway_key)

    trail = [(e.kind, e.signer_id, e.key_fingerprint) for e in registered.gateway_key_events(start_block)]
    assert trail == [("registered", DEVICE, gateway_key), ("revoked", DEVICE, gateway_key)]
    assert [e.key_fingerprint for e in registered.device_key_events(start_block)] == [device_key]


# ---- checkpoints ----


def test_checkpoints_are_append_only(chain: Chain, registry: RegistryContract, parties: Parties) -> None:
    assert registry.checkpoint_count() == 0
    assert registry.latest_checkpoint() is None
    assert expect_revert("CheckpointOutOfRange", registry.checkpoint, 0) == (0, 0)
    cid_4, cid_10 = cid_of(b"checkpoint 4"), cid_of(b"checkpoint 10")
    root_4, root_10 = merkle_root(b"4"), merkle_root(b"10")

    expect_revert("NotOperator", registry.with_sender(parties.stranger).anchor_checkpoint, 4, root_4, cid_4)
    first = registry.anchor_checkpoint(4, root_4, cid_4)
    # a checkpoint must grow the log: a re-sent anchor, or another root for the same size, is refused
    assert expect_revert("TreeSizeNotGrowing", registry.anchor_checkpoint, 4, root_4, cid_4) == (4, 4)
    assert expect_revert("TreeSizeNotGrowing", registry.anchor_checkpoint, 4, root_10, cid_10) == (4, 4)
    assert expect_revert("TreeSizeNotGrowing", registry.anchor_checkpoint, 3, root_10, cid_10) == (4, 3)
    registry.anchor_checkpoint(10, root_10, cid_10)
    assert expect_revert("TreeSizeNotGrowing", registry.anchor_checkpoint, 4, root_4, cid_4) == (10, 4)
    assert expect_revert("TreeSizeTooLarge", registry.anchor_checkpoint, 2**48, root_4, cid_4) == (2**48,)
    assert registry.latest_tree_size() == 10

    assert registry.checkpoint_count() == 2
    stored = [registry.checkpoint(i) for i in range(2)]
    assert [(c.sequence, c.tree_size, c.root, c.cid) for c in stored] == [(0, 4, root_4, cid_4), (1, 10, root_10, cid_10)]
    # one storage slot per checkpoint, the commitment to its fields (carbontrace_protocol.anchor_commitment)
    assert [registry.checkpoint_commitment(i) for i in range(2)] == [
        checkpoint_commitment(4, root_4, cid_4), checkpoint_commitment(10, root_10, cid_10)
    ]
    assert registry.checkpoint(1, near_block=first.block_number + 1) == stored[1]
    assert registry.checkpoint(0, near_block=first.block_number + 1) == stored[0]  # a wrong hint: searched
    assert stored[0].timestamp == chain.w3.eth.get_block(first.block_number)["timestamp"]
    assert registry.latest_checkpoint() == stored[1]
    assert expect_revert("CheckpointOutOfRange", registry.checkpoint, 2) == (2, 2)

    events = registry.checkpoint_events()
    assert [(e.sequence, e.tree_size, e.root, e.cid) for e in events] == [
        (c.sequence, c.tree_size, c.root, c.cid) for c in stored
    ]
    assert events[0].tx_hash == first.tx_hash
    assert registry.checkpoint_events(from_block=events[1].block_number) == events[1:]


@pytest.mark.parametrize(
    "cid",
    [
        "Q" * 46,  # CIDv0 length
        "b" * 32,  # exactly one word
        "b" * 33,  # one byte into the second word
        "bafkrei" + "é" * 26,  # multi-byte UTF-8: the limit is in bytes
        "z" * 64,  # the limit
    ],
    ids=["cidv0-length", "32-bytes", "33-bytes", "utf8", "64-bytes"],
)
def test_checkpoint_cid_round_trips_at_word_boundaries(registry: RegistryContract, cid: str) -> None:
    registry.anchor_checkpoint(1, merkle_root(b"1"), cid)
    latest = registry.latest_checkpoint()
    assert latest is not None
    assert latest.cid == cid


def test_checkpoint_cid_length_is_bounded(registry: RegistryContract) -> None:
    assert expect_revert("CidLength", registry.anchor_checkpoint, 1, merkle_root(b"1"), "b" * 65) == (65,)
    assert expect_revert("CidLength", registry.anchor_checkpoint, 1, merkle_root(b"1"), "") == (0,)


# ---- gas ----


def test_gas_per_call(chain: Chain, parties: Parties, gas_table: dict[tuple[str, str], int]) -> None:
    kind = chain_kind(chain)
    gas: dict[str, int] = {}
    registry, deployed = deploy_registry(chain, parties.operator)
    gas["deploy CarbonTraceRegistry"] = deployed.gas_used
    as_enterprise = registry.with_sender(parties.enterprise)
    as_platform = registry.with_sender(parties.platform)
    gas["registerEnterprise"] = registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel").gas_used
    gas["registerPlatform"] = registry.register_platform(PLATFORM, parties.platform, "Green Exchange").gas_used
    gas["requestBinding"] = as_enterprise.request_binding(ENTERPRISE, PLATFORM).gas_used
    gas["confirmBinding"] = as_platform.confirm_binding(ENTERPRISE, PLATFORM).gas_used
    gas["unbind"] = as_enterprise.unbind(ENTERPRISE, PLATFORM).gas_used
    as_enterprise.request_binding(ENTERPRISE, PLATFORM)
    gas["rejectBinding"] = as_platform.reject_binding(ENTERPRISE, PLATFORM).gas_used
    key_1, key_2 = device_fingerprint(b"gas 1"), device_fingerprint(b"gas 2")
    gas["registerDeviceKey"] = as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_1).gas_used
    gas["revokeDeviceKey"] = as_enterprise.revoke_device_key(ENTERPRISE, DEVICE, key_1).gas_used
    gas["registerDeviceKey (rotation)"] = as_enterprise.register_device_key(ENTERPRISE, DEVICE, key_2).gas_used
    gateway_key = device_fingerprint(b"gas gateway key")
    gas["registerGatewayKey"] = as_enterprise.register_gateway_key(ENTERPRISE, DEVICE_2, gateway_key).gas_used
    gas["revokeGatewayKey"] = as_enterprise.revoke_gateway_key(ENTERPRISE, DEVICE_2, gateway_key).gas_used
    cloud_key_1, cloud_key_2 = device_fingerprint(b"gas cloud key 1"), device_fingerprint(b"gas cloud key 2")
    gas["registerCloudKey"] = registry.register_cloud_key(CLOUD_ID, cloud_key_1).gas_used
    gas["revokeCloudKey"] = registry.revoke_cloud_key(CLOUD_ID, cloud_key_1).gas_used
    gas["registerCloudKey (rotation)"] = registry.register_cloud_key(CLOUD_ID, cloud_key_2).gas_used
    gas["transferOperator"] = registry.transfer_operator(parties.other).gas_used
    gas["acceptOperator"] = registry.with_sender(parties.other).accept_operator().gas_used
    registry = registry.with_sender(parties.other)

    anchor_gas: dict[int, int] = {}
    for tree_size in (1, 2**10, 2**20, 2**32, 2**48 - 1):
        root = merkle_root(tree_size.to_bytes(8, "big"))
        anchor_gas[tree_size] = registry.anchor_checkpoint(tree_size, root, cid_of(root)).gas_used
        gas[f"anchorCheckpoint (tree size {tree_size:,})"] = anchor_gas[tree_size]

    naive, naive_deployed = deploy_naive_store(chain, parties.operator)
    gas["deploy NaiveHashStore"] = naive_deployed.gas_used
    naive_gas = []
    for i in range(4):
        digest = hashlib.sha256(b"reading %d" % i).digest()
        result = naive.store_hash(digest)
        assert naive.stored_at(digest) == result.block_number
        naive_gas.append(result.gas_used)
    gas["NaiveHashStore.storeHash (per hash)"] = naive_gas[-1]
    for op, used in gas.items():
        gas_table[(kind, op)] = used

    # One checkpoint costs the same for 1 reading and 2**48-1 batches: only calldata bytes differ (a few
    # hundred gas), the first checkpoint included.
    assert max(anchor_gas.values()) < ANCHOR_GAS_BOUND
    assert max(anchor_gas.values()) - min(anchor_gas.values()) < 0.03 * min(anchor_gas.values())
    # the baseline is linear: every reading pays the same, up to calldata bytes of the hash
    assert max(naive_gas) - min(naive_gas) < 0.01 * min(naive_gas)
    # the batch design is cheaper per reading than the baseline as soon as a checkpoint covers 3 readings
    assert anchor_gas[2**20] / 3 < naive_gas[-1]
