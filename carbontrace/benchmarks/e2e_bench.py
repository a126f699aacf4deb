"""End to end: readings/s from signed publish to anchored in the cloud, with the lag distribution.

Pipeline, every part a real process: paho publisher (paced) -> Mosquitto -> gateway (verify, spool, 1 s
windows, batch, upload) -> cloud (re-verify, store, log, checkpoint every second, anchor on its chain).
A reading counts as anchored once the batch holding it is inside an anchored checkpoint of the log; its lag
is that moment (seen by polling the cloud's database every 0.2 s) minus its publish time. At the end a
sample of batches is proven through the public API: inclusion proof -> the anchored checkpoint's root.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import Row, SectionResult, percentile, reading_topic
from carbontrace.benchmarks.mqtt_load import PacedPublisher
from carbontrace.servers import CloudProcess, GatewayProcess, Mosquitto, PostgresCluster, postgres_available
from carbontrace_protocol import merkle


class AnchorWatcher:
    """Polls the cloud's database: which (device, seq) are in an anchored checkpoint, and since when."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url)
        self.anchored_at: dict[tuple[str, int], float] = {}
        self.done_log_index = 0

    def poll(self) -> None:
        now = time.time()
        with self.engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            if size <= self.done_log_index:
                return
            rows = db.execute(text(
                "SELECT r.device_id, r.seq FROM readings r JOIN batches b ON r.batch_id = b.id "
                "WHERE b.log_index >= :lo AND b.log_index < :hi"), {"lo": self.done_log_index, "hi": size})
            for device_id, seq in rows:
                self.anchored_at.setdefault((device_id, int(seq)), now)
        self.done_log_index = size

    def close(self) -> None:
        self.engine.dispose()


def prove_sample(cloud_url: str, database_url: str, samples: int = 5) -> dict[str, Any]:
    """Inclusion proofs from the public API for a few batches, checked against the latest anchored root."""
    latest = httpx.get(f"{cloud_url}/api/v1/log/checkpoints/latest", timeout=10).json()
    engine = create_engine(database_url)
    with engine.connect() as db:
        ids = [r[0] for r in db.execute(text("SELECT id FROM batches WHERE log_index < :n ORDER BY log_index"),
                                        {"n": latest["tree_size"]})]
    engine.dispose()
    step = max(1, len(ids) // samples)
    checked = 0
    for batch_id in ids[::step][:samples]:
        proof = httpx.get(f"{cloud_url}/api/v1/log/inclusion",
                          params={"batch_id": batch_id, "tree_size": latest["tree_size"]}, timeout=10).json()
        merkle.verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["log_index"], proof["tree_size"],
                                [bytes.fromhex(h) for h in proof["proof"]], bytes.fromhex(latest["root"]))
        checked += 1
    return {"batches_proven": checked, "checkpoint_seq": latest["seq"], "tree_size": latest["tree_size"],
            "tx_hash": latest["tx_hash"]}


def run(devices: int, seconds: float, offered_rate: float, postgres: bool) -> SectionResult:
    with tempfile.TemporaryDirectory(prefix="ct-bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        cluster = None
        database = "SQLite"
        database_url = None
        if postgres or postgres_available():
            cluster = PostgresCluster()
            cluster.start()
            database_url = cluster.create_database()
            database = "PostgreSQL"
        broker = Mosquitto(tmp / "mqtt")
        cloud = CloudProcess(tmp / "cloud", database_url=database_url, checkpoint_every_s=1.0, jobs_interval_s=0.2)
        gateway = None
        publisher = None
        watcher = None
        try:
            broker.start()
            cloud.start()
            tenant = cloud.register_tenant(devices, tmp)
            gateway = GatewayProcess(tmp / "gw", tenant, cloud.url,
                                     broker.add_gateway(tenant.site_id, tenant.gateway_id), window_s=1, interval_s=1)
            gateway.start()
            watcher = AnchorWatcher(cloud.database_url)
            total = int(seconds * offered_rate)
            items = []
            for n in range(total):
                device = tenant.devices[n % devices]
                seq = n // devices
                # signed just in time would cost the publisher; timestamps are those of the run, so in-window
                items.append((reading_topic(tenant.site_id, device.device_id), device.signed(seq),
                              (device.device_id, seq)))
            publisher = PacedPublisher(broker.add_publisher(tenant.site_id, "bench-e2e-pub"), offered_rate)
            publisher.connect()
            start = time.time()
            publisher.run(items)
            deadline = start + seconds + 120
            while len(watcher.anchored_at) < total and time.time() < deadline:
                watcher.poll()
                time.sleep(0.2)
            watcher.poll()
            proven = prove_sample(cloud.url, cloud.database_url)
            sent_at = dict(publisher.sent_at)
        finally:
            if publisher is not None:
                publisher.stop()
            if watcher is not None:
                watcher.close()
            if gateway is not None:
                gateway.stop()
            cloud.stop()
            broker.stop()
            if cluster is not None:
                cluster.remove()
    lags = [watcher.anchored_at[k] - sent_at[k] for k in watcher.anchored_at if k in sent_at]
    anchored = len(lags)
    span = max(watcher.anchored_at.values()) - min(sent_at.values()) if anchored else 0.0
    throughput = anchored / span if span > 0 else 0.0
    result = SectionResult()
    note = f"{database}, embedded EVM; {anchored}/{total} anchored"
    result.rows.append(Row("e2e", "signed publish -> anchored", throughput, "readings/s", offered_rate,
                           "offered load", note=note))
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        result.rows.append(Row("e2e", f"lag {name}", percentile(lags, fraction) if lags else None, "s"))
    result.details = {"database": database, "offered_rate": offered_rate, "seconds": seconds, "sent": total,
                      "anchored": anchored, "throughput": throughput, "proven": proven,
                      "lag_s": {"p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
                                "max": max(lags) if lags else None}}
    return result
