"""Registrations of one certificate raced against each other, on SQLite and PostgreSQL: exactly one is
registered, every other is the 409 of double counting (the overlap check and the insert never interleave)."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from cloud import models
from tests.cloud.cloud_testkit import auth, register_tenant
from tests.trace.trace_kit import ledger_of

RACERS = 6


def test_concurrent_registrations_of_one_certificate_register_it_once(client: TestClient) -> None:
    first, second = register_tenant(client, "Race One", devices=1), register_tenant(client, "Race Two", devices=1)
    record = {"kind": "gec", "instrument_id": "GEC-RACED", "issuer": "China Green Certificate Issuance and Trading "
              "Platform", "volume_wh": 1_000_000, "rate_kg_per_kwh_e4": 0, "evidence_sha256": None}
    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []

    def register(i: int) -> None:
        tenant = (first, second)[i % 2]  # the same certificate claimed for two enterprises' sites
        body = {**record, "delivery": {"start": 1_700_000_000 + i, "end": 1_700_086_400 + i}}
        barrier.wait()
        r = client.post(f"/api/v1/sites/{tenant.gateway.site_id}/instruments", json=body,
                        headers=auth(tenant.enterprise_key))
        statuses.append(r.status_code)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [201] + [409] * (RACERS - 1), statuses
    with ledger_of(client).read_session_factory() as session:
        rows = session.query(models.ContractualInstrument).filter_by(instrument_id="GEC-RACED").count()
    assert rows == 1
