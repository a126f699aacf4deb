"""Trace over sealed blobs: an enterprise's answer verifies; a blob stored in clear before sealing existed is still
read (its CID ties it to the index); the cloud's key is what opens the rest."""

from __future__ import annotations

from fastapi.testclient import TestClient

from carbontrace_protocol import sealed_blob
from cloud import models
from tests.trace.trace_kit import anchor, get, ledger_of, tenant_with_batches


def _items(client: TestClient, key: str, device_id: str) -> list[dict[str, object]]:
    r = get(client, "/api/v1/trace/verify", key, device_id=device_id, types="co2")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def test_sealed_and_legacy_plaintext_blobs_both_trace(client: TestClient) -> None:
    traced = tenant_with_batches(client, "SealedTrace", batches=2)
    anchor(client)
    ledger = ledger_of(client)
    device = traced.tenant.gateway.devices[0].device_id
    first, second = traced.batches
    with ledger.session_factory.begin() as session:
        row = session.get(models.Batch, first.id)
        assert row is not None
        assert sealed_blob.is_sealed(ledger.store.get(row.cid))
        # as a deployment from before sealing would hold it: the plaintext upload blob under its own CID
        plain_cid, _ = ledger.store.put(first.encode())
        session.add(models.Blob(cid=plain_cid, size=len(first.encode()), kind="batch", pinned=True, created_at=0))
        session.flush()
        row.cid = plain_cid
    items = _items(client, traced.tenant.enterprise_key, device)
    assert {i["batch_id"] for i in items} == {first.id, second.id}
    assert all(i["status"] == "valid" for i in items), items
