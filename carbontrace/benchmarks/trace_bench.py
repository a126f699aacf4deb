"""Trace: locate + retrieve + verify latency for one reading, with many readings stored in the cloud.

Up to 10^4 readings get there through the cloud's real ingestion (carbontrace/benchmarks/trace_fill.py: the
gateway's batch builder, large batches posted to /api/v1/batches, anchored on the embedded EVM by the cloud's
own job); a larger size is made up with bulk index rows and log leaves (trace_fill.py says why). The fill time
is a row. Then random readings are traced one at a time through the public trace API as their
enterprise (`/api/v1/trace/verify?device_id=&start=&end=&limit=1`): SQL locate, blob re-read by CID, and
every proof step including the chain anchor. Each answer must say "valid". Also timed: `/trace/locate`
alone (the SQL index), `/trace/retrieve` (locate + blob re-read), and /trace/verify from 16 clients at once.

The same run is made on SQLite and, when the PostgreSQL 15 binaries are installed, on a PostgreSQL cluster
started here. The size is a flag (``--trace-readings``, 10^6 for the issue's target); the rows name it.
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from carbontrace.benchmarks.common import Row, SectionResult, percentile
from carbontrace.benchmarks.trace_fill import (
    READINGS_PER_LEAF,
    REAL_READINGS,
    fill_log,
    fill_readings,
    post_readings,
    stamps_for,
)
from carbontrace.servers import CloudProcess, PostgresCluster, Tenant, postgres_available, wait_until
from cloud.ledger_log import SqlLog

DEVICES = 10
SAMPLES = 40
CLIENTS = 16
SAMPLES_PER_CLIENT = 10
STEPS = {"locate": "locate", "retrieve": "locate+retrieve", "verify": "locate+retrieve+verify"}


def _anchored_readings(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            return int(db.execute(text("SELECT COUNT(*) FROM readings r JOIN batches b ON r.batch_id = b.id "
                                        "WHERE b.log_index < :n"), {"n": size}).scalar() or 0)
    finally:
        engine.dispose()


def _bulk_fill(database_url: str, count: int) -> None:
    """``count`` bulk reading rows in the first real batch, and their log leaves (trace_fill.py says why)."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            first = session.execute(text("SELECT id FROM batches ORDER BY log_index LIMIT 1")).scalar_one()
            fill_readings(session, count, first)
            fill_log(session, SqlLog(session).size() + count // READINGS_PER_LEAF)
    finally:
        engine.dispose()


class Tracer:
    """Random readings of the tenant traced through the HTTP API; every verify answer must be valid."""

    def __init__(self, cloud_url: str, tenant: Tenant, stamps: list[int], seed: int) -> None:
        self.http = httpx.Client(base_url=cloud_url, timeout=60,
                                 headers={"Authorization": f"Bearer {tenant.enterprise_key}"})
        self.tenant = tenant
        self.stamps = stamps
        self.rng = random.Random(seed)
        self.invalid: dict[str, int] = {}

    def params(self) -> dict[str, str | int]:
        device = self.rng.choice(self.tenant.devices)
        stamp = self.stamps[self.rng.randrange(len(self.stamps))]
        return {"device_id": device.device_id, "start": stamp, "end": stamp + 1, "types": "co2", "limit": 1}

    def timed(self, step: str, params: dict[str, str | int]) -> float:
        start = time.perf_counter()
        answer = self.http.get(f"/api/v1/trace/{step}", params=params)
        elapsed = 1000 * (time.perf_counter() - start)
        if answer.status_code != 200:
            raise RuntimeError(f"trace/{step}: {answer.status_code} {answer.text[:300]}")
        if step == "verify" and (status := answer.json()["status"]) != "valid":
            self.invalid[status] = self.invalid.get(status, 0) + 1
        return elapsed


def _concurrent(cloud_url: str, tenant: Tenant, stamps: list[int]) -> tuple[list[float], dict[str, int]]:
    """CLIENTS threads, each tracing SAMPLES_PER_CLIENT readings back to back, all started together."""
    tracers = [Tracer(cloud_url, tenant, stamps, seed) for seed in range(100, 100 + CLIENTS)]
    timings: list[list[float]] = [[] for _ in tracers]
    go = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        go.wait()
        for _ in range(SAMPLES_PER_CLIENT):
            timings[n].append(tracers[n].timed("verify", tracers[n].params()))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    invalid: dict[str, int] = {}
    for tracer in tracers:
        tracer.http.close()
        for status, count in tracer.invalid.items():
            invalid[status] = invalid.get(status, 0) + count
    return [t for per_client in timings for t in per_client], invalid


def measure(tmp: Path, readings: int, database_url: str | None) -> dict[str, Any]:
    """Fill one cloud (SQLite when ``database_url`` is None) and time traces against it."""
    cloud = CloudProcess(tmp / "cloud", database_url=database_url, checkpoint_every_s=2.0, jobs_interval_s=0.5,
                         checkpoint_every_batches=1000)
    try:
        cloud.start()
        tenant = cloud.register_tenant(DEVICES, tmp, prefix="trace")
        real = min(readings, REAL_READINGS)
        stamps = stamps_for(max(1, real // DEVICES))
        fill_start = time.perf_counter()
        ingested = post_readings(cloud.url, tenant, stamps)
        ingest_s = time.perf_counter() - fill_start
        bulk = max(0, readings - ingested)
        if bulk:
            _bulk_fill(cloud.database_url, bulk)
        stored = ingested + bulk
        wait_until(lambda: _anchored_readings(cloud.database_url) >= stored, 900, "every reading anchored",
                   interval=0.5)
        fill_s = time.perf_counter() - fill_start
        tracer = Tracer(cloud.url, tenant, stamps, seed=7)
        timings: dict[str, list[float]] = {step: [] for step in STEPS}
        for _ in range(3):  # warm the process (imports, first chain reads) before timing
            tracer.timed("verify", tracer.params())
        tracer.invalid.clear()
        for _ in range(SAMPLES):
            params = tracer.params()
            for step in STEPS:
                timings[step].append(tracer.timed(step, params))
        tracer.http.close()
        concurrent, concurrent_invalid = _concurrent(cloud.url, tenant, stamps)
    finally:
        cloud.stop()
    return {"readings_stored": stored, "readings_ingested": ingested, "ingest_seconds": ingest_s,
            "bulk_rows": bulk, "fill_seconds": fill_s, "timings_ms": timings,
            "concurrent_ms": concurrent, "not_valid": tracer.invalid, "concurrent_not_valid": concurrent_invalid}


def _rows(result: SectionResult, figures: dict[str, Any], database: str, suffix: str) -> None:
    stored = figures["readings_stored"]
    where = f"{stored:,} readings stored ({database}, embedded EVM)"
    for step, label in STEPS.items():
        for name, fraction in (("p50", 0.5), ("p95", 0.95)):
            result.rows.append(Row("trace", f"{label} {name}{suffix}", percentile(figures["timings_ms"][step],
                                   fraction), "ms", note=where if step == "verify" and name == "p50" else ""))
    result.rows.append(Row("trace", f"locate+retrieve+verify p95, {CLIENTS} clients{suffix}",
                           percentile(figures["concurrent_ms"], 0.95), "ms",
                           note=f"{CLIENTS} threads x {SAMPLES_PER_CLIENT} traces at once, one cloud process"))
    ingested = figures["readings_ingested"]
    result.rows.append(Row("trace", f"fill time{suffix}", figures["fill_seconds"], "s",
                           note=f"{ingested:,} readings through the cloud's ingestion "
                           f"({ingested / figures['ingest_seconds']:,.0f}/s), {figures['bulk_rows']:,} bulk rows; "
                           "all anchored"))
    not_valid = {**figures["not_valid"], **{f"{k} ({CLIENTS} clients)": n
                                            for k, n in figures["concurrent_not_valid"].items()}}
    if not_valid:
        result.rows.append(Row("trace", f"answers not valid{suffix}", sum(not_valid.values()), "",
                               note=str(not_valid)))


def run(readings: int) -> SectionResult:
    result = SectionResult()
    if importlib.util.find_spec("cloud.routers.trace") is None:
        result.rows.append(Row("trace", "locate+retrieve+verify p50/p95", None, "ms",
                               note="not available: the cloud has no trace API (cloud/routers/trace.py)"))
        result.details = {"available": False}
        return result
    with tempfile.TemporaryDirectory(prefix="ct-bench-trace-") as tmp_name:
        sqlite = measure(Path(tmp_name), readings, None)
    _rows(result, sqlite, "SQLite", "")
    valid = SAMPLES - sum(sqlite["not_valid"].values())
    result.details = {"available": True, "readings_stored": sqlite["readings_stored"], "samples": SAMPLES,
                      "statuses": {"valid": valid, **sqlite["not_valid"]}, "fill_seconds": sqlite["fill_seconds"],
                      "timings_ms": sqlite["timings_ms"], "concurrent_ms": sqlite["concurrent_ms"], "clients": CLIENTS}
    if postgres_available():
        cluster = PostgresCluster()
        try:
            cluster.start()
            with tempfile.TemporaryDirectory(prefix="ct-bench-trace-pg-") as tmp_name:
                postgres = measure(Path(tmp_name), readings, cluster.create_database())
        finally:
            cluster.remove()
        _rows(result, postgres, "PostgreSQL", " (PostgreSQL)")
        result.details["postgresql"] = postgres
    return result
