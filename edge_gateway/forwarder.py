"""Store-and-forward: upload sealed batches in batch_seq order until the cloud acknowledges each one."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable

from carbontrace_host.logs import fields
from carbontrace_protocol.batch import ZERO_HASH, decode_batch
from edge_gateway.batcher import renumber
from edge_gateway.cloud_client import CloudClient, CloudRefused, CloudUnavailable
from edge_gateway.metrics import GatewayMetrics
from edge_gateway.spool import PendingBatch, Spool
from edge_gateway.windows import backoff_delay

log = logging.getLogger("edge_gateway.forwarder")

MAX_RESYNCS_IN_A_ROW = 3


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        cloud: CloudClient,
        gateway_key: int,
        metrics: GatewayMetrics,
        backoff_base_s: float,
        backoff_max_s: float,
        prune_acked: bool,
        monotonic: Callable[[], float] = time.monotonic,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self.spool = spool
        self.cloud = cloud
        self.gateway_key = gateway_key
        self.metrics = metrics
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.prune_acked = prune_acked
        self.monotonic = monotonic
        self.unit_random = unit_random
        self.failures = 0
        self.resyncs = 0
        self.next_try = 0.0

    @property
    def halted(self) -> str | None:
        return self.spool.get_meta("upload_halted")

    def _retry_later(self, kind: str, message: str) -> None:
        delay = backoff_delay(self.failures, self.backoff_base_s, self.backoff_max_s, self.unit_random())
        self.failures += 1
        self.next_try = self.monotonic() + delay
        self.metrics.upload_failures.labels(kind).inc()
        log.warning("upload failed, retrying", extra=fields(kind=kind, error=message, retry_in_s=round(delay, 2),
                                                            failures=self.failures))

    def _halt(self, reason: str, detail: dict[str, object]) -> None:
        self.spool.set_meta("upload_halted", json.dumps({"reason": reason, **detail}, sort_keys=True))
        self.metrics.upload_halted.set(1)
        log.error("uploads STOPPED: the cloud rejected a batch; nothing is deleted, a human must look",
                  extra=fields(alarm="upload_halted", reason=reason, **detail))

    def step(self) -> bool:
        """One upload attempt if one is due. True when a batch was acknowledged (call again at once)."""
        if self.halted is not None:
            self.metrics.upload_halted.set(1)
            return False
        if self.monotonic() < self.next_try:
            return False
        pending = self.spool.next_unacked()
        if pending is None:
            return False
        try:
            result = self.cloud.upload(pending.blob)
        except CloudUnavailable as err:
            self._retry_later("unavailable", str(err))
            return False
        except CloudRefused as err:
            self._retry_later(f"http_{err.status}", str(err))
            return False
        if result.status in (200, 201):
            return self._acknowledged(pending, result.body)
        if result.status == 409:
            self._resync(pending, result.body)
            return False
        self._halt(str(result.body.get("error", "rejected")),
                   {"batch_id": pending.batch_id, "http_status": result.status,
                    "detail": result.body.get("detail"), "leaf_index": result.body.get("leaf_index")})
        return False

    def _acknowledged(self, pending: PendingBatch, receipt: dict[str, object]) -> bool:
        if receipt.get("batch_id") != pending.batch_id or receipt.get("batch_hash") != pending.hash.hex():
            self._retry_later("bad_receipt", f"receipt {receipt!r} does not name batch {pending.batch_id}")
            return False
        self.spool.mark_acked(pending.batch_seq, receipt, self.prune_acked)
        self.failures = 0
        self.resyncs = 0
        self.metrics.batches_uploaded.inc()
        self.metrics.last_upload.set(time.time())
        log.info("batch acknowledged", extra=fields(batch_id=pending.batch_id, cid=receipt.get("cid"),
                                                     log_index=receipt.get("log_index")))
        return True

    def _resync(self, pending: PendingBatch, body: dict[str, object]) -> None:
        """409 out_of_order: ask the cloud where our chain stands and follow it."""
        self.resyncs += 1
        if self.resyncs > MAX_RESYNCS_IN_A_ROW:
            self._halt("resync_failed", {"batch_id": pending.batch_id, "detail": body.get("detail")})
            return
        try:
            last_seq, last_hash = self.cloud.state()
        except (CloudUnavailable, CloudRefused) as err:
            self._retry_later("state_unavailable", str(err))
            return
        log.warning("cloud says out of order; resyncing",
                    extra=fields(batch_id=pending.batch_id, cloud_last_batch_seq=last_seq,
                                 expected=body.get("expected_batch_seq")))
        # The cloud may hold batches we never saw receipts for: acknowledge ours if they are the same.
        if last_seq is not None and last_seq >= pending.batch_seq and self.spool.batch_hash(last_seq) == last_hash:
            for item in self.spool.unacked():
                if item.batch_seq <= last_seq:
                    self.spool.mark_acked(item.batch_seq, {"status": "resynced", "batch_id": item.batch_id},
                                          self.prune_acked)
            return
        expected = last_seq + 1 if last_seq is not None else body.get("expected_batch_seq", 0)
        next_seq = int(expected) if isinstance(expected, int) else 0
        prev = last_hash if last_hash is not None else ZERO_HASH
        rebuilt = []
        for item in self.spool.unacked():
            batch = renumber(self.gateway_key, decode_batch(item.blob), next_seq, prev)
            rebuilt.append((next_seq, batch))
            prev = batch.hash
            next_seq += 1
        self.spool.replace_unacked(rebuilt, next_seq, prev)
        log.warning("unacknowledged batches renumbered to follow the cloud",
                    extra=fields(first=rebuilt[0][1].id if rebuilt else None, count=len(rebuilt)))
