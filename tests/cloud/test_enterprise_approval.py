"""An enterprise application is a pending record: no operator-paid chain transaction until the operator approves.

A public route that made the operator send a transaction per call let anyone drain the operator's funds.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of
from tests.cloud.cloud_testkit import ADMIN_KEY, app_client, auth, make_settings, new_party_key


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _operator_nonce(client: TestClient) -> int:
    registry = _ledger(client).chain.registry()
    return int(_ledger(client).chain.connect().w3.eth.get_transaction_count(registry.operator()))


def _apply(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/v1/enterprises", json={"name": name, "chain_account": new_party_key()[1]})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_an_application_costs_the_operator_nothing_until_approved(sqlite_client: TestClient) -> None:
    client = sqlite_client
    before = _operator_nonce(client)
    applied = [_apply(client, f"Applicant {i}") for i in range(3)]
    assert _operator_nonce(client) == before  # public calls sent no transaction
    assert {a["status"] for a in applied} == {"pending"}
    first = applied[0]
    eid, key = first["enterprise_id"], first["api_key"]
    registry = _ledger(client).chain.registry()
    assert int(registry.enterprise(chain_id_of(eid)).account, 16) == 0  # not on chain

    # the pending key sees its own status and opens nothing else
    r = client.get(f"/api/v1/enterprises/{eid}", headers=auth(key))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = client.post(f"/api/v1/enterprises/{eid}/sites", json={"site_id": "s-1", "name": "S", "country": "CN"}, headers=auth(key))
    assert r.status_code == 403 and r.json()["detail"] == "enterprise application awaiting operator approval"
    r = client.post(f"/api/v1/enterprises/{eid}/engineers", json={"label": "e"}, headers=auth(key))
    assert r.status_code == 403

    # only the operator lists and approves; approval registers on chain (one transaction) and opens the key
    assert client.post(f"/api/v1/enterprises/{eid}/approve").status_code == 401
    assert client.post(f"/api/v1/enterprises/{eid}/approve", headers=auth(key)).status_code == 403
    pending = client.get("/api/v1/enterprises", params={"status": "pending"}, headers=auth(ADMIN_KEY)).json()
    assert {p["enterprise_id"] for p in pending} == {a["enterprise_id"] for a in applied}
    r = client.post(f"/api/v1/enterprises/{eid}/approve", headers=auth(ADMIN_KEY))
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert _operator_nonce(client) == before + 1
    assert registry.enterprise(chain_id_of(eid)).account == first["chain_account"]
    assert client.post(f"/api/v1/enterprises/{eid}/approve", headers=auth(ADMIN_KEY)).status_code == 409
    r = client.post(f"/api/v1/enterprises/{eid}/sites", json={"site_id": "s-1", "name": "S", "country": "CN"}, headers=auth(key))
    assert r.status_code == 201, r.text

    # a rejected application is gone with its key, and its address is free again
    rejected = applied[1]
    r = client.delete(f"/api/v1/enterprises/{rejected['enterprise_id']}", headers=auth(ADMIN_KEY))
    assert r.status_code == 204, r.text
    assert client.get(f"/api/v1/enterprises/{rejected['enterprise_id']}", headers=auth(ADMIN_KEY)).status_code == 404
    assert client.get(f"/api/v1/enterprises/{rejected['enterprise_id']}",
                      headers=auth(rejected["api_key"])).status_code == 401
    r = client.post("/api/v1/enterprises", json={"name": "Again", "chain_account": rejected["chain_account"]})
    assert r.status_code == 201, r.text
    assert client.delete(f"/api/v1/enterprises/{eid}", headers=auth(ADMIN_KEY)).status_code == 409


def test_applications_are_limited_per_address_and_in_number(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, application_burst=2, max_pending_applications=3)
    with app_client(settings) as client:
        _apply(client, "A")
        _apply(client, "B")
        r = client.post("/api/v1/enterprises", json={"name": "C", "chain_account": new_party_key()[1]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        # another address still may, until the number waiting reaches the cap
        other = TestClient(client.app, client=("198.51.100.7", 5000))
        assert other.post("/api/v1/enterprises", json={"name": "D", "chain_account": new_party_key()[1]}
                          ).status_code == 201
        third = TestClient(client.app, client=("198.51.100.8", 5000))
        r = third.post("/api/v1/enterprises", json={"name": "E", "chain_account": new_party_key()[1]})
        assert r.status_code == 503, r.text
