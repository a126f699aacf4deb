"""A regulator decrypts and verifies every raw reading of a period, with its own API key and reader key.

End to end against a real cloud (the embedded chain): the regulator registers its reader key itself, batches are
uploaded and anchored, and `carbontrace audit-period` opens every blob with the regulator's key and verifies it on
chain. A blob corrupted in the content store and a batch sealed before the regulator had a key are reported as
failures, never skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import carbontrace.audit_period as audit_module
from carbontrace.cli import app
from carbontrace.open_blob import load_reader_key
from carbontrace_protocol.reading import Reading
from tests.cloud.cloud_testkit import auth, new_key, register_tenant
from tests.cloud.test_regulator_reader_keys import register_regulator
from tests.trace.trace_kit import Traced, anchor, ledger_of, reader_of, trust_of, upload_batches, upload_retimed_batch


def _regulator(client: TestClient, tmp_path: Path) -> tuple[str, Path]:
    """(regulator API key, its reader key file), the key registered by the regulator itself."""
    reg_id, reg_key = register_regulator(client, "auditor")
    key_file = tmp_path / "regulator-reader.key"
    result = CliRunner().invoke(app, ["cloud", "readers", "keygen", str(key_file)])
    assert result.exit_code == 0, result.output
    r = client.put(
        f"/api/v1/regulators/{reg_id}/reader-key", json={"public_key": result.output.strip()}, headers=auth(reg_key)
    )
    assert r.status_code == 200, r.text
    return reg_key, key_file


def _audit(client: TestClient, reg_key: str, key_file: Path, traced: Traced) -> dict[str, Any]:
    http = TestClient(client.app, headers=auth(reg_key))
    start = traced.batches[0].header["window"][0] if traced.batches else 0
    return audit_module.audit_period(
        http, reader_of(client), trust_of(client), load_reader_key(key_file), traced.tenant.enterprise_id,
        start, start + 3600,
    )


def _expected(readings: list[Reading]) -> set[tuple[str, int, int, int | None]]:
    return {(r.device_id, r.seq, r.timestamp, r.co2_ppm) for r in readings}


def _reported(report: dict[str, Any]) -> set[tuple[str, int, int, int | None]]:
    return {(r["device_id"], r["seq"], r["timestamp"], r.get("co2_ppm")) for r in report["readings"]}


def test_a_regulator_verifies_every_reading_of_a_period(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg_key, key_file = _regulator(client, tmp_path)
    traced = Traced(register_tenant(client, "Audited", devices=2))
    upload_batches(client, traced, 3, per_device=2)
    anchor(client)
    report = _audit(client, reg_key, key_file, traced)
    assert report["status"] == "verified", report["failures"]
    assert (report["batches"], report["batches_failed"]) == (3, 0)
    assert report["readings_verified"] == len(traced.readings) == 12
    assert _reported(report) == _expected(traced.readings)  # the raw values, decrypted by the regulator
    assert report["aggregates_verified"] == 6

    # the command itself: the regulator's API key file, its reader key, the cloud's trust anchor
    api_key_file = tmp_path / "regulator-api-key"
    api_key_file.write_text(reg_key + "\n")
    monkeypatch.setattr(audit_module.httpx, "Client", lambda **kw: TestClient(client.app, headers=kw["headers"]))
    monkeypatch.setattr(audit_module.Web3ChainReader, "over_http", lambda *_: reader_of(client))
    start = traced.batches[0].header["window"][0]
    args = ["audit-period", "--cloud", "http://cloud", "--api-key-file", str(api_key_file), "--reader-key",
            str(key_file), "--enterprise", traced.tenant.enterprise_id, "--start", str(start), "--end", str(start + 60)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["status"], printed["batches"], printed["readings_verified"]) == ("verified", 1, 4)


def test_a_corrupted_blob_and_a_batch_sealed_before_the_regulator_are_failures(
    client: TestClient, tmp_path: Path
) -> None:
    traced = Traced(register_tenant(client, "Failing", devices=1))
    upload_batches(client, traced, 1)  # sealed before the regulator had a reader key: no wrap for it
    reg_key, key_file = _regulator(client, tmp_path)
    upload_batches(client, traced, 2)
    anchor(client)
    ledger = ledger_of(client)
    # the third batch's blob file in the content store, one byte flipped
    rows = client.get(f"/api/v1/batches/{traced.tenant.gateway.gateway_id}/2", headers=auth(reg_key)).json()
    (path,) = Path(ledger.settings.content_dir).rglob(rows["cid"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))

    report = _audit(client, reg_key, key_file, traced)
    assert report["status"] == "failed" and report["batches"] == 3
    failures = {f["batch_id"]: f["reason"] for f in report["failures"]}
    gw = traced.tenant.gateway.gateway_id
    assert failures == {f"{gw}/0": "not_a_recipient", f"{gw}/2": "content_store"}
    assert report["readings_verified"] == 2  # the one good batch, verified whole
    assert _reported(report) == _expected(traced.readings[2:4])


class _LyingCloud(TestClient):
    """The regulator's view of a cloud that serves another batch's blob for batch 1 and passes off a device key
    of its own making for another device: the regulator's own checks must catch both."""

    def __init__(self, client: TestClient, reg_key: str, gateway_id: str, device_id: str) -> None:
        super().__init__(client.app, headers=auth(reg_key))
        self.gateway_id, self.device_id = gateway_id, device_id

    def get(self, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if url == f"/api/v1/batches/{self.gateway_id}/1/blob":
            url = f"/api/v1/batches/{self.gateway_id}/0/blob"
        response = super().get(url, **kwargs)
        if url.endswith("/batches"):
            listing = response.json()
            _, forged = new_key()
            listing["device_keys"] = [
                {**k, "public_key": forged.hex()} if k["signer"] == self.device_id else k for k in listing["device_keys"]
            ]
            response._content = json.dumps(listing).encode()
        return response


def test_a_lying_cloud_is_caught_by_the_regulators_own_checks(client: TestClient, tmp_path: Path) -> None:
    reg_key, key_file = _regulator(client, tmp_path)
    traced = Traced(register_tenant(client, "Lied", devices=2))
    upload_batches(client, traced, 2)
    anchor(client)
    gw, forged_device = traced.tenant.gateway.gateway_id, traced.tenant.gateway.devices[1].device_id
    start = traced.batches[0].header["window"][0]
    report = audit_module.audit_period(
        _LyingCloud(client, reg_key, gw, forged_device), reader_of(client), trust_of(client),
        load_reader_key(key_file), traced.tenant.enterprise_id, start, start + 3600,
    )
    failures = {f["batch_id"]: (f["reason"], f["detail"]) for f in report["failures"]}
    assert failures[f"{gw}/1"][0] == "content_store" and "not " in failures[f"{gw}/1"][1]  # CID recomputed
    assert failures[f"{gw}/0"][0] == "device_key"  # the chain does not list the cloud's key for that device
    assert report["status"] == "failed" and report["readings_verified"] == 0


class _DroppingCloud(TestClient):
    """A cloud that leaves one batch out of the period's listing."""

    def __init__(self, client: TestClient, reg_key: str, dropped: str) -> None:
        super().__init__(client.app, headers=auth(reg_key))
        self.dropped = dropped

    def get(self, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().get(url, **kwargs)
        if url.endswith("/batches"):
            listing = response.json()
            listing["batches"] = [b for b in listing["batches"] if b["batch_id"] != self.dropped]
            response._content = json.dumps(listing).encode()
        return response


def test_a_batch_left_out_of_the_listing_breaks_the_gateways_chain(client: TestClient, tmp_path: Path) -> None:
    reg_key, key_file = _regulator(client, tmp_path)
    traced = Traced(register_tenant(client, "Dropped", devices=1))
    upload_batches(client, traced, 3)
    anchor(client)
    gw = traced.tenant.gateway.gateway_id
    start = traced.batches[0].header["window"][0]
    report = audit_module.audit_period(
        _DroppingCloud(client, reg_key, f"{gw}/1"), reader_of(client), trust_of(client), load_reader_key(key_file),
        traced.tenant.enterprise_id, start, start + 3600,
    )
    assert [(f["batch_id"], f["reason"]) for f in report["failures"]] == [(f"{gw}/2", "batch_chain")]
    assert report["status"] == "failed" and report["readings_verified"] == 2  # batch 0 still verified


def test_a_retimed_reading_is_audited_at_the_time_its_reference_gives(client: TestClient, tmp_path: Path) -> None:
    """A reading taken before its device's time sync is placed in the period, and verified, by the time its
    signed reference re-derives (the blob's evidence, carried in the regulator's bundle item)."""
    reg_key, key_file = _regulator(client, tmp_path)
    traced = Traced(register_tenant(client, "Retimed-Audit", devices=1))
    retimed = upload_retimed_batch(client, traced)
    anchor(client)
    report = _audit(client, reg_key, key_file, traced)
    assert report["status"] == "verified", report["failures"]
    assert report["readings_verified"] == 2
    unsynced, reference = retimed.unsynced, retimed.reference
    assert _reported(report) == {
        (unsynced.device_id, unsynced.seq, retimed.retimed_at, unsynced.co2_ppm),
        (reference.device_id, reference.seq, reference.timestamp, reference.co2_ppm),
    }
