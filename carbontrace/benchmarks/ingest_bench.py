"""Gateway ingest: signed readings/s from a publisher through Mosquitto into the gateway's durable spool,
next to the bare Mosquitto pub->sub rate (paho, QoS 1, same payloads) on the same broker in the same run; once
with one ingest process, once with two sharing the subscription and the spool (a board with cores to spare)."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from carbontrace.benchmarks.common import Row, SectionResult, reading_topic
from carbontrace.benchmarks.mqtt_load import bare_broker_rate, publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, Mosquitto, Tenant, wait_until


def spool_accepted(path: Path) -> int:
    """Readings the gateway has committed to its spool (its per-device counters), read by another process."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT COALESCE(SUM(accepted), 0) FROM devices").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:
        return 0


def rate_series(samples: list[tuple[float, int]], window_s: float = 1.0) -> list[dict[str, float]]:
    """Spooled readings/s over a sliding window (the gateway commits in groups: raw deltas are spiky)."""
    series = []
    j = 0
    for t1, n1 in samples:
        while j + 1 < len(samples) and t1 - samples[j + 1][0] >= window_s:
            j += 1
        t0, n0 = samples[j]
        if t1 - t0 >= window_s / 2:
            series.append({"t": round(t1, 3), "readings_per_s": (n1 - n0) / (t1 - t0), "spooled": n1})
    return series


WORKERS = 2  # the second row: a gateway of two ingest processes (edge_gateway/workers.py), one per core here
SHARE_GROUP = "bench"


def _signed_messages(tenant: Tenant, per_device: int) -> list[tuple[str, bytes]]:
    now = int(time.time())
    return [(reading_topic(tenant.site_id, d.device_id), d.signed(seq, now))
            for seq in range(per_device) for d in tenant.devices]


def _gateway_rate(workdir: Path, broker: Mosquitto, cloud: CloudProcess, tenant: Tenant,
                  messages: list[tuple[str, bytes]], workers: int) -> tuple[float, list[tuple[float, int]], float]:
    """(readings/s into the spool, (time, spooled) samples, publish seconds) of a gateway of ``workers``
    ingest processes, from its first publish until its counters reach the total."""
    access = broker.add_gateway(tenant.site_id, tenant.gateway_id, workers=workers)
    publisher = broker.add_publisher(tenant.site_id, f"bench-gw-pub-{workers}")
    extra: dict[str, object] = {} if workers == 1 else {"ingest_workers": workers, "mqtt_shared_group": SHARE_GROUP}
    # A window longer than the run: nothing is sealed or uploaded while we count.
    gateway = GatewayProcess(workdir, tenant, cloud.url, access, window_s=3600, **extra)
    gateway.start()
    try:
        if workers > 1:  # worker 0 says it is subscribed before the others have started
            wait_until(lambda: gateway.log_since_start().count('"MQTT subscribed"') >= workers, 60,
                       "every ingest worker subscribed")
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        start = time.perf_counter()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.perf_counter() - start, spool_accepted(gateway.spool_path)))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        publish_seconds = publish_all(publisher, messages)
        wait_until(lambda: spool_accepted(gateway.spool_path) >= len(messages), 300, "all readings spooled",
                   interval=0.02)
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join(5)
        samples.append((elapsed, spool_accepted(gateway.spool_path)))
    finally:
        gateway.stop()
    return len(messages) / elapsed, samples, publish_seconds


def run(devices: int, per_device: int) -> SectionResult:
    with tempfile.TemporaryDirectory(prefix="ct-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "mqtt")
        cloud = CloudProcess(tmp / "cloud", checkpoint_every_s=3600, jobs_interval_s=0)
        broker.start()
        cloud.start()
        try:
            # one site per gateway: each run's readings are new to its spool and its persistent sessions
            for n in range(2):
                (tmp / f"site{n}").mkdir()
            tenants = [cloud.register_tenant(devices, tmp / f"site{n}") for n in range(2)]
            runs = [_signed_messages(t, per_device) for t in tenants]
            messages = runs[0]
            size = sum(len(p) for _, p in messages) // len(messages)
            bare = bare_broker_rate(broker, messages)
            verified, samples, publish_seconds = _gateway_rate(tmp / "gw", broker, cloud, tenants[0], messages, 1)
            parallel, parallel_samples, _ = _gateway_rate(tmp / "gw2", broker, cloud, tenants[1], runs[1], WORKERS)
        finally:
            cloud.stop()
            broker.stop()
    result = SectionResult()
    note = f"{len(messages):,} msgs of ~{size} B, {devices} devices"
    result.rows.append(Row("ingest", "verified ingest into the spool (QoS 1)", verified, "readings/s", bare,
                           "bare Mosquitto pub->sub, paho, QoS 1", note=note))
    result.rows.append(Row("ingest", f"verified ingest into the spool (QoS 1), {WORKERS} ingest workers", parallel,
                           "readings/s", bare, "bare Mosquitto pub->sub, paho, QoS 1",
                           note=f"{note}; one shared subscription, one spool"))
    result.details = {"messages": len(messages), "message_bytes": size, "devices": devices,
                      "bare_msgs_per_s": bare, "gateway_readings_per_s": verified,
                      "publish_seconds": publish_seconds, "series": rate_series(samples),
                      "workers": WORKERS, "gateway_workers_readings_per_s": parallel,
                      "series_workers": rate_series(parallel_samples)}
    return result
