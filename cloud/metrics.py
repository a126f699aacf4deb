"""Prometheus metrics of one cloud process (its own registry, so tests can run several apps in one process).

Counters are counted where things happen (ingestion, the chain and content-store error paths, every request);
the queue figures (anchoring lag, pending checkpoints, unpinned blobs, the anchoring halt) are read from the
database at scrape time, so every replica reports the same truth whichever of them is the anchoring leader.
Labels are bounded: rejection reasons are the codes ingestion returns, routes are templates, never raw paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud import chain as chainlib
from cloud.anchoring_state import HALT_REASONS, anchoring_state

log = logging.getLogger("carbontrace.cloud.metrics")

# Seconds; the upload of a large batch (seconds) and a cached trace read (milliseconds) both resolve.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def chain_error_kind(err: BaseException) -> str:
    if isinstance(err, chainlib.OperatorUnfunded):
        return "operator_unfunded"
    if isinstance(err, chainlib.ChainUnavailable):
        return "unavailable"
    if isinstance(err, chainlib.ContractReverted):
        return "reverted"
    if isinstance(err, chainlib.ChainAheadOfDatabase):
        return "chain_ahead_of_database"
    return "other"


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches_accepted = Counter("ct_cloud_batches_accepted", "Batches stored (new, not retries)", registry=r)
        self.readings_accepted = Counter("ct_cloud_readings_accepted", "Readings in the batches stored", registry=r)
        self.batches_duplicate = Counter("ct_cloud_batches_duplicate",
                                         "Retries of a stored batch, answered with its receipt", registry=r)
        self.batches_rejected = Counter("ct_cloud_batches_rejected",
                                        "Batch uploads refused, by the error code the upload answered", ["reason"],
                                        registry=r)
        self.chain_errors = Counter("ct_cloud_chain_errors", "Chain calls that failed, by kind", ["kind"], registry=r)
        self.content_store_errors = Counter("ct_cloud_content_store_errors",
                                            "IPFS / content-store operations that failed", ["operation"],
                                            registry=r)
        self.request_duration = Histogram("ct_cloud_request_duration_seconds",
                                          "HTTP request latency by route template", ["method", "route", "status"],
                                          buckets=LATENCY_BUCKETS, registry=r)

    def chain_error(self, err: BaseException) -> None:
        self.chain_errors.labels(chain_error_kind(err)).inc()

    def content_store_error(self, operation: str, _err: BaseException | None = None) -> None:
        self.content_store_errors.labels(operation).inc()

    def watch_queues(self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self.registry.register(QueueCollector(sessions, clock))


class QueueCollector(Collector):
    """The anchoring queue, read from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], float]) -> None:
        self.sessions = sessions
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # not known before a scrape (the database may be down): no name checks at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ct_cloud_database_up", "1 when the database answered this scrape's queries")
        try:
            with self.sessions() as session:
                state = anchoring_state(session)
        except SQLAlchemyError as err:
            log.warning("metrics: database unavailable", exc_info=err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, doc, value in (
            ("ct_cloud_log_leaves", "Leaves (accepted batches) in the append-only log", state.log_size),
            ("ct_cloud_unanchored_leaves", "Leaves no anchored checkpoint covers yet", state.unanchored_leaves),
            ("ct_cloud_anchoring_lag_seconds", "Age of the oldest leaf not yet anchored", state.lag_s(self.clock())),
            ("ct_cloud_checkpoints_pending", "Signed checkpoints waiting for their anchor", state.pending_checkpoints),
            ("ct_cloud_blobs_unpinned", "Blobs IPFS has not got yet (pinned by the anchoring job)",
             state.unpinned_blobs),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        halted = GaugeMetricFamily("ct_cloud_anchoring_halted",
                                   "1 while anchoring is stuck, by reason (operator_unfunded needs a human)",
                                   labels=["reason"])
        for reason in HALT_REASONS:
            halted.add_metric([reason], 1 if state.halted == reason else 0)
        yield halted
