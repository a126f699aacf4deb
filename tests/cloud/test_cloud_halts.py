"""The cloud's operator halt: the chain account out of funds on a real Hardhat node (hardhat_setBalance). Anchoring
stops with checkpoints kept in order; `carbontrace cloud status` says so and what resolves it, /metrics shows it;
funding the account and `carbontrace cloud anchor` resolve it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cloud.cli import cloud_app
from cloud.ledger import Ledger
from cloud.settings import Settings
from tests.cloud.cloud_testkit import app_client, auth, make_settings, register_tenant, upload
from tests.cloud.conftest import HardhatNode
from tests.cloud.prometheus_text import value

TEN_ETHER = 10 * 10**18


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _set_balance(node: HardhatNode, address: str, wei: int) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "hardhat_setBalance", "params": [address, hex(wei)]}
    answer = httpx.post(node.url, json=body, timeout=10).json()
    assert "error" not in answer, answer


def _env(settings: Settings) -> dict[str, str]:
    """The same cloud for the command line, as CT_CLOUD_* variables."""
    names = ("database_url", "chain", "content_dir", "signing_key_file", "chain_key_file", "operator_key_file",
             "confirmations")
    return {f"CT_CLOUD_{n.upper()}": str(getattr(settings, n)) for n in names}


def _cli(settings: Settings, *args: str) -> Any:
    result = CliRunner().invoke(cloud_app, list(args), env=_env(settings))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_operator_out_of_funds_halts_anchoring_until_funded(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    settings = make_settings(tmp_path, chain=cloud_hardhat_node.url)
    with app_client(settings) as client:
        ledger = _ledger(client)
        token = Path(settings.metrics_token_path).read_text().strip()
        gw = register_tenant(client, "Unfunded", devices=1).gateway
        batch, readings = gw.build()
        assert upload(client, gw, batch).status_code == 201
        gw.accepted(batch, readings)
        account = _cli(settings, "status")["chain_account"]
        _set_balance(cloud_hardhat_node, account, 0)

        report = ledger.anchorer.tick(force_checkpoint=True)
        assert (report.created, report.anchored) == (1, 0) and report.error
        more, _ = gw.build()
        assert upload(client, gw, more).status_code == 201  # ingestion goes on; only anchoring waits
        status = _cli(settings, "status")
        assert status["balance_wei"] == 0
        assert [h["state"] for h in status["halts"]] == ["operator_unfunded"]
        assert "chain-account" in status["halts"][0]["resolve"]
        assert (status["pending_checkpoints"], status["unanchored_leaves"]) == (1, 2)
        text = client.get("/metrics", headers=auth(token)).text
        assert value(text, "ct_cloud_anchoring_halted", reason="operator_unfunded") == 1
        assert value(text, "ct_cloud_chain_errors_total", kind="operator_unfunded") == 1

        _set_balance(cloud_hardhat_node, account, TEN_ETHER)  # what the operator's transfer does
        anchored = _cli(settings, "anchor", "--force")
        assert (anchored["anchored"], anchored["error"]) == (2, None), anchored  # the pending one, then the new one
        status = _cli(settings, "status")
        assert (status["halts"], status["pending_checkpoints"], status["unanchored_leaves"]) == ([], 0, 0)
        text = client.get("/metrics", headers=auth(token)).text
        assert value(text, "ct_cloud_anchoring_halted", reason="operator_unfunded") == 0
