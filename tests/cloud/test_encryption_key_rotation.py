"""`carbontrace cloud rotate-encryption-key`: new batches are sealed to a new cloud key, the old private key is kept
(0600) so blobs sealed before still open for trace and retrieve, and the new blob has no recipient for the old key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from carbontrace_protocol import sealed_blob
from carbontrace_protocol.ids import key_fingerprint
from cloud.cli import cloud_app
from cloud.encryption_keys import load_sealer, retired_key_files
from tests.cloud.cloud_testkit import app_client, auth, make_settings, register_tenant
from tests.trace.trace_kit import Traced, ledger_of, upload_batches


def _recipients(client: TestClient, cid: str) -> tuple[bytes, ...]:
    return sealed_blob.parse(ledger_of(client).store.get(cid)).fingerprints


def _retrieved(client: TestClient, traced: Traced) -> list[dict[str, object]]:
    r = client.get(
        "/api/v1/trace/retrieve",
        params={"enterprise_id": traced.tenant.enterprise_id, "types": ["co2"], "limit": 1000},
        headers=auth(traced.tenant.enterprise_key),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_rotated_encryption_key_seals_new_batches_and_old_blobs_still_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    key_file = Path(settings.encryption_key_path)
    with app_client(settings) as client:
        traced = Traced(register_tenant(client, "Rotating", devices=1))
        upload_batches(client, traced, 1)
        chain = ledger_of(client).chain.connect()
        first_cid = client.get(
            f"/api/v1/batches/{traced.tenant.gateway.gateway_id}/0", headers=auth(traced.tenant.enterprise_key)
        ).json()["cid"]
        old_public = ledger_of(client).sealer.public_key

    monkeypatch.setenv("CT_CLOUD_ENCRYPTION_KEY_FILE", str(key_file))
    result = CliRunner().invoke(cloud_app, ["rotate-encryption-key"])
    assert result.exit_code == 0, result.output
    (retired,) = retired_key_files(key_file)
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_sealer(retired, allow_create=False).public_key == old_public  # the old private key, kept

    with app_client(settings, chain) as client:  # the restarted cloud, on the same chain
        sealer = ledger_of(client).sealer
        assert sealer.public_key != old_public and len(sealer.retired) == 1
        upload_batches(client, traced, 1)
        second_cid = client.get(
            f"/api/v1/batches/{traced.tenant.gateway.gateway_id}/1", headers=auth(traced.tenant.enterprise_key)
        ).json()["cid"]
        old, new = key_fingerprint(old_public), key_fingerprint(sealer.public_key)
        assert old in _recipients(client, first_cid) and new not in _recipients(client, first_cid)
        assert new in _recipients(client, second_cid) and old not in _recipients(client, second_cid)
        items = _retrieved(client, traced)
        assert len(items) == len(traced.readings) == 4
        assert all(i["status"] == "retrieved" for i in items), [i["steps"] for i in items]
        assert {i["batch_id"] for i in items} == {f"{traced.tenant.gateway.gateway_id}/{n}" for n in (0, 1)}
        assert {i["view"]["co2_ppm"] for i in items} == {r.co2_ppm for r in traced.readings}
