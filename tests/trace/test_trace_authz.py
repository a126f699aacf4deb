"""Authorization matrix: every role × every trace/statement endpoint × own/other enterprise.

Each answer's status is checked, every 403 has the one fixed body, and no 2xx body of a scoped caller holds
any identifier of the other tenant (enterprise, site, gateway, device, batch ids)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    auth,
    decide_binding,
    new_party_key,
    register_platform,
    request_binding,
)
from tests.trace.trace_kit import Traced, anchor, tenant_with_batches

ENDPOINTS = ["/api/v1/trace/locate", "/api/v1/trace/retrieve", "/api/v1/trace/verify", "/api/v1/trace/bundle"]
STATEMENT = "/api/v1/enterprises/{enterprise_id}/statement"


def _identifiers(traced: Traced) -> list[str]:
    gw = traced.tenant.gateway
    return [traced.tenant.enterprise_id, gw.site_id, gw.gateway_id, *(d.device_id for d in gw.devices)]


def _keys(client: TestClient, own: Traced, other: Traced) -> dict[str, str | None]:
    r = client.post("/api/v1/regulators", json={"label": "reg"}, headers=auth(ADMIN_KEY))
    regulator = r.json()["api_key"]
    platforms = []
    for name in ("Bound platform", "Unbound platform"):
        platforms.append(register_platform(client, name))
    (bound_id, bound_key, bound_chain_key), (unbound_id, unbound_key, _) = platforms
    ent, ent_key, ent_chain_key = own.tenant.enterprise_id, own.tenant.enterprise_key, own.tenant.chain_key
    r = request_binding(client, ent, ent_key, ent_chain_key, bound_id)
    assert r.status_code == 201, r.text
    r = decide_binding(client, bound_id, bound_key, bound_chain_key, ent)
    assert r.json()["state"] == "bound", r.text
    # The unbound platform only got a request (not confirmed): still not allowed.
    r = request_binding(client, ent, ent_key, ent_chain_key, unbound_id)
    assert r.json()["state"] == "requested"
    return {
        "public": None,
        "operator": ADMIN_KEY,
        "regulator": regulator,
        "enterprise": own.tenant.enterprise_key,
        "site_engineer": own.tenant.engineer_key,
        "gateway": own.tenant.gateway.api_key,
        "platform_bound": bound_key,
        "platform_requested_only": unbound_key,
    }


# role → (status for own enterprise, status for the other one), default data types
EXPECTED: dict[str, tuple[int, int]] = {
    "public": (200, 200),  # aggregates and emissions are public
    "operator": (403, 403),
    "regulator": (200, 200),
    "enterprise": (200, 403),
    "site_engineer": (403, 403),
    "gateway": (403, 403),
    "platform_bound": (200, 403),
    "platform_requested_only": (403, 403),
}
# role → statuses when asking for raw readings (co2) of own / other
EXPECTED_RAW: dict[str, tuple[int, int]] = {
    "public": (403, 403),
    "operator": (403, 403),
    "regulator": (200, 200),
    "enterprise": (200, 403),
    "site_engineer": (403, 403),
    "gateway": (403, 403),
    "platform_bound": (403, 403),
    "platform_requested_only": (403, 403),
}


def _call(client: TestClient, path: str, key: str | None, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(key) if key else {})


def test_authorization_matrix(client: TestClient) -> None:
    own = tenant_with_batches(client, "Own Co", batches=1)
    other = tenant_with_batches(client, "Other Co", batches=1)
    anchor(client)
    keys = _keys(client, own, other)
    own_ids, other_ids = _identifiers(own), _identifiers(other)
    window = {"start": 0, "end": 2_000_000_000}
    checked = 0
    for role, key in keys.items():
        for target, expected_index in ((own, 0), (other, 1)):
            ent = target.tenant.enterprise_id
            calls = [(p, {"enterprise_id": ent}, EXPECTED[role]) for p in ENDPOINTS]
            calls += [(p, {"enterprise_id": ent, "types": "co2"}, EXPECTED_RAW[role]) for p in ENDPOINTS]
            calls.append((STATEMENT.format(enterprise_id=ent), window, EXPECTED[role]))
            for path, params, statuses in calls:
                r = _call(client, path, key, **params)
                want = statuses[expected_index]
                context = (role, path, params, r.text[:300])
                assert r.status_code == want, context
                checked += 1
                if want == 403:
                    assert r.json() == {"detail": "forbidden"}, context
                    continue
                text = r.text
                assert target.tenant.enterprise_id in text or "statement" in path, context
                if role in ("enterprise", "platform_bound"):
                    leaked = [i for i in (other_ids if target is own else own_ids) if i in text]
                    assert not leaked, (context, leaked)
                if role == "public" or role == "platform_bound":
                    body = json.loads(text)
                    kinds = {i["kind"] for i in body.get("items", body.get("bundle", {}).get("items", []))}
                    assert kinds <= {"aggregate"}, context
    assert checked == len(keys) * 2 * (2 * len(ENDPOINTS) + 1)


def test_scoped_callers_without_enterprise_filter_see_only_their_own(client: TestClient) -> None:
    own = tenant_with_batches(client, "Solo A", batches=1)
    other = tenant_with_batches(client, "Solo B", batches=1)
    anchor(client)
    for path in ENDPOINTS:
        r = _call(client, path, own.tenant.enterprise_key)
        assert r.status_code == 200, r.text
        assert not [i for i in _identifiers(other) if i in r.text], path
        assert own.tenant.gateway.devices[0].device_id in r.text
    # A platform must name the enterprise it trades for.
    r = client.post("/api/v1/platforms", json={"name": "P", "chain_account": new_party_key()[1]}, headers=auth(ADMIN_KEY))
    assert _call(client, ENDPOINTS[0], r.json()["api_key"]).status_code == 403
    # Unknown or invalid keys: 401, never data.
    assert _call(client, ENDPOINTS[0], "ct_" + "0" * 64).status_code == 401
    # Probing another tenant's site or device by id yields the same empty answer as a non-existent one.
    site = other.tenant.gateway.site_id
    a = _call(client, ENDPOINTS[0], own.tenant.enterprise_key, site_id=site).json()
    b = _call(client, ENDPOINTS[0], own.tenant.enterprise_key, site_id="no-such-site").json()
    assert a["items"] == b["items"] == []
