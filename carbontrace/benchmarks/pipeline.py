"""The whole pipeline as real processes, for the e2e and capacity benches: paced publishers -> Mosquitto (TLS,
credentials, ACL) -> gateway(s) -> cloud process(es) on one database -> anchored on a chain.

A reading counts as anchored once the batch holding it is inside an anchored checkpoint of the log; its lag is
that moment (seen by polling the cloud's database every 0.2 s) minus its publish time. The pipeline stays up
between offered loads (``offer``), so a capacity search pays the start-up once per configuration.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import percentile, reading_topic
from carbontrace.benchmarks.mqtt_load import PacedPublisher
from carbontrace.servers import (
    AnvilNode,
    CloudProcess,
    GatewayProcess,
    Mosquitto,
    PostgresCluster,
    Tenant,
    postgres_available,
)

POLL_S = 0.2


class AnchorWatcher:
    """Polls the cloud's database: which (device, seq) are in an anchored checkpoint, and since when."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url)
        self.anchored_at: dict[tuple[str, int], float] = {}
        self.done_log_index = 0

    def poll(self) -> list[tuple[str, int]]:
        """Record what became anchored since the last poll; returns those (device, seq)."""
        now = time.time()
        new: list[tuple[str, int]] = []
        with self.engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            if size <= self.done_log_index:
                return new
            rows = db.execute(text(
                "SELECT r.device_id, r.seq FROM readings r JOIN batches b ON r.batch_id = b.id "
                "WHERE b.log_index >= :lo AND b.log_index < :hi"), {"lo": self.done_log_index, "hi": size})
            for device_id, seq in rows:
                key = (device_id, int(seq))
                if key not in self.anchored_at:
                    self.anchored_at[key] = now
                    new.append(key)
        self.done_log_index = size
        return new

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class LoadResult:
    """One offered load held for ``seconds``: what was sent, what got anchored (by the deadline), the lags."""

    offered_rate: float
    seconds: float
    sent: int
    anchored: int
    lags: list[float]
    throughput: float  # anchored readings / (last anchored moment - first publish)
    published_rate: float = math.nan  # readings the publishers really sent per second (first to last publish)

    @property
    def lost(self) -> int:
        return self.sent - self.anchored

    def lag(self, fraction: float) -> float:
        return percentile(self.lags, fraction) if self.lags else math.nan

    def as_json(self) -> dict[str, float | int | None]:
        p95 = self.lag(0.95)
        return {"offered_rate": round(self.offered_rate, 1), "seconds": self.seconds, "sent": self.sent,
                "anchored": self.anchored, "lost": self.lost, "throughput": round(self.throughput, 1),
                "published_rate": _finite(self.published_rate),
                "lag_p50_s": _finite(self.lag(0.5)), "lag_p95_s": _finite(p95),
                "lag_max_s": max(self.lags) if self.lags else None}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


class Pipeline:
    """Started on ``__enter__``, stopped on ``__exit__``.

    ``gateways`` sites (one tenant, gateway and publisher each, ``devices`` devices per site); gateway ``i``
    uploads to cloud process ``i % cloud_processes``. More than one cloud process needs PostgreSQL and a chain
    node (``shared_chain``: anvil), since an embedded EVM lives inside one process.
    """

    def __init__(self, workdir: Path, devices: int, postgres: bool, gateways: int = 1, cloud_processes: int = 1,
                 shared_chain: bool = False) -> None:
        if cloud_processes > 1 and not (shared_chain and postgres_available()):
            raise ValueError("several cloud processes need PostgreSQL and a shared chain node")
        self.workdir = workdir
        self.devices = devices
        self.want_postgres = postgres or postgres_available()
        self.gateway_count = gateways
        self.cloud_count = cloud_processes
        self.shared_chain = shared_chain
        self.database = "SQLite"
        self.tenants: list[Tenant] = []
        self.clouds: list[CloudProcess] = []
        self.publishers: list[PacedPublisher] = []
        self.next_seq = 0
        self._stack = ExitStack()

    def __enter__(self) -> Pipeline:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        stack, tmp = self._stack, self.workdir
        database_url = None
        if self.want_postgres:
            cluster = PostgresCluster()
            cluster.start()
            stack.callback(cluster.remove)
            database_url = cluster.create_database()
            self.database = "PostgreSQL"
        chain = "embedded"
        if self.shared_chain:
            anvil = AnvilNode(tmp / "anvil")
            anvil.start()
            stack.callback(anvil.stop)
            chain = anvil.url
        broker = Mosquitto(tmp / "mqtt")
        broker.start()
        stack.callback(broker.stop)
        # A development chain node mines on each transaction and never reorganises: no confirmations to wait.
        first = CloudProcess(tmp / "cloud", database_url=database_url, chain=chain, checkpoint_every_s=1.0,
                             jobs_interval_s=POLL_S, confirmations=0 if self.shared_chain else None)
        self.clouds = [first] + [first.replica(str(n)) for n in range(1, self.cloud_count)]
        for cloud in self.clouds:  # the first migrates and deploys; the replicas attach
            cloud.start()
            stack.callback(cloud.stop)
        for n in range(self.gateway_count):
            site_dir = tmp / f"site{n}"
            site_dir.mkdir()
            self.tenants.append(first.register_tenant(self.devices, site_dir))
        # Every credential before any client connects: issuing one restarts the broker (Mosquitto.reload), and
        # a restart under connected clients made the gateways reconnect mid-run.
        accesses = [(broker.add_gateway(t.site_id, t.gateway_id), broker.add_publisher(t.site_id, f"bench-pub-{n}"))
                    for n, t in enumerate(self.tenants)]
        for n, (tenant, (gateway_access, publisher_access)) in enumerate(zip(self.tenants, accesses, strict=True)):
            gateway = GatewayProcess(tmp / f"site{n}" / "gw", tenant, self.clouds[n % self.cloud_count].url,
                                     gateway_access, window_s=1, interval_s=1)
            gateway.start()
            stack.callback(gateway.stop)  # stopped before the clouds and the broker (callbacks run in reverse)
            publisher = PacedPublisher(publisher_access, 1.0)
            publisher.connect()
            stack.callback(publisher.stop)
            self.publishers.append(publisher)
        self.watcher = AnchorWatcher(first.database_url)
        stack.callback(self.watcher.close)

    @property
    def cloud_url(self) -> str:
        return self.clouds[0].url

    @property
    def database_url(self) -> str:
        return self.clouds[0].database_url

    def offer(self, rate: float, seconds: float, grace_s: float = 120.0) -> LoadResult:
        """Publish ``rate`` readings/s (spread over the sites) for ``seconds``; wait until all are anchored or
        ``grace_s`` after the last publish. Readings are signed just before (signing on the fly would cost the
        publisher), with this run's timestamps so they fall in the gateways' current windows."""
        per_site = max(1, int(seconds * rate / len(self.tenants)))
        items_by_site = []
        for tenant in self.tenants:
            items = []
            for n in range(per_site):
                device = tenant.devices[n % self.devices]
                seq = self.next_seq + n // self.devices
                items.append((reading_topic(tenant.site_id, device.device_id), device.signed(seq),
                              (device.device_id, seq)))
            items_by_site.append(items)
        self.next_seq += math.ceil(per_site / self.devices)
        keys = [key for items in items_by_site for _, _, key in items]
        start = time.time()
        for publisher, items in zip(self.publishers, items_by_site, strict=True):
            publisher.rate = rate / len(self.tenants)
            publisher.run(items)
        deadline = start + seconds + grace_s
        # Counted down as readings anchor: scanning every key on each poll took a share of the CPU the
        # pipeline under test was measured on (tens of ms a poll at 10^5 keys, five polls a second).
        waiting = set(keys) - self.watcher.anchored_at.keys()
        while time.time() < deadline and waiting:
            waiting.difference_update(self.watcher.poll())
            time.sleep(POLL_S)
        self.watcher.poll()
        for publisher in self.publishers:
            publisher.join(1)
        sent_at = {k: t for p in self.publishers for k, t in p.sent_at.items()}
        anchored = {k: self.watcher.anchored_at[k] for k in keys if k in self.watcher.anchored_at and k in sent_at}
        lags = [anchored[k] - sent_at[k] for k in anchored]
        published = [sent_at[k] for k in keys if k in sent_at]
        span = max(anchored.values()) - min(published) if anchored else 0.0
        publish_span = max(published) - min(published) if len(published) > 1 else 0.0
        # n publishes are n - 1 intervals apart: the rate they were really offered at
        published_rate = (len(published) - 1) / publish_span if publish_span > 0 else math.nan
        return LoadResult(rate, seconds, len(keys), len(anchored), lags, len(anchored) / span if span > 0 else 0.0,
                          published_rate)

    def settle(self, timeout_s: float) -> int:
        """Wait (up to ``timeout_s``) until everything published so far is anchored, so an overload's backlog
        does not spill into the next load; returns how many readings are still not anchored."""
        deadline = time.time() + timeout_s
        self.watcher.poll()
        waiting = {k for p in self.publishers for k in p.sent_at} - self.watcher.anchored_at.keys()
        while True:
            waiting.difference_update(self.watcher.poll())
            if not waiting or time.time() > deadline:
                return len(waiting)
            time.sleep(POLL_S)
