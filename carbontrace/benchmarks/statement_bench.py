"""Statement: a paged period statement of N devices × D days at 15-minute windows, produced and verified.

The data gets there through the real ingestion code: a cloud process (embedded EVM), one gateway whose
batches are built by the protocol core (carbontrace_protocol.batch, as a gateway does: one reading and one
aggregate per device per 900 s window, each batch chained to the one before), signed by OpenSSL through
``cryptography`` (same bytes as the pure-Python signer but the nonce), uploaded to /api/v1/batches and
anchored. Then the cloud builds the summary and its daily pages (GET /statement-summary, one page in memory
at a time), the bench downloads every page, and the protocol core's verify_summary checks them all against
the cloud's /rpc (every page as a statement: leaf inclusion, gateway signatures, anchors, chain continuity).

Rows: aggregates, summary and page bytes, build time, verify time and verify µs per aggregate.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace.servers import CloudProcess, wait_until
from carbontrace_protocol import cbor, cose, strict_json
from carbontrace_protocol.batch import ZERO_HASH, Baseline, aggregate_window, build_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.statement_summary import verify_summary
from edge_gateway.keys import load_private_key

WINDOW_S = 900  # one reading per window is every reading the window expects (interval_s = window)
DAY_S = 86_400
T0 = 1_700_006_400  # midnight UTC, 2023-11-15: old enough that nothing in the run is in the future


def _openssl_sign1(private_key: int, kid: bytes, payload: bytes) -> bytes:
    """cose.sign1 with the ECDSA done by OpenSSL (the gateway's header signature; same COSE bytes)."""
    key = ec.derive_private_key(private_key, ec.SECP256R1())
    protected = cose.protected_header(kid)
    r, s = decode_dss_signature(key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return bytes(cbor.encode(cbor.Tag(cbor.TAG_COSE_SIGN1, [protected, {}, payload, signature])))


class _Pages(Mapping[str, Any]):
    """The downloaded pages on disk, each parsed only when the verifier reads it (one page in memory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __getitem__(self, cid: str) -> Any:
        path = self.directory / f"{cid}.json"
        if not path.is_file():
            raise KeyError(cid)
        return strict_json.loads(path.read_bytes())

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and (self.directory / f"{cid}.json").is_file()

    def __iter__(self) -> Iterator[str]:
        return (p.stem for p in self.directory.glob("*.json"))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.json"))


def _anchored(database_url: str, batches: int) -> bool:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            return int(size) >= batches
    finally:
        engine.dispose()


def run(devices: int, days: int) -> SectionResult:
    windows = days * DAY_S // WINDOW_S
    with tempfile.TemporaryDirectory(prefix="ct-bench-statement-") as tmp_name:
        tmp = Path(tmp_name)
        cloud = CloudProcess(tmp / "cloud", checkpoint_every_s=2.0, jobs_interval_s=0.5,
                             checkpoint_every_batches=10_000)
        try:
            cloud.start()
            tenant = cloud.register_tenant(devices, tmp, prefix="stmt")
            enterprise_auth = {"Authorization": f"Bearer {tenant.enterprise_key}"}
            with httpx.Client(base_url=cloud.url, timeout=3600) as http:
                sites = http.get(f"/api/v1/enterprises/{tenant.enterprise_id}/sites", headers=enterprise_auth)
                factor = get_factor(next(s for s in sites.json() if s["site_id"] == tenant.site_id)["emission_factor"])
                gateway_key = load_private_key(tenant.gateway_key_file)
                upload_auth = {"Authorization": f"Bearer {tenant.gateway_api_key}",
                               "Content-Type": "application/cbor"}
                baselines: dict[str, Baseline] = {}
                prev = ZERO_HASH
                fill_start = time.perf_counter()
                for w in range(windows + 1):  # one window past the end closes the chain
                    start = T0 + w * WINDOW_S
                    signed, aggregates = [], []
                    for device in tenant.devices:
                        reading = device.reading(w + 1, start)
                        signed.append(device.sign(reading))
                        aggregates.append(aggregate_window(device.device_id, start, start + WINDOW_S, WINDOW_S,
                                                           [reading], factor, baselines.get(device.device_id)))
                        if reading.energy_wh is not None:  # with its time, as the cloud keeps it
                            baselines[device.device_id] = (reading.seq, reading.energy_wh, reading.timestamp)
                    batch = build_batch(gateway_key, tenant.gateway_id, tenant.site_id, w, (start, start + WINDOW_S),
                                        signed, aggregates, prev, start + WINDOW_S + 1, sign1=_openssl_sign1)
                    answer = http.post("/api/v1/batches", content=batch.encode(), headers=upload_auth)
                    if answer.status_code != 201:
                        raise RuntimeError(f"batch {w}: {answer.status_code} {answer.text[:300]}")
                    prev = batch.hash
                wait_until(lambda: _anchored(cloud.database_url, windows + 1), 900, "every batch anchored",
                           interval=0.5)
                fill_s = time.perf_counter() - fill_start

                build_start = time.perf_counter()
                answer = http.get(f"/api/v1/enterprises/{tenant.enterprise_id}/statement-summary",
                                  params={"start": T0, "end": T0 + days * DAY_S, "page_s": DAY_S},
                                  headers=enterprise_auth)
                if answer.status_code != 200:
                    raise RuntimeError(f"statement-summary: {answer.status_code} {answer.text[:300]}")
                build_s = time.perf_counter() - build_start
                summary_bytes = len(answer.content)
                summary = strict_json.loads(answer.content)
                pages_dir = tmp / "pages"
                pages_dir.mkdir()
                page_bytes = 0
                for entry in summary["summary"]["pages"]:
                    page = http.get(f"/api/v1/statements/pages/{entry['cid']}", headers=enterprise_auth)
                    if page.status_code != 200:
                        raise RuntimeError(f"page {entry['cid']}: {page.status_code} {page.text[:300]}")
                    (pages_dir / f"{entry['cid']}.json").write_bytes(page.content)
                    page_bytes += len(page.content)
                trust = Trust.from_json(http.get("/api/v1/trust").json())

            from carbontrace.verify_bundle import Web3ChainReader

            verify_start = time.perf_counter()
            report = verify_summary(summary, _Pages(pages_dir), Web3ChainReader.over_http(
                f"{cloud.url}/rpc", trust.registry, timeout_s=60), trust)
            verify_s = time.perf_counter() - verify_start
        finally:
            cloud.stop()
    aggregates_total = int(summary["summary"]["figures"]["aggregates"])
    if report.status != "valid":
        raise RuntimeError(f"the summary did not verify: {json.dumps(report.as_json())[:600]}")
    size = f"{devices} devices x {days} day(s) at 15-min windows, {len(summary['summary']['pages'])} daily pages"
    result = SectionResult()
    result.rows += [
        Row("statement", "aggregates in the period", aggregates_total, "", note=size),
        Row("statement", "summary size", summary_bytes / 1024, "KiB"),
        Row("statement", "total page size", page_bytes / 2**20, "MiB", note="every page's canonical JSON"),
        Row("statement", "build time (summary + pages)", build_s, "s", note="cloud, SQLite, one page at a time"),
        Row("statement", "verify time (summary + every page)", verify_s, "s", note="chain read over the cloud's /rpc"),
        Row("statement", "verify per aggregate", 1e6 * verify_s / max(1, aggregates_total), "µs"),
    ]
    result.details = {"devices": devices, "days": days, "aggregates": aggregates_total, "summary_bytes": summary_bytes,
                      "page_bytes": page_bytes, "build_seconds": build_s, "verify_seconds": verify_s,
                      "fill_seconds": fill_s, "status": report.status}
    return result
