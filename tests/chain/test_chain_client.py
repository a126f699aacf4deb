"""cloud.chain as a client: signing with a local key, and a chain that is not there."""

from __future__ import annotations

import threading

import pytest
from eth_account import Account

from carbontrace.servers import AnvilNode
from cloud.chain import (
    Chain,
    ChainUnavailable,
    OperatorUnfunded,
    attach_registry,
    connect_rpc,
    deploy_registry,
    local_account,
)
from cloud.chain_signer import LocalKeySigner
from tests.chain.conftest import HardhatNode, running_anvil
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


# ---- a node with no unlocked accounts (Anvil --accounts 0): nonces, fees, funding ----


def _funded(node: AnvilNode) -> LocalKeySigner:
    signer = LocalKeySigner.generate()
    node.set_balance(signer.address, 10**20)
    return signer


def test_eip1559_fees_and_nonces_across_a_restart(anvil_node: AnvilNode) -> None:
    chain = connect_rpc(anvil_node.url)
    assert chain.accounts == []
    signer = _funded(anvil_node)
    registry, deployed = deploy_registry(chain, signer)
    registry.anchor_checkpoint(1, merkle_root(b"1"), cid_of(b"1"))
    # a restart: a new client knows nothing of the nonces used, it reads the node's pending count
    again = attach_registry(connect_rpc(anvil_node.url), registry.address, signer)
    result = again.anchor_checkpoint(2, merkle_root(b"2"), cid_of(b"2"))
    tx = chain.w3.eth.get_transaction(result.tx_hash)
    block = chain.w3.eth.get_block(tx["blockNumber"] - 1)
    assert tx["type"] == 2 and tx["nonce"] == 2 and tx["from"] == signer.address
    assert tx["maxFeePerGas"] == 2 * block["baseFeePerGas"] + tx["maxPriorityFeePerGas"]
    # this process believes in a later nonce (a transaction the node dropped): no gap, the node's count wins
    again.chain._nonces[signer.address] = 50
    assert again.anchor_checkpoint(3, merkle_root(b"3"), cid_of(b"3")).block_number > deployed.block_number
    assert again.checkpoint_count() == 3


def test_two_processes_sharing_the_key_do_not_lose_a_transaction(anvil_node: AnvilNode) -> None:
    """Two clients (as two workers would be) send with one key at once: a nonce race is retried, none lost."""
    signer = _funded(anvil_node)
    target = LocalKeySigner.generate().address
    chains = [connect_rpc(anvil_node.url), connect_rpc(anvil_node.url)]

    errors: list[BaseException] = []

    def send(chain: Chain) -> None:
        try:
            for _ in range(5):
                chain.send_value(signer, target, 1)
        except BaseException as err:  # reported below: a thread's exception is otherwise lost
            errors.append(err)

    threads = [threading.Thread(target=send, args=(c,)) for c in chains]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert chains[0].balance(target) == 10
    assert chains[0].w3.eth.get_transaction_count(signer.address) == 10


def test_legacy_gas_price_only_without_a_base_fee() -> None:
    with running_anvil("--hardfork", "berlin") as node:
        chain = connect_rpc(node.url)
        signer = _funded(node)
        result = chain.send_value(signer, LocalKeySigner.generate().address, 1)
        tx = chain.w3.eth.get_transaction(result.tx_hash)
        assert tx["type"] == 0 and tx["gasPrice"] > 0


def test_an_unfunded_operator_is_named() -> None:
    with running_anvil() as node:
        chain = connect_rpc(node.url)
        with pytest.raises(OperatorUnfunded, match="fund it"):
            chain.send_value(LocalKeySigner.generate(), LocalKeySigner.generate().address, 1)


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
