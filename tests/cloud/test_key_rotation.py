"""Key rotation under the same device and gateway id (issue 12): chain first, then the key history here.

Real app, real embedded EVM, real SQLite and PostgreSQL; the partial failures are made for real by doing the
rotation's chain steps directly through the RegistryContract before calling the endpoint.
"""

from __future__ import annotations

import time
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from carbontrace_protocol.ids import chain_id_of, key_fingerprint
from carbontrace_protocol.reading import Reading, sign_reading
from cloud.chain import RegistryContract
from cloud.db import alembic_config, make_engine, session_factory
from cloud.signer_keys import DEVICE, GATEWAY, key_by_fingerprint, keys_of
from edge_gateway.classify import Rejected, Verified, classify_message, reading_topic
from edge_gateway.cloud_client import parse_registry
from tests.cloud.cloud_testkit import ADMIN_KEY, Tenant, auth, new_key, register_tenant, upload


def _registry(client: TestClient) -> RegistryContract:
    registry: RegistryContract = client.app.state.ledger.chain.registry()  # type: ignore[attr-defined]
    return registry


def _rotate(client: TestClient, tenant: Tenant, path: str, public: bytes, key: str | None = None) -> Any:
    return client.post(path, json={"public_key": public.hex()}, headers=auth(key or tenant.engineer_key))


def _device_events(client: TestClient, device_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.key_fingerprint.hex()) for e in _registry(client).device_key_events(device_id=chain_id_of(device_id))]


def test_device_rotation_on_chain_in_history_at_the_gateway_and_at_ingestion(client: TestClient) -> None:
    tenant = register_tenant(client, "Rotating Steel", devices=2)
    gateway = tenant.gateway
    device = gateway.devices[0]
    old_private, old_public = device.private, device.public
    new_private, new_public = new_key()
    old_fp, new_fp = key_fingerprint(old_public).hex(), key_fingerprint(new_public).hex()

    r = _rotate(client, tenant, f"/api/v1/devices/{device.device_id}/keys", new_public)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["device_id"], body["status"]) == (device.device_id, "active")
    assert (body["public_key"], body["key_fingerprint"]) == (new_public.hex(), new_fp)
    assert body["revoked_tx"] is None
    old_row, new_row = body["keys"]
    assert (old_row["fingerprint"], old_row["public_key"]) == (old_fp, old_public.hex())
    assert old_row["revoked_at"] is not None and old_row["revoke_tx"].startswith("0x")
    assert (new_row["fingerprint"], new_row["revoked_at"], new_row["revoke_tx"]) == (new_fp, None, None)
    assert new_row["register_tx"] == body["registered_tx"] != old_row["register_tx"]

    # The chain: same device id, old key revoked, new key the active one; the transactions are the history's.
    registry = _registry(client)
    assert registry.device_key(chain_id_of(device.device_id)) == (
        chain_id_of(tenant.enterprise_id), bytes.fromhex(new_fp)
    )
    events = registry.device_key_events(device_id=chain_id_of(device.device_id))
    assert [(e.kind, e.key_fingerprint.hex()) for e in events] == [
        ("registered", old_fp), ("revoked", old_fp), ("registered", new_fp)
    ]
    assert ["0x" + e.tx_hash.hex() for e in events] == [
        old_row["register_tx"], old_row["revoke_tx"], new_row["register_tx"]
    ]

    # The read shows the same history; signer_keys answers for both keys, the rotated-out one included.
    r = client.get(f"/api/v1/devices/{device.device_id}", headers=auth(tenant.enterprise_key))
    assert r.status_code == 200 and r.json() == body
    with client.app.state.ledger.read_session_factory() as session:  # type: ignore[attr-defined]
        assert [k.fingerprint.hex() for k in keys_of(session, DEVICE, device.device_id)] == [old_fp, new_fp]
        old_key = key_by_fingerprint(session, bytes.fromhex(old_fp))
        assert old_key is not None and (old_key.kind, old_key.signer_id) == (DEVICE, device.device_id)
        assert old_key.public_key == old_public and old_key.revoked_at is not None
        assert key_by_fingerprint(session, b"\x00" * 32) is None

    # The gateway learns the new key on its next registry sync, and verifies readings with it.
    r = client.get(f"/api/v1/gateways/{gateway.gateway_id}/devices", headers=auth(gateway.api_key))
    assert r.status_code == 200, r.text
    synced = {entry.device_id: entry for entry in parse_registry(r.json()).devices}
    assert (synced[device.device_id].public_key, synced[device.device_id].status) == (new_public, "active")
    now = int(time.time())
    topic = reading_topic(gateway.site_id, device.device_id)
    live = Reading(device.device_id, 10_000, now, "1.0.0", co2_ppm=600)
    verdict = classify_message(topic, sign_reading(live, new_private), gateway.site_id, synced.get, now, 300)
    assert isinstance(verdict, Verified)
    verdict = classify_message(topic, sign_reading(live, old_private), gateway.site_id, synced.get, now, 300)
    assert isinstance(verdict, Rejected) and verdict.reason == "bad_signature"

    # Ingestion: a reading signed with the old key (in flight during the rotation) is kept but quarantined
    # (rotated_device_key, tests/cloud/test_quarantine.py); it does not fail the batch.
    device.private = old_private
    batch, readings = gateway.build()
    r = upload(client, gateway, batch)
    assert r.status_code == 201, r.text
    assert r.json()["quarantined"] == 3
    gateway.accepted(batch, readings)
    # A key the device never had is still plainly a bad signature.
    device.private = new_key()[0]
    batch, readings = gateway.build()
    r = upload(client, gateway, batch)
    assert r.status_code == 422 and r.json()["error"] == "bad_signature", r.text
    # Signed with the new key: accepted.
    device.private, device.public = new_private, new_public
    batch, readings = gateway.build()
    r = upload(client, gateway, batch)
    assert r.status_code == 201, r.text
    gateway.accepted(batch, readings)


def test_rotation_retried_after_a_partial_failure_finishes_without_repeating_chain_steps(client: TestClient) -> None:
    tenant = register_tenant(client, "Halfway Glass", devices=2)
    registry = _registry(client)
    enterprise = chain_id_of(tenant.enterprise_id)

    # 1. The revoke went through, the register did not (the node went away): the chain has no active key.
    first = tenant.gateway.devices[0]
    new_public = new_key()[1]
    old_fp = key_fingerprint(first.public)
    revoked = registry.revoke_device_key(enterprise, chain_id_of(first.device_id), old_fp)
    r = _rotate(client, tenant, f"/api/v1/devices/{first.device_id}/keys", new_public)
    assert r.status_code == 201, r.text
    assert r.json()["keys"][0]["revoke_tx"] == "0x" + revoked.tx_hash.hex()
    assert _device_events(client, first.device_id) == [
        ("registered", old_fp.hex()), ("revoked", old_fp.hex()), ("registered", key_fingerprint(new_public).hex())
    ]
    # The answer was lost and the client sends it again: nothing changes, 200.
    again = _rotate(client, tenant, f"/api/v1/devices/{first.device_id}/keys", new_public)
    assert again.status_code == 200 and again.json() == r.json()
    assert len(_device_events(client, first.device_id)) == 3

    # 2. Both chain steps went through, the database write did not.
    second = tenant.gateway.devices[1]
    signer = chain_id_of(second.device_id)
    middle_public, last_public = new_key()[1], new_key()[1]
    registry.revoke_device_key(enterprise, signer, key_fingerprint(second.public))
    registered = registry.register_device_key(enterprise, signer, key_fingerprint(middle_public))
    # Another key than the one the chain holds now is refused: that rotation must be finished first.
    r = _rotate(client, tenant, f"/api/v1/devices/{second.device_id}/keys", last_public)
    assert r.status_code == 409 and r.json()["detail"] == "SignerHasActiveKey", r.text
    r = _rotate(client, tenant, f"/api/v1/devices/{second.device_id}/keys", middle_public)
    assert r.status_code == 201, r.text
    assert r.json()["registered_tx"] == "0x" + registered.tx_hash.hex()
    assert [k["fingerprint"] for k in r.json()["keys"]] == [
        key_fingerprint(second.public).hex(), key_fingerprint(middle_public).hex()
    ]
    assert [kind for kind, _ in _device_events(client, second.device_id)] == ["registered", "revoked", "registered"]
    # And from there an ordinary rotation on.
    r = _rotate(client, tenant, f"/api/v1/devices/{second.device_id}/keys", last_public)
    assert r.status_code == 201 and len(r.json()["keys"]) == 3, r.text


def test_rotation_is_for_the_signers_own_enterprise_and_refuses_reused_keys_and_revoked_signers(
    client: TestClient,
) -> None:
    tenant = register_tenant(client, "Owner Cement", devices=2)
    other = register_tenant(client, "Other Cement", devices=1)
    device, neighbour = tenant.gateway.devices
    device_path = f"/api/v1/devices/{device.device_id}/keys"
    gateway_path = f"/api/v1/gateways/{tenant.gateway.gateway_id}/keys"
    fresh = new_key()[1]

    # Authorization as for the revoke endpoints: 401 without a key, 403 for other tenants, readers and gateways,
    # and 403 (not 404) for a device that does not exist.
    assert client.post(device_path, json={"public_key": fresh.hex()}).status_code == 401
    for key in (other.engineer_key, other.enterprise_key, ADMIN_KEY, tenant.gateway.api_key):
        assert _rotate(client, tenant, device_path, fresh, key).status_code == 403
        assert _rotate(client, tenant, gateway_path, fresh, key).status_code == 403
    assert _rotate(client, tenant, "/api/v1/devices/no-such-device/keys", fresh).status_code == 403
    assert _rotate(client, tenant, "/api/v1/gateways/no-such-gateway/keys", fresh).status_code == 403
    # Not a key: 422 (wrong length, and a right-length value that is not a point on P-256).
    assert client.post(device_path, json={"public_key": "04ab"}, headers=auth(tenant.engineer_key)).status_code == 422
    off_curve = "04" + "11" * 64
    r = client.post(device_path, json={"public_key": off_curve}, headers=auth(tenant.engineer_key))
    assert r.status_code == 422, r.text

    # A key any signer ever had is refused: a neighbour's, another tenant's gateway's, and its own old one.
    for used in (neighbour.public, other.gateway.public, tenant.gateway.public):
        r = _rotate(client, tenant, device_path, used)
        assert r.status_code == 409 and "registered before" in r.json()["detail"], r.text
    assert _rotate(client, tenant, device_path, fresh, tenant.enterprise_key).status_code == 201
    r = _rotate(client, tenant, device_path, device.public)
    assert r.status_code == 409 and "registered before" in r.json()["detail"], r.text
    # Registering a new device with a rotated-out key is refused the same way.
    r = client.post(
        f"/api/v1/sites/{tenant.gateway.site_id}/devices",
        json={"device_id": "dev-reuse", "public_key": device.public.hex()},
        headers=auth(tenant.engineer_key),
    )
    assert r.status_code == 409 and "registered before" in r.json()["detail"], r.text

    # A decommissioned (revoked) device gets no new key; nothing went to the chain.
    assert client.post(f"/api/v1/devices/{neighbour.device_id}/revoke", headers=auth(tenant.engineer_key)).status_code == 200
    r = _rotate(client, tenant, f"/api/v1/devices/{neighbour.device_id}/keys", new_key()[1])
    assert r.status_code == 409 and "decommissioned" in r.json()["detail"], r.text
    assert [kind for kind, _ in _device_events(client, neighbour.device_id)] == ["registered", "revoked"]
    history = client.get(f"/api/v1/devices/{neighbour.device_id}", headers=auth(tenant.engineer_key)).json()["keys"]
    assert len(history) == 1 and history[0]["revoke_tx"].startswith("0x")


def test_gateway_rotation_keeps_its_api_key_and_only_the_new_key_signs_batches(client: TestClient) -> None:
    tenant = register_tenant(client, "Rotating Paper", devices=1)
    gateway = tenant.gateway
    batch, readings = gateway.build()
    assert upload(client, gateway, batch).status_code == 201
    gateway.accepted(batch, readings)
    old_private, old_public = gateway.private, gateway.public
    new_private, new_public = new_key()

    r = _rotate(client, tenant, f"/api/v1/gateways/{gateway.gateway_id}/keys", new_public)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["public_key"], body["status"]) == (new_public.hex(), "active")
    assert [(k["fingerprint"], k["revoked_at"] is None) for k in body["keys"]] == [
        (key_fingerprint(old_public).hex(), False), (key_fingerprint(new_public).hex(), True)
    ]
    chain_gateway = chain_id_of(gateway.gateway_id)
    registry = _registry(client)
    assert registry.gateway_key(chain_gateway) == (chain_id_of(tenant.enterprise_id), key_fingerprint(new_public))
    assert [e.kind for e in registry.gateway_key_events(gateway_id=chain_gateway)] == [
        "registered", "revoked", "registered"
    ]
    r = client.get(f"/api/v1/gateways/{gateway.gateway_id}", headers=auth(tenant.enterprise_key))
    assert r.status_code == 200 and r.json() == body
    assert client.get(f"/api/v1/gateways/{gateway.gateway_id}", headers=auth(ADMIN_KEY)).status_code == 200
    assert client.get("/api/v1/gateways/nope", headers=auth(ADMIN_KEY)).status_code == 404
    assert client.get(f"/api/v1/gateways/{gateway.gateway_id}", headers=auth(
        register_tenant(client, "Nosy", devices=0).enterprise_key)).status_code == 403

    # The same API key uploads; a header signed with the old key is refused with the reason, the new one counts.
    gateway.private = old_private
    batch, readings = gateway.build()
    r = upload(client, gateway, batch)
    assert r.status_code == 422 and r.json()["error"] == "revoked_gateway_key", r.text
    gateway.private, gateway.public = new_private, new_public
    batch, readings = gateway.build()
    r = upload(client, gateway, batch)
    assert r.status_code == 201, r.text
    gateway.accepted(batch, readings)

    # Decommissioned: no more rotations.
    assert client.post(f"/api/v1/gateways/{gateway.gateway_id}/revoke", headers=auth(tenant.engineer_key)).status_code == 200
    r = _rotate(client, tenant, f"/api/v1/gateways/{gateway.gateway_id}/keys", new_key()[1])
    assert r.status_code == 409 and "decommissioned" in r.json()["detail"], r.text


def test_migration_0004_backfills_one_history_row_per_existing_key(database_url: str) -> None:
    engine = make_engine(database_url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    keys = {name: new_key()[1] for name in ("live-dev", "dead-dev", "live-gw", "old-gw")}
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO enterprises (id, name, chain_account, created_at) VALUES ('ENT-1', 'E', '0xabc', 1)"
        ))
        connection.execute(text(
            "INSERT INTO sites (id, enterprise_id, name, emission_factor, created_at) VALUES ('s', 'ENT-1', 'S', 'f', 1)"
        ))
        for device_id, status, revoked_tx in (("live-dev", "active", None), ("dead-dev", "revoked", "0xdead")):
            connection.execute(
                text("INSERT INTO devices (id, site_id, public_key, status, registered_tx, revoked_tx, created_at) "
                     "VALUES (:id, 's', :key, :status, :tx, :revoked_tx, 100)"),
                {"id": device_id, "key": keys[device_id], "status": status, "tx": f"0x{device_id}",
                 "revoked_tx": revoked_tx},
            )
        for gateway_id, registered_tx in (("live-gw", "0xgw"), ("old-gw", None)):
            connection.execute(
                text("INSERT INTO gateways (id, site_id, public_key, status, registered_tx, created_at) "
                     "VALUES (:id, 's', :key, 'active', :tx, 200)"),
                {"id": gateway_id, "key": keys[gateway_id], "tx": registered_tx},
            )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with session_factory(engine)() as session:
        live = keys_of(session, DEVICE, "live-dev")
        assert [(k.public_key, k.fingerprint, k.register_tx, k.registered_at, k.revoked_at) for k in live] == [
            (keys["live-dev"], key_fingerprint(keys["live-dev"]), "0xlive-dev", 100, None)
        ]
        (dead,) = keys_of(session, DEVICE, "dead-dev")
        assert dead.revoke_tx == "0xdead" and dead.revoked_at is not None
        (old_gateway,) = keys_of(session, GATEWAY, "old-gw")
        assert (old_gateway.register_tx, old_gateway.revoked_at) == (None, None)
        found = key_by_fingerprint(session, key_fingerprint(keys["live-gw"]))
        assert found is not None and (found.kind, found.signer_id, found.register_tx) == (GATEWAY, "live-gw", "0xgw")
        assert keys_of(session, DEVICE, "live-gw") == []
    engine.dispose()
