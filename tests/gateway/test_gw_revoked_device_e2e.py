"""Issue 13, item 5, end to end: a real cloud (uvicorn, embedded chain), a real gateway process and Mosquitto.
One device is revoked in the cloud while the gateway still holds it as active (its registry is refreshed
hourly) and has its readings in an open window. Before: the batch was a 422 unknown_device and the gateway
halted every upload of the site. Now: every batch is accepted, that device's readings are quarantined and
counted, the other device's readings are counted, and later batches keep flowing. Then the operator command
for a halt (`uploads status|retry|skip`) on the same spool."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gw_helpers import Device, InProcessGateway, make_gateway_key, make_stub, topic, write_config
from gw_helpers import publish_all as publish_to_broker
from typer.testing import CliRunner

from carbontrace.benchmarks.common import reading_topic
from carbontrace.benchmarks.mqtt_load import publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, wait_until
from edge_gateway.cli import gateway_app
from edge_gateway.spool import Spool
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(180)


def _batches(cloud: CloudProcess, key: str, gateway_id: str) -> list[dict[str, object]]:
    found = []
    with httpx.Client(base_url=cloud.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for seq in range(100):
            r = http.get(f"/api/v1/batches/{gateway_id}/{seq}")
            if r.status_code != 200:
                break
            found.append(r.json())
    return found


def test_revoked_device_mid_window_is_quarantined_and_uploads_keep_flowing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    cloud = CloudProcess(tmp_path / "cloud", jobs_interval_s=0)
    gateway = None
    try:
        cloud.start()
        tenant = cloud.register_tenant(2, tmp_path, prefix="qr")
        revoked, kept = tenant.devices
        # every broker credential is issued before anyone connects (issuing restarts the broker)
        publisher = mosquitto.add_publisher(tenant.site_id, "qr-pub")
        access = mosquitto.add_gateway(tenant.site_id, tenant.gateway_id)
        gateway = GatewayProcess(tmp_path / "gw", tenant, cloud.url, access, window_s=2, interval_s=1)
        gateway.start()
        now = int(time.time())

        def publish(device: object, seqs: range) -> None:
            publish_all(publisher, [(reading_topic(tenant.site_id, device.device_id),  # type: ignore[attr-defined]
                                     device.signed(s, now + s)) for s in seqs])  # type: ignore[attr-defined]

        publish(revoked, range(0, 3))
        publish(kept, range(0, 3))
        r = httpx.post(f"{cloud.url}/api/v1/devices/{revoked.device_id}/revoke",
                       headers={"Authorization": f"Bearer {tenant.enterprise_key}"}, timeout=30)
        assert r.status_code == 200, r.text
        # The gateway does not know yet: it accepts more of the revoked device's readings into its windows.
        publish(revoked, range(3, 6))
        publish(kept, range(3, 6))
        spool = Spool(gateway.spool_path)
        try:
            try:
                wait_until(lambda: spool.stats()["unacked_batches"] == 0 and spool.stats()["open_readings"] == 0
                           and spool.stats()["acked_batches"] >= 1, 60, "every batch acknowledged")
            except TimeoutError as err:
                raise AssertionError(f"{spool.stats()}\n{gateway.log_since_start()[-3000:]}") from err
            assert spool.stats()["upload_halted"] is None
        finally:
            spool.close()
        batches = _batches(cloud, tenant.enterprise_key, tenant.gateway_id)
        quarantined = [q for b in batches for q in b["quarantined_leaves"]  # type: ignore[attr-defined]
                       if q["kind"] == "reading"]
        assert {q["device_id"] for q in quarantined} == {revoked.device_id}
        assert {q["reason"] for q in quarantined} == {"device_revoked"}
        # Every reading of the revoked device sent after its revocation is quarantined (earlier ones may have
        # been in a batch that closed before it: counted, as they should be).
        assert {3, 4, 5} <= {q["seq"] for q in quarantined}
        assert sum(int(b["quarantined"]) for b in batches) == len(quarantined)  # type: ignore[call-overload]
        r = httpx.get(f"{cloud.url}/api/v1/devices/{kept.device_id}/readings",
                      headers={"Authorization": f"Bearer {tenant.enterprise_key}"}, timeout=30)
        assert [x["seq"] for x in r.json()] == list(range(6))

        # Later batches keep flowing.
        before = len(batches)
        publish(kept, range(6, 9))
        wait_until(lambda: len(_batches(cloud, tenant.enterprise_key, tenant.gateway_id)) > before, 30,
                   "a later batch")
        assert '"uploads STOPPED' not in gateway.log_since_start()
    finally:
        if gateway is not None:
            gateway.stop()
        cloud.stop()


def test_uploads_commands_show_retry_and_skip_a_halted_batch_without_deleting_it(tmp_path: Path) -> None:
    """The operator's command for any halt, on a spool with two unacknowledged batches, the first halted."""
    from carbontrace_protocol.batch import build_batch, decode_batch
    from edge_gateway.keys import create_key_file, load_private_key

    spool_path = tmp_path / "spool.sqlite"
    config = tmp_path / "gateway.toml"
    create_key_file(tmp_path / "k")
    key = load_private_key(tmp_path / "k")
    config.write_text(
        "[gateway]\n" + "\n".join(f'{k} = "{v}"' for k, v in {
            "gateway_id": "gw-1", "site_id": "site-a", "cloud_url": "http://127.0.0.1:9", "api_key": "ct_" + "a" * 64,
            "key_file": str(tmp_path / "k"), "spool_path": str(spool_path)}.items()) + "\n"
    )
    spool = Spool(spool_path)
    prev = bytes(32)
    for seq in (0, 1):
        batch = build_batch(key, "gw-1", "site-a", seq, (100 * seq + 1, 100 * seq + 100), [], [], prev, 1000 + seq)
        spool.db.execute("INSERT INTO batches(batch_seq, batch_id, window_start, window_end, blob, hash, created, "
                         "readings) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                         (seq, batch.id, 1, 2, batch.encode(), batch.hash, 1000 + seq))
        prev = batch.hash
    spool.db.commit()
    spool.set_meta("upload_halted", json.dumps({"reason": "unknown_device", "batch_id": "gw-1/0"}))
    spool.close()
    runner = CliRunner()

    status = runner.invoke(gateway_app, ["uploads", "status", "--config", str(config)])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["halted"]["reason"] == "unknown_device" and [u["batch_seq"] for u in report["unacked"]] == [0, 1]

    assert runner.invoke(gateway_app, ["uploads", "retry", "--config", str(config)]).output.strip() == "uploads resume"
    assert json.loads(runner.invoke(gateway_app, ["uploads", "status", "--config", str(config)]).stdout)["halted"] is None

    not_halted = runner.invoke(gateway_app, ["uploads", "skip", "--batch", "0", "--config", str(config)])
    assert not_halted.exit_code == 1  # nothing is skipped while uploads run (one may be in flight)
    spool = Spool(spool_path)
    spool.set_meta("upload_halted", json.dumps({"reason": "unknown_device", "batch_id": "gw-1/0"}))
    spool.close()
    wrong = runner.invoke(gateway_app, ["uploads", "skip", "--batch", "1", "--config", str(config)])
    assert wrong.exit_code == 1  # only the batch that blocks can be skipped
    skipped = runner.invoke(gateway_app, ["uploads", "skip", "--batch", "0", "--reason", "device revoked",
                                          "--config", str(config)])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(runner.invoke(gateway_app, ["uploads", "status", "--config", str(config)]).stdout)
    # The batch after it took its place (re-signed, its prev the skipped one's prev).
    assert [(u["batch_seq"], u["batch_id"]) for u in report["unacked"]] == [(0, "gw-1/0")]
    assert [(d["batch_seq"], d["reason"], d["blob_kept"]) for d in report["dead_letters"]] == [
        (0, "device revoked", True)
    ]
    spool = Spool(spool_path)
    try:
        moved = spool.next_unacked()
        assert moved is not None and moved.batch_seq == 0
        header = decode_batch(moved.blob).header
        assert (header["batch_seq"], header["prev"], header["window"]) == (0, bytes(32), [101, 200])
        assert spool.stats()["next_batch_seq"] == 1
        assert spool.stats()["dead_letters"] == 1
    finally:
        spool.close()


def _stats(gw: InProcessGateway) -> dict[str, object]:
    spool = gw.spool()  # type: ignore[no-untyped-call]
    try:
        return dict(spool.stats())
    finally:
        spool.close()


def _dead_letters(gw: InProcessGateway) -> list[dict[str, object]]:
    spool = gw.spool()  # type: ignore[no-untyped-call]
    try:
        return list(spool.dead_letters())
    finally:
        spool.close()


def test_skip_moves_a_halted_batch_to_the_dead_letters_and_the_running_gateway_resumes(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """A cloud that still answers 422 for a batch (here: a stub that treats a device revoked after the gateway
    synced its registry as unknown, as the cloud did before the quarantine): the gateway halts; `uploads skip`
    keeps the batch as a dead letter and the running gateway renumbers the next batches onto the cloud's chain."""
    a, b = Device("dev-a"), Device("dev-b")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a, b])
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    runner = CliRunner()
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            publish_to_broker(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(3)])
            wait_until(lambda: len(stub.state.accepted_order) == 1, 15, "first batch")
            stub.state.devices["dev-b"] = (b.public, "revoked")  # the gateway's registry still says active
            # One window with dev-b's readings and dev-a's 3..5 (energy): the batch the stub refuses.
            publish_to_broker(mosquitto, [(topic("dev-b"), b.signed(s)) for s in range(3)]
                              + [(topic("dev-a"), a.signed(s)) for s in range(3, 6)])
            wait_until(lambda: _stats(gw)["upload_halted"] is not None, 15, "upload halt")
            report = json.loads(runner.invoke(gateway_app, ["uploads", "status", "--config", str(config)]).stdout)
            halted_seq = report["unacked"][0]["batch_seq"]
            assert report["halted"]["reason"] == "unknown_device"
            time.sleep(1.2)
            publish_to_broker(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(6, 9)])
            wait_until(lambda: int(_stats(gw)["unacked_batches"]) >= 2, 15, "a batch after the halted one")  # type: ignore[call-overload]
            skipped = runner.invoke(gateway_app, ["uploads", "skip", "--batch", str(halted_seq), "--config",
                                                  str(config)])
            assert skipped.exit_code == 0, skipped.output
            wanted = {("dev-a", s) for s in (0, 1, 2, 6, 7, 8)}
            wait_until(lambda: wanted <= set(stub.state.readings), 20, "later readings")
            assert _stats(gw)["upload_halted"] is None
            dead = _dead_letters(gw)
            assert [(d["batch_seq"], d["blob_kept"]) for d in dead] == [(halted_seq, True)]
    finally:
        stub.stop()
    assert stub.state.accepted_order == list(range(len(stub.state.accepted_order)))  # one unbroken chain
    assert not any(k[0] == "dev-b" for k in stub.state.readings)
    assert not {("dev-a", s) for s in range(3, 6)} & set(stub.state.readings)  # in the dead letter only
    # dev-a's energy after the skip is counted from the last reading the cloud has (seq 2), not the skipped 5.
    last = [agg for agg in stub.state.aggregates if agg["device"] == "dev-a"][-1]
    # format 3: the baseline carries that reading's measurement time, as the cloud (here the stub) derived it
    assert last["energy"]["baseline"] == [2, 1010, stub.state.timestamps[("dev-a", 2)]], last["energy"]
