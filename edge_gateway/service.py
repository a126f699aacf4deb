"""The running gateway: wires ingest, batching, forwarding, registry sync and metrics; one main loop."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from carbontrace_host.logs import fields
from carbontrace_protocol.batch import Baseline
from carbontrace_protocol.emission_factors import EmissionFactor, get_factor
from edge_gateway.batcher import make_batch
from edge_gateway.cloud_client import CloudClient, CloudRefused, CloudUnavailable
from edge_gateway.config import GatewaySettings
from edge_gateway.forwarder import Forwarder
from edge_gateway.health import health_report
from edge_gateway.ingest import MqttIngest
from edge_gateway.keys import load_private_key
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import OpenReading, Spool, SpoolError
from edge_gateway.windows import window_due
from edge_gateway.workers import IngestWorkers

log = logging.getLogger("edge_gateway.service")

# Health reports (rejection counters, gaps) go to the cloud when they change, looked at this often, and
# at least this often unchanged so the cloud can tell a quiet gateway from a silent one.
HEALTH_CHECK_S = 5.0
HEALTH_REFRESH_S = 300.0


class Gateway:
    def __init__(self, settings: GatewaySettings, worker: int = 0) -> None:
        """``worker`` > 0: one of the extra ingest processes (edge_gateway/workers.py), which only ingests."""
        self.settings = settings
        self.worker = worker
        self.stop_event = threading.Event()
        self.metrics = GatewayMetrics()
        self.gateway_key = load_private_key(settings.key_file)
        self.cloud = CloudClient(settings.cloud_url, settings.gateway_id, settings.api_key.get_secret_value(),
                                 settings.upload_timeout_s)
        # The main loop's spool connection is opened on the thread that runs it (SQLite connections are
        # per thread); the ingest worker opens its own.
        self.spool: Spool
        self.forwarder: Forwarder
        self.refresh_wanted = threading.Event()
        self.ingest = MqttIngest(settings, self._open_spool, self.metrics, self.refresh_wanted.set, self.sync_registry,
                                 worker=worker)
        self.workers = IngestWorkers(settings, self.metrics, os.getpid())
        self._last_registry_try = -1e9
        self._metrics_server: Any = None
        self.health_check_s = HEALTH_CHECK_S
        self._last_health: dict[str, Any] | None = None
        self._last_health_check = -1e9
        self._last_health_sent = -1e9

    def _open_spool(self) -> Spool:
        s = self.settings
        return Spool(s.spool_path, s.spool_max_bytes, s.spool_max_page_count)

    # -- registry and chain head --------------------------------------------------------------------

    def sync_registry(self, spool: Spool | None = None) -> bool:
        """Fetch the device registry and store it in ``spool`` (the main loop's by default; the ingest worker
        passes its own: a SQLite connection stays on its thread). False when the cloud gave none."""
        self._last_registry_try = time.monotonic()
        try:
            registry = self.cloud.devices()
        except (CloudUnavailable, CloudRefused, ValueError, KeyError) as err:
            log.warning("registry sync failed; using the cached registry", extra=fields(error=str(err)))
            return False
        if registry.site_id != self.settings.site_id or registry.gateway_id != self.settings.gateway_id:
            log.error("registry is for another site or gateway; ignored",
                      extra=fields(alarm="registry_mismatch", got_site=registry.site_id,
                                   got_gateway=registry.gateway_id))
            return False
        (spool or self.spool).replace_registry(registry.devices, registry.site_id, registry.emission_factor)
        self.metrics.registry_age.set(time.time())
        log.info("registry synced", extra=fields(devices=len(registry.devices)))
        return True

    def sync_chain_head(self) -> None:
        """A gateway whose spool has no batches continues the chain the cloud already holds."""
        if not self.spool.chain_is_empty() or self.spool.get_meta("chain_synced"):
            return
        try:
            last_seq, last_hash = self.cloud.state()
        except (CloudUnavailable, CloudRefused, ValueError) as err:
            log.warning("cannot read the cloud's chain state yet (a 409 will resync)", extra=fields(error=str(err)))
            return
        if last_seq is not None and last_hash is not None:
            self.spool.set_chain_head(last_seq + 1, last_hash)
            log.warning("continuing the cloud's batch chain", extra=fields(next_batch_seq=last_seq + 1))
        self.spool.set_meta("chain_synced", "1")

    def emission_factor(self) -> EmissionFactor:
        wanted = self.settings.emission_factor or self.spool.get_meta("emission_factor")
        try:
            return get_factor(wanted)
        except KeyError:
            log.error("unknown emission factor; using the default", extra=fields(alarm="bad_factor", factor=wanted))
            return get_factor()

    def report_health(self) -> bool:
        """Send the health report if it changed (or is due anyway); True when the cloud stored it."""
        now = time.monotonic()
        if now - self._last_health_check < self.health_check_s:
            return False
        self._last_health_check = now
        gaps = {device: self.spool.gaps(device) for device in self.spool.device_counts()}
        report = health_report(self.spool.rejection_counts(), gaps)
        if report == self._last_health and now - self._last_health_sent < HEALTH_REFRESH_S:
            return False
        try:
            self.cloud.report_health(report)
        except (CloudUnavailable, CloudRefused) as err:
            # Not worth an alarm: batches still flow; the next check tries again.
            log.warning("health report not accepted", extra=fields(error=str(err)))
            self._last_health_sent = now
            return False
        self._last_health, self._last_health_sent = report, now
        return True

    # -- windows ------------------------------------------------------------------------------------

    def close_due_windows(self, now: int) -> int:
        s = self.settings
        factor = self.emission_factor()
        closed = 0
        for start in self.spool.open_windows():
            if not window_due(start, s.window_s, now):
                break

            def build(start: int, readings: list[OpenReading], baselines: dict[str, Baseline],
                      batch_seq: int, prev: bytes, fluxes: list[bytes]) -> Any:
                return make_batch(self.gateway_key, s.gateway_id, s.site_id, (start, start + s.window_s),
                                  s.interval_s, factor, readings, baselines, batch_seq, prev, int(time.time()),
                                  fluxes)

            batch = self.spool.close_window(start, s.window_s, build)
            if batch is not None:
                closed += 1
                self.metrics.batches_built.inc()
                log.info("batch sealed", extra=fields(batch_id=batch.id, readings=batch.header["readings"],
                                                       window=batch.header["window"]))
        return closed

    def expire_held(self) -> None:
        """Count the unsynced readings whose reference did not come in time (rejected, kept in the spool)."""
        for rejection in self.spool.expire_held(self.settings.retime_timeout_s):
            self.metrics.rejected.labels(rejection.reason, rejection.device_label).inc()
            log.warning("reading rejected", extra=fields(reason=rejection.reason, device=rejection.device_label,
                                                          detail=rejection.detail[:300]))

    def update_gauges(self) -> None:
        stats = self.spool.stats()
        self.metrics.spool_depth.set(stats["open_readings"])
        self.metrics.spool_bytes.set(stats["held_bytes"])
        self.metrics.unacked.set(stats["unacked_batches"])
        self.metrics.missing.set(stats["missing_readings"])
        oldest = stats["oldest_unacked_created"]
        self.metrics.upload_lag.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        self.metrics.upload_halted.set(1 if stats["upload_halted"] else 0)

    # -- main loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        log.info("gateway starting", extra=fields(settings=s.redacted()))
        self.spool = self._open_spool()
        self.forwarder = Forwarder(self.spool, self.cloud, self.gateway_key, self.metrics, s.backoff_base_s,
                                   s.backoff_max_s, s.prune_acked)
        if s.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(s.metrics_port, s.metrics_host, self.metrics.registry)
        # Never consume readings without a registry: every one would be rejected and acked, i.e. lost.
        delay = 1.0
        while not self.sync_registry() and self.spool.get_meta("registry_synced_at") is None:
            log.warning("no device registry yet; waiting for the cloud before subscribing",
                        extra=fields(retry_in_s=delay))
            if self.stop_event.wait(delay):
                return self._shutdown(started=False)
            delay = min(delay * 2, 60.0)
        self.sync_chain_head()
        self.ingest.start()
        self.workers.start()
        try:
            while not self.stop_event.is_set():
                self.tick()
                self.stop_event.wait(s.tick_s)
        finally:
            code = self._shutdown(started=True)
        return code

    def tick(self) -> None:
        try:
            self.expire_held()
            self.close_due_windows(int(time.time()))
            while self.forwarder.step() and not self.stop_event.is_set():
                pass
            since = time.monotonic() - self._last_registry_try
            if since > self.settings.registry_refresh_s or (
                self.refresh_wanted.is_set() and since > self.settings.registry_refresh_on_unknown_s
            ):
                self.refresh_wanted.clear()
                self.sync_registry()
            self.report_health()
            self.update_gauges()
            self.workers.supervise()
        except SpoolError as err:
            log.error("spool write failed in the main loop; retrying next tick",
                      extra=fields(alarm=err.reason, error=str(err)))

    def run_ingest_worker(self, parent_pid: int) -> None:
        """Worker > 0: ingest only, into the spool the main process owns (it syncs the registry first, seals
        windows and uploads). Ends on SIGTERM, or when the main process is gone: a worker left behind would
        hold its MQTT session against the one a restarted gateway starts."""
        s = self.settings
        self.spool = self._open_spool()
        if s.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(s.metrics_port + self.worker, s.metrics_host,
                                                        self.metrics.registry)

        def orphaned() -> bool:
            return os.getppid() != parent_pid

        while self.spool.get_meta("registry_synced_at") is None:
            if self.stop_event.wait(0.5) or orphaned():
                self._shutdown(started=False)
                return
        self.ingest.start()
        try:
            while not self.stop_event.is_set() and not orphaned():
                if self.refresh_wanted.is_set() and (
                    time.monotonic() - self._last_registry_try > s.registry_refresh_on_unknown_s
                ):
                    self.refresh_wanted.clear()
                    self.sync_registry()
                self.stop_event.wait(s.tick_s)
        finally:
            self._shutdown(started=True)

    def _shutdown(self, started: bool) -> int:
        if started:
            self.workers.stop()
            self.ingest.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.cloud.close()
        self.spool.close()
        log.info("gateway stopped")
        return 0
