"""Measure the trace/verify figures (printed, never asserted):

1. proof-bundle size and offline verify time for one reading in a log of --leaves leaves (default 10^6);
   the log is built directly with merkle.CompactRange into the log_nodes table, around two real batches
   (one at the start, under checkpoint 0; one at the end, under checkpoint 1);
2. locate+retrieve+verify latency (p50/p95) of GET /api/v1/trace/verify on SQLite with --readings filler
   reading rows (default 10^6) inserted directly next to the real ones.

Run: .venv/bin/python scripts/trace_figures.py [--leaves N] [--readings N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from carbontrace.benchmarks.trace_fill import fill_log as bulk_fill_log  # noqa: E402
from carbontrace.benchmarks.trace_fill import fill_readings as bulk_fill_readings  # noqa: E402
from carbontrace.verify_bundle import Web3ChainReader  # noqa: E402
from carbontrace_protocol.proof_verify import verify_bundle_json as verify_bundle  # noqa: E402
from cloud.app import create_app  # noqa: E402
from cloud.ledger import Ledger  # noqa: E402
from cloud.trace import trust_of  # noqa: E402
from tests.cloud.cloud_testkit import auth, make_settings, register_tenant, upload  # noqa: E402


class TimedReader:
    """Wraps a chain reader and adds up the time spent in chain calls."""

    def __init__(self, inner: Web3ChainReader) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def fill_log(ledger: Ledger, target: int) -> float:
    """Append synthetic leaves until the log has ``target`` leaves; returns seconds taken."""
    with ledger.session_factory.begin() as session:
        return bulk_fill_log(session, target)


def fill_readings(ledger: Ledger, count: int, batch_id: str) -> float:
    with ledger.session_factory.begin() as session:
        return bulk_fill_readings(session, count, batch_id)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ct-trace-figures-") as tmp:
        app = create_app(make_settings(Path(tmp)))
        with TestClient(app) as client:
            ledger: Ledger = app.state.ledger
            tenant = register_tenant(client, "Figures Co", devices=2)
            gw = tenant.gateway
            batches = []
            for _ in range(2):
                batch, readings = gw.build(per_device=3)
                assert upload(client, gw, batch).status_code == 201
                gw.accepted(batch, readings)
                batches.append((batch, readings))
            assert ledger.anchorer.tick(force_checkpoint=True).anchored == 1  # checkpoint 0: size 2
            seconds = 0.0
            log_indexes = []
            for fill_to in (args.leaves // 2 + 1, args.leaves - 1):  # a real batch in the middle and at the end
                seconds += fill_log(ledger, fill_to)
                batch, readings = gw.build(per_device=3)
                receipt = upload(client, gw, batch)
                assert receipt.status_code == 201, receipt.text
                gw.accepted(batch, readings)
                batches.append((batch, readings))
                log_indexes.append(f"{receipt.json()['log_index']:,}")
            figures["log size (leaves)"] = f"{args.leaves:,}; synthetic leaves appended in {seconds:.1f} s"
            figures["log indexes of the real batches"] = ", ".join(["0", "1", *log_indexes])
            assert ledger.anchorer.tick(force_checkpoint=True).anchored == 1  # checkpoint 1: the whole log

            reader = Web3ChainReader(ledger.chain.connect().w3, ledger.chain.registry().address)
            labels = ("first batch, checkpoint 0", "middle batch, checkpoint 1", "last batch, checkpoint 1")
            for label, (_, batch_readings) in zip(labels, (batches[0], batches[2], batches[3]), strict=True):
                reading = batch_readings[0]
                r = client.get(
                    "/api/v1/trace/bundle",
                    params={
                        "device_id": reading.device_id,
                        "start": reading.timestamp,
                        "end": reading.timestamp + 1,
                        "types": "co2",
                    },
                    headers=auth(tenant.enterprise_key),
                )
                bundle = r.json()
                assert len(bundle["items"]) == 1, bundle
                compact = json.dumps(bundle, separators=(",", ":"))
                timings, pure = [], []
                for _ in range(args.repeat):
                    timed = TimedReader(reader)
                    report = verify_bundle(bundle, timed, trust_of(ledger))  # type: ignore[arg-type]
                    assert report.status == "valid", report.as_json()
                    timings.append(report.verify_ms)
                    pure.append(report.verify_ms - timed.seconds * 1000)
                cp = bundle["checkpoints"][0]
                figures[f"bundle, one reading, {label}: size"] = (
                    f"{len(compact):,} B compact JSON ({len(r.content):,} B as served); log proof "
                    f"{len(bundle['batches'][0]['log_proof'])} hashes, consistency "
                    f"{len(cp['consistency_from_previous'])}+{len(cp['consistency_to_newest'])} hashes"
                )
                figures[f"bundle, one reading, {label}: offline verify"] = (
                    f"median {statistics.median(timings):.2f} ms total, {statistics.median(pure):.2f} ms without "
                    f"the {timed.calls} chain reads (embedded EVM)"
                )

            device = gw.devices[0].device_id
            seconds = fill_readings(ledger, args.readings, batches[0][0].id)
            figures["reading rows inserted directly"] = f"{args.readings:,} in {seconds:.1f} s"
            one = batches[3][1][0]
            queries = {
                "one reading (device + time)": {
                    "device_id": device,
                    "start": one.timestamp,
                    "end": one.timestamp + 1,
                    "types": "co2",
                },
                "one device, all its readings (12)": {"device_id": device, "types": "co2"},
                "enterprise emissions (aggregates)": {"enterprise_id": tenant.enterprise_id, "types": "emissions"},
            }
            for name, params in queries.items():
                for path in ("/api/v1/trace/locate", "/api/v1/trace/verify"):
                    latencies = []
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        r = client.get(path, params=params, headers=auth(tenant.enterprise_key))
                        latencies.append((time.perf_counter() - start) * 1000)
                        assert r.status_code == 200, r.text
                    body = r.json()
                    status = body.get("status", "located")
                    figures[f"{path.rsplit('/', 1)[1]} {name}"] = (
                        f"p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms "
                        f"({body['count']} items, {status}; {args.readings:,} filler rows)"
                    )
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
