"""Builders for the trace tests: a tenant with uploaded, anchored batches; the chain reader of a test app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from carbontrace.verify_bundle import Web3ChainReader
from carbontrace_protocol.batch import Batch
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.reading import Reading
from cloud import trace as tracelib
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import ADMIN_KEY, Tenant, auth, register_tenant, upload


def ledger_of(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


@dataclass
class Traced:
    tenant: Tenant
    batches: list[Batch] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)


def upload_batches(client: TestClient, traced: Traced, count: int, per_device: int = 2) -> None:
    gw = traced.tenant.gateway
    for _ in range(count):
        batch, readings = gw.build(per_device=per_device)
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        gw.accepted(batch, readings)
        traced.batches.append(batch)
        traced.readings.extend(readings)


def tenant_with_batches(client: TestClient, name: str, batches: int = 2, devices: int = 2) -> Traced:
    traced = Traced(register_tenant(client, name, devices=devices))
    upload_batches(client, traced, batches)
    return traced


def anchor(client: TestClient) -> None:
    report = ledger_of(client).anchorer.tick(force_checkpoint=True)
    assert report.error is None and report.anchored >= 1, report


def reader_of(client: TestClient, bundle: dict[str, Any] | None = None) -> Web3ChainReader:
    """The offline verifier's chain reader on the app's own chain (the same process for the embedded EVM),
    bound like `carbontrace verify` to the registry the bundle names (else the app's)."""
    ledger = ledger_of(client)
    address = bundle["chain"]["registry"] if bundle is not None else ledger.chain.registry().address
    return Web3ChainReader(ledger.chain.connect().w3, address)


def trust_of(client: TestClient) -> Trust:
    """The trust anchor the app publishes (what an auditor pins)."""
    return tracelib.trust_of(ledger_of(client))


def operator_headers() -> dict[str, str]:
    return auth(ADMIN_KEY)


def get(client: TestClient, path: str, key: str | None = None, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(key) if key else {})
