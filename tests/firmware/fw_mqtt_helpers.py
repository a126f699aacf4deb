"""Helpers for the firmware tests: a real paho-mqtt subscriber."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace.servers import wait_until


class Subscriber:
    """A paho-mqtt subscriber on a persistent session that resubscribes after every reconnect."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = 0
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self._count_subscribe()
        self.client.on_message = lambda _c, _u, m: self._store(m)
        self.client.connect("127.0.0.1", port, keepalive=5)
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


