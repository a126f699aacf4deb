"""The gateway's extra ingest processes, and their supervisor (the main gateway process, itself worker 0).

ES256 verification is CPU-bound and Python threads share one core, so a gateway on a multi-core board runs
``ingest_workers`` processes, each an MQTT member of one shared subscription ($share/<group>/..., the broker
hands each reading to one member) that verifies and writes into the gateway's one spool. The spool makes
that safe: every write is one ``BEGIN IMMEDIATE`` transaction that reads the sealed-window mark inside it,
so a worker never stores into a window the batcher has closed, and a reading redelivered to another worker
is recognised as a duplicate there. Each worker acks only after its commit, as worker 0 does
(edge_gateway/ingest.py), so a worker killed at any point loses nothing: its persistent session (client id
``<user>.w<k>``, edge_gateway/config.py) gets the unacked readings again when it is restarted.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.process import BaseProcess

from carbontrace_host.logs import fields, setup_logging
from edge_gateway.config import GatewaySettings
from edge_gateway.metrics import GatewayMetrics

log = logging.getLogger("edge_gateway.workers")

RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0
STOP_TIMEOUT_S = 30.0


def worker_main(settings: GatewaySettings, worker: int, parent_pid: int) -> None:
    """Entry point of worker process ``worker`` (spawned, so it imports nothing of its parent's state)."""
    from edge_gateway.service import Gateway

    setup_logging(settings.log_level)
    gateway = Gateway(settings, worker=worker)
    signal.signal(signal.SIGTERM, lambda *_: gateway.stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent stops us
    gateway.run_ingest_worker(parent_pid)


class IngestWorkers:
    """Starts workers 1..N-1, restarts one that died (with backoff), stops them all."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, parent_pid: int) -> None:
        self.settings = settings
        self.metrics = metrics
        self.parent_pid = parent_pid
        self.context = multiprocessing.get_context("spawn")
        self.processes: dict[int, BaseProcess] = {}
        self.failures: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}  # a dead worker's restart time
        self.started_at: dict[int, float] = {}

    def start(self) -> None:
        for worker in range(1, self.settings.ingest_workers):
            self._spawn(worker)
        self.metrics.ingest_workers.set(1 + self.alive())

    def _spawn(self, worker: int) -> None:
        process = self.context.Process(target=worker_main, args=(self.settings, worker, self.parent_pid),
                                       name=f"carbontrace-gateway-ingest-{worker}", daemon=False)
        process.start()
        self.processes[worker] = process
        self.started_at[worker] = time.monotonic()
        log.info("ingest worker started", extra=fields(worker=worker, pid=process.pid))

    def alive(self) -> int:
        return sum(1 for p in self.processes.values() if p.is_alive())

    def supervise(self, now: float | None = None) -> None:
        """Restart each worker that exited, waiting longer after each failure in a row (a worker that stays up
        for RESTART_MAX_S clears its count)."""
        now = time.monotonic() if now is None else now
        for worker, process in list(self.processes.items()):
            if process.is_alive():
                if now - self.started_at.get(worker, now) > RESTART_MAX_S:
                    self.failures[worker] = 0
                continue
            if worker not in self.restart_at:
                failures = self.failures.get(worker, 0)
                delay = min(RESTART_MAX_S, RESTART_MIN_S * 2**failures)
                self.failures[worker] = failures + 1
                self.restart_at[worker] = now + delay
                self.metrics.ingest_worker_exits.labels(str(worker)).inc()
                log.error("ingest worker exited; restarting it", extra=fields(
                    alarm="ingest_worker_exited", worker=worker, exit_code=process.exitcode, restart_in_s=delay))
            elif now >= self.restart_at[worker]:
                del self.restart_at[worker]
                process.join(0)
                self._spawn(worker)
        self.metrics.ingest_workers.set(1 + self.alive())

    def stop(self) -> None:
        """SIGTERM each worker (it finishes the group it is writing, then disconnects), then wait."""
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker, process in self.processes.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("ingest worker did not stop; killing it", extra=fields(worker=worker))
                process.kill()
                process.join(5)
        self.metrics.ingest_workers.set(1)
