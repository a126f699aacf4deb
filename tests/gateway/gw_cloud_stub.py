"""A real HTTP cloud stub for gateway tests: the three endpoints of the gateway ↔ cloud contract.

Every uploaded batch is verified with carbontrace_protocol.batch_verify (the same check the real cloud
makes), chained by batch_seq/prev, and recorded. It runs in a thread on a loopback port and can be
stopped and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from carbontrace_protocol.batch import ZERO_HASH, MalformedBatch, decode_batch
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.emission_factors import EmissionFactor, get_factor
from tests.conftest import free_port

MAX_BODY = 8 << 20


@dataclass
class StubState:
    gateway_id: str
    site_id: str
    api_key: str
    gateway_public_key: bytes
    devices: dict[str, tuple[bytes, str]]  # device id -> (SEC1 key, status)
    emission_factor: str | None = None
    first_batch_seq: int = 0
    last_seq: int | None = None
    last_hash: bytes | None = None
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    accepted_order: list[int] = field(default_factory=list)
    readings: dict[tuple[str, int], bytes] = field(default_factory=dict)
    timestamps: dict[tuple[str, int], int] = field(default_factory=dict)  # as verify_batch derived them
    duplicate_readings: int = 0
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, tuple[int, int, int | None]] = field(default_factory=dict)  # seq, Wh, measured at
    rejected: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0
    upload_requests: int = 0


class CloudStub:
    def __init__(self, state: StubState, port: int | None = None) -> None:
        self.state = state
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {stub.state.api_key}":
                    self._reply(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                with stub.lock:
                    status, body = stub.handle_get(self.path)
                self._reply(status, body)

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                if length > MAX_BODY:
                    self._reply(413, {"error": "too_large"})
                    return
                blob = self.rfile.read(length)
                if self.path != "/api/v1/batches" or self.headers.get("Content-Type") != "application/cbor":
                    self._reply(404, {"error": "not_found"})
                    return
                with stub.lock:
                    status, body = stub.handle_upload(blob)
                self._reply(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- endpoints ----------------------------------------------------------------------------------

    def handle_get(self, path: str) -> tuple[int, dict[str, Any]]:
        s = self.state
        if path == f"/api/v1/gateways/{s.gateway_id}/devices":
            return 200, {
                "gateway_id": s.gateway_id,
                "site_id": s.site_id,
                "emission_factor": s.emission_factor or get_factor().id,
                "devices": [{"device_id": d, "public_key": k.hex(), "status": st} for d, (k, st) in s.devices.items()],
            }
        if path == f"/api/v1/gateways/{s.gateway_id}/state":
            return 200, {"last_batch_seq": s.last_seq, "last_batch_hash": s.last_hash.hex() if s.last_hash else None}
        if path.startswith("/api/v1/gateways/"):
            return 403, {"error": "forbidden"}
        return 404, {"error": "not_found"}

    def handle_upload(self, blob: bytes) -> tuple[int, dict[str, Any]]:
        s = self.state
        s.upload_requests += 1
        try:
            batch = decode_batch(blob)
        except MalformedBatch as err:
            s.rejected.append({"error": err.reason})
            return 422, {"error": err.reason, "detail": str(err), "leaf_index": None}
        if batch.header["gateway"] != s.gateway_id:
            return 403, {"error": "forbidden"}
        if batch.id in s.receipts:
            if s.blobs[batch.id] == blob:
                return 200, s.receipts[batch.id]
            s.conflicts += 1
            return 409, {"error": "out_of_order", "expected_batch_seq": self._expected(), "detail": "id reused"}
        expected_prev = s.last_hash if s.last_hash is not None else ZERO_HASH
        if batch.header["batch_seq"] != self._expected() or bytes(batch.header["prev"]) != expected_prev:
            s.conflicts += 1
            return 409, {"error": "out_of_order", "expected_batch_seq": self._expected(), "detail": "does not follow"}

        def device_key(device_id: str) -> bytes | None:
            entry = s.devices.get(device_id)
            return entry[0] if entry is not None and entry[1] == "active" else None

        def factor(factor_id: str) -> EmissionFactor | None:
            try:
                return get_factor(factor_id)
            except KeyError:
                return None

        try:
            verified = verify_batch(blob, s.gateway_public_key, device_key, factor, s.baselines.get)
        except BatchRejected as err:
            s.rejected.append({"error": err.reason, "leaf_index": err.leaf_index})
            return 422, {"error": err.reason, "detail": str(err), "leaf_index": err.leaf_index}
        for item in verified.readings:
            key = (item.reading.device_id, item.reading.seq)
            if key in s.readings:
                s.duplicate_readings += 1
            s.readings[key] = item.signed
            s.timestamps[key] = item.timestamp
            if item.reading.energy_wh is not None:
                base = s.baselines.get(key[0])
                if base is None or item.reading.seq > base[0]:
                    # with its measurement time as verify_batch derived it, as cloud/ingest.py keeps it
                    s.baselines[key[0]] = (item.reading.seq, item.reading.energy_wh, item.timestamp)
        s.aggregates.extend(body for _, body in verified.aggregates)
        receipt = {
            "batch_id": batch.id,
            "batch_hash": batch.hash.hex(),
            "cid": cid_for(blob),
            "log_index": len(s.accepted_order),
            "leaves": len(batch.leaves),
            "readings": len(verified.readings),
            "status": "accepted",
        }
        s.receipts[batch.id] = receipt
        s.blobs[batch.id] = blob
        s.accepted_order.append(batch.header["batch_seq"])
        s.last_seq = batch.header["batch_seq"]
        s.last_hash = batch.hash
        return 201, receipt

    def _expected(self) -> int:
        return self.state.last_seq + 1 if self.state.last_seq is not None else self.state.first_batch_seq

    # -- test helpers -------------------------------------------------------------------------------

    def reading_keys(self) -> set[tuple[str, int]]:
        with self.lock:
            return set(self.state.readings)
