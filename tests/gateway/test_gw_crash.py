"""kill -9 the gateway process in mid-ingest (and mid-upload), restart it: nothing accepted is lost."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from gw_helpers import Device, make_gateway_key, make_stub, publish_all, start_gateway, topic, write_config

from carbontrace.servers import wait_until
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(90)


def spooled(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    devices = [Device(f"dev-{i}") for i in range(3)]
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, devices)
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    db = tmp_path / "spool.sqlite"
    log = tmp_path / "gateway.log"
    per_device = 150
    messages = [(topic(d.device_id), d.signed(s)) for s in range(per_device) for d in devices]
    sent = {(d.device_id, s) for d in devices for s in range(per_device)}

    def publish_slowly() -> None:
        for start in range(0, len(messages), 30):
            publish_all(mosquitto, messages[start:start + 30], client_id="crash-publisher")
            time.sleep(0.05)

    proc = start_gateway(config, log)
    try:
        # The broker keeps messages for the gateway's session only once it has subscribed the first time.
        wait_until(lambda: "MQTT subscribed" in log.read_text(), 15, "gateway subscription")
        publisher = threading.Thread(target=publish_slowly, daemon=True)
        publisher.start()
        kills = 0
        for threshold in (60, 200, 320):
            wait_until(lambda t=threshold: spooled(db) >= t, 30, f"{threshold} readings spooled")  # type: ignore[misc]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = start_gateway(config, log)
        publisher.join(60)
        assert not publisher.is_alive()
        try:
            wait_until(lambda: stub.reading_keys() == sent, 45, "every reading in an acknowledged batch")
        except TimeoutError:
            missing = sorted(sent - stub.reading_keys())
            raise AssertionError(f"{len(missing)} readings never reached the cloud, e.g. {missing[:10]}; "
                                 f"spool holds {spooled(db)}; log tail: {log.read_text()[-3000:]}") from None
        # Batches the cloud acknowledged are exactly the valid readings sent: none lost, none twice.
        assert stub.state.duplicate_readings == 0
        assert stub.state.rejected == []
        order = stub.state.accepted_order
        assert order == list(range(len(order)))
        assert kills == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0  # graceful shutdown exits 0
        with sqlite3.connect(db) as conn:
            unacked = conn.execute("SELECT COUNT(*) FROM batches WHERE acked_at IS NULL").fetchone()[0]
            missing = conn.execute("SELECT COUNT(*) FROM gaps").fetchone()[0]
        assert unacked == 0 and missing == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stub.stop()
    assert '"level": "error"' not in log.read_text()


def test_kill_9_while_the_cloud_is_away_then_backlog_uploads(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    db = tmp_path / "spool.sqlite"
    proc = start_gateway(config, tmp_path / "gateway.log")
    try:
        wait_until(lambda: "MQTT subscribed" in (tmp_path / "gateway.log").read_text(), 15, "gateway subscription")
        stub.stop()
        publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(40)])
        wait_until(lambda: spooled(db) == 40, 15, "readings spooled")
        time.sleep(1.5)  # let a window close into an unacknowledged batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stub.start()
        proc = start_gateway(config, tmp_path / "gateway.log")
        wait_until(lambda: stub.reading_keys() == {("dev-a", s) for s in range(40)}, 30, "backlog uploaded")
        assert stub.state.duplicate_readings == 0
    finally:
        proc.kill()
        proc.wait(10)
        stub.stop()
