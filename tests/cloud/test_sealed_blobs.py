"""Sealed batch blobs end to end: reader keys by CLI, ingestion seals, a reader opens offline with open-blob.

Rotation and revocation apply to batches sealed afterwards only: a revoked regulator still opens the batches
sealed before, and none after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from carbontrace.cli import app
from carbontrace_protocol import sealed_blob
from carbontrace_protocol.ids import key_fingerprint
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import ADMIN_KEY, Tenant, auth, register_tenant, upload


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _keygen(path: Path) -> str:
    result = _run("cloud", "readers", "keygen", str(path))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _upload(client: TestClient, tenant: Tenant, tmp_path: Path) -> Path:
    """Upload one batch; the stored (sealed) blob copied to a file named by its CID."""
    gw = tenant.gateway
    batch, readings = gw.build(per_device=2)
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    gw.accepted(batch, readings)
    cid = r.json()["cid"]
    path = tmp_path / cid
    path.write_bytes(_ledger(client).store.get(cid))
    return path


def _open(blob: Path, key: Path) -> tuple[int, dict[str, Any]]:
    result = _run("open-blob", str(blob), "--key", str(key))
    return result.exit_code, json.loads(result.stdout)


def test_readers_rotate_and_revoke_apply_to_future_batches(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", _ledger(client).settings.database_url)
    tenant = register_tenant(client, "Sealed", devices=2)
    regulator, enterprise, enterprise2 = tmp_path / "reg.key", tmp_path / "ent.key", tmp_path / "ent2.key"
    reg_public, ent_public, ent2_public = _keygen(regulator), _keygen(enterprise), _keygen(enterprise2)
    assert (regulator.stat().st_mode & 0o777) == 0o600
    added = _run("cloud", "readers", "add", "regulator", "epa", "--public-key", reg_public)
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["fingerprint"] == key_fingerprint(bytes.fromhex(reg_public)).hex()
    assert _run("cloud", "readers", "add", "enterprise", tenant.enterprise_id, "--public-key", ent_public).exit_code == 0
    again = _run("cloud", "readers", "add", "regulator", "epa", "--public-key", ent2_public)
    assert again.exit_code == 1 and "rotate it instead" in again.output
    unknown = _run("cloud", "readers", "add", "enterprise", "nobody", "--public-key", ent2_public)
    assert unknown.exit_code == 1 and "no enterprise" in unknown.output

    first = _upload(client, tenant, tmp_path)
    envelope = sealed_blob.parse(first.read_bytes())
    assert len(envelope.recipients) == 3  # the cloud, the enterprise, the regulator
    code, report = _open(first, regulator)
    assert code == 0, report
    assert report["status"] == "opened" and report["cid_checked"] and report["leaves"] == len(report["items"])
    readings = [i for i in report["items"] if i["kind"] == "reading"]
    assert len(readings) == 4 and all(isinstance(i["co2_ppm"], int) for i in readings)  # raw values, decrypted

    assert _run("cloud", "readers", "revoke", "regulator", "epa").exit_code == 0
    rotated = _run("cloud", "readers", "rotate", "enterprise", tenant.enterprise_id, "--public-key", ent2_public)
    assert rotated.exit_code == 0, rotated.output
    second = _upload(client, tenant, tmp_path)
    assert len(sealed_blob.parse(second.read_bytes()).recipients) == 2  # the cloud, the enterprise's new key
    code, report = _open(second, regulator)
    assert (code, report["status"], report["reason"]) == (1, "invalid", "not_a_recipient")
    assert _open(second, enterprise)[1]["reason"] == "not_a_recipient"
    assert _open(second, enterprise2)[0] == 0
    # sealed before the revocation and the rotation: still theirs to open
    assert _open(first, regulator)[0] == 0
    assert _open(first, enterprise)[0] == 0
    assert _open(first, enterprise2)[1]["reason"] == "not_a_recipient"

    listed = json.loads(_run("cloud", "readers", "list").stdout)
    assert [(r["kind"], r["public_key"]) for r in listed] == [("enterprise", ent2_public)]
    assert len(json.loads(_run("cloud", "readers", "list", "--all").stdout)) == 3


def test_open_blob_refuses_a_corrupted_or_misnamed_blob(client: TestClient, tmp_path: Path) -> None:
    tenant = register_tenant(client, "Corrupt", devices=1)
    blob = _upload(client, tenant, tmp_path)
    key = tmp_path / "cloud.key"  # the cloud is a recipient of every blob: open it with the cloud's key file
    key.write_text(Path(_ledger(client).settings.encryption_key_path).read_text())
    assert _open(blob, key)[0] == 0
    data = bytearray(blob.read_bytes())
    start, end = sealed_blob.ciphertext_span(bytes(data))
    data[(start + end) // 2] ^= 1
    blob.write_bytes(bytes(data))
    code, report = _open(blob, key)
    assert (code, report["reason"]) == (1, "cid_mismatch")
    renamed = tmp_path / "tampered.bin"
    renamed.write_bytes(bytes(data))
    code, report = _open(renamed, key)  # no CID to check: the AEAD tag still catches it
    assert (code, report["reason"]) == (1, "open_failed")


def test_cloud_encryption_key_file_is_private(client: TestClient) -> None:
    path = Path(_ledger(client).settings.encryption_key_path)
    assert path.name == "cloud-encryption-key.hex" and (path.stat().st_mode & 0o777) == 0o600


def test_an_enterprise_sets_and_rotates_its_own_reader_key(client: TestClient, tmp_path: Path) -> None:
    tenant = register_tenant(client, "SelfService", devices=1)
    other = register_tenant(client, "Other", devices=1)
    key, key2 = tmp_path / "ent.key", tmp_path / "ent2.key"
    public, public2 = _keygen(key), _keygen(key2)
    path = f"/api/v1/enterprises/{tenant.enterprise_id}/reader-key"
    assert client.get(path, headers=auth(tenant.enterprise_key)).status_code == 404
    assert client.put(path, json={"public_key": public}, headers=auth(other.enterprise_key)).status_code == 403
    assert client.put(path, json={"public_key": "04" + "00" * 64}, headers=auth(tenant.enterprise_key)).status_code == 422
    r = client.put(path, json={"public_key": public}, headers=auth(tenant.enterprise_key))
    assert r.status_code == 200, r.text
    assert r.json()["fingerprint"] == key_fingerprint(bytes.fromhex(public)).hex()
    first = _upload(client, tenant, tmp_path)
    assert _open(first, key)[0] == 0
    r = client.put(path, json={"public_key": public2}, headers=auth(tenant.enterprise_key))  # rotates
    assert r.status_code == 200 and client.get(path, headers=auth(ADMIN_KEY)).json()["public_key"] == public2
    second = _upload(client, tenant, tmp_path)
    assert _open(second, key)[1]["reason"] == "not_a_recipient" and _open(second, key2)[0] == 0
    assert _open(first, key)[0] == 0
    assert client.get(path, headers=auth(other.enterprise_key)).status_code == 403
