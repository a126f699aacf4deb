"""Helpers for the firmware tests: a real paho-mqtt subscriber."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace.broker_config import MqttAccess
from carbontrace.servers import Mosquitto, wait_until

BROKER_CA_FILE = "broker-ca.pem"  # the name on the device's flash


def device_settings(broker: Mosquitto | int, flash_root: Path, site: str, device: str) -> dict[str, Any]:
    """A device's broker settings as `carbontrace provision` writes them: its credentials and the broker's CA
    on flash (TLS, CA pinned). A bare port: the embedded demo broker (anonymous plain MQTT on loopback)."""
    if isinstance(broker, int):
        return {"broker_host": "127.0.0.1", "broker_port": broker}
    access = broker.add_device(site, device)
    flash_root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(access.ca_file, flash_root / BROKER_CA_FILE)
    return {"broker_host": access.host, "broker_port": access.port, "broker_user": access.username,
            "broker_password": access.credentials.password, "broker_ca": BROKER_CA_FILE}


class Subscriber:
    """A paho-mqtt subscriber on a persistent session that resubscribes after every reconnect."""

    def __init__(self, access: MqttAccess | int, topic: str, client_id: str = "") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = 0
        self.lock = threading.Lock()
        if isinstance(access, int):  # the embedded demo broker: plain and anonymous
            self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
            host, port = "127.0.0.1", access
        else:
            self.client = access.paho(clean_session=False)
            host, port = access.host, access.port
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self._count_subscribe()
        self.client.on_message = lambda _c, _u, m: self._store(m)
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()
        self.wait_subscribed(1)

    def _count_subscribe(self) -> None:
        self.subscribed += 1

    def _store(self, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def wait_subscribed(self, n: int) -> None:
        wait_until(lambda: self.subscribed >= n, 10)

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


