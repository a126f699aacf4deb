"""A cloud restored from a backup older than its external chain (a real Hardhat node): checkpoints anchored after
the backup are on the registry but not in the restored database. Anchoring stops with a named halt,
chain_ahead_of_database, which `carbontrace cloud status` lists with what resolves it and /metrics shows
(ct_cloud_anchoring_halted{reason="chain_ahead_of_database"}); restoring a backup newer than the chain's last
checkpoint resolves it."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from cloud.backup import backup_cloud, restore_cloud
from cloud.models import EnergyBaseline
from cloud.settings import Settings
from tests.cloud.cloud_testkit import app_client, auth, make_settings, register_tenant, upload
from tests.cloud.conftest import HardhatNode
from tests.cloud.prometheus_text import value
from tests.cloud.test_cloud_halts import _cli, _ledger


def _restored(root: Path, name: str, node: HardhatNode, backup: Path) -> Settings:
    """A fresh machine state at root/name with the backup restored onto it (the chain is the same node)."""
    settings = make_settings(root / name, chain=node.url)
    for path in (root / name).iterdir():  # make_settings writes keys: this machine starts empty
        if path.is_file():
            os.unlink(path)
    restore_cloud(settings, backup)
    return settings


def test_backup_older_than_chain_is_a_named_halt(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    old = make_settings(tmp_path / "old", chain=cloud_hardhat_node.url)
    with app_client(old) as client:
        gw = register_tenant(client, "Older", devices=1).gateway
        batch, readings = gw.build()
        assert upload(client, gw, batch).status_code == 201
        gw.accepted(batch, readings)
        assert _ledger(client).anchorer.tick(force_checkpoint=True).anchored == 1
        backup_cloud(old, tmp_path / "older")
        batch, readings = gw.build()
        assert upload(client, gw, batch).status_code == 201
        gw.accepted(batch, readings)
        assert _ledger(client).anchorer.tick(force_checkpoint=True).anchored == 1  # on chain, not in "older"
        backup_cloud(old, tmp_path / "newer")

    restored = _restored(tmp_path, "restored", cloud_hardhat_node, tmp_path / "older")
    with app_client(restored) as client:
        token = Path(restored.metrics_token_path).read_text().strip()
        # named at once, before anything is pending: the registry counts more checkpoints than the database
        (halt,) = _cli(restored, "status")["halts"]
        assert halt["state"] == "chain_ahead_of_database" and "holds 2 checkpoint(s), this database 1" in halt[
            "last_error"], halt
        # the gateway follows the restored cloud's head (as its 409 resync does) and ingestion goes on
        state = client.get(f"/api/v1/gateways/{gw.gateway_id}/state", headers=auth(gw.api_key)).json()
        gw.batch_seq, gw.prev = state["last_batch_seq"] + 1, bytes.fromhex(state["last_batch_hash"])
        with _ledger(client).read_session_factory() as session:
            gw.baselines = {b.device_id: (b.seq, b.energy_wh, b.timestamp)
                           for b in session.scalars(select(EnergyBaseline))}
        batch, readings = gw.build()
        assert upload(client, gw, batch).status_code == 201
        report = _ledger(client).anchorer.tick(force_checkpoint=True)
        assert report.anchored == 0 and report.error and "older than the chain" in report.error, report
        status = _cli(restored, "status")
        assert [h["state"] for h in status["halts"]] == ["chain_ahead_of_database"], status
        assert "newer backup" in status["halts"][0]["resolve"]
        text = client.get("/metrics", headers=auth(token)).text
        assert value(text, "ct_cloud_anchoring_halted", reason="chain_ahead_of_database") == 1
        assert value(text, "ct_cloud_chain_errors_total", kind="chain_ahead_of_database") == 1

    resolved = _restored(tmp_path, "resolved", cloud_hardhat_node, tmp_path / "newer")
    with app_client(resolved) as client:
        token = Path(resolved.metrics_token_path).read_text().strip()
        assert _cli(resolved, "status")["halts"] == []
        text = client.get("/metrics", headers=auth(token)).text
        assert value(text, "ct_cloud_anchoring_halted", reason="chain_ahead_of_database") == 0
