"""The cloud against a chain node with no unlocked accounts (Anvil `--accounts 0`): it signs its own
transactions with the operator key made at start-up, parties bring their own keys, and a checkpoint counts as
anchored only once the configured number of blocks follow it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from carbontrace.servers import AnvilNode
from carbontrace_protocol.proof_verify import verify_bundle_json as verify_bundle
from cloud.chain import connect_rpc
from cloud.chain_signer import load_key_file
from cloud.ledger_chain import chain_id_of
from tests.chain.conftest import running_anvil
from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    app_client,
    auth,
    decide_binding,
    make_settings,
    register_tenant,
    request_binding,
)
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, reader_of, trust_of, upload_batches


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with running_anvil() as node:
        yield node


def _client(tmp_path: Path, anvil: AnvilNode, **overrides: object) -> TestClient:
    settings = make_settings(tmp_path, chain=anvil.url, **overrides)
    # Fund the operator the way a person does on a real network: to the address of the key made at bootstrap.
    from cloud.chain_signer import operator_signer

    operator, _ = operator_signer(settings.chain_key_file, allow_create=True)
    anvil.set_balance(operator.address, 10**20)
    return app_client(settings.model_copy(update={"fund_operator_from_dev_node": False}))


def test_anvil_has_no_accounts(anvil: AnvilNode) -> None:
    assert connect_rpc(anvil.url).accounts == []


def test_register_ingest_anchor_verify_without_node_accounts(tmp_path: Path, anvil: AnvilNode) -> None:
    with _client(tmp_path, anvil, confirmations=0) as client:
        operator = load_key_file(tmp_path / "cloud-chain-key.hex")
        registry = ledger_of(client).chain.registry()
        assert registry.operator() == operator.address
        traced = Traced(register_tenant(client, "Anvil Steel", devices=2))
        upload_batches(client, traced, 2)
        anchor(client)
        upload_batches(client, traced, 1)
        anchor(client)
        # a platform with a key it made itself; the binding carries both parties' own signatures
        platform_key = Account.create()
        r = client.post(
            "/api/v1/platforms",
            json={"name": "Anvil ETS", "chain_account": platform_key.address},
            headers=auth(ADMIN_KEY),
        )
        assert r.status_code == 201, r.text
        platform_id, platform_api_key = r.json()["platform_id"], r.json()["api_key"]
        tenant = traced.tenant
        r = request_binding(client, tenant.enterprise_id, tenant.enterprise_key, tenant.chain_key, platform_id)
        assert r.status_code == 201, r.text
        r = decide_binding(client, platform_id, platform_api_key, "0x" + platform_key.key.hex(), tenant.enterprise_id)
        assert r.json()["state"] == "bound", r.text
        events = registry.binding_events()
        assert [e.sender for e in events] == [
            Account.from_key(tenant.chain_key).address,
            platform_key.address,
        ]

        r = get(client, "/api/v1/trace/bundle", tenant.enterprise_key, types=["co2", "aggregates"], limit=1000)
        assert r.status_code == 200, r.text
        bundle = r.json()
        report = verify_bundle(bundle, reader_of(client, bundle), trust_of(client))
        assert report.status == "valid", report.as_json()
        # every transaction came from the operator's own key, signed here (EIP-1559, type 2)
        w3 = ledger_of(client).chain.connect().w3
        for row in _checkpoints(ledger_of(client)):
            assert row.anchored and row.tx_hash is not None
            tx = w3.eth.get_transaction(row.tx_hash)
            assert tx["from"] == operator.address and tx["type"] == 2


def test_more_parties_than_a_dev_node_has_accounts(tmp_path: Path, anvil: AnvilNode) -> None:
    """Twelve enterprises and platforms onboard (the embedded chain's ten accounts ran out at nine)."""
    with _client(tmp_path, anvil) as client:
        for i in range(6):
            r = client.post("/api/v1/enterprises", json={"name": f"E{i}", "chain_account": Account.create().address})
            assert r.status_code == 201, r.text
            r = client.post(f"/api/v1/enterprises/{r.json()['enterprise_id']}/approve", headers=auth(ADMIN_KEY))
            assert r.status_code == 200, r.text
            body = {"name": f"P{i}", "chain_account": Account.create().address}
            r = client.post("/api/v1/platforms", json=body, headers=auth(ADMIN_KEY))
            assert r.status_code == 201, r.text
            registry = ledger_of(client).chain.registry()
            assert registry.platform(chain_id_of(r.json()["platform_id"])).account == r.json()["chain_account"]


def test_checkpoint_is_not_anchored_before_the_confirmation_depth(tmp_path: Path, anvil: AnvilNode) -> None:
    with _client(tmp_path, anvil, confirmations=3) as client:
        traced = Traced(register_tenant(client, "Deep Cement", devices=1))
        upload_batches(client, traced, 1)
        ledger = ledger_of(client)
        report = ledger.anchorer.tick(force_checkpoint=True)
        assert report.error is None and report.anchored == 0  # sent and mined, not yet deep enough
        rows = _checkpoints(ledger)
        assert len(rows) == 1 and not rows[0].anchored and rows[0].tx_hash is not None
        sent = rows[0].tx_hash
        anvil.mine(2)
        assert ledger.anchorer.tick().anchored == 0
        anvil.mine(1)
        assert ledger.anchorer.tick().anchored == 1
        rows = _checkpoints(ledger)
        assert rows[0].anchored and rows[0].tx_hash == sent  # the same transaction, not a second one
        assert ledger.chain.registry().checkpoint_count() == 1


def test_an_anchor_reorganised_away_is_sent_again(tmp_path: Path, anvil: AnvilNode) -> None:
    """The anchor's block vanishes before the depth is reached (evm_revert stands in for a reorg): the next tick
    finds no receipt, sends again, and the checkpoint counts only once the new transaction is deep enough."""
    with _client(tmp_path, anvil, confirmations=2) as client:
        traced = Traced(register_tenant(client, "Reorg Lime", devices=1))
        upload_batches(client, traced, 1)
        ledger = ledger_of(client)
        ledger.chain.registry()
        snapshot = anvil.rpc("evm_snapshot", [])["result"]
        assert ledger.anchorer.tick(force_checkpoint=True).anchored == 0
        first = _checkpoints(ledger)[0].tx_hash
        assert anvil.rpc("evm_revert", [snapshot])["result"] is True
        assert ledger.chain.registry().checkpoint_count() == 0
        anvil.mine(2)
        assert ledger.anchorer.tick().anchored == 0  # sent again, not yet deep enough
        row = _checkpoints(ledger)[0]
        assert row.tx_hash not in (None, first) and ledger.chain.registry().checkpoint_count() == 1
        anvil.mine(2)
        assert ledger.anchorer.tick().anchored == 1
        row = _checkpoints(ledger)[0]
        assert row.anchored and ledger.chain.connect().receipt_block(bytes.fromhex(row.tx_hash[2:])) is not None


def _checkpoints(ledger):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from cloud import models

    with ledger.session_factory() as session:
        return list(session.scalars(select(models.Checkpoint).order_by(models.Checkpoint.seq)))
