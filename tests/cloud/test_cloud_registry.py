"""Registry, roles and binding through the API, checked against the chain's own state."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud.chain import BindingState, KeyRecord, KeyState, SignerKind, connect_embedded, key_fingerprint
from cloud.ledger import build_ledger
from cloud.ledger_chain import CLOUD_ID, CloudKeyConflict, chain_id_of
from cloud.signing_key import public_key
from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    app_client,
    auth,
    decide_binding,
    make_settings,
    new_key,
    new_party_key,
    register_platform,
    register_tenant,
    request_binding,
    upload,
)


def _ledger(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.ledger  # type: ignore[attr-defined]


def test_enterprise_platform_binding_on_chain(client: TestClient) -> None:
    tenant = register_tenant(client, "Acme Steel", devices=1)
    platform_id, platform_key, platform_chain_key = register_platform(client, "Shanghai ETS")
    registry = _ledger(client).chain.registry()
    assert registry.enterprise(chain_id_of(tenant.enterprise_id)).name == "Acme Steel"
    assert registry.platform(chain_id_of(platform_id)).name == "Shanghai ETS"

    # a request signed by any key but the enterprise's is refused by the contract
    r = request_binding(client, tenant.enterprise_id, tenant.enterprise_key, platform_chain_key, platform_id)
    assert r.status_code == 409 and r.json()["detail"] == "BadSignature", r.text
    r = request_binding(client, tenant.enterprise_id, tenant.enterprise_key, tenant.chain_key, platform_id)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "requested"
    # The platform sees the request; the enterprise cannot confirm for it.
    r = client.get(f"/api/v1/platforms/{platform_id}/bindings", headers=auth(platform_key))
    assert [b["state"] for b in r.json()] == ["requested"]
    r = client.post(
        f"/api/v1/platforms/{platform_id}/bindings/{tenant.enterprise_id}/confirm",
        json={"signature": "0x" + "00" * 65},
        headers=auth(tenant.enterprise_key),
    )
    assert r.status_code == 403
    # the platform's API key with a signature that is not the platform's key: no consent (the operator's
    # relaying account cannot consent for it either)
    r = decide_binding(client, platform_id, platform_key, tenant.chain_key, tenant.enterprise_id)
    assert r.status_code == 409 and r.json()["detail"] == "BadSignature", r.text
    r = decide_binding(client, platform_id, platform_key, platform_chain_key, tenant.enterprise_id)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "bound"
    assert registry.binding_state(chain_id_of(tenant.enterprise_id), chain_id_of(platform_id)) == BindingState.BOUND
    for path, key in (
        (f"/api/v1/enterprises/{tenant.enterprise_id}/bindings", tenant.enterprise_key),
        (f"/api/v1/platforms/{platform_id}/bindings", platform_key),
    ):
        assert client.get(path, headers=auth(key)).json() == [
            {"enterprise_id": tenant.enterprise_id, "platform_id": platform_id, "state": "bound"}
        ]
    # The confirmation is the platform's own key's consent, the request the enterprise's.
    events = registry.binding_events()
    accounts = {e.kind: e.sender.lower() for e in events}
    platform_account = registry.platform(chain_id_of(platform_id)).account.lower()
    enterprise_account = registry.enterprise(chain_id_of(tenant.enterprise_id)).account.lower()
    assert accounts == {"requested": enterprise_account, "confirmed": platform_account}


def test_device_keys_registered_and_revoked_on_chain(client: TestClient) -> None:
    tenant = register_tenant(client, "Beta Cement", devices=2)
    registry = _ledger(client).chain.registry()
    device = tenant.gateway.devices[0]
    fingerprint = key_fingerprint(device.public)
    record = registry.key_state(fingerprint)
    assert (record.state, record.kind, record.signer_id, record.enterprise_id) == (
        KeyState.ACTIVE, SignerKind.DEVICE, chain_id_of(device.device_id), chain_id_of(tenant.enterprise_id)
    )
    assert registry.device_key(chain_id_of(device.device_id)) == (chain_id_of(tenant.enterprise_id), fingerprint)

    r = client.post(f"/api/v1/devices/{device.device_id}/revoke", headers=auth(tenant.engineer_key))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    assert registry.key_state(fingerprint).state == KeyState.REVOKED
    kinds = [e.kind for e in registry.device_key_events(device_id=chain_id_of(device.device_id))]
    assert kinds == ["registered", "revoked"]
    r = client.get(f"/api/v1/gateways/{tenant.gateway.gateway_id}/devices", headers=auth(tenant.gateway.api_key))
    assert r.status_code == 200
    statuses = {d["device_id"]: d["status"] for d in r.json()["devices"]}
    assert statuses == {device.device_id: "revoked", tenant.gateway.devices[1].device_id: "active"}
    assert r.json()["emission_factor"] == tenant.gateway.factor_id
    assert {d["public_key"] for d in r.json()["devices"]} == {d.public.hex() for d in tenant.gateway.devices}


def test_gateway_keys_registered_on_chain_and_a_revoked_gateway_cannot_upload(client: TestClient) -> None:
    tenant = register_tenant(client, "Gamma Glass", devices=1)
    gateway = tenant.gateway
    registry = _ledger(client).chain.registry()
    fingerprint = key_fingerprint(gateway.public)
    chain_gateway = chain_id_of(gateway.gateway_id)
    record = registry.key_state(fingerprint)
    assert (record.state, record.kind, record.signer_id, record.enterprise_id) == (
        KeyState.ACTIVE, SignerKind.GATEWAY, chain_gateway, chain_id_of(tenant.enterprise_id)
    )
    assert registry.signers_of(chain_id_of(tenant.enterprise_id), SignerKind.GATEWAY) == [chain_gateway]
    assert registry.gateway_key(chain_gateway) == (chain_id_of(tenant.enterprise_id), fingerprint)
    batch, readings = gateway.build()
    assert upload(client, gateway, batch).status_code == 201
    gateway.accepted(batch, readings)

    r = client.post(f"/api/v1/gateways/{gateway.gateway_id}/revoke", headers=auth(tenant.engineer_key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["key_fingerprint"]) == ("revoked", fingerprint.hex())
    assert body["registered_tx"].startswith("0x") and body["revoked_tx"].startswith("0x")
    assert registry.key_state(fingerprint).state == KeyState.REVOKED
    assert [e.kind for e in registry.gateway_key_events(gateway_id=chain_gateway)] == ["registered", "revoked"]
    # its API key died with it: the next batch is refused before anything is read
    batch, _ = gateway.build()
    assert upload(client, gateway, batch).status_code == 401
    assert client.post(f"/api/v1/gateways/{gateway.gateway_id}/revoke",
                       headers=auth(tenant.engineer_key)).status_code == 409
    # a replacement gateway registers under a new id; the revoked key can never come back
    again = client.post(f"/api/v1/sites/{gateway.site_id}/gateways", headers=auth(tenant.engineer_key),
                        json={"gateway_id": gateway.gateway_id + "-2", "public_key": gateway.public.hex()})
    assert again.status_code == 409, again.text


def test_gateways_from_before_keys_went_on_chain_are_backfilled_once(client: TestClient) -> None:
    from cloud import models
    from cloud.gateway_keys import register_missing_gateway_keys

    tenant = register_tenant(client, "Delta Paper", devices=1)
    ledger = _ledger(client)
    registry = ledger.chain.registry()
    site, enterprise = tenant.gateway.site_id, chain_id_of(tenant.enterprise_id)
    keys = {name: new_key()[1] for name in ("old", "half")}
    # "half": an earlier run sent the transaction and lost its database write
    registry.register_gateway_key(enterprise, chain_id_of("gw-half"), key_fingerprint(keys["half"]))
    with ledger.session_factory.begin() as session:
        for name, public in keys.items():
            session.add(models.Gateway(id=f"gw-{name}", site_id=site, public_key=public, created_at=0))
        # a row whose key the chain lists for a device: left for a person to look at
        session.add(models.Gateway(id="gw-clash", site_id=site, public_key=tenant.gateway.devices[0].public,
                                   created_at=0))

    report = register_missing_gateway_keys(ledger)
    assert (report.registered, report.recorded, list(report.conflicts)) == (["gw-old"], ["gw-half"], ["gw-clash"])
    for name, public in keys.items():
        record = registry.key_state(key_fingerprint(public))
        assert (record.state, record.kind, record.signer_id) == (
            KeyState.ACTIVE, SignerKind.GATEWAY, chain_id_of(f"gw-{name}")
        )
        with ledger.read_session_factory() as session:
            row = session.get(models.Gateway, f"gw-{name}")
            assert row is not None and row.status == "active"
            events = registry.gateway_key_events(gateway_id=chain_id_of(f"gw-{name}"))
            assert row.registered_tx == "0x" + events[0].tx_hash.hex()
    again = register_missing_gateway_keys(ledger)
    assert (again.registered, again.recorded, list(again.conflicts)) == ([], [], ["gw-clash"])


def test_the_cloud_registers_its_signing_key_at_start_up(client: TestClient) -> None:
    ledger = _ledger(client)
    registry = ledger.chain.registry()
    fingerprint = key_fingerprint(public_key(ledger.signing_key))
    assert registry.cloud_key(CLOUD_ID) == fingerprint
    assert registry.key_state(fingerprint) == KeyRecord(KeyState.ACTIVE, SignerKind.CLOUD, CLOUD_ID, bytes(32), 0, None)
    events = registry.cloud_key_events(cloud_id=CLOUD_ID)
    assert [(e.kind, e.key_fingerprint, e.sender) for e in events] == [("registered", fingerprint, registry.operator())]


def test_a_second_start_keeps_the_cloud_key_and_a_different_key_file_refuses_to_start(tmp_path: Path) -> None:
    chain = connect_embedded()
    with app_client(make_settings(tmp_path), chain) as client:
        first = _ledger(client)
        registry = first.chain.registry()
        fingerprint = registry.cloud_key(CLOUD_ID)
        block = chain.block_number()
        again = build_ledger(make_settings(tmp_path, registry_address=registry.address), chain)
        assert again.chain.registry().cloud_key(CLOUD_ID) == fingerprint
        assert chain.block_number() == block  # already listed: nothing sent

        other_key_file = str(tmp_path / "another-cloud-key.hex")
        settings = make_settings(tmp_path, registry_address=registry.address, signing_key_file=other_key_file)
        with pytest.raises(CloudKeyConflict, match="another cloud signing key"):
            build_ledger(settings, chain)
        assert registry.cloud_key(CLOUD_ID) == fingerprint  # never rotated behind anyone's back
        assert [e.kind for e in registry.cloud_key_events()] == ["registered"]


def test_roles_and_scopes_leak_nothing(client: TestClient) -> None:
    a = register_tenant(client, "Alpha", devices=1)
    b = register_tenant(client, "Bravo", devices=1)
    b_site, b_device, b_gateway = b.gateway.site_id, b.gateway.devices[0].device_id, b.gateway.gateway_id
    _, public = new_key()
    forbidden = [
        ("get", f"/api/v1/enterprises/{b.enterprise_id}", a.enterprise_key, None),
        ("get", f"/api/v1/enterprises/{b.enterprise_id}/sites", a.engineer_key, None),
        ("post", f"/api/v1/sites/{b_site}/devices", a.engineer_key, {"device_id": "x1", "public_key": public.hex()}),
        (
            "post",
            f"/api/v1/sites/{b_site}/gateways",
            a.enterprise_key,
            {"gateway_id": "g1", "public_key": public.hex()},
        ),
        ("post", "/api/v1/sites/no-such-site/devices", a.engineer_key, {"device_id": "x2", "public_key": public.hex()}),
        ("get", f"/api/v1/devices/{b_device}", a.enterprise_key, None),
        ("get", "/api/v1/devices/no-such-device", a.enterprise_key, None),
        ("post", f"/api/v1/devices/{b_device}/revoke", a.engineer_key, None),
        ("post", f"/api/v1/gateways/{b_gateway}/revoke", a.engineer_key, None),
        ("post", "/api/v1/gateways/no-such-gateway/revoke", a.enterprise_key, None),
        ("get", f"/api/v1/devices/{b_device}/readings", a.enterprise_key, None),
        ("get", f"/api/v1/gateways/{b_gateway}/devices", a.gateway.api_key, None),
        ("get", f"/api/v1/gateways/{b_gateway}/state", a.gateway.api_key, None),
        ("post", "/api/v1/platforms", a.enterprise_key, {"name": "rogue"}),
        ("post", "/api/v1/regulators", a.gateway.api_key, {"label": "rogue"}),
        ("post", f"/api/v1/enterprises/{b.enterprise_id}/engineers", a.enterprise_key, {"label": "spy"}),
        ("get", f"/api/v1/gateways/{a.gateway.gateway_id}/devices", a.enterprise_key, None),  # not a gateway key
    ]
    for method, path, key, body in forbidden:
        r = client.request(method, path, headers=auth(key), json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        for secret in (b.enterprise_id, b_site, b_device, b_gateway, "Bravo"):
            assert secret not in r.text, (path, r.text)
    assert client.get(f"/api/v1/enterprises/{a.enterprise_id}").status_code == 401
    assert client.get(f"/api/v1/enterprises/{a.enterprise_id}", headers=auth("ct_" + "0" * 64)).status_code == 401
    # A regulator reads every tenant; the operator creates regulators.
    r = client.post("/api/v1/regulators", json={"label": "MEE"}, headers=auth(ADMIN_KEY))
    regulator = r.json()["api_key"]
    assert client.get(f"/api/v1/enterprises/{b.enterprise_id}", headers=auth(regulator)).status_code == 200
    assert client.get(f"/api/v1/devices/{b_device}", headers=auth(regulator)).status_code == 200
    body = {"name": "x", "chain_account": new_party_key()[1]}
    assert client.post("/api/v1/platforms", json=body, headers=auth(regulator)).status_code == 403


def test_openapi_names_the_roles_of_every_endpoint(sqlite_client: TestClient) -> None:
    spec = sqlite_client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "Roles:" in operation.get("description", ""), (method, path)


def test_parties_bind_with_keys_the_cloud_never_sees(client: TestClient, tmp_path: Path) -> None:
    """`carbontrace party`'s client: each party makes its key file (0600), the cloud gets addresses only."""
    import stat

    from carbontrace.party import PartyClient, new_key_file

    enterprise_key = new_key_file(tmp_path / "acme" / "chain-key.hex")
    platform_key = new_key_file(tmp_path / "exchange" / "chain-key.hex")
    assert stat.S_IMODE((tmp_path / "acme" / "chain-key.hex").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "acme").stat().st_mode) == 0o700
    created = PartyClient(client).apply_enterprise("Acme Steel", enterprise_key)
    assert created["chain_account"] == enterprise_key.address and "chain_key" not in created
    assert created["status"] == "pending"
    PartyClient(client, ADMIN_KEY).approve_enterprise(created["enterprise_id"])
    # no address, no party: the cloud makes no key for anyone
    assert client.post("/api/v1/enterprises", json={"name": "Keyless"}).status_code == 422
    r = client.post("/api/v1/enterprises", json={"name": "Copycat", "chain_account": enterprise_key.address.lower()})
    assert r.status_code == 409  # one key, one party
    r = client.post(
        "/api/v1/platforms",
        json={"name": "Exchange", "chain_account": platform_key.address},
        headers=auth(ADMIN_KEY),
    )
    platform_id, platform_api_key = r.json()["platform_id"], r.json()["api_key"]
    enterprise = PartyClient(client, created["api_key"])
    assert enterprise.request_binding(created["enterprise_id"], platform_id, enterprise_key)["state"] == "requested"
    platform = PartyClient(client, platform_api_key)
    state = platform.decide_binding(platform_id, created["enterprise_id"], platform_key, confirm=True)
    assert state["state"] == "bound"
