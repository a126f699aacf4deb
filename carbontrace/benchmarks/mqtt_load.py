"""Load generation and the bare-broker reference, with paho only (a tool nobody here wrote)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from carbontrace.broker_config import MqttAccess

if TYPE_CHECKING:
    from carbontrace.servers import Mosquitto


def _client(access: MqttAccess) -> mqtt.Client:
    client: mqtt.Client = access.paho()
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


def publish_all(access: MqttAccess, messages: list[tuple[str, bytes]], timeout: float = 120.0) -> float:
    """Publish at QoS 1 and wait for every PUBACK; returns the seconds from first publish to last PUBACK."""
    client = _client(access)
    client.connect(access.host, access.port)
    client.loop_start()
    try:
        start = time.perf_counter()
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=timeout)
            if not info.is_published():
                raise RuntimeError("the broker did not acknowledge a publish")
        return time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()


class PacedPublisher:
    """Publishes (topic, payload) items from a generator at a steady offered rate, QoS 1, on its own thread.

    Records each item's publish time (wall clock) so latency can be measured downstream. Items whose publish
    is not acknowledged by the broker (it was down) are retried in order by paho when it reconnects.
    """

    def __init__(self, access: MqttAccess, rate_per_s: float) -> None:
        self.access = access
        self.client = _client(access)
        self.client.max_queued_messages_set(0)
        self.rate = rate_per_s
        self.sent_at: dict[tuple[str, int], float] = {}
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self) -> None:
        self.client.connect(self.access.host, self.access.port)
        self.client.loop_start()

    def run(self, items: list[tuple[str, bytes, tuple[str, int]]]) -> None:
        def loop() -> None:
            start = time.monotonic()
            for n, (topic, payload, key) in enumerate(items):
                if self._stop.is_set():
                    return
                due = start + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.sent_at[key] = time.time()
                self.infos.append(self.client.publish(topic, payload, qos=1))

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(10)
        self.client.disconnect()
        self.client.loop_stop()


def bare_broker_rate(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> float:
    """One paho publisher -> Mosquitto -> one paho subscriber, QoS 1, the same payloads: messages/s (on the
    same TLS listener with credentials, so the comparison with the gateway's ingest stays like for like)."""
    site = "bare"
    sub_access = broker.issue("bench-bare-sub", "test", site, extra_topics=["bare/#"])
    pub_access = broker.issue("bench-bare-pub", "test", site, extra_topics=["bare/#"])
    received = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == len(messages):
            done.set()

    sub: mqtt.Client = sub_access.paho()
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect(sub_access.host, sub_access.port)
    sub.loop_start()
    try:
        sub.subscribe("bare/#", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("bare subscriber not subscribed")
        start = time.perf_counter()
        publish_all(pub_access, [("bare/" + topic, payload) for topic, payload in messages])
        if not done.wait(120):
            raise RuntimeError(f"bare subscriber got {received}/{len(messages)}")
        return len(messages) / (time.perf_counter() - start)
    finally:
        sub.disconnect()
        sub.loop_stop()
