"""A gateway with two ingest processes on one shared subscription ($share/<group>/...), on the production
Mosquitto (TLS, passwords, ACLs): the broker hands each reading to one worker, both verify into the one
spool, and every reading reaches the cloud exactly once in one unbroken batch chain — also when a worker
or the whole gateway is killed with SIGKILL mid-stream. None of this could be configured before
(`ingest_workers` and `mqtt_shared_group` were unknown settings)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from gw_cloud_stub import CloudStub
from gw_helpers import (
    GATEWAY,
    SITE,
    Device,
    make_gateway_key,
    make_stub,
    publish_all,
    start_gateway,
    topic,
    write_config,
)
from pydantic import ValidationError

from carbontrace.broker_config import BrokerConfig, gateway_username
from carbontrace.servers import wait_until
from carbontrace_protocol import topics
from edge_gateway.classify import subscription
from edge_gateway.config import GatewaySettings
from tests.cloud.prometheus_text import value
from tests.conftest import MosquittoBroker, free_port

pytestmark = pytest.mark.timeout(150)

GROUP = "gw-1-ingest"
BASE = {"gateway_id": "g", "site_id": "s", "cloud_url": "http://127.0.0.1:1", "api_key": "k",
        "key_file": "/nonexistent", "spool_path": "/nonexistent"}


def test_workers_need_a_share_group_and_a_valid_one() -> None:
    with pytest.raises(ValidationError, match="needs mqtt_shared_group"):
        GatewaySettings(**BASE, ingest_workers=2)
    for bad in ("", "a/b", "a+", "#", "x" * 65):
        with pytest.raises(ValidationError, match="mqtt_shared_group"):
            GatewaySettings(**BASE, mqtt_shared_group=bad)
    settings = GatewaySettings(**BASE, mqtt_shared_group="grp", ingest_workers=3, mqtt_username="gw-g")
    assert subscription("s", "grp") == "$share/grp/carbontrace/v1/s/+/reading"
    assert subscription("s") == topics.site_readings("s")
    assert [settings.client_id(k) for k in range(3)] == ["gw-g", "gw-g.w1", "gw-g.w2"]
    assert settings.username(2) == "gw-g.w2"
    # a long name is cut so that the worker's name is still a valid 64-character principal
    assert len(topics.worker_name("g" * 64, 12)) == 64 and topics.worker_name("g" * 64, 12).endswith(".w12")


def test_worker_credentials_share_the_gateways_role_and_go_with_it(tmp_path: Path) -> None:
    config = BrokerConfig(tmp_path / "broker").create()
    config.add_gateway("site-1", "gw-9", workers=3)
    config.add_gateway("site-1", "gw-10")
    names = config.principals()
    base = gateway_username("gw-9")
    assert {base, f"{base}.w1", f"{base}.w2"} <= set(names)
    assert all(names[n].role == "gateway" and names[n].site == "site-1" for n in (base, f"{base}.w1", f"{base}.w2"))
    acl = config.acl_file.read_text()
    assert f"user {base}.w2\ntopic read {topics.site_readings('site-1')}" in acl
    assert config.revoke(base)
    left = set(config.principals())
    assert not left & {base, f"{base}.w1", f"{base}.w2"} and gateway_username("gw-10") in left
    with pytest.raises(ValueError, match="only a gateway"):
        config.issue("dev-1", "device", "site-1", device="dev-1", workers=2)


def log_events(log: Path, message: str) -> list[dict[str, object]]:
    events = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("msg") == message:
            events.append(event)
    return events


def accepted_by(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(value(text, "ct_gateway_readings_accepted_total", device=f"dev-{i}") for i in range(3))


def two_worker_gateway(tmp_path: Path, broker: MosquittoBroker) -> tuple[list[Device], CloudStub, Path, int]:
    """Three devices, the cloud stub, and the settings of a two-worker gateway on ``broker``: (devices, stub,
    config file, the main process's metrics port; worker 1 serves on the next one)."""
    devices = [Device(f"dev-{i}") for i in range(3)]
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, devices)
    metrics_port = free_port()
    write_config(tmp_path, key_file, stub.url, broker)  # issues the one-worker credentials and the publisher
    # then the two-worker ones (a new password for the gateway's user, and its worker's user)
    access = broker.add_gateway(SITE, GATEWAY, workers=2)
    config = write_config(tmp_path, key_file, stub.url, broker, window_s=1, ingest_workers=2,
                          mqtt_shared_group=GROUP, mqtt_username=access.username,
                          mqtt_password=access.credentials.password, metrics_port=metrics_port)
    return devices, stub, config, metrics_port


def test_two_workers_share_the_load_and_every_reading_arrives_once(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    devices, stub, config, port = two_worker_gateway(tmp_path, mosquitto)
    log = tmp_path / "gateway.log"
    sent = {(d.device_id, s) for d in devices for s in range(100)}
    proc = start_gateway(config, log)
    try:
        wait_until(lambda: len(log_events(log, "MQTT subscribed")) >= 2, 30, "both workers subscribed")
        assert {e["worker"] for e in log_events(log, "MQTT subscribed")} == {0, 1}
        assert {e["topic"] for e in log_events(log, "MQTT subscribed")} == {
            f"$share/{GROUP}/{topics.site_readings(SITE)}"}
        publish_all(mosquitto, [(topic(d.device_id), d.signed(s)) for s in range(100) for d in devices])
        wait_until(lambda: stub.reading_keys() == sent, 60, "every reading in an acknowledged batch")
        main, worker = accepted_by(port), accepted_by(port + 1)
        # each reading went to one of them (the broker's round robin), and each verified some of the load
        assert main + worker == len(sent) and main > 0 and worker > 0
        assert stub.state.duplicate_readings == 0 and stub.state.rejected == []
        assert stub.state.accepted_order == list(range(len(stub.state.accepted_order)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)
        stub.stop()
    assert proc.returncode == 0
    # the worker stopped with its parent (no orphan left holding its MQTT session)
    for event in log_events(log, "ingest worker started"):
        assert not Path(f"/proc/{event['pid']}").exists() or b"zombie" in Path(f"/proc/{event['pid']}/status").read_bytes()


def test_a_killed_worker_or_gateway_loses_nothing(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    devices, stub, config, _ = two_worker_gateway(tmp_path, mosquitto)
    log = tmp_path / "gateway.log"
    per_device = 200
    messages = [(topic(d.device_id), d.signed(s)) for s in range(per_device) for d in devices]
    sent = {(d.device_id, s) for d in devices for s in range(per_device)}

    def publish_slowly() -> None:
        for start in range(0, len(messages), 20):
            publish_all(mosquitto, messages[start:start + 20], client_id="share-publisher")
            time.sleep(0.05)

    proc = start_gateway(config, log)
    try:
        wait_until(lambda: len(log_events(log, "MQTT subscribed")) >= 2, 30, "both workers subscribed")
        publisher = threading.Thread(target=publish_slowly, daemon=True)
        publisher.start()
        wait_until(lambda: len(stub.reading_keys()) >= 90, 30, "some readings uploaded")
        first_worker = int(log_events(log, "ingest worker started")[-1]["pid"])  # type: ignore[call-overload]
        os.kill(first_worker, signal.SIGKILL)
        wait_until(lambda: len(log_events(log, "ingest worker started")) >= 2, 30, "the worker restarted")
        assert log_events(log, "ingest worker exited; restarting it")[0]["worker"] == 1
        wait_until(lambda: len(stub.reading_keys()) >= 300, 30, "more readings uploaded")
        # now the whole gateway: its worker must not outlive it, or it would fight the restarted one's session
        orphan = int(log_events(log, "ingest worker started")[-1]["pid"])  # type: ignore[call-overload]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not Path(f"/proc/{orphan}").exists(), 15, "the orphaned worker to exit")
        proc = start_gateway(config, log)
        publisher.join(90)
        assert not publisher.is_alive()
        try:
            wait_until(lambda: stub.reading_keys() == sent, 60, "every reading in an acknowledged batch")
        except TimeoutError:
            missing = sorted(sent - stub.reading_keys())
            raise AssertionError(f"{len(missing)} readings never reached the cloud, e.g. {missing[:10]}; "
                                 f"log tail: {log.read_text()[-3000:]}") from None
        assert stub.state.duplicate_readings == 0 and stub.state.rejected == []
        assert stub.state.accepted_order == list(range(len(stub.state.accepted_order)))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(40)
        stub.stop()
