"""Load generation and the bare-broker reference, with paho only (a tool nobody here wrote)."""

from __future__ import annotations

import json
import subprocess
import sys
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
    """One paho publisher -> Mosquitto -> one paho subscriber in a process of its own (as the gateway is, so
    neither shares an interpreter lock with the publisher), QoS 1, the same payloads: messages/s from the first
    publish to the subscriber's last message. On the same TLS listener with credentials, so the comparison with
    the gateway's ingest stays like for like."""
    site = "bare"
    sub_access = broker.issue("bench-bare-sub", "test", site, extra_topics=["bare/#"])
    pub_access = broker.issue("bench-bare-pub", "test", site, extra_topics=["bare/#"])
    config = {"host": sub_access.host, "port": sub_access.port, "ca_file": str(sub_access.ca_file),
              "username": sub_access.username, "password": sub_access.credentials.password, "topic": "bare/#",
              "count": len(messages), "timeout_s": 120}
    with subprocess.Popen([sys.executable, "-m", "carbontrace.benchmarks.bare_subscriber"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdin is not None and sub.stdout is not None
        try:
            sub.stdin.write(json.dumps(config) + "\n")
            sub.stdin.flush()
            if sub.stdout.readline().strip() != "ready":
                raise RuntimeError("bare subscriber not subscribed")
            start = time.monotonic()
            publish_all(pub_access, [("bare/" + topic, payload) for topic, payload in messages])
            answer = sub.stdout.readline().strip()
            if sub.wait(30) != 0 or not answer.replace(".", "", 1).isdigit():
                raise RuntimeError(f"bare subscriber: {answer}")
        finally:
            if sub.poll() is None:
                sub.kill()
    return len(messages) / (float(answer) - start)
