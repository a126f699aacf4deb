"""Issue 13, item 5: revoking one device while its reading is in the gateway's open window no longer fails the
whole batch (422, and the gateway halted every upload of the site). The cloud accepts the batch, keeps that
device's readings and aggregate as quarantined leaves (counted in the receipt, listed with their reason in the
batch API, excluded from totals) and the other leaves verify and trace as before."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cloud import models
from tests.cloud.cloud_testkit import auth, new_key, register_tenant, upload
from tests.trace.trace_kit import anchor, get


def test_a_device_revoked_mid_window_is_quarantined_and_the_batch_accepted(client: TestClient) -> None:
    tenant = register_tenant(client, "Quarantine", devices=2)
    gateway = tenant.gateway
    first, readings = gateway.build(per_device=2)
    assert upload(client, gateway, first).status_code == 201
    gateway.accepted(first, readings)

    # The gateway holds the next window's readings of both devices when one device is revoked.
    batch, readings = gateway.build(per_device=3)
    revoked, kept = gateway.devices
    r = client.post(f"/api/v1/devices/{revoked.device_id}/revoke", headers=auth(tenant.engineer_key))
    assert r.status_code == 200, r.text

    r = upload(client, gateway, batch)
    assert r.status_code == 201, r.text
    assert r.json()["quarantined"] == 3 and r.json()["readings"] == 6
    gateway.accepted(batch, readings)

    view = client.get(f"/api/v1/batches/{gateway.gateway_id}/1", headers=auth(tenant.enterprise_key)).json()
    leaves = view["quarantined_leaves"]
    assert view["quarantined"] == 3
    assert {(q["kind"], q["device_id"], q["reason"]) for q in leaves} == {
        ("reading", revoked.device_id, "device_revoked"),
        ("aggregate", revoked.device_id, "device_revoked"),
    }
    assert sorted(q["seq"] for q in leaves if q["kind"] == "reading") == [3, 4, 5]
    console = client.get("/api/v1/console/batches", headers=auth(tenant.enterprise_key))
    assert {b["batch_seq"]: b["quarantined"] for b in console.json()} == {0: 0, 1: 3}, console.text

    # Totals: only the kept device's readings and aggregate of batch 1 are counted.
    session = client.app.state.ledger.session_factory()  # type: ignore[attr-defined]
    with session:
        counted = session.scalar(
            select(func.count()).select_from(models.Reading).where(models.Reading.batch_id == view["batch_id"])
        )
        aggregates = session.scalars(
            select(models.Aggregate.device_id).where(models.Aggregate.batch_id == view["batch_id"])
        ).all()
    assert counted == 3 and aggregates == [kept.device_id]
    own = client.get(f"/api/v1/devices/{kept.device_id}/readings", headers=auth(tenant.enterprise_key))
    assert [x["seq"] for x in own.json()] == [1, 2, 3, 4, 5]

    # The kept device's readings still trace and verify end to end (anchored on the chain), beside the
    # quarantined leaves of the same batch tree.
    anchor(client)
    traced = get(client, "/api/v1/trace/verify", tenant.enterprise_key, device_id=kept.device_id, types="co2")
    assert traced.status_code == 200, traced.text
    assert [i["status"] for i in traced.json()["items"]] == ["valid"] * 5, traced.text[:500]
    # Later batches (without the revoked device) flow.
    gateway.devices = [kept]
    later, readings = gateway.build(per_device=1)
    r = upload(client, gateway, later)
    assert r.status_code == 201 and r.json()["quarantined"] == 0, r.text


def test_a_reading_that_does_not_verify_under_the_revoked_key_still_fails_the_batch(client: TestClient) -> None:
    """Quarantine is for authentic readings of a revoked device only, not a way around signatures."""
    tenant = register_tenant(client, "Quarantine-forged", devices=1)
    gateway = tenant.gateway
    device = gateway.devices[0]
    real_private = device.private
    device.private = real_private + 1  # the gateway forwards a reading signed by some other key
    batch, _ = gateway.build(per_device=1)
    device.private = real_private
    assert client.post(f"/api/v1/devices/{device.device_id}/revoke",
                              headers=auth(tenant.engineer_key)).status_code == 200
    r = upload(client, gateway, batch)
    assert r.status_code == 422 and r.json()["error"] == "bad_signature", r.text


def test_a_reading_signed_with_a_rotated_out_key_is_quarantined_and_the_batch_accepted(client: TestClient) -> None:
    """A device key rotated while readings signed with the old key sat in the gateway's open window: those
    readings verify under a key the device had, so they are kept and quarantined (``rotated_device_key``) with
    the device's aggregate; the rest of the batch counts and the site's uploads go on."""
    tenant = register_tenant(client, "Quarantine-rotated", devices=2)
    gateway = tenant.gateway
    first, readings = gateway.build(per_device=2)
    assert upload(client, gateway, first).status_code == 201
    gateway.accepted(first, readings)

    batch, readings = gateway.build(per_device=3)  # signed with the old key of `rotated`
    rotated, kept = gateway.devices
    new_private, new_public = new_key()
    r = client.post(f"/api/v1/devices/{rotated.device_id}/keys", json={"public_key": new_public.hex()},
                    headers=auth(tenant.engineer_key))
    assert r.status_code == 201, r.text

    r = upload(client, gateway, batch)
    assert r.status_code == 201, r.text
    assert r.json()["quarantined"] == 3 and r.json()["readings"] == 6
    gateway.accepted(batch, readings)
    view = client.get(f"/api/v1/batches/{gateway.gateway_id}/1", headers=auth(tenant.enterprise_key)).json()
    assert {(q["kind"], q["device_id"], q["reason"]) for q in view["quarantined_leaves"]} == {
        ("reading", rotated.device_id, "rotated_device_key"),
        ("aggregate", rotated.device_id, "rotated_device_key"),
    }
    with client.app.state.ledger.session_factory() as session:  # type: ignore[attr-defined]
        counted = session.scalars(
            select(models.Reading.device_id).where(models.Reading.batch_id == view["batch_id"])
        ).all()
        aggregates = session.scalars(
            select(models.Aggregate.device_id).where(models.Aggregate.batch_id == view["batch_id"])
        ).all()
    assert set(counted) == {kept.device_id} and len(counted) == 3 and aggregates == [kept.device_id]

    # A key the device never had is still a bad signature: quarantine is no way around signatures.
    rotated.private = new_key()[0]
    forged, _ = gateway.build(per_device=1)
    r = upload(client, gateway, forged)
    assert r.status_code == 422 and r.json()["error"] == "bad_signature", r.text

    # Signed with the new key: counted again.
    rotated.private, rotated.public = new_private, new_public
    later, readings = gateway.build(per_device=1)
    r = upload(client, gateway, later)
    assert r.status_code == 201 and r.json()["quarantined"] == 0, r.text
