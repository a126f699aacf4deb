"""`carbontrace cloud backup` / `restore` (issue 18): a cloud on SQLite with the embedded chain is backed up while
it runs, wiped, restored onto other paths and started again: every anchored batch's bundle verifies, the
gateway's batch chain continues, an old batch answers its duplicate receipt. A damaged backup restores nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from carbontrace.cli import app
from carbontrace_host.backup_dir import BackupError
from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud.backup import restore_cloud
from cloud.settings import Settings
from tests.cloud.cloud_testkit import ADMIN_KEY, app_client, make_settings, upload
from tests.file_modes import mode
from tests.trace.trace_kit import anchor, get, ledger_of, reader_of, tenant_with_batches, trust_of, upload_batches

TYPES = ["co2", "aggregates"]


def fresh_settings(root: Path, **overrides: Any) -> Settings:
    """A new machine's paths under ``root``, nothing on them yet."""
    settings = make_settings(root, **overrides)
    Path(settings.operator_key_file).unlink()  # make_settings hands a key file out; a fresh machine has none
    return settings


def cloud_env(settings: Settings) -> dict[str, str]:
    """The CT_CLOUD_* environment that names the paths of ``settings`` (for the CLI)."""
    return {
        "CT_CLOUD_DATABASE_URL": settings.database_url,
        "CT_CLOUD_CONTENT_DIR": settings.content_dir,
        "CT_CLOUD_SIGNING_KEY_FILE": settings.signing_key_file,
        "CT_CLOUD_CHAIN_KEY_FILE": settings.chain_key_file,
        "CT_CLOUD_OPERATOR_KEY_FILE": settings.operator_key_file,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(the old machine's database, the new machine's): SQLite files, or two PostgreSQL databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old/cloud.db", f"sqlite:///{tmp_path}/new/cloud.db"
    cluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database(), cluster.create_database()


def test_a_restored_cloud_verifies_every_anchored_batch_and_ingestion_continues(
    tmp_path: Path, database_urls: tuple[str, str]
) -> None:
    old_url, new_url = database_urls
    old = make_settings(tmp_path / "old", database_url=old_url)
    backup_dir = tmp_path / "backup"
    with app_client(old) as client:
        traced = tenant_with_batches(client, "Backup-A", batches=2)
        anchor(client)
        key = traced.tenant.enterprise_key
        before = get(client, "/api/v1/trace/bundle", key, types=TYPES, limit=1000).json()
        upload_batches(client, traced, 1)  # stored, not anchored yet at backup time
        gw = traced.tenant.gateway
        first = traced.batches[0]
        first_receipt = upload(client, gw, first).json()
        registry = ledger_of(client).chain.registry().address
        chain_id = ledger_of(client).chain.connect().chain_id
        run = CliRunner().invoke(app, ["cloud", "backup", "--out", str(backup_dir)], env=cloud_env(old))
        assert run.exit_code == 0, run.output
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["database"]["engine"] == ("sqlite" if old.is_sqlite else "postgresql")
    assert manifest["chain"]["registries"][0]["registry_address"] == registry
    assert manifest["chain"]["registries"][0]["chain_id"] == chain_id
    assert {f["role"] for f in manifest["files"]} >= {
        "database", "content", "chain_journal", "signing_key", "encryption_key", "chain_key", "operator_key",
        "metrics_token",
    }
    assert oct(mode(backup_dir)) == "0o700"
    assert all(oct(mode(backup_dir / f["path"])) == "0o600" for f in manifest["files"])

    shutil.rmtree(tmp_path / "old")  # the machine is gone
    new = fresh_settings(tmp_path / "new", database_url=new_url)
    run = CliRunner().invoke(app, ["cloud", "restore", "--from", str(backup_dir)], env=cloud_env(new))
    assert run.exit_code == 0, run.output
    assert oct(mode(Path(new.chain_key_file))) == "0o600"

    with app_client(new) as client:
        ledger = ledger_of(client)
        assert ledger.chain.registry().address == registry
        assert ledger.chain.registry().checkpoint_count() == 1
        report = verify_bundle_json(before, reader_of(client), trust_of(client))
        assert report.status == "valid", report.as_json()
        again = upload(client, gw, first)  # already stored before the backup
        assert again.status_code == 200 and again.json() == first_receipt
        upload_batches(client, traced, 1)  # 201: the gateway's chain goes on from the restored head
        anchor(client)
        after = get(client, "/api/v1/trace/bundle", key, types=TYPES, limit=1000).json()
        assert [c["seq"] for c in after["checkpoints"]] == [0, 1]
        assert verify_bundle_json(after, reader_of(client), trust_of(client)).status == "valid"
        stored = [get(client, f"/api/v1/batches/{gw.gateway_id}/{seq}", ADMIN_KEY).status_code
                  for seq in range(len(traced.batches) + 1)]
        assert stored == [200] * len(traced.batches) + [404]  # every batch once: no gap, nothing past the head


@pytest.fixture
def backed_up(tmp_path: Path) -> Path:
    settings = make_settings(tmp_path / "old")
    with app_client(settings) as client:
        tenant_with_batches(client, "Backup-B", batches=1)
        anchor(client)
    run = CliRunner().invoke(app, ["cloud", "backup", "--out", str(tmp_path / "backup")], env=cloud_env(settings))
    assert run.exit_code == 0, run.output
    return tmp_path / "backup"


def test_a_corrupted_backup_is_refused_naming_the_file_and_nothing_is_restored(
    backed_up: Path, tmp_path: Path
) -> None:
    manifest = json.loads((backed_up / "manifest.json").read_text())
    blob = next(f["path"] for f in manifest["files"] if f["role"] == "content")
    damaged = bytearray((backed_up / blob).read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    (backed_up / blob).write_bytes(bytes(damaged))
    new = fresh_settings(tmp_path / "new")
    run = CliRunner().invoke(app, ["cloud", "restore", "--from", str(backed_up)], env=cloud_env(new))
    assert run.exit_code == 1
    assert blob in run.output and "sha256" in run.output
    assert [p for p in (tmp_path / "new").rglob("*") if p.is_file()] == []


def test_restore_refuses_existing_state_unless_forced(backed_up: Path, tmp_path: Path) -> None:
    new = fresh_settings(tmp_path / "new")
    restore_cloud(new, backed_up)
    with pytest.raises(BackupError, match="refusing to overwrite existing state"):
        restore_cloud(new, backed_up)
    report = restore_cloud(new, backed_up, force=True)
    assert report["content_blobs"] >= 1
    with app_client(new) as client:
        assert ledger_of(client).chain.registry().checkpoint_count() == 1
