"""`carbontrace cloud recover-from-chain` resolves chain_ahead_of_database (issue 18, "Day two"): a cloud restored
from a backup older than its external chain (a real Hardhat node) rebuilds the checkpoints anchored since and
the batches they commit to from what is public and content-addressed: the registry's CheckpointAnchored events,
the checkpoint blobs they name, the batch blobs those list (here from a real IPFS daemon, the restored content
store holding only the older blobs). After it the halt is gone (status line and metric), every batch's proof
bundle verifies, the gateway's next batch is accepted and anchoring goes on from the chain's head with no gap or
duplicate. Content that cannot be fetched is named cid by cid, exit 1, nothing changed; a second run changes
nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud.backup import backup_cloud, restore_cloud
from cloud.cli import cloud_app
from cloud.db import make_engine, read_session_factory
from cloud.ledger_log import SqlLog
from cloud.models import Batch, Checkpoint, EnergyBaseline
from cloud.settings import Settings
from tests.cloud.cloud_testkit import ADMIN_KEY, app_client, auth, make_settings, register_tenant, upload
from tests.cloud.conftest import HardhatNode, IpfsDaemon
from tests.cloud.prometheus_text import value
from tests.trace.trace_kit import (
    Traced,
    anchor,
    get,
    ledger_of,
    reader_of,
    tenant_with_batches,
    trust_of,
    upload_batches,
)

TYPES = ["co2", "aggregates"]
HALT = "chain_ahead_of_database"


def _env(settings: Settings) -> dict[str, str]:
    """The same cloud for the command line, as CT_CLOUD_* variables."""
    names = ("database_url", "chain", "content_dir", "content_store", "signing_key_file", "chain_key_file",
             "operator_key_file", "confirmations", "fund_operator_from_dev_node")
    return {f"CT_CLOUD_{n.upper()}": str(getattr(settings, n)) for n in names}


def _run(settings: Settings, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cloud_app, list(args), env=_env(settings))
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def _database(settings: Settings) -> dict[str, Any]:
    """What recovery may change: the log, the batches, the checkpoints (and which are anchored)."""
    with read_session_factory(make_engine(settings.database_url))() as session:
        return {
            "log_size": SqlLog(session).size(),
            "batches": int(session.execute(select(func.count()).select_from(Batch)).scalar_one()),
            "checkpoints": [(c.seq, c.tree_size, c.cid, c.anchored) for c in
                            session.scalars(select(Checkpoint).order_by(Checkpoint.seq))],
        }


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(the old machine's database, the restored machine's): SQLite files, or two PostgreSQL databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old/cloud.db", f"sqlite:///{tmp_path}/restored/cloud.db"
    cluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database(), cluster.create_database()


def _older_than_chain(tmp_path: Path, node: HardhatNode, old_url: str, new_url: str, content_store: str = "local",
                      second: Traced | None = None) -> tuple[Settings, Settings, Traced, dict[str, Any]]:
    """A cloud anchors checkpoint 0 (2 batches), is backed up, anchors checkpoints 1 and 2 (3 batches more; with
    ``second``, a second tenant registered before the backup adds its first batch last); a new machine restores
    the backup. Returns (old, restored, the tenant, what the old cloud knew at the end)."""
    old = make_settings(tmp_path / "old", chain=node.url, database_url=old_url, content_store=content_store)
    with app_client(old) as client:
        traced = tenant_with_batches(client, "Recover", batches=2)
        if second is not None:
            second.tenant = register_tenant(client, "Second", devices=1)
        anchor(client)
        backup_cloud(old, tmp_path / "older")
        upload_batches(client, traced, 2)
        anchor(client)
        upload_batches(client, traced, 1)
        if second is not None:
            upload_batches(client, second, 1)
        anchor(client)
        assert ledger_of(client).chain.registry().checkpoint_count() == 3
        with ledger_of(client).read_session_factory() as session:
            known = {
                "batch_cids": [b.cid for b in session.scalars(select(Batch).where(Batch.log_index >= 2)
                                                              .order_by(Batch.log_index))],
                "checkpoint_cids": [c.cid for c in session.scalars(select(Checkpoint).where(Checkpoint.seq >= 1)
                                                                   .order_by(Checkpoint.seq))],
            }
    restored = make_settings(tmp_path / "restored", chain=node.url, database_url=new_url, content_store=content_store)
    for path in (tmp_path / "restored").iterdir():  # make_settings writes keys: this machine starts empty
        if path.is_file():
            os.unlink(path)
    restore_cloud(restored, tmp_path / "older")
    code, status = _run(restored, "status")
    assert code == 0 and [h["state"] for h in status["halts"]] == [HALT], status
    assert "recover-from-chain" in status["halts"][0]["resolve"], status
    return old, restored, traced, known


def test_recover_from_chain_rebuilds_the_lost_checkpoints_and_anchoring_goes_on(
    tmp_path: Path, cloud_hardhat_node: HardhatNode, ipfs_daemon: IpfsDaemon, database_urls: tuple[str, str]
) -> None:
    _old, restored, traced, known = _older_than_chain(tmp_path, cloud_hardhat_node, *database_urls,
                                                      content_store=ipfs_daemon.url)
    before = _database(restored)
    assert (before["log_size"], len(before["checkpoints"])) == (2, 1)

    code, report = _run(restored, "recover-from-chain")
    assert code == 0, report
    assert report["recovered"] and report["recovered_checkpoints"] == [1, 2], report
    assert (report["batches_ingested"], report["batches_already_held"], report["tree_size"]) == (3, 0, 5), report
    after = _database(restored)
    assert after["log_size"] == 5 and after["batches"] == 5
    assert [c[0] for c in after["checkpoints"]] == [0, 1, 2] and all(c[3] for c in after["checkpoints"])
    assert [c[2] for c in after["checkpoints"][1:]] == known["checkpoint_cids"]  # the chain's own blobs
    with read_session_factory(make_engine(restored.database_url))() as session:
        # each batch keeps the sealed blob its checkpoint lists (not sealed anew)
        assert [b.cid for b in session.scalars(select(Batch).where(Batch.log_index >= 2)
                                               .order_by(Batch.log_index))] == known["batch_cids"]

    # run twice: nothing more to do, nothing changed
    code, again = _run(restored, "recover-from-chain")
    assert code == 0 and again["recovered_checkpoints"] == [] and again["batches_ingested"] == 0, again
    assert _database(restored) == after

    code, status = _run(restored, "status")
    assert code == 0 and status["halts"] == [], status
    with app_client(restored) as client:
        token = Path(restored.metrics_token_path).read_text().strip()
        text = client.get("/metrics", headers=auth(token)).text
        assert value(text, "ct_cloud_anchoring_halted", reason=HALT) == 0
        key = traced.tenant.enterprise_key
        bundle = get(client, "/api/v1/trace/bundle", key, types=TYPES, limit=1000).json()
        assert [c["seq"] for c in bundle["checkpoints"]] == [0, 1, 2]
        assert len({b["batch_id"] for b in bundle["batches"]}) == 5
        verified = verify_bundle_json(bundle, reader_of(client), trust_of(client))
        assert verified.status == "valid", verified.as_json()
        # the gateway's chain goes on from the chain's head: its next batch is accepted, a lost one answers
        # its duplicate receipt, and anchoring resumes with checkpoint 3
        gw = traced.tenant.gateway
        assert upload(client, gw, traced.batches[3]).status_code == 200
        upload_batches(client, traced, 1)
        anchor(client)
        assert ledger_of(client).chain.registry().checkpoint_count() == 4
        bundle = get(client, "/api/v1/trace/bundle", key, types=TYPES, limit=1000).json()
        assert [c["seq"] for c in bundle["checkpoints"]] == [0, 1, 2, 3]
        assert verify_bundle_json(bundle, reader_of(client), trust_of(client)).status == "valid"
        stored = [get(client, f"/api/v1/batches/{gw.gateway_id}/{seq}", ADMIN_KEY).status_code
                  for seq in range(len(traced.batches) + 1)]
        assert stored == [200] * len(traced.batches) + [404]  # every batch once: no gap, nothing past the head
    assert _run(restored, "status")[1]["halts"] == []


def test_missing_content_is_named_and_changes_nothing(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    # a local content store only: the restored one holds the older backup's blobs, the newer ones are elsewhere
    old, restored, _traced, known = _older_than_chain(
        tmp_path, cloud_hardhat_node, f"sqlite:///{tmp_path}/old/cloud.db", f"sqlite:///{tmp_path}/restored/cloud.db")
    before = _database(restored)

    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and not report["recovered"], report
    assert sorted(report["missing_cids"]) == sorted(known["checkpoint_cids"]), report  # the batches are unknown yet
    assert _database(restored) == before

    # checkpoint 2's blob comes back: checkpoint 1's blob is named, and the batch blob checkpoint 2 lists
    old_content, new_content = Path(old.content_dir), Path(restored.content_dir)

    def bring_back(cid: str) -> None:
        (new_content / cid[-2:]).mkdir(mode=0o700, exist_ok=True)
        shutil.copy(old_content / cid[-2:] / cid, new_content / cid[-2:] / cid)

    bring_back(known["checkpoint_cids"][1])
    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and sorted(report["missing_cids"]) == sorted(
        [known["checkpoint_cids"][0], known["batch_cids"][2]]), report
    assert _database(restored) == before

    # every checkpoint blob back: now exactly the batch blobs they list are named
    bring_back(known["checkpoint_cids"][0])
    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and sorted(report["missing_cids"]) == sorted(known["batch_cids"]), report
    assert _database(restored) == before
    code, status = _run(restored, "status")
    assert [h["state"] for h in status["halts"]] == [HALT], status  # the halt stays

    # one batch blob still missing: still nothing changes
    for cid in known["batch_cids"][:-1]:
        bring_back(cid)
    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and list(report["missing_cids"]) == known["batch_cids"][-1:], report
    assert _database(restored) == before

    bring_back(known["batch_cids"][-1])
    code, report = _run(restored, "recover-from-chain")
    assert code == 0 and report["recovered_checkpoints"] == [1, 2], report
    assert _run(restored, "status")[1]["halts"] == []


def _sqlite_urls(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/old/cloud.db", f"sqlite:///{tmp_path}/restored/cloud.db"


def test_batches_the_restored_cloud_took_again_are_kept_and_its_pending_checkpoint_replaced(
    tmp_path: Path, cloud_hardhat_node: HardhatNode
) -> None:
    old, restored, traced, known = _older_than_chain(tmp_path, cloud_hardhat_node, *_sqlite_urls(tmp_path))
    shutil.copytree(old.content_dir, restored.content_dir, dirs_exist_ok=True)  # the blobs are still at hand
    with app_client(restored) as client:
        # a gateway re-uploads from its spool the batch after the restored head: the chain's own next leaf
        assert upload(client, traced.tenant.gateway, traced.batches[2]).status_code == 201
        report = ledger_of(client).anchorer.tick(force_checkpoint=True)  # signs checkpoint 1 anew: halts
        assert report.anchored == 0 and report.error and "older than the chain" in report.error, report
    assert [c[3] for c in _database(restored)["checkpoints"]] == [True, False]

    code, report = _run(restored, "recover-from-chain")
    assert code == 0, report
    assert (report["batches_ingested"], report["batches_already_held"]) == (2, 1), report
    assert report["dropped_pending_checkpoints"] == [1] and report["recovered_checkpoints"] == [1, 2], report
    after = _database(restored)
    assert [c[2] for c in after["checkpoints"][1:]] == known["checkpoint_cids"] and all(
        c[3] for c in after["checkpoints"])
    assert _run(restored, "status")[1]["halts"] == []
    with app_client(restored) as client:
        upload_batches(client, traced, 1)
        anchor(client)
        assert ledger_of(client).chain.registry().checkpoint_count() == 4


def test_a_log_forked_after_the_restore_is_refused_and_nothing_changes(
    tmp_path: Path, cloud_hardhat_node: HardhatNode
) -> None:
    old, restored, traced, _known = _older_than_chain(tmp_path, cloud_hardhat_node, *_sqlite_urls(tmp_path))
    shutil.copytree(old.content_dir, restored.content_dir, dirs_exist_ok=True)
    with app_client(restored) as client:
        # the gateway renumbered onto the restored head (its 409 resync): another batch 2 than the chain's
        gw = traced.tenant.gateway
        state = client.get(f"/api/v1/gateways/{gw.gateway_id}/state", headers=auth(gw.api_key)).json()
        gw.batch_seq, gw.prev = state["last_batch_seq"] + 1, bytes.fromhex(state["last_batch_hash"])
        with ledger_of(client).read_session_factory() as session:
            gw.baselines = {b.device_id: (b.seq, b.energy_wh, b.timestamp) for b in session.scalars(
                select(EnergyBaseline))}
        batch, _readings = gw.build(per_device=1)
        assert upload(client, gw, batch).status_code == 201
    before = _database(restored)
    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and "log leaf 2" in report["error"] and "forked" in report["error"], report
    assert _database(restored) == before
    assert [h["state"] for h in _run(restored, "status")[1]["halts"]] == [HALT]


def test_a_refusal_half_way_rolls_every_batch_back(
    tmp_path: Path, cloud_hardhat_node: HardhatNode, database_urls: tuple[str, str]
) -> None:
    second = Traced(tenant=None)  # type: ignore[arg-type]  # registered by _older_than_chain
    old, restored, _traced, _known = _older_than_chain(tmp_path, cloud_hardhat_node, *database_urls, second=second)
    shutil.copytree(old.content_dir, restored.content_dir, dirs_exist_ok=True)
    with app_client(restored) as client:
        # the second gateway is decommissioned before the recovery: ingestion refuses its batch, the last one,
        # after the first tenant's three were stored (in savepoints of the one transaction)
        gateway = second.tenant.gateway.gateway_id
        r = client.post(f"/api/v1/gateways/{gateway}/revoke", headers=auth(second.tenant.engineer_key))
        assert r.status_code == 200, r.text
    before = _database(restored)
    code, report = _run(restored, "recover-from-chain")
    assert code == 1 and f"batch {gateway}/0" in report["error"] and "gateway_revoked" in report["error"], report
    assert _database(restored) == before  # not one of the three batches before it stayed
    assert [h["state"] for h in _run(restored, "status")[1]["halts"]] == [HALT]
