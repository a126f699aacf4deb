"""End to end: readings/s from signed publish to anchored in the cloud at one offered load, with the lag.

Pipeline (carbontrace/benchmarks/pipeline.py), every part a real process: paho publisher (paced) -> Mosquitto
-> gateway (verify, spool, 1 s windows, batch, upload) -> cloud (re-verify, store, log, checkpoint every
second, anchor on its embedded chain). At the end a sample of batches is proven through the public API:
inclusion proof -> the anchored checkpoint's root.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace.benchmarks.pipeline import Pipeline
from carbontrace_protocol import merkle


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
    with tempfile.TemporaryDirectory(prefix="ct-bench-e2e-") as tmp_name, \
            Pipeline(Path(tmp_name), devices, postgres) as pipeline:
        load = pipeline.offer(offered_rate, seconds)
        proven = prove_sample(pipeline.cloud_url, pipeline.database_url)
        database = pipeline.database
    result = SectionResult()
    note = f"{database}, embedded EVM; {load.anchored}/{load.sent} anchored"
    result.rows.append(Row("e2e", "signed publish -> anchored", load.throughput, "readings/s", offered_rate,
                           "offered load", note=note))
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        result.rows.append(Row("e2e", f"lag {name}", load.lag(fraction) if load.lags else None, "s"))
    result.details = {"database": database, "offered_rate": offered_rate, "seconds": seconds, "sent": load.sent,
                      "anchored": load.anchored, "throughput": load.throughput, "proven": proven,
                      "lag_s": {"p50": load.lag(0.5), "p95": load.lag(0.95),
                                "max": max(load.lags) if load.lags else None}}
    return result
