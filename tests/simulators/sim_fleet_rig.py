"""Test rig for the fleet simulator: a real subscriber that records every reading message, and the real
gateway ingest (``edge_gateway.ingest.MqttIngest`` + spool + metrics) classifying them."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from carbontrace.broker_config import MqttAccess
from carbontrace.servers import Mosquitto
from edge_gateway.classify import ACTIVE, DeviceEntry
from edge_gateway.config import GatewaySettings
from edge_gateway.ingest import MqttIngest
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import Spool
from simulators.fleet import FleetConfig, device_specs


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received: float

    @property
    def device(self) -> str:
        return self.topic.split("/")[3]


class Recorder:
    """A paho subscriber on ``carbontrace/v1/+/+/reading`` (QoS 1) keeping every message in arrival order."""

    def __init__(self, access: MqttAccess) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = access.paho(clean_session=False)  # queued for while the broker restarts (new credentials)
        self.client.on_connect = lambda c, *_: c.subscribe("carbontrace/v1/+/+/reading", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)  # back soon after a restart, even when loaded
        self.client.connect(access.host, access.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("recorder did not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload), time.monotonic()))

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def by_device(self) -> dict[str, list[Message]]:
        out: dict[str, list[Message]] = collections.defaultdict(list)
        for message in self.snapshot():
            out[message.device].append(message)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Gateway:
    """The gateway's real ingest path with devices registered from the fleet's exported keys."""

    def __init__(self, tmp: Path, access: MqttAccess, site: str, max_clock_skew_s: int = 300) -> None:
        self.site = site
        self.settings = GatewaySettings(
            gateway_id="gw-sim", site_id=site, cloud_url="http://127.0.0.1:9", api_key="unused",
            key_file=tmp / "gw.key", spool_path=tmp / "spool.sqlite", mqtt_port=access.port, metrics_port=0,
            mqtt_ca_file=access.ca_file, mqtt_username=access.username, mqtt_password=access.credentials.password,
            max_clock_skew_s=max_clock_skew_s,
        )
        self.metrics = GatewayMetrics()
        self.spool_path = tmp / "spool.sqlite"
        self.ingest: MqttIngest | None = None

    def register(self, keys: dict[str, str]) -> None:
        spool = Spool(self.spool_path)
        try:
            entries = [DeviceEntry(device, bytes.fromhex(key), ACTIVE) for device, key in keys.items()]
            spool.replace_registry(entries, self.site, None)
        finally:
            spool.close()
        self.ingest = MqttIngest(self.settings, lambda: Spool(self.spool_path), self.metrics)
        self.ingest.start()
        if not self.ingest.connected.wait(10):
            raise TimeoutError("gateway ingest did not subscribe")

    def counts(self) -> dict[str, int]:
        """Rejections by reason, plus "duplicate" and "accepted" (summed over devices)."""
        out: collections.Counter[str] = collections.Counter()
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "ct_gateway_readings_rejected_total":
                    out[sample.labels["reason"]] += int(sample.value)
                elif sample.name == "ct_gateway_readings_duplicate_total":
                    out["duplicate"] += int(sample.value)
                elif sample.name == "ct_gateway_readings_accepted_total":
                    out["accepted"] += int(sample.value)
        return dict(out)

    def rejections(self) -> dict[str, int]:
        return {k: v for k, v in self.counts().items() if k != "accepted"}

    def wait_for(self, total: int, timeout: float = 15.0) -> dict[str, int]:
        """Wait until the gateway has handled ``total`` messages of its site; its counts then."""
        deadline = time.monotonic() + timeout
        counts = self.counts()
        while sum(counts.values()) < total and time.monotonic() < deadline:
            time.sleep(0.05)
            counts = self.counts()
        return counts

    def missing(self) -> int:
        spool = Spool(self.spool_path)
        try:
            return int(spool.stats()["missing_readings"])
        finally:
            spool.close()

    def close(self) -> None:
        if self.ingest is not None:
            self.ingest.stop(timeout=10)


def recorder_access(broker: Mosquitto) -> MqttAccess:
    """A test-only principal reading every site's readings (the recorder checks what went over the wire)."""
    return broker.issue("sim-test-recorder", "test", "all", extra_topics=["carbontrace/v1/+/+/reading"])


def fleet_credentials(broker: Mosquitto, cfg: FleetConfig, path: Path) -> Path:
    """Broker credentials for every device of the fleet (a forger holds stolen access to its victim's topic)."""
    return broker.issue_devices(cfg.site_id, [(spec.name, spec.device_id) for spec in device_specs(cfg)], path)
