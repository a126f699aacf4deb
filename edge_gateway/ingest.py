"""MQTT ingest: paho delivers, a worker verifies, the spool commits, and only then the broker gets its ack.

Messages are handled in groups: one SQLite transaction (one fsync) covers every message that arrived while
the previous group was being written, then each of them is acked. A crash before the commit leaves them
unacked, so the broker redelivers them to the persistent session; a crash after the commit but before
the ack makes the redelivery an exact duplicate, which the spool recognises.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace_host.logs import fields
from edge_gateway.classify import (
    UNREGISTERED,
    DeviceEntry,
    Rejected,
    Verified,
    VerifiedFlux,
    classify_flux,
    classify_message,
    is_flux_topic,
    parse_topic,
    subscriptions,
)
from edge_gateway.config import GatewaySettings
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import Spool, SpoolError, SpoolOverLimit

log = logging.getLogger("edge_gateway.ingest")

PAUSE_RECHECK_S = 2.0
GLOBAL_REFRESH_GAP_S = 1.0  # registry refreshes on a bad signature, whatever the device
OVERSIZED = "oversized_payload"


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which MQTT connection delivered it: a packet id is only valid on that one
    size: int = -1  # set (and payload left empty) when the payload was over the cap: never copied nor decoded


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ to the broker, its certificate checked against this CA only (and its host name)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def oversized(item: Incoming, limit: int, registry: dict[str, DeviceEntry]) -> Rejected:
    parsed = parse_topic(item.topic)
    label = parsed[1] if parsed is not None and parsed[1] in registry else UNREGISTERED
    return Rejected(OVERSIZED, label, f"payload of {item.size} bytes exceeds the limit of {limit}")


class MqttIngest:
    def __init__(
        self,
        settings: GatewaySettings,
        spool_factory: Callable[[], Spool],
        metrics: GatewayMetrics,
        on_unknown_device: Callable[[], None] = lambda: None,
        refresh_registry: Callable[[Spool], bool] | None = None,
        worker: int = 0,
    ) -> None:
        self.settings = settings
        self.worker_index = worker
        self.topics = subscriptions(settings.site_id, settings.mqtt_shared_group)  # readings, then fluxes
        self.topic = self.topics[0]
        self.spool_factory = spool_factory
        self.metrics = metrics
        self.on_unknown_device = on_unknown_device
        # Fetches the registry into the worker's spool (True if it did): called on a bad signature from a known
        # device, whose key may have rotated since the last sync, at most once per device per
        # ``registry_refresh_on_bad_signature_s``.
        self.refresh_registry = refresh_registry
        self._refreshed_for: dict[str, float] = {}
        self._last_refresh = -1e9
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()  # set once the subscription is confirmed (SUBACK)
        self.paused: str | None = None
        self.connection = 0
        self.worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id(worker), clean_session=False, manual_ack=True
        )
        if settings.mqtt_ca_file is not None:
            self.client.tls_set_context(tls_context(settings.mqtt_ca_file))
        username = settings.username(worker)
        if username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (network thread) ------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused", extra=fields(reason=str(reason)))
            return
        self.connection += 1
        client.subscribe([(topic, 1) for topic in self.topics])
        log.info("MQTT connected", extra=fields(host=self.settings.mqtt_host, port=self.settings.mqtt_port,
                                                 session_present=bool(flags.session_present)))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("MQTT subscription refused", extra=fields(alarm="subscribe_refused", reasons=str(reasons)))
            return
        self.connected.set()
        log.info("MQTT subscribed", extra=fields(topic=self.topic, topics=self.topics, worker=self.worker_index))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("MQTT disconnected; paho reconnects", extra=fields(reason=str(reason)))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The size first: an oversized payload is neither copied nor decoded, only counted and acked (the
        # broker's max_packet_size should have refused it already; this holds with any broker).
        size = len(message.payload)
        if size > self.settings.mqtt_max_payload_bytes:
            self.inbox.put(Incoming(message.topic, b"", message.mid, message.qos, self.connection, size))
            return
        self.inbox.put(Incoming(message.topic, bytes(message.payload), message.mid, message.qos, self.connection))

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port,
                                  keepalive=self.settings.mqtt_keepalive_s)
        self.client.loop_start()
        self.worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the group being written, then disconnect; queued but unwritten messages stay unacked."""
        self.stopping.set()
        self.worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # -- worker -------------------------------------------------------------------------------------

    def _work(self) -> None:
        spool = self.spool_factory()
        registry: dict[str, DeviceEntry] = spool.registry()
        version = spool.registry_version()
        paused_at = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    first = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    if self.paused is not None and time.monotonic() - paused_at > PAUSE_RECHECK_S:
                        paused_at = self._maybe_resume(spool, paused_at)
                    continue
                group = [first]
                while len(group) < self.settings.ingest_batch_max:
                    try:
                        group.append(self.inbox.get_nowait())
                    except queue.Empty:
                        break
                if self.paused is not None:
                    # Left unacked on purpose: the broker keeps them and redelivers after we reconnect.
                    if time.monotonic() - paused_at > PAUSE_RECHECK_S:
                        paused_at = self._maybe_resume(spool, paused_at)
                    continue
                if spool.registry_version() != version:
                    registry, version = spool.registry(), spool.registry_version()
                try:
                    self._handle(spool, registry, group)
                except SpoolError as err:
                    self._pause(err.reason, str(err))
                    paused_at = time.monotonic()
                except Exception as err:  # a bug or a locked database must not silently end ingest
                    log.exception("ingest failed; the group stays unacked and is retried after a reconnect")
                    self._pause("ingest_error", f"{type(err).__name__}: {err}")
                    paused_at = time.monotonic()
        finally:
            spool.close()

    def _handle(self, spool: Spool, registry: dict[str, DeviceEntry], group: list[Incoming]) -> None:
        settings = self.settings
        now = int(time.time())
        verified: list[Verified] = []
        fluxes: list[VerifiedFlux] = []
        rejected: list[Rejected] = []
        for item in group:
            if item.size >= 0:
                rejected.append(oversized(item, settings.mqtt_max_payload_bytes, registry))
                continue
            if is_flux_topic(item.topic):
                flux_outcome = classify_flux(item.topic, item.payload, settings.site_id, registry.get, now,
                                             settings.max_clock_skew_s)
                if isinstance(flux_outcome, Rejected) and self._refreshed_after_bad_signature(spool, flux_outcome):
                    registry = spool.registry()  # a rotated key: as for a reading, verify once more
                    flux_outcome = classify_flux(item.topic, item.payload, settings.site_id, registry.get, now,
                                                 settings.max_clock_skew_s)
                if isinstance(flux_outcome, VerifiedFlux):
                    fluxes.append(flux_outcome)
                else:
                    rejected.append(flux_outcome)
                continue
            outcome = classify_message(item.topic, item.payload, settings.site_id, registry.get, now,
                                       settings.max_clock_skew_s)
            if isinstance(outcome, Rejected) and self._refreshed_after_bad_signature(spool, outcome):
                registry = spool.registry()
                outcome = classify_message(item.topic, item.payload, settings.site_id, registry.get, now,
                                           settings.max_clock_skew_s)
            if isinstance(outcome, Verified):
                verified.append(outcome)
            else:
                rejected.append(outcome)
        result = spool.ingest(verified, rejected, settings.window_s, parallel_workers=settings.ingest_workers > 1,
                              fluxes=fluxes)
        for item in group:
            # A message from an earlier connection is redelivered on this one; its old packet id must not
            # ack whatever now carries that id (the redelivery is then recognised as a duplicate).
            if item.connection == self.connection:
                self.client.ack(item.mid, item.qos)
        for device, _seq in result.accepted:
            self.metrics.accepted.labels(device).inc()
        for device, _seq in result.duplicates:
            self.metrics.duplicates.labels(device).inc()
        for device, first_seq in result.fluxes_accepted:
            self.metrics.fluxes_accepted.labels(device).inc()
            log.info("chamber flux accepted", extra=fields(device=device, first_seq=first_seq))
        for device, low, high in result.new_gaps:
            self.metrics.gaps.labels(device).inc(high - low + 1)
            log.warning("readings missing", extra=fields(device=device, missing_from=low, missing_to=high))
        for device, seq in result.retimed:
            log.info("unsynced reading re-timed from its boot's synced reading", extra=fields(device=device, seq=seq))
        for device, seq in result.filled:
            self.metrics.gaps_filled.labels(device).inc()
            log.info("late reading filled a gap", extra=fields(device=device, seq=seq))
        for rejection in [*rejected, *result.rejected]:
            self.metrics.rejected.labels(rejection.reason, rejection.device_label).inc()
            log.warning("reading rejected", extra=fields(reason=rejection.reason, device=rejection.device_label,
                                                          detail=rejection.detail[:300]))
            if rejection.reason == "unknown_device":
                self.on_unknown_device()

    def _refreshed_after_bad_signature(self, spool: Spool, outcome: Rejected) -> bool:
        """True when ``outcome`` is a bad signature from a known device and the registry was just refreshed
        (so the message is worth verifying once more); rate-limited per device."""
        if outcome.reason != "bad_signature" or outcome.device_label == UNREGISTERED or self.refresh_registry is None:
            return False
        device, clock = outcome.device_label, time.monotonic()
        last = self._refreshed_for.get(device)
        if last is not None and clock - last < self.settings.registry_refresh_on_bad_signature_s:
            return False
        # And at most one a second in all: forged messages under every device id must not stall ingest on
        # cloud calls (one refresh brings every device's current key anyway).
        if clock - self._last_refresh < GLOBAL_REFRESH_GAP_S:
            return False
        self._refreshed_for[device] = self._last_refresh = clock
        log.info("bad signature from a known device: refreshing the registry (its key may have rotated)",
                 extra=fields(device=device))
        return self.refresh_registry(spool)

    def _pause(self, reason: str, error: str) -> None:
        if self.paused != reason:
            log.error("ingest PAUSED: readings are left on the broker, unacked",
                      extra=fields(alarm=reason, error=error))
        self.paused = reason
        self.metrics.ingest_paused.labels(reason).set(1)

    def _maybe_resume(self, spool: Spool, paused_at: float) -> float:
        """Try again once there is room; reconnecting makes the broker redeliver what we left unacked."""
        reason = self.paused
        if reason is None:
            return paused_at
        if reason == SpoolOverLimit.reason and spool.over_limit():
            return time.monotonic()
        self.paused = None
        self.metrics.ingest_paused.labels(reason).set(0)
        log.info("ingest resumed; reconnecting for redelivery", extra=fields(after=reason))
        self.client.disconnect()
        self.client.loop_stop()
        while not self.inbox.empty():
            self.inbox.get_nowait()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port,
                                  keepalive=self.settings.mqtt_keepalive_s)
        self.client.loop_start()
        return time.monotonic()
