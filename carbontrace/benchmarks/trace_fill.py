"""The trace bench's fill: many readings into a running cloud, through its real ingestion where it can.

The gateway's own batch builder (edge_gateway.batcher.make_batch, with the tenant's gateway key) makes large
batches of readings signed by OpenSSL (common.DeviceKey) and posts them to /api/v1/batches as a gateway does;
the cloud checks every signature and aggregate, seals, stores, indexes and appends each batch to the log, and its
anchoring job anchors them. Only the broker and the gateway's spool are skipped (the ingest and e2e sections
measure those): through them 10^6 readings would take far longer than the bench's budget on a small machine.
Signing runs in a thread beside the uploads, so the client keeps the cloud busy.

The real ingestion verifies ~200-500 readings/s on this 2-core machine today (pure-Python canonical CBOR decode
dominates its profile; the hot-path work of issue 14 is about that), so 10^6 readings through it would take an
hour. Beyond ``REAL_READINGS`` the rest are bulk rows: what ingestion writes to SQL for a reading (its index
row, by filler devices, pointing at a real batch) and one log leaf per ``READINGS_PER_LEAF`` of them (a gateway
batch each), written straight into the database. They are never traced; they size the tables and the log the
traced readings are found in. ``fill_readings`` and ``fill_log`` are also what scripts/trace_figures.py uses.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from carbontrace.servers import Tenant
from carbontrace_protocol import merkle
from carbontrace_protocol.batch import Baseline, Batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.measures import FIELD_BITS
from cloud import models
from cloud.ledger_log import SqlLog, peak_positions
from edge_gateway.batcher import make_batch
from edge_gateway.keys import load_private_key
from edge_gateway.spool import OpenReading

ZERO_HASH = bytes(32)
READINGS_PER_BATCH = 2_000  # ~300 KB a batch: far below the cloud's 8 MiB upload cap


def stamps_for(per_device: int) -> list[int]:
    """One distinct second per reading of a device, ending an hour ago (the cloud checks no wall clock)."""
    base = int(time.time()) - 3600 - per_device
    return [base + seq for seq in range(per_device)]


def _batches(tenant: Tenant, stamps: list[int], per_batch: int, out: queue.Queue[Batch | None]) -> None:
    gateway_key = load_private_key(tenant.gateway_key_file)
    factor = get_factor()
    chunk = max(1, per_batch // len(tenant.devices))
    baselines: dict[str, Baseline] = {}
    prev, batch_seq = ZERO_HASH, 0
    for first in range(0, len(stamps), chunk):
        seqs = range(first, min(first + chunk, len(stamps)))
        open_readings = [OpenReading(d.device_id, seq, d.signed(seq, stamps[seq])) for d in tenant.devices
                         for seq in seqs]
        window = (stamps[seqs[0]], stamps[seqs[-1]] + 1)
        batch, baselines = make_batch(gateway_key, tenant.gateway_id, tenant.site_id, window, 1, factor,
                                      open_readings, baselines, batch_seq, prev, window[1])
        out.put(batch)
        prev, batch_seq = batch.hash, batch_seq + 1
    out.put(None)


def post_readings(cloud_url: str, tenant: Tenant, stamps: list[int], per_batch: int = READINGS_PER_BATCH) -> int:
    """Every device's readings at ``stamps`` posted in batches of about ``per_batch``; returns the count."""
    batches: queue.Queue[Batch | None] = queue.Queue(maxsize=4)
    maker = threading.Thread(target=_batches, args=(tenant, stamps, per_batch, batches), daemon=True)
    maker.start()
    headers = {"Content-Type": "application/cbor", "Authorization": f"Bearer {tenant.gateway_api_key}"}
    posted = 0
    with httpx.Client(base_url=cloud_url, headers=headers, timeout=300) as http:
        while (batch := batches.get()) is not None:
            answer = http.post("/api/v1/batches", content=batch.encode())
            if answer.status_code != 201:
                raise RuntimeError(f"batch {batch.header['batch_seq']}: {answer.status_code} {answer.text[:300]}")
            posted += batch.header["readings"]
    maker.join()
    return posted


REAL_READINGS = 10_000  # readings through the real ingestion; the rest of a larger size are bulk rows
READINGS_PER_LEAF = 100  # one log leaf (gateway batch) per this many bulk readings
CHUNK_ROWS = 50_000
# Filler rows say they carry CO2 (the SQL index holds which measurements, never values), so type filters see them.
CO2_ONLY = FIELD_BITS["co2_ppm"]


def fill_readings(session: Session, count: int, batch_id: str) -> float:
    """``count`` reading index rows of 1,000 filler devices in batch ``batch_id``; returns seconds taken."""
    started = time.perf_counter()
    chunk: list[dict[str, Any]] = []
    for i in range(count):
        chunk.append({"device_id": f"filler-{i % 1000:04d}", "seq": i // 1000 + 1, "timestamp": 1_600_000_000 + i,
                      "flags": 0, "measures": CO2_ONLY, "batch_id": batch_id, "leaf_index": 0})
        if len(chunk) >= CHUNK_ROWS:
            session.execute(insert(models.Reading), chunk)
            chunk.clear()
    if chunk:
        session.execute(insert(models.Reading), chunk)
    return time.perf_counter() - started


FILLER_GATEWAY = "filler-gw"  # the synthetic leaves' gateway: revoked, so nothing is ever ingested under it


def _filler_batch_rows(session: Session) -> dict[str, Any]:
    """A template for the batch rows behind synthetic leaves, from the first real batch (its site and blob: a
    checkpoint blob then lists that blob's cid for them, models.Batch.cid being a foreign key); writes the
    filler gateway the first time."""
    first = session.scalars(select(models.Batch).order_by(models.Batch.log_index).limit(1)).one()
    template = {"gateway_id": FILLER_GATEWAY, "site_id": first.site_id, "batch_hash": first.batch_hash,
                "prev_hash": first.prev_hash, "root": first.root, "blob_sha256": first.blob_sha256,
                "signed_header": b"", "cid": first.cid, "window_start": first.window_start,
                "window_end": first.window_end, "leaves": 0, "readings": 0, "received_at": first.received_at}
    if session.get(models.Gateway, FILLER_GATEWAY) is None:
        gateway = session.get(models.Gateway, first.gateway_id)
        assert gateway is not None
        session.add(models.Gateway(id=FILLER_GATEWAY, site_id=first.site_id, public_key=gateway.public_key,
                                   status="revoked", created_at=gateway.created_at))
        session.flush()
    return template


def fill_log(session: Session, target: int) -> float:
    """Synthetic leaves appended until the log has ``target`` leaves (its stored subtrees written as
    ``SqlLog.append`` writes them), each with the batch row a log leaf always has (the anchorer lists every
    leaf's batch blob in its checkpoint blob); returns seconds taken. Needs one real batch in the log."""
    started = time.perf_counter()
    log = SqlLog(session)
    size = log.size()
    template = _filler_batch_rows(session)
    compact = merkle.CompactRange(size, [log.node(level, index) for level, index in peak_positions(size)])
    rows: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    for i in range(size, target):
        rows.extend({"level": level, "index": index, "hash": digest}
                    for level, index, digest in compact.append(merkle.leaf_hash(b"filler batch header %d" % i)))
        batches.append({**template, "id": f"{FILLER_GATEWAY}/{i}", "batch_seq": i, "log_index": i})
        if len(rows) >= CHUNK_ROWS:
            session.execute(insert(models.LogNode), rows)
            session.execute(insert(models.Batch), batches)
            rows.clear()
            batches.clear()
    if rows:
        session.execute(insert(models.LogNode), rows)
    if batches:
        session.execute(insert(models.Batch), batches)
    if target > size:
        session.execute(update(models.LogState).values(size=target))
    return time.perf_counter() - started
