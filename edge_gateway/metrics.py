"""Prometheus metrics of one gateway (its own registry, so tests can run several gateways)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter("ct_gateway_readings_accepted", "Verified readings committed to the spool",
                                ["device"], registry=r)
        self.fluxes_accepted = Counter("ct_gateway_fluxes_accepted", "Verified chamber flux records committed to "
                                       "the spool", ["device"], registry=r)
        self.rejected = Counter("ct_gateway_readings_rejected", "Messages rejected, by reason and device",
                                ["reason", "device"], registry=r)
        self.duplicates = Counter("ct_gateway_readings_duplicate", "Exact redeliveries of a held reading",
                                  ["device"], registry=r)
        self.gaps = Counter("ct_gateway_missing_detected", "Readings found missing in a device's sequence",
                            ["device"], registry=r)
        self.gaps_filled = Counter("ct_gateway_missing_filled", "Late readings that filled a gap", ["device"],
                                   registry=r)
        self.missing = Gauge("ct_gateway_missing_readings", "Readings currently recorded as missing", registry=r)
        self.spool_depth = Gauge("ct_gateway_spool_open_readings", "Accepted readings not yet in a batch",
                                 registry=r)
        self.spool_bytes = Gauge("ct_gateway_spool_bytes",
                                 "Bytes of unacknowledged readings and batches held in the spool", registry=r)
        self.unacked = Gauge("ct_gateway_unacked_batches", "Batches the cloud has not acknowledged", registry=r)
        self.upload_lag = Gauge("ct_gateway_upload_lag_seconds", "Age of the oldest unacknowledged batch",
                                registry=r)
        self.last_upload = Gauge("ct_gateway_last_upload_success_timestamp_seconds",
                                 "When the cloud last acknowledged a batch", registry=r)
        self.batches_built = Counter("ct_gateway_batches_built", "Batches sealed", registry=r)
        self.batches_uploaded = Counter("ct_gateway_batches_uploaded", "Batches acknowledged by the cloud",
                                        registry=r)
        self.upload_failures = Counter("ct_gateway_upload_failures", "Failed upload attempts", ["kind"], registry=r)
        self.upload_halted = Gauge("ct_gateway_upload_halted", "1 when uploads stopped on a 422 (needs a human)",
                                   registry=r)
        self.ingest_paused = Gauge("ct_gateway_ingest_paused", "1 when new readings are left unacked (spool full)",
                                   ["reason"], registry=r)
        self.registry_age = Gauge("ct_gateway_registry_synced_timestamp_seconds",
                                  "When the device registry was last fetched from the cloud", registry=r)
        self.ingest_workers = Gauge("ct_gateway_ingest_workers", "Ingest processes running (this one included)",
                                    registry=r)
        self.ingest_worker_exits = Counter("ct_gateway_ingest_worker_exits",
                                           "Ingest worker processes that exited and were restarted", ["worker"],
                                           registry=r)
