"""The real pipeline a drill runs against, and the books it keeps.

Processes: Mosquitto (persistent), the cloud (uvicorn; SQLite or PostgreSQL; embedded EVM or a Hardhat node
behind a TCP proxy; local content store, plus a js-ipfs daemon when asked), the gateway (its own process).
Load: paced paho publishers of signed readings. Each drill sends fresh sequence numbers, so its readings can
be counted on their own: sent (acknowledged by the broker, republished as a device's outbox would if not),
accepted (stored by the cloud), anchored (inside an anchored checkpoint), lost, duplicated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.common import DeviceKey, reading_topic
from carbontrace.benchmarks.mqtt_load import PacedPublisher, publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, Mosquitto, Tenant
from carbontrace_protocol import cose, merkle, p256, sealed_blob
from carbontrace_protocol.batch import LEAF_READING, decode_batch, parse_header, parse_leaf
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.verify import verify_es256, verify_reading
from edge_gateway.keys import load_private_key, public_key_of

Key = tuple[str, int]


@dataclass
class Books:
    """What one drill's readings became."""

    sent: int = 0
    accepted: int = 0
    anchored: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: float | None = None
    recover_floor_s: float = 0.0  # a drill whose recovery is not visible in anchoring (IPFS pins) sets this
    verified: bool = False
    verify_detail: str = ""
    notes: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(self, workdir: Path, broker: Mosquitto, cloud: CloudProcess, gateway: GatewayProcess,
                 tenant: Tenant, rate: float) -> None:
        self.workdir = workdir
        self.broker = broker
        # One load generator speaks for the site's devices (broker role "publisher"): write-only on readings.
        self.publisher = broker.add_publisher(tenant.site_id, "drill-publisher")
        self.cloud = cloud
        self.gateway = gateway
        self.tenant = tenant
        self.rate = rate
        self.next_seq = {d.device_id: 0 for d in tenant.devices}
        self.engine = create_engine(cloud.database_url)
        self._publishers = 0
        self.gateway_public = public_key_of(load_private_key(tenant.gateway_key_file))

    # -- load -----------------------------------------------------------------------------------------

    def start_load(self, seconds: float) -> tuple[PacedPublisher, list[Key]]:
        items: list[tuple[str, bytes, Key]] = []
        devices: list[DeviceKey] = self.tenant.devices
        for n in range(int(seconds * self.rate)):
            device = devices[n % len(devices)]
            seq = self.next_seq[device.device_id]
            self.next_seq[device.device_id] = seq + 1
            items.append((reading_topic(self.tenant.site_id, device.device_id), device.signed(seq),
                          (device.device_id, seq)))
        self._publishers += 1
        publisher = PacedPublisher(self.publisher, self.rate)
        publisher.connect()
        publisher.run(items)
        self._items = {key: (topic, payload) for topic, payload, key in items}
        return publisher, [key for _, _, key in items]

    def finish_load(self, publisher: PacedPublisher, keys: list[Key], books: Books) -> None:
        """Wait for the load to end; what the broker never acknowledged is sent again, as a device's outbox does."""
        publisher.join(timeout=len(keys) / self.rate + 30)
        deadline = time.monotonic() + 5  # in flight at the end of the load: acked within milliseconds
        while time.monotonic() < deadline and not all(_acked(i) for i in publisher.infos):
            time.sleep(0.1)
        unacked = [k for k, info in zip(keys, publisher.infos, strict=False) if not _acked(info)]
        unacked += keys[len(publisher.infos):]
        publisher.stop()
        if unacked:
            books.notes.append(f"{len(unacked)} publishes unacknowledged by the broker were sent again")
            self._publishers += 1
            publish_all(self.publisher, [self._items[k] for k in unacked])
        books.sent = len(keys)

    # -- accounting -----------------------------------------------------------------------------------

    def cloud_counts(self, keys: list[Key]) -> tuple[int, int, int]:
        """(accepted, anchored, duplicated) for these readings, from the cloud's database."""
        wanted = set(keys)
        seen: dict[Key, int] = {}
        anchored = 0
        devices = sorted({d for d, _ in wanted})
        lo = min(s for _, s in wanted)
        with self.engine.connect() as db:
            size = db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0
            rows = db.execute(text(
                "SELECT r.device_id, r.seq, b.log_index FROM readings r JOIN batches b ON r.batch_id = b.id "
                "WHERE r.seq >= :lo"), {"lo": lo})
            for device_id, seq, log_index in rows:
                key = (str(device_id), int(seq))
                if key not in wanted or device_id not in devices:
                    continue
                seen[key] = seen.get(key, 0) + 1
                if int(log_index) < size and seen[key] == 1:
                    anchored += 1
        duplicated = sum(n - 1 for n in seen.values())
        return len(seen), anchored, duplicated

    def settle(self, keys: list[Key], books: Books, healed_at: float, timeout: float = 90.0) -> None:
        """Wait until every reading is anchored (or the timeout); fills the books."""
        deadline = time.monotonic() + timeout
        while True:
            accepted, anchored, duplicated = self.cloud_counts(keys)
            if anchored >= len(keys) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        books.accepted, books.anchored, books.duplicated = accepted, anchored, duplicated
        books.lost = len(keys) - accepted
        if anchored >= len(keys):
            books.recover_s = round(max(0.0, time.monotonic() - healed_at, books.recover_floor_s), 2)

    # -- verification ---------------------------------------------------------------------------------

    def verify_everything(self) -> tuple[bool, str]:
        """Every stored batch, from its bytes: CID, gateway signature, Merkle root, each device signature, and
        its log leaf proven (public API) against the newest anchored checkpoint."""
        devices = {d.device_id: d.public for d in self.tenant.devices}
        latest = httpx.get(f"{self.cloud.url}/api/v1/log/checkpoints/latest", timeout=10)
        if latest.status_code != 200:
            return False, f"no anchored checkpoint ({latest.status_code})"
        checkpoint = latest.json()
        with self.engine.connect() as db:
            batches = list(db.execute(text("SELECT id, cid, log_index FROM batches ORDER BY log_index")))
        content = self.workdir / "cloud" / "content"
        readings = 0
        for batch_id, cid, log_index in batches:
            path = content / cid[-2:] / cid
            blob = path.read_bytes()
            if cid_for(blob) != cid:
                return False, f"batch {batch_id}: stored blob does not match its CID {cid}"
            try:
                batch = decode_batch(sealed_blob.open_sealed(blob, self.cloud_encryption_key(), batch_id))
            except ProtocolError as err:
                return False, f"batch {batch_id}: {err}"
            message_ok = self._header_signature_ok(batch.signed_header)
            if not message_ok:
                return False, f"batch {batch_id}: gateway signature"
            if merkle.root(batch.leaf_hashes()) != batch.root:
                return False, f"batch {batch_id}: Merkle root"
            for leaf in batch.leaves:
                kind, body = parse_leaf(leaf)
                if kind == LEAF_READING:
                    verify_reading(body, devices[cose.parse_sign1(body).kid.decode()])  # raises if it fails
                    readings += 1
            if log_index < checkpoint["tree_size"]:
                proof = httpx.get(f"{self.cloud.url}/api/v1/log/inclusion",
                                  params={"batch_id": batch_id, "tree_size": checkpoint["tree_size"]},
                                  timeout=10).json()
                merkle.verify_inclusion(merkle.leaf_hash(batch.signed_header), log_index, checkpoint["tree_size"],
                                        [bytes.fromhex(h) for h in proof["proof"]], bytes.fromhex(checkpoint["root"]))
        return True, f"{len(batches)} batches, {readings} readings verified; checkpoint {checkpoint['seq']} anchored"

    def trust(self) -> dict[str, Any]:
        """The trust anchor the cloud publishes now (GET /api/v1/trust)."""
        answer = httpx.get(f"{self.cloud.url}/api/v1/trust", timeout=30)
        answer.raise_for_status()
        trust: dict[str, Any] = answer.json()
        return trust

    def anchoring_checkpoints(self) -> list[int]:
        """For each stored batch, the seq of the first anchored checkpoint whose tree holds its log leaf (batches
        not yet anchored left out)."""
        with self.engine.connect() as db:
            checkpoints = list(db.execute(text("SELECT seq, tree_size FROM checkpoints WHERE anchored ORDER BY seq")))
            leaves = [int(r[0]) for r in db.execute(text("SELECT log_index FROM batches"))]
        return [next(int(seq) for seq, size in checkpoints if leaf < size) for leaf in leaves
                if any(leaf < size for _, size in checkpoints)]

    def bundle(self, start: int | None = None) -> dict[str, Any]:
        """A proof bundle of the tenant's CO2 readings (the first 1,000, measured from ``start`` when given), as
        its enterprise asks for it."""
        params: dict[str, Any] = {"types": "co2", "limit": 1000, **({"start": start} if start is not None else {})}
        answer = httpx.get(f"{self.cloud.url}/api/v1/trace/bundle", params=params,
                           headers={"Authorization": f"Bearer {self.tenant.enterprise_key}"}, timeout=120)
        answer.raise_for_status()
        bundle: dict[str, Any] = answer.json()
        return bundle

    def verify_with_cli(self, bundle: dict[str, Any], rpc: str, trust: dict[str, Any], name: str) -> tuple[int, str]:
        """`carbontrace verify` on ``bundle`` against ``rpc`` with ``trust`` pinned: (exit code, detail)."""
        path, trust_path = self.workdir / f"{name}.bundle.json", self.workdir / f"{name}.trust.json"
        path.write_text(json.dumps(bundle))
        trust_path.write_text(json.dumps(trust))
        done = subprocess.run([sys.executable, "-m", "carbontrace.verify_bundle", str(path), "--rpc", rpc,
                               "--trust", str(trust_path), "--json"], capture_output=True, text=True, timeout=120,
                              check=False)
        try:
            detail = str(json.loads(done.stdout).get("detail", ""))
        except ValueError:
            detail = (done.stdout + done.stderr)[-500:]
        return done.returncode, detail

    def _header_signature_ok(self, signed_header: bytes) -> bool:
        message, _ = parse_header(signed_header)
        return bool(verify_es256(self.gateway_public, message.signed_bytes(), message.signature))

    def cloud_encryption_key(self) -> ec.EllipticCurvePrivateKey:
        """The key the drill opens sealed blobs with: the cloud's (made by the cloud at its first start)."""
        seed = (self.workdir / "cloud" / "cloud-encryption-key.hex").read_text().strip()
        return sealed_blob.private_key_from_int(int(p256.private_key_from_bytes(bytes.fromhex(seed))))

    def blob_path_of_latest_batch(self) -> tuple[str, Path]:
        with self.engine.connect() as db:
            batch_id, cid = db.execute(text("SELECT id, cid FROM batches ORDER BY log_index DESC LIMIT 1")).one()
        return str(batch_id), self.workdir / "cloud" / "content" / cid[-2:] / cid

    def close(self) -> None:
        self.engine.dispose()


def _acked(info: Any) -> bool:
    """PUBACK received; a publish attempted while the broker was down reports an error instead."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


def summary(books: Books) -> dict[str, Any]:
    return {"sent": books.sent, "accepted": books.accepted, "anchored": books.anchored, "lost": books.lost,
            "duplicated": books.duplicated, "recover_s": books.recover_s, "verified": books.verified,
            "verify_detail": books.verify_detail, "notes": books.notes}
