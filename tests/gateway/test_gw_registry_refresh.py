"""A device key rotated in the cloud: the gateway's registry (refreshed every registry_refresh_s, here an hour)
still holds the old key. A bad signature from a known device refreshes the registry and verifies the message
again, at most once per device per registry_refresh_on_bad_signature_s, so the new key's readings are kept
instead of being dropped (and acked: lost) until the next periodic refresh."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gw_helpers import Device, InProcessGateway, make_gateway_key, make_stub, topic, write_config
from gw_helpers import publish_all as publish_to_broker

from carbontrace.servers import wait_until
from edge_gateway.spool import Spool
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(120)


def test_readings_under_a_rotated_key_are_kept_after_one_registry_refresh(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    try:
        with InProcessGateway(config) as gw:
            refreshes: list[float] = []
            refresh = getattr(gw.gateway.ingest, "refresh_registry", None)  # (absent before the fix)

            def counted(spool: Spool) -> bool:
                refreshes.append(time.monotonic())
                return refresh is not None and refresh(spool)

            gw.gateway.ingest.refresh_registry = counted
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            publish_to_broker(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(3)])
            wait_until(lambda: {("dev-a", s) for s in range(3)} <= set(stub.state.readings), 15, "old-key readings")
            assert refreshes == []

            # The device's key rotates in the cloud; the gateway's registry is an hour from its next refresh.
            rotated = Device("dev-a")
            stub.state.devices["dev-a"] = (rotated.public, "active")
            publish_to_broker(mosquitto, [(topic("dev-a"), rotated.signed(s)) for s in range(3, 6)])
            wait_until(lambda: {("dev-a", s) for s in range(3, 6)} <= set(stub.state.readings), 15,
                       "new-key readings")
            assert len(refreshes) == 1  # one refresh served them all

            # A key the device never had: still bad_signature, and no refresh storm (one per 10 s per device).
            forged = Device("dev-a")
            publish_to_broker(mosquitto, [(topic("dev-a"), forged.signed(s)) for s in range(6, 12)])
            wait_until(lambda: _rejected(gw, "bad_signature") >= 6, 15, "forged readings rejected")
            assert len(refreshes) == 1
            assert not {("dev-a", s) for s in range(6, 12)} & set(stub.state.readings)
    finally:
        stub.stop()


def _rejected(gw: InProcessGateway, reason: str) -> float:
    total = 0.0
    for metric in gw.gateway.metrics.rejected.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("reason") == reason:
                total += sample.value
    return total
