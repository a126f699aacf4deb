"""Ingestion throughput for batches of ~1000 signed readings (every signature and aggregate re-verified)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.cloud.cloud_testkit import openssl_sign_reading, register_tenant, upload

DEVICES = 10
PER_DEVICE = 100
BATCHES = 3


@pytest.mark.slow
def test_ingestion_throughput(client: TestClient, database_url: str, cloud_figures: dict[str, str]) -> None:
    gw = register_tenant(client, "Papa", devices=DEVICES).gateway
    built = []
    for _ in range(BATCHES):  # signing is the gateway's cost, not the cloud's: done before the clock starts
        batch, readings = gw.build(per_device=PER_DEVICE, signer=openssl_sign_reading)
        gw.accepted(batch, readings)
        built.append(batch)
    start = time.perf_counter()
    for batch in built:
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        assert r.json()["readings"] == DEVICES * PER_DEVICE
    elapsed = time.perf_counter() - start
    rate = BATCHES * DEVICES * PER_DEVICE / elapsed
    backend = database_url.split(":", 1)[0].split("+")[0]
    cloud_figures[f"ingestion, {DEVICES * PER_DEVICE}-reading batches, {backend}"] = (
        f"{rate:,.0f} readings/s ({elapsed / BATCHES * 1000:.0f} ms per batch)"
    )
    report = client.app.state.ledger.anchorer.tick(force_checkpoint=True)  # type: ignore[attr-defined]
    assert report.anchored == 1
    gas = client.get("/api/v1/log/checkpoints/latest").json()["gas_used"]
    cloud_figures["gas per checkpoint anchor (embedded EVM)"] = f"{gas:,}"
    assert rate > 100, "re-verification should manage far more than 100 readings/s"
