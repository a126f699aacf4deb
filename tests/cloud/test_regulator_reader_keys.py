"""A regulator registers and rotates its own blob reader key with its own API key; the operator still may."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from carbontrace.cli import app
from carbontrace_protocol import sealed_blob
from carbontrace_protocol.ids import key_fingerprint
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, register_tenant, upload


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _keygen(path: Path) -> str:
    result = CliRunner().invoke(app, ["cloud", "readers", "keygen", str(path)])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def register_regulator(client: TestClient, label: str = "epa") -> tuple[str, str]:
    """(regulator id, regulator API key), issued by the operator."""
    r = client.post("/api/v1/regulators", json={"label": label}, headers=auth(ADMIN_KEY))
    assert r.status_code == 201, r.text
    return r.json()["regulator_id"], r.json()["api_key"]


def test_a_regulator_sets_and_rotates_its_own_reader_key(client: TestClient, tmp_path: Path) -> None:
    reg_id, reg_key = register_regulator(client, "epa")
    other_id, other_key = register_regulator(client, "mee")
    assert reg_id != other_id
    first, second, third = (_keygen(tmp_path / f"k{i}") for i in range(3))
    path = f"/api/v1/regulators/{reg_id}/reader-key"
    assert client.get(path, headers=auth(reg_key)).status_code == 404
    r = client.put(path, json={"public_key": first}, headers=auth(reg_key))
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["id"]) == ("regulator", reg_id)
    assert r.json()["fingerprint"] == key_fingerprint(bytes.fromhex(first)).hex()
    r = client.put(path, json={"public_key": second}, headers=auth(reg_key))  # rotates
    assert r.status_code == 200 and client.get(path, headers=auth(reg_key)).json()["public_key"] == second
    # another regulator can neither rotate nor read this one's key; an enterprise cannot either
    assert client.put(path, json={"public_key": third}, headers=auth(other_key)).status_code == 403
    assert client.get(path, headers=auth(other_key)).status_code == 403
    tenant = register_tenant(client, "Sealed", devices=1)
    assert client.put(path, json={"public_key": third}, headers=auth(tenant.enterprise_key)).status_code == 403
    assert client.get(path, headers=auth(ADMIN_KEY)).json()["public_key"] == second

    batch, _ = tenant.gateway.build(per_device=1)
    r = upload(client, tenant.gateway, batch)
    assert r.status_code == 201, r.text
    envelope = sealed_blob.parse(_ledger(client).store.get(r.json()["cid"]))
    assert key_fingerprint(bytes.fromhex(second)) in envelope.fingerprints
    assert key_fingerprint(bytes.fromhex(first)) not in envelope.fingerprints


def test_the_operator_still_sets_regulator_keys(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg_id, reg_key = register_regulator(client)
    first, second = _keygen(tmp_path / "a"), _keygen(tmp_path / "b")
    path = f"/api/v1/regulators/{reg_id}/reader-key"
    r = client.put(path, json={"public_key": first}, headers=auth(ADMIN_KEY))
    assert r.status_code == 200, r.text
    assert client.get(path, headers=auth(reg_key)).json()["public_key"] == first
    # the operator's command line names the regulator by the same id
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", _ledger(client).settings.database_url)
    result = CliRunner().invoke(app, ["cloud", "readers", "rotate", "regulator", reg_id, "--public-key", second])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == reg_id
    assert client.get(path, headers=auth(reg_key)).json()["public_key"] == second
