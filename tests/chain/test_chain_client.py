"""cloud.chain as a client: signing with a local key, and a chain that is not there."""

from __future__ import annotations

import pytest
from eth_account import Account

from cloud.chain import Chain, ChainUnavailable, connect_rpc, deploy_registry, local_account
from tests.chain.conftest import HardhatNode
from tests.chain.contract_helpers import ZERO32, Parties, cid_of, expect_revert, merkle_root
from tests.conftest import free_port

# ---- signing with a local key (production nodes have no unlocked accounts) ----


def test_local_private_key_signs_and_operates(chain: Chain, parties: Parties) -> None:
    key = local_account(Account.create().key)
    chain.send_value(parties.operator, key.address, 10**18)
    registry, _ = deploy_registry(chain, key)
    assert registry.operator() == key.address
    result = registry.anchor_checkpoint(7, merkle_root(b"7"), cid_of(b"7"))
    assert result.gas_used > 21_000
    assert registry.with_sender(key).checkpoint_count() == 1
    expect_revert("NotOperator", registry.with_sender(parties.operator).anchor_checkpoint, 8, ZERO32, "c")
    assert chain.balance(key.address) < 10**18  # it paid for its own transactions


# ---- chain down ----


def test_unreachable_node_raises_chain_unavailable() -> None:
    with pytest.raises(ChainUnavailable):
        connect_rpc(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)


def test_node_going_down_raises_chain_unavailable(own_hardhat_node: HardhatNode) -> None:
    chain = connect_rpc(own_hardhat_node.url, timeout_s=2.0)
    registry, _ = deploy_registry(chain)
    registry.anchor_checkpoint(1, merkle_root(b"1"), cid_of(b"1"))
    own_hardhat_node.stop()
    with pytest.raises(ChainUnavailable):
        registry.anchor_checkpoint(2, merkle_root(b"2"), cid_of(b"2"))
    with pytest.raises(ChainUnavailable):
        registry.checkpoint_count()
    with pytest.raises(ChainUnavailable):
        registry.checkpoint_events()
