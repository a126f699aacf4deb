"""`carbontrace gateway backup` / `restore` (issue 18): a spool with unacknowledged batches is backed up while
open, its batches then reach a real cloud, and the spool is restored onto new paths. The restored gateway
uploads the same batches again: the cloud acknowledges each as a duplicate, the next batch continues the
chain, and the cloud holds every batch exactly once. A damaged gateway backup restores nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from carbontrace.servers import CloudProcess, Tenant
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.topics import reading_topic
from edge_gateway.batcher import make_batch
from edge_gateway.classify import DeviceEntry, Verified, classify_message
from edge_gateway.cli import gateway_app
from edge_gateway.cloud_client import CloudClient
from edge_gateway.config import load_settings
from edge_gateway.forwarder import Forwarder
from edge_gateway.keys import load_private_key
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import OpenReading, Spool
from tests.file_modes import mode

pytestmark = pytest.mark.timeout(120)

WINDOW_S = 60


def write_gateway_config(path: Path, tenant: Tenant, cloud_url: str, spool_path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# a gateway of the backup test\n[gateway]\n"
        f'gateway_id = "{tenant.gateway_id}"\nsite_id = "{tenant.site_id}"\ncloud_url = "{cloud_url}"\n'
        f'api_key = "{tenant.gateway_api_key}"\nkey_file = "{tenant.gateway_key_file}"\n'
        f'spool_path = "{spool_path}"\nmetrics_port = 0\n'
    )
    return path


def seal_windows(spool: Spool, tenant: Tenant, config: Path, windows: range) -> None:
    """Readings of every device in each window, verified as the gateway does and sealed into batches."""
    registry = {d.device_id: DeviceEntry(d.device_id, d.public, "active") for d in tenant.devices}
    key = load_private_key(load_settings(config).key_file)
    now = int(time.time())
    base = now - now % WINDOW_S - WINDOW_S * (len(windows) + 2)
    for w in windows:
        start = base + w * WINDOW_S
        verified = []
        for device in tenant.devices:
            for seq in range(w * 3, w * 3 + 3):
                signed = device.sign(device.reading(seq, start + seq % 3))
                outcome = classify_message(reading_topic(tenant.site_id, device.device_id), signed, tenant.site_id,
                                           registry.get, now, 10 * WINDOW_S * len(windows))
                assert isinstance(outcome, Verified), outcome
                verified.append(outcome)
        spool.clock = lambda start=start: float(start + 1)  # type: ignore[misc]
        spool.ingest(verified, [], WINDOW_S)

        def build(start: int, readings: list[OpenReading], baselines: dict[str, tuple[int, int]], seq: int,
                  prev: bytes, fluxes: list[bytes]):  # type: ignore[no-untyped-def]
            return make_batch(key, tenant.gateway_id, tenant.site_id, (start, start + WINDOW_S), 1, get_factor(),
                              readings, baselines, seq, prev, start + WINDOW_S, fluxes)

        assert spool.close_window(start, WINDOW_S, build) is not None


def upload_all(spool: Spool, config: Path) -> list[int]:
    """Run the gateway's forwarder until the spool has nothing unacknowledged; the cloud's status codes."""
    settings = load_settings(config)
    cloud = CloudClient(settings.cloud_url, settings.gateway_id, settings.api_key.get_secret_value(), 30.0)
    statuses: list[int] = []
    upload = cloud.upload

    def counted(blob: bytes):  # type: ignore[no-untyped-def]
        result = upload(blob)
        statuses.append(result.status)
        return result

    cloud.upload = counted  # type: ignore[method-assign]
    forwarder = Forwarder(spool, cloud, load_private_key(settings.key_file), GatewayMetrics(), 0.01, 0.01, True)
    try:
        while forwarder.step():
            pass
    finally:
        cloud.close()
    assert forwarder.halted is None and spool.stats()["unacked_batches"] == 0, (forwarder.halted, spool.stats())
    return statuses


def stored_batches(cloud: CloudProcess, tenant: Tenant) -> list[str]:
    with httpx.Client(base_url=cloud.url, headers={"Authorization": f"Bearer {cloud.operator_key}"}) as http:
        found = []
        for seq in range(20):
            r = http.get(f"/api/v1/batches/{tenant.gateway_id}/{seq}")
            if r.status_code != 200:
                break
            found.append(r.json()["batch_id"])
        return found


def test_a_restored_spool_reuploads_idempotently_and_the_chain_continues(tmp_path: Path) -> None:
    cloud = CloudProcess(tmp_path / "cloud", jobs_interval_s=0)
    try:
        cloud.start()
        tenant = cloud.register_tenant(2, tmp_path / "old", prefix="bk")
        config = write_gateway_config(tmp_path / "old" / "gateway.toml", tenant, cloud.url, tmp_path / "old/spool.db")
        spool = Spool(tmp_path / "old" / "spool.db")
        seal_windows(spool, tenant, config, range(3))
        assert spool.stats()["unacked_batches"] == 3
        run = CliRunner().invoke(gateway_app, ["backup", "--out", str(tmp_path / "backup"), "--config", str(config)])
        assert run.exit_code == 0, run.output  # the spool is open (WAL) while it is copied
        assert upload_all(spool, config) == [201, 201, 201]  # acknowledged after the backup was taken
        spool.close()
        assert oct(mode(tmp_path / "backup")) == "0o700"

        new = tmp_path / "new"
        run = CliRunner().invoke(gateway_app, [
            "restore", "--from", str(tmp_path / "backup"), "--config", str(new / "gateway.toml"),
            "--spool-path", str(new / "spool.db"), "--key-file", str(new / "gateway.key"),
        ])
        assert run.exit_code == 0, run.output
        restored = load_settings(new / "gateway.toml")
        assert restored.spool_path == new / "spool.db" and restored.key_file == new / "gateway.key"
        assert oct(mode(new / "gateway.key")) == "0o600" and oct(mode(new / "spool.db")) == "0o600"
        assert (new / "gateway.key").read_bytes() == tenant.gateway_key_file.read_bytes()

        spool = Spool(restored.spool_path)
        try:
            assert spool.stats()["unacked_batches"] == 3  # the backup's view: nothing acknowledged yet
            assert upload_all(spool, new / "gateway.toml") == [200, 200, 200]  # duplicates, acknowledged
            seal_windows(spool, tenant, new / "gateway.toml", range(3, 4))
            assert upload_all(spool, new / "gateway.toml") == [201]  # the chain goes on after them
        finally:
            spool.close()
        assert stored_batches(cloud, tenant) == [f"{tenant.gateway_id}/{n}" for n in range(4)]
    finally:
        cloud.stop()


def test_a_damaged_gateway_backup_restores_nothing(tmp_path: Path) -> None:
    config = tmp_path / "old" / "gateway.toml"
    key_file = tmp_path / "old" / "gateway.key"
    result = CliRunner().invoke(gateway_app, ["keygen", str(key_file)])
    assert result.exit_code == 0, result.output
    tenant = Tenant("site-1", "gw-1", "not-used", key_file)
    write_gateway_config(config, tenant, "http://127.0.0.1:9", tmp_path / "old" / "spool.db")
    Spool(tmp_path / "old" / "spool.db").close()
    run = CliRunner().invoke(gateway_app, ["backup", "--out", str(tmp_path / "backup"), "--config", str(config)])
    assert run.exit_code == 0, run.output
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    spool_file = next(f["path"] for f in manifest["files"] if f["role"] == "spool")
    (tmp_path / "backup" / spool_file).write_bytes(b"\0" + (tmp_path / "backup" / spool_file).read_bytes()[1:])
    new = tmp_path / "new"
    run = CliRunner().invoke(gateway_app, ["restore", "--from", str(tmp_path / "backup"),
                                           "--config", str(new / "gateway.toml"), "--spool-path", str(new / "s.db")])
    assert run.exit_code == 1 and spool_file in run.output
    assert not new.exists() or [p for p in new.rglob("*") if p.is_file()] == []
