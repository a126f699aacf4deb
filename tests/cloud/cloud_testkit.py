"""Builders for the cloud tests: an app on temp storage, parties registered through the API, real batches."""

from __future__ import annotations

import secrets
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from eth_account import Account
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carbontrace_host.secret_files import write_secret
from carbontrace_protocol import batch_verify, cbor, cose, p256
from carbontrace_protocol.batch import ZERO_HASH, Batch, aggregate_leaf, aggregate_window, build_batch, sign_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, sign_reading
from cloud.app import create_app
from cloud.chain import Chain
from cloud.security import new_api_key
from cloud.settings import Settings

# This run's operator key: random, made here, handed to each test cloud through its bootstrap key file (the
# cloud adopts a key it finds there when its database has none). No key written in the repository opens anything.
ADMIN_KEY = new_api_key()

Signer = Callable[[Reading, int], bytes]


def openssl_sign_reading(reading: Reading, private_key: int) -> bytes:
    """The same COSE_Sign1 as `reading.sign_reading`, signed by OpenSSL instead of the pure-Python signer
    (fast enough to build thousands of readings for a throughput run). ECDSA nonces differ, bytes otherwise
    follow `cose.sign1` exactly, so the cloud verifies them the same way."""
    key = ec.derive_private_key(private_key, ec.SECP256R1())
    protected = cose.protected_header(reading.device_id.encode())
    payload = reading.encode()
    der = key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return bytes(cbor.encode(cbor.Tag(cbor.TAG_COSE_SIGN1, [protected, {}, payload, signature])))


INTERVAL_S = 10


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    operator_key_file = tmp / "operator-api-key"
    if not operator_key_file.exists():
        write_secret(operator_key_file, ADMIN_KEY + "\n")
    values: dict[str, Any] = {
        "operator_key_file": str(operator_key_file),
        "database_url": f"sqlite:///{tmp}/cloud.db",
        "content_dir": str(tmp / "content"),
        "signing_key_file": str(tmp / "cloud-key.hex"),
        "chain_key_file": str(tmp / "cloud-chain-key.hex"),
        "fund_operator_from_dev_node": True,  # the tests' chains are development nodes
        "auth_failure_burst": 100_000,  # many tests send wrong keys on purpose; the limit has its own test
        "application_burst": 100_000,  # many tenants a test; the application limit has its own test
        "confirmations": 0,  # automining dev nodes: no block follows unless asked (the depth has its own test)
        "jobs_interval_s": 0,
        "checkpoint_every_batches": 1000,
        "checkpoint_every_s": 3600,
    }
    values.update(overrides)
    return Settings(**values)


def new_key() -> tuple[int, bytes]:
    private = p256.private_key_from_bytes(secrets.token_bytes(32))
    return private, bytes(p256.public_key(private))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class DeviceKit:
    device_id: str
    private: int
    public: bytes
    next_seq: int = 1
    energy_wh: int = 1000


@dataclass
class GatewayKit:
    """A gateway's side of the contract: its key, its batch chain, the baselines of its devices."""

    gateway_id: str
    site_id: str
    private: int
    public: bytes
    api_key: str
    devices: list[DeviceKit]
    factor_id: str
    batch_seq: int = 0
    prev: bytes = ZERO_HASH
    baselines: dict[str, tuple[int, int, int | None]] = field(default_factory=dict)  # seq, Wh, measured at
    window_start: int = 1_700_000_000

    def build(
        self,
        per_device: int = 3,
        window_s: int = 60,
        co2: int = 600,
        signer: Signer = sign_reading,
        temperature: int = 2150,
        humidity: int = 4500,
        power: int = 4200,
        fluxes: Callable[[list[Reading]], list[bytes]] | None = None,
    ) -> tuple[Batch, list[Reading]]:
        """The next batch: ``per_device`` signed readings from every device and one aggregate each; with
        ``fluxes``, the signed chamber flux records it makes of the batch's readings, as flux leaves."""
        start, end = self.window_start, self.window_start + window_s
        signed: list[bytes] = []
        readings: list[Reading] = []
        aggregates = []
        factor = get_factor(self.factor_id)
        for device in self.devices:
            mine = []
            for i in range(per_device):
                device.energy_wh += 7
                reading = Reading(
                    device.device_id,
                    device.next_seq,
                    start + i * INTERVAL_S % window_s,
                    "1.0.0",
                    co2_ppm=co2 + i,
                    temperature_centi_c=temperature,
                    humidity_centi_pct=humidity,
                    energy_wh=device.energy_wh,
                    power_deci_w=power,
                )
                device.next_seq += 1
                mine.append(reading)
                signed.append(signer(reading, device.private))
            readings.extend(mine)
            aggregates.append(
                aggregate_window(
                    device.device_id, start, end, INTERVAL_S, mine, factor, self.baselines.get(device.device_id)
                )
            )
        batch = build_batch(
            self.private,
            self.gateway_id,
            self.site_id,
            self.batch_seq,
            (start, end),
            signed,
            aggregates,
            self.prev,
            end + 1,
            signed_fluxes=fluxes(readings) if fluxes is not None else (),
        )
        return batch, readings

    def accepted(self, batch: Batch, readings: list[Reading]) -> None:
        """Advance the chain and baselines as a gateway does after a 2xx."""
        self.batch_seq += 1
        self.prev = batch.hash
        self.window_start += 60
        for reading in readings:
            if reading.energy_wh is not None:
                old = self.baselines.get(reading.device_id)
                if old is None or reading.seq > old[0]:
                    self.baselines[reading.device_id] = (reading.seq, reading.energy_wh, reading.timestamp)


def upload(client: TestClient, gateway: GatewayKit, batch: Batch, key: str | None = None) -> Any:
    return client.post(
        "/api/v1/batches",
        content=batch.encode() if isinstance(batch, Batch) else batch,
        headers={"Content-Type": "application/cbor", **auth(key or gateway.api_key)},
    )


def format1_batch(gateway: GatewayKit, co2: int) -> tuple[Batch, list[dict[str, Any]]]:
    """The gateway's next batch as a gateway before format 2 built it (aggregates in clear, no openings),
    signed by its key, and its aggregates; marked accepted. Upload it inside ``format1_ingest_gate``."""
    built, readings = gateway.build(co2=co2)
    aggregates = [aggregate for _, aggregate in built.aggregates()]
    leaves = [*built.leaves[: built.header["readings"]], *(aggregate_leaf(a) for a in aggregates)]
    h = built.header
    legacy = sign_batch(gateway.private, gateway.gateway_id, gateway.site_id, h["batch_seq"], tuple(h["window"]),
                        leaves, h["readings"], {}, gateway.prev, h["created"])
    gateway.accepted(legacy, readings)
    return legacy, aggregates


@contextmanager
def format1_ingest_gate() -> Iterator[None]:
    """The cloud's ingest gate as it was before format 2 (it took aggregates in clear), for the block only: how
    a format 1 leaf came to be stored. Same process only (TestClient, or uvicorn in a thread)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_verify, "disclosure", types.SimpleNamespace(is_committed=lambda body: True))
        yield


@dataclass
class Tenant:
    enterprise_id: str
    enterprise_key: str
    engineer_key: str
    gateway: GatewayKit
    chain_key: str = ""  # the enterprise's own chain key (made here, never sent to the cloud)


def new_party_key() -> tuple[str, str]:
    """(private key hex, address): a party's own chain key, made on the party's side as `carbontrace party` does."""
    account = Account.create()
    return "0x" + bytes(account.key).hex(), str(account.address)


def register_platform(client: TestClient, name: str) -> tuple[str, str, str]:
    """(platform id, platform API key, the platform's own chain key) — registered by the operator."""
    chain_key, chain_account = new_party_key()
    r = client.post("/api/v1/platforms", json={"name": name, "chain_account": chain_account}, headers=auth(ADMIN_KEY))
    assert r.status_code == 201, r.text
    return r.json()["platform_id"], r.json()["api_key"], chain_key


def sign_consent(client: TestClient, consent_path: str, api_key: str, chain_key: str) -> str:
    """Fetch the EIP-712 typed data a party signs and sign it with the party's chain key (as a wallet does)."""
    r = client.get(consent_path, headers=auth(api_key))
    assert r.status_code == 200, r.text
    return "0x" + bytes(Account.sign_typed_data(chain_key, full_message=r.json()).signature).hex()


def request_binding(
    client: TestClient, enterprise_id: str, enterprise_key: str, chain_key: str, platform_id: str
) -> Any:
    consent = f"/api/v1/enterprises/{enterprise_id}/bindings/{platform_id}/consent"
    signature = sign_consent(client, consent, enterprise_key, chain_key)
    return client.post(
        f"/api/v1/enterprises/{enterprise_id}/bindings",
        json={"platform_id": platform_id, "signature": signature},
        headers=auth(enterprise_key),
    )


def decide_binding(
    client: TestClient, platform_id: str, platform_key: str, chain_key: str, enterprise_id: str, confirm: bool = True
) -> Any:
    action = "confirm" if confirm else "reject"
    consent = f"/api/v1/platforms/{platform_id}/bindings/{enterprise_id}/consent?action={action}"
    signature = sign_consent(client, consent, platform_key, chain_key)
    return client.post(
        f"/api/v1/platforms/{platform_id}/bindings/{enterprise_id}/{action}",
        json={"signature": signature},
        headers=auth(platform_key),
    )


def apply_enterprise(client: TestClient, name: str) -> tuple[str, str, str]:
    """(enterprise id, enterprise API key, its own chain key): applied and approved by the operator."""
    chain_key, chain_account = new_party_key()
    r = client.post("/api/v1/enterprises", json={"name": name, "chain_account": chain_account})
    assert r.status_code == 201, r.text
    enterprise_id, enterprise_key = r.json()["enterprise_id"], r.json()["api_key"]
    r = client.post(f"/api/v1/enterprises/{enterprise_id}/approve", headers=auth(ADMIN_KEY))
    assert r.status_code == 200, r.text
    return enterprise_id, enterprise_key, chain_key


def register_tenant(
    client: TestClient, name: str, devices: int = 2, location: dict[str, str] | None = None
) -> Tenant:
    """Enterprise applies (the operator approves), adds a site engineer, a site (at ``location``, by default
    only the country CN: the national average), a gateway and devices — all through the API."""
    enterprise_id, enterprise_key, chain_key = apply_enterprise(client, name)
    r = client.post(
        f"/api/v1/enterprises/{enterprise_id}/engineers", json={"label": "eng"}, headers=auth(enterprise_key)
    )
    assert r.status_code == 201, r.text
    engineer_key = r.json()["api_key"]
    site_id = f"site-{secrets.token_hex(4)}"
    r = client.post(
        f"/api/v1/enterprises/{enterprise_id}/sites",
        json={"site_id": site_id, "name": name + " plant", **(location or {"country": "CN"})},
        headers=auth(enterprise_key),
    )
    assert r.status_code == 201, r.text
    factor_id = r.json()["emission_factor"]
    gw_private, gw_public = new_key()
    gateway_id = f"gw-{secrets.token_hex(4)}"
    r = client.post(
        f"/api/v1/sites/{site_id}/gateways",
        json={"gateway_id": gateway_id, "public_key": gw_public.hex()},
        headers=auth(engineer_key),
    )
    assert r.status_code == 201, r.text
    gateway_key = r.json()["api_key"]
    kits = []
    for _ in range(devices):
        private, public = new_key()
        device_id = f"dev-{secrets.token_hex(4)}"
        r = client.post(
            f"/api/v1/sites/{site_id}/devices",
            json={"device_id": device_id, "public_key": public.hex()},
            headers=auth(engineer_key),
        )
        assert r.status_code == 201, r.text
        kits.append(DeviceKit(device_id, private, public))
    gateway = GatewayKit(gateway_id, site_id, gw_private, gw_public, gateway_key, kits, factor_id)
    return Tenant(enterprise_id, enterprise_key, engineer_key, gateway, chain_key)


def app_client(settings: Settings, chain: Chain | None = None) -> TestClient:
    return TestClient(create_app(settings, chain))


@contextmanager
def served_over_http(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free local port in a thread (for a subprocess or a real HTTP client):
    its base URL while the block runs."""
    from tests.conftest import free_port, wait_for_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
