"""A successor registry: it records its predecessor's final checkpoint, continues the log, carries registrations
with their history; the predecessor, once sealed, refuses every write. On the embedded EVM and on Hardhat."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from carbontrace_protocol.anchor_commitment import checkpoint_commitment
from cloud.chain import (
    REGISTRY_ARTIFACT,
    BindingState,
    Chain,
    ContractReverted,
    KeyRecord,
    KeyState,
    RegistryContract,
    SignerKind,
    deploy_registry,
    load_artifact,
)
from tests.chain.conftest import chain_kind
from tests.chain.contract_helpers import (
    ANCHOR_GAS_BOUND,
    CLOUD_ID,
    DEVICE,
    DEVICE_2,
    ENTERPRISE,
    GATEWAY,
    PLATFORM,
    ZERO_ADDRESS,
    Parties,
    cid_of,
    device_fingerprint,
    expect_revert,
    merkle_root,
)


def _anchor(registry: RegistryContract, size: int) -> int:
    root = merkle_root(size.to_bytes(8, "big"))
    return registry.anchor_checkpoint(size, root, cid_of(root)).gas_used


def test_successor_records_the_final_checkpoint_and_continues_the_log(
    chain: Chain, parties: Parties, registry: RegistryContract, gas_table: dict[tuple[str, str], int]
) -> None:
    assert registry.registry_link().has_predecessor is False
    _anchor(registry, 3)
    _anchor(registry, 5)
    successor, deployed = deploy_registry(chain, parties.operator, predecessor=registry)
    link = successor.registry_link()
    root = merkle_root((5).to_bytes(8, "big"))
    assert (link.predecessor.lower(), link.predecessor_checkpoint_count, link.predecessor_tree_size) == (
        registry.address.lower(), 2, 5)
    assert link.predecessor_commitment == checkpoint_commitment(5, root, cid_of(root))
    assert successor.deployed_at_block() == deployed.block_number
    # the same log: sequence numbers run on, and the first checkpoint here must grow past the predecessor's
    assert successor.checkpoint_count() == 2 and successor.latest_tree_size() == 5
    assert expect_revert("TreeSizeNotGrowing", successor.anchor_checkpoint, 5, root, cid_of(root)) == (5, 5)
    assert expect_revert("CheckpointOnPredecessor", successor.checkpoint_commitment, 1)[0] == 1
    registry.seal_for(successor.address)
    gas = _anchor(successor, 8)
    assert successor.checkpoint_count() == 3 and successor.checkpoint(2).tree_size == 8
    assert gas < ANCHOR_GAS_BOUND
    gas_table[(chain_kind(chain), "anchorCheckpoint (successor registry)")] = gas
    gas_table[(chain_kind(chain), "deploy CarbonTraceRegistry (successor)")] = deployed.gas_used


def test_a_sealed_registry_refuses_every_write(chain: Chain, parties: Parties, registry: RegistryContract) -> None:
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    registry.register_platform(PLATFORM, parties.platform, "Green Exchange")
    _anchor(registry, 4)
    successor, _ = deploy_registry(chain, parties.operator, predecessor=registry)
    registry.seal_for(successor.address)
    link = registry.registry_link()
    assert link.sealed and link.successor.lower() == successor.address.lower()
    assert int(registry.operator(), 16) == 0  # the operator role is given up
    sealed = (successor.address.lower(),)

    def reverted(call: Callable[..., object], *args: object) -> tuple[object, ...]:
        return tuple(str(a).lower() for a in expect_revert("RegistrySealed", call, *args))

    # a checkpoint anchored on the old registry after the hand-over would fork the history: it reverts
    assert reverted(registry.anchor_checkpoint, 9, merkle_root(b"9"), cid_of(b"9")) == sealed
    assert reverted(registry.seal_for, successor.address) == sealed
    assert reverted(registry.register_cloud_key, CLOUD_ID, device_fingerprint(b"c")) == sealed
    as_enterprise = registry.with_sender(parties.enterprise)
    assert reverted(as_enterprise.request_binding, ENTERPRISE, PLATFORM) == sealed
    assert reverted(as_enterprise.register_device_key, ENTERPRISE, DEVICE, device_fingerprint(b"d")) == sealed
    assert registry.checkpoint_count() == 1  # reads still answer


def test_seal_refuses_a_successor_that_does_not_record_this_registry(
    chain: Chain, parties: Parties, registry: RegistryContract
) -> None:
    _anchor(registry, 2)
    unrelated, _ = deploy_registry(chain, parties.operator)  # names no predecessor
    assert str(expect_revert("BadSuccessor", registry.seal_for, unrelated.address)[0]).lower() == unrelated.address.lower()
    early, _ = deploy_registry(chain, parties.operator, predecessor=registry)
    _anchor(registry, 3)  # the old registry moved on after `early` recorded its final checkpoint
    assert expect_revert("BadSuccessor", registry.seal_for, early.address)
    assert expect_revert("NotOperator", registry.with_sender(parties.stranger).seal_for, early.address)
    assert registry.registry_link().sealed is False


def test_constructor_checks_the_recorded_checkpoint(chain: Chain, parties: Parties, registry: RegistryContract) -> None:
    _anchor(registry, 2)
    artifact = load_artifact(REGISTRY_ARTIFACT)
    good = registry.checkpoint_commitment(0)
    for args in (
        (registry.address, 1, 2, bytes(32)),  # a forged final commitment
        (registry.address, 2, 2, good),  # a count the predecessor does not have
        (registry.address, 1, 3, good),  # another tree size
        (ZERO_ADDRESS, 1, 2, good),  # no predecessor but a checkpoint
    ):
        with pytest.raises(ContractReverted) as info:
            chain.deploy(artifact, parties.operator, args)
        # the embedded chain's deploy receipt carries no revert data (its gas is not estimated); a node's does
        assert info.value.error_name in (("BadPredecessor",) if chain_kind(chain) == "hardhat" else ("BadPredecessor", "unknown"))


def test_registrations_are_carried_with_their_history(
    chain: Chain, parties: Parties, registry: RegistryContract
) -> None:
    as_enterprise = registry.with_sender(parties.enterprise)
    registry.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    registry.register_platform(PLATFORM, parties.platform, "Green Exchange")
    as_enterprise.request_binding(ENTERPRISE, PLATFORM)
    registry.with_sender(parties.platform).confirm_binding(ENTERPRISE, PLATFORM)
    old_key, new_key = device_fingerprint(b"carried 1"), device_fingerprint(b"carried 2")
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, old_key)
    _anchor(registry, 2)
    as_enterprise.revoke_device_key(ENTERPRISE, DEVICE, old_key)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE, new_key)
    as_enterprise.register_device_key(ENTERPRISE, DEVICE_2, device_fingerprint(b"carried 3"))
    _anchor(registry, 4)

    successor, _ = deploy_registry(chain, parties.operator, predecessor=registry)
    successor.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    successor.register_platform(PLATFORM, parties.platform, "Green Exchange")
    successor.import_binding(ENTERPRISE, PLATFORM, registry.binding_state(ENTERPRISE, PLATFORM))
    for device in registry.signers_of(ENTERPRISE, SignerKind.DEVICE):
        for event in registry.device_key_events(device_id=device):
            if event.kind == "registered":
                successor.import_key(ENTERPRISE, registry.key_state(event.key_fingerprint), event.key_fingerprint)
    assert successor.binding_state(ENTERPRISE, PLATFORM) == BindingState.BOUND
    for fingerprint in (old_key, new_key, device_fingerprint(b"carried 3")):
        assert successor.key_state(fingerprint) == registry.key_state(fingerprint)
    assert successor.key_state(old_key).state == KeyState.REVOKED and successor.key_state(old_key).revoked_at == 1
    assert successor.signers_of(ENTERPRISE, SignerKind.DEVICE) == [DEVICE, DEVICE_2]
    assert successor.device_key(DEVICE) == (ENTERPRISE, new_key)
    # a key carried twice, or one claiming a history past the hand-over, is refused
    expect_revert("KeyAlreadyRegistered", successor.import_key, ENTERPRISE, registry.key_state(new_key), new_key)
    late = KeyRecord(KeyState.ACTIVE, SignerKind.GATEWAY, GATEWAY, ENTERPRISE, 3, None)
    expect_revert("BadCarriedKey", successor.import_key, ENTERPRISE, late, device_fingerprint(b"late"))
    # the fingerprint rule spans the hand-over: a carried revoked key stays revoked here
    as_successor_enterprise = successor.with_sender(parties.enterprise)
    expect_revert("KeyRevoked", as_successor_enterprise.register_gateway_key, ENTERPRISE, GATEWAY, old_key)
    registry.seal_for(successor.address)
    _anchor(successor, 6)
    # carrying is closed once the successor anchors
    expect_revert("MigrationClosed", successor.import_binding, ENTERPRISE, PLATFORM, BindingState.BOUND)
    # and a first registry never takes carried records
    genesis, _ = deploy_registry(chain, parties.operator)
    genesis.register_enterprise(ENTERPRISE, parties.enterprise, "Acme Steel")
    record = registry.key_state(new_key)
    expect_revert("MigrationClosed", genesis.import_key, ENTERPRISE, record, device_fingerprint(b"x"))
