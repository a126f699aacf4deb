"""Measured, not asserted tightly: verified ingest into the spool next to bare Mosquitto pub→sub (paho)."""

from __future__ import annotations

import time
from pathlib import Path

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

from carbontrace.benchmarks.mqtt_load import bare_broker_rate
from carbontrace.servers import wait_until
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(120)

DEVICES = 10
PER_DEVICE = 200  # signing in pure Python (the device's signer) dominates this file's run time


def test_verified_ingest_rate_next_to_bare_mosquitto(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    devices = [Device(f"dev-{i}") for i in range(DEVICES)]
    messages = [(topic(d.device_id), d.signed(s)) for s in range(PER_DEVICE) for d in devices]
    size = sum(len(p) for _, p in messages) // len(messages)
    bare = bare_broker_rate(mosquitto, messages)

    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, devices)
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=3600)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            spool = gw.spool()
            start = time.perf_counter()
            publish_all(mosquitto, messages, client_id="gw-pub")
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
