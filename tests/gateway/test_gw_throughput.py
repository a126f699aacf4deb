"""Measured, not asserted tightly: verified ingest into the spool next to bare Mosquitto pub→sub (paho)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gw_helpers import (
    Device,
    InProcessGateway,
    make_gateway_key,
    make_stub,
    publish_all,
    topic,
    write_config,
)
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace.servers import wait_until
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(120)

DEVICES = 10
PER_DEVICE = 200  # signing in pure Python (the device's signer) dominates this file's run time


def bare_rate(port: int, messages: list[tuple[str, bytes]]) -> float:
    """One paho publisher -> Mosquitto -> one paho subscriber, QoS 1, the same payloads."""
    received = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == len(messages):
            done.set()

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("bare/#", qos=1)
    assert subscribed.wait(5)
    start = time.perf_counter()
    publish_all(port, [("bare/" + t, p) for t, p in messages], client_id="bare-pub")
    assert done.wait(60), f"bare subscriber got {received}/{len(messages)}"
    elapsed = time.perf_counter() - start
    sub.disconnect()
    sub.loop_stop()
    return len(messages) / elapsed


def test_verified_ingest_rate_next_to_bare_mosquitto(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    devices = [Device(f"dev-{i}") for i in range(DEVICES)]
    messages = [(topic(d.device_id), d.signed(s)) for s in range(PER_DEVICE) for d in devices]
    size = sum(len(p) for _, p in messages) // len(messages)
    bare = bare_rate(mosquitto.port, messages)

    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, devices)
    config = write_config(tmp_path, key_file, stub.url, mosquitto.port, window_s=3600)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            spool = gw.spool()
            start = time.perf_counter()
            publish_all(mosquitto.port, messages, client_id="gw-pub")
            wait_until(lambda: spool.stats()["open_readings"] == len(messages), 60, "all readings spooled",
                       interval=0.01)
            elapsed = time.perf_counter() - start
            verified = len(messages) / elapsed
            assert spool.rejection_counts() == {}
    finally:
        stub.stop()
    print(f"\n[gateway throughput] {len(messages)} readings of ~{size} bytes, QoS 1:"
          f" bare Mosquitto pub->sub {bare:,.0f} msg/s;"
          f" verified ingest into the spool (ES256 verify + SQLite WAL synchronous=FULL, ack after commit)"
          f" {verified:,.0f} readings/s ({verified / bare:.0%} of bare)")
    assert verified > 50  # a floor that only a broken pipeline misses
