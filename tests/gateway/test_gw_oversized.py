"""An oversized MQTT payload is rejected by its size before it is copied or decoded, and counted.

The production broker already refuses packets over max_packet_size (tests/demo/test_broker_security.py); the
gateway's own check holds with any broker. Before: a 100 MB payload was copied, decoded and verified (99 s)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from gw_helpers import Device, InProcessGateway, make_gateway_key, make_stub, publish_all, topic, write_config

import edge_gateway.ingest as ingest_module
from carbontrace.servers import wait_until
from carbontrace_protocol.topics import MAX_PAYLOAD_BYTES, MAX_READING_BYTES
from edge_gateway.classify import Rejected
from edge_gateway.config import GatewaySettings
from edge_gateway.ingest import MqttIngest
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import Spool
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(60)


class Message:
    def __init__(self, topic: str, payload: Any) -> None:
        self.topic, self.payload, self.mid, self.qos = topic, payload, 7, 1


def test_the_cap_covers_the_largest_reading() -> None:
    assert MAX_READING_BYTES < MAX_PAYLOAD_BYTES


def test_a_100_mb_payload_is_counted_and_acked_without_being_copied_or_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = GatewaySettings(gateway_id="gw-1", site_id="site-a", cloud_url="http://cloud", api_key="k",
                               key_file=tmp_path / "k", spool_path=tmp_path / "spool.sqlite")
    metrics = GatewayMetrics()
    ingest = MqttIngest(settings, lambda: Spool(settings.spool_path), metrics)
    acked: list[tuple[int, int]] = []
    monkeypatch.setattr(ingest.client, "ack", lambda mid, qos: acked.append((mid, qos)))

    def no_decoding(*args: object, **kwargs: object) -> Rejected:
        raise AssertionError("an oversized payload reached the decoder")

    monkeypatch.setattr(ingest_module, "classify_message", no_decoding)
    huge = bytes(100 << 20)
    start = time.perf_counter()
    ingest._on_message(ingest.client, None, Message(topic("dev-a"), huge))  # type: ignore[arg-type]
    item = ingest.inbox.get_nowait()
    spool = Spool(settings.spool_path)
    try:
        ingest._handle(spool, {}, [item])
        elapsed = time.perf_counter() - start
        assert item.payload == b"" and item.size == 100 << 20
        assert acked == [(7, 1)]  # acked: the broker must not redeliver it forever
        assert spool.rejection_counts() == {("_unregistered", "oversized_payload"): 1}
        assert metrics.rejected.labels("oversized_payload", "_unregistered")._value.get() == 1
        assert elapsed < 1.0, f"{elapsed:.2f} s for a rejected 100 MB payload"
    finally:
        spool.close()


def test_through_the_broker_a_payload_over_the_gateways_limit_is_rejected_by_size(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    limit = 600  # below the broker's cap, so this message reaches the gateway
    config = write_config(tmp_path, key_file, stub.url, mosquitto, mqtt_max_payload_bytes=limit)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            publish_all(mosquitto, [(topic("dev-a"), b"\xd2" + bytes(limit)), (topic("dev-a"), a.signed(0))])
            wait_until(lambda: gw.spool().device_counts().get("dev-a", (0, 0))[0] == 1, 10, "the good reading")
            assert gw.spool().rejection_counts() == {("dev-a", "oversized_payload"): 1}
    finally:
        stub.stop()
