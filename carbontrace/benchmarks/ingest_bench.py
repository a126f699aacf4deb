"""Gateway ingest: signed readings/s from a publisher through Mosquitto into the gateway's durable spool,
next to the bare Mosquitto pub->sub rate (paho, QoS 1, same payloads) on the same broker in the same run."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from carbontrace.benchmarks.common import Row, SectionResult, reading_topic
from carbontrace.benchmarks.mqtt_load import bare_broker_rate, publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, Mosquitto, wait_until


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


def run(devices: int, per_device: int) -> SectionResult:
    with tempfile.TemporaryDirectory(prefix="ct-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "mqtt")
        cloud = CloudProcess(tmp / "cloud", checkpoint_every_s=3600, jobs_interval_s=0)
        broker.start()
        cloud.start()
        gateway = None
        try:
            tenant = cloud.register_tenant(devices, tmp)
            now = int(time.time())
            messages = [(reading_topic(tenant.site_id, d.device_id), d.signed(seq, now))
                        for seq in range(per_device) for d in tenant.devices]
            size = sum(len(p) for _, p in messages) // len(messages)
            bare = bare_broker_rate(broker, messages)

            # A window longer than the run: nothing is sealed or uploaded while we count.
            gateway = GatewayProcess(tmp / "gw", tenant, cloud.url,
                                     broker.add_gateway(tenant.site_id, tenant.gateway_id), window_s=3600)
            gateway.start()
            samples: list[tuple[float, int]] = []
            done = threading.Event()
            start = time.perf_counter()

            def sample() -> None:
                while not done.is_set():
                    samples.append((time.perf_counter() - start, spool_accepted(gateway.spool_path)))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            publish_seconds = publish_all(broker.add_publisher(tenant.site_id, "bench-gw-pub"), messages)
            wait_until(lambda: spool_accepted(gateway.spool_path) >= len(messages), 300, "all readings spooled",
                       interval=0.02)
            elapsed = time.perf_counter() - start
            done.set()
            sampler.join(5)
            samples.append((elapsed, spool_accepted(gateway.spool_path)))
        finally:
            if gateway is not None:
                gateway.stop()
            cloud.stop()
            broker.stop()
    verified = len(messages) / elapsed
    series = rate_series(samples)
    result = SectionResult()
    result.rows.append(Row("ingest", "verified ingest into the spool (QoS 1)", verified, "readings/s", bare,
                           "bare Mosquitto pub->sub, paho, QoS 1",
                           note=f"{len(messages):,} msgs of ~{size} B, {devices} devices"))
    result.details = {"messages": len(messages), "message_bytes": size, "devices": devices,
                      "bare_msgs_per_s": bare, "gateway_readings_per_s": verified,
                      "publish_seconds": publish_seconds, "series": series}
    return result
