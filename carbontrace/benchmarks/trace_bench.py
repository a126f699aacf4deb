"""Trace: locate + retrieve + verify latency for one reading, with many readings stored in the cloud.

The readings get there the real way (paho -> Mosquitto -> gateway process -> cloud process, anchored on the
embedded EVM). Then random readings are traced one at a time through the public trace API as their
enterprise (`/api/v1/trace/verify?device_id=&start=&end=&limit=1`): SQL locate, blob re-read by CID, and
every proof step including the chain anchor. Each answer must say "valid". Also timed: `/trace/locate`
alone (the SQL index) and `/trace/retrieve` (locate + blob re-read).

Filling 10^6 readings this way takes far longer than the bench budget on a small machine, so the size is a
flag (``--trace-readings``); the row names the size used.
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import Row, SectionResult, percentile, reading_topic
from carbontrace.benchmarks.mqtt_load import publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, Mosquitto, wait_until

DEVICES = 10
SAMPLES = 40


def _anchored_readings(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            return int(db.execute(text("SELECT COUNT(*) FROM readings r JOIN batches b ON r.batch_id = b.id "
                                        "WHERE b.log_index < :n"), {"n": size}).scalar() or 0)
    finally:
        engine.dispose()


def run(readings: int) -> SectionResult:
    result = SectionResult()
    if importlib.util.find_spec("cloud.routers.trace") is None:
        result.rows.append(Row("trace", "locate+retrieve+verify p50/p95", None, "ms",
                               note="not available: the cloud has no trace API (cloud/routers/trace.py)"))
        result.details = {"available": False}
        return result
    per_device = max(1, readings // DEVICES)
    with tempfile.TemporaryDirectory(prefix="ct-bench-trace-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "mqtt")
        cloud = CloudProcess(tmp / "cloud", checkpoint_every_s=2.0, jobs_interval_s=0.5)
        gateway = None
        try:
            broker.start()
            cloud.start()
            tenant = cloud.register_tenant(DEVICES, tmp, prefix="trace")
            gateway = GatewayProcess(tmp / "gw", tenant, cloud.url,
                                     broker.add_gateway(tenant.site_id, tenant.gateway_id), window_s=5, interval_s=1)
            gateway.start()
            # timestamps spread over +-250 s of now (inside the gateway's clock-skew bound)
            base = int(time.time()) - 250
            stamps = {seq: base + seq * 500 // per_device for seq in range(per_device)}
            messages = [(reading_topic(tenant.site_id, d.device_id), d.signed(seq, stamps[seq]))
                        for seq in range(per_device) for d in tenant.devices]
            fill_start = time.perf_counter()
            publish_all(broker.add_publisher(tenant.site_id, "bench-trace-pub"), messages, timeout=600)
            wait_until(lambda: _anchored_readings(cloud.database_url) >= len(messages), 900,
                       "every reading anchored", interval=0.5)
            fill_s = time.perf_counter() - fill_start
            rng = random.Random(7)
            auth = {"Authorization": f"Bearer {tenant.enterprise_key}"}
            timings: dict[str, list[float]] = {"locate": [], "retrieve": [], "verify": []}
            statuses: dict[str, int] = {}
            with httpx.Client(base_url=cloud.url, headers=auth, timeout=60) as http:
                for _ in range(SAMPLES):
                    device = rng.choice(tenant.devices)
                    seq = rng.randrange(per_device)
                    params: dict[str, str | int] = {"device_id": device.device_id, "start": stamps[seq],
                                                    "end": stamps[seq] + 1, "types": "co2", "limit": 1}
                    for step in ("locate", "retrieve", "verify"):
                        start = time.perf_counter()
                        answer = http.get(f"/api/v1/trace/{step}", params=params)
                        timings[step].append(1000 * (time.perf_counter() - start))
                        if answer.status_code != 200:
                            raise RuntimeError(f"trace/{step}: {answer.status_code} {answer.text[:300]}")
                        if step == "verify":
                            status = answer.json()["status"]
                            statuses[status] = statuses.get(status, 0) + 1
        finally:
            if gateway is not None:
                gateway.stop()
            cloud.stop()
            broker.stop()
    stored = len(messages)
    for step in ("locate", "retrieve", "verify"):
        label = {"locate": "locate", "retrieve": "locate+retrieve", "verify": "locate+retrieve+verify"}[step]
        for name, fraction in (("p50", 0.5), ("p95", 0.95)):
            result.rows.append(Row("trace", f"{label} {name}", percentile(timings[step], fraction), "ms",
                                   note=f"{stored:,} readings stored (SQLite, embedded EVM)"
                                   if step == "verify" and name == "p50" else ""))
    if statuses.get("valid", 0) != SAMPLES:
        result.rows.append(Row("trace", "answers not valid", SAMPLES - statuses.get("valid", 0), "",
                               note=str(statuses)))
    result.details = {"available": True, "readings_stored": stored, "samples": SAMPLES, "statuses": statuses,
                      "fill_seconds": fill_s, "timings_ms": timings}
    return result
