"""The gateway → cloud health report end to end: a real gateway (real Mosquitto, real spool) counts rejected
readings and sequence gaps, reports them to the real cloud, and the console shows them in Chromium."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from carbontrace.broker_config import MqttAccess
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
from edge_gateway.config import load_settings
from edge_gateway.health import health_report
from edge_gateway.keys import create_key_file
from edge_gateway.service import Gateway
from tests.cloud.cloud_testkit import auth, new_key
from tests.conftest import MosquittoBroker
from tests.console.console_cloud import ConsoleCloud
from tests.console.console_pages import login

pytestmark = pytest.mark.timeout(90)


def test_health_report_lists_every_label_with_rejections_or_gaps() -> None:
    report = health_report(
        {("dev-a", "replay"): 2, ("dev-a", "bad_signature"): 1, ("_unregistered", "unknown_device"): 5},
        {"dev-a": [(9, 9), (4, 5)], "dev-b": [], "dev-c": [(1, 2)]},
    )
    assert report == {
        "devices": [
            {"device": "_unregistered", "rejections": {"unknown_device": 5}, "gaps": []},
            {"device": "dev-a", "rejections": {"bad_signature": 1, "replay": 2}, "gaps": [[4, 5], [9, 9]]},
            {"device": "dev-c", "rejections": {}, "gaps": [[1, 2]]},
        ]
    }


def _publish(access: MqttAccess, messages: list[tuple[str, bytes]]) -> None:
    client = access.paho()
    client.connect(access.host, access.port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_gateway_reports_rejections_and_gaps_and_the_console_shows_them(
    tmp_path: Path, mosquitto: MosquittoBroker, cloud: ConsoleCloud, page: Page
) -> None:
    acme = cloud.tenants["acme"]
    site_id = acme.gateway.site_id
    engineer = auth(acme.engineer_key)
    # A new gateway and device at Acme's site, registered through the API like any other.
    key_file = tmp_path / "gateway.key"
    gateway_public = create_key_file(key_file)
    gateway_id = f"gw-health-{os.getpid()}"
    r = cloud.http.post(f"/api/v1/sites/{site_id}/gateways",
                        json={"gateway_id": gateway_id, "public_key": gateway_public.hex()}, headers=engineer)
    assert r.status_code == 201, r.text
    gateway_key = r.json()["api_key"]
    device_key, device_public = new_key()
    device_id = f"dev-health-{os.getpid()}"
    r = cloud.http.post(f"/api/v1/sites/{site_id}/devices",
                        json={"device_id": device_id, "public_key": device_public.hex()}, headers=engineer)
    assert r.status_code == 201, r.text

    # Broker credentials first (issuing restarts the broker): the gateway's, and the device's own.
    gateway_mqtt, device_mqtt = mosquitto.add_gateway(site_id, gateway_id), mosquitto.add_device(site_id, device_id)
    settings = load_settings(
        None, gateway_id=gateway_id, site_id=site_id, cloud_url=cloud.url, api_key=gateway_key, key_file=key_file,
        spool_path=tmp_path / "spool.sqlite", mqtt_port=gateway_mqtt.port, mqtt_ca_file=gateway_mqtt.ca_file,
        mqtt_username=gateway_mqtt.username, mqtt_password=gateway_mqtt.credentials.password, window_s=2,
        interval_s=1, metrics_port=0, tick_s=0.1, backoff_base_s=0.2, backoff_max_s=1.0,
    )
    gateway = Gateway(settings)
    gateway.health_check_s = 0.2
    thread = threading.Thread(target=gateway.run, daemon=True)
    thread.start()
    try:
        _wait(gateway.ingest.connected.is_set, 15, "the gateway's MQTT subscription")
        topic = f"carbontrace/v1/{site_id}/{device_id}/reading"

        def signed(seq: int, key: int = device_key) -> bytes:
            reading = Reading(device_id, seq, int(time.time()), "1.0.0", co2_ppm=700 + seq, energy_wh=5000 + seq)
            return bytes(sign_reading(reading, key))

        stranger = p256.private_key_from_bytes(os.urandom(32))
        _publish(device_mqtt, [(topic, signed(s)) for s in (3, 4, 5, 8)])  # 6..7 never arrive
        _publish(device_mqtt, [
            (topic, os.urandom(30)),  # not CBOR
            (topic, signed(9, key=stranger)),  # right id, wrong key
            (topic, signed(1)),  # older than anything seen: a replay
        ])

        def reported() -> dict[str, Any] | None:
            sites = httpx.get(f"{cloud.url}/api/v1/console/sites", headers=engineer, timeout=10).json()
            for site in sites:
                for device in site["devices"]:
                    if device["device_id"] == device_id and device["rejected"] == 3:
                        return dict(device)
            return None

        _wait(lambda: reported() is not None, 20, "the gateway's health report in the cloud")
        device = reported()
        assert device is not None
        assert device["rejections"] == {"bad_signature": 1, "malformed_cbor": 1, "replay": 1}
        assert device["gateway_gaps"] == [[6, 7]]
    finally:
        gateway.stop_event.set()
        thread.join(30)
    assert not thread.is_alive()

    login(page, cloud, acme.engineer_key, "#/sites")
    row = page.locator(f"tr[data-device={device_id}]")
    expect(row.locator("td[data-rejected]")).to_have_attribute("data-rejected", "3")
    expect(row).to_contain_text("malformed_cbor 1")
    expect(row.locator("td").last).to_have_text("6–7")
