"""The offline verifier as a subprocess (`python -m carbontrace.verify_bundle`, mounted as `carbontrace verify`):
against a Hardhat node the cloud anchored on, and against the embedded chain through the cloud's /rpc."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.proof_verify import EXIT_CHAIN_UNREACHABLE, EXIT_PENDING, STEP_EXIT
from cloud.app import create_app
from tests.chain.conftest import HardhatNode
from tests.cloud.cloud_testkit import app_client, make_settings, served_over_http
from tests.conftest import REPO_ROOT, free_port
from tests.trace.test_trace_tamper import flip_hex
from tests.trace.trace_kit import Traced, anchor, get, tenant_with_batches, upload_batches


def run_verifier(
    bundle: dict[str, Any] | bytes, rpc: str, tmp: Path, name: str, trust: dict[str, Any], *extra: str
) -> tuple[int, dict[str, Any]]:
    """The verifier as a subprocess, with the trust anchor the cloud published pinned in a file; ``bundle`` as
    JSON, or bytes as they are (a CBOR bundle)."""
    path = tmp / f"{name}.json"
    path.write_bytes(bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode())
    trust_path = tmp / "trust.json"
    trust_path.write_text(json.dumps(trust))
    pin = ["--trust", str(trust_path)] if not extra else list(extra)
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.verify_bundle", str(path), "--rpc", rpc, *pin, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {"stdout": done.stdout, "stderr": done.stderr}
    return done.returncode, report


def one_reading_bundle(client: TestClient, traced: Traced) -> dict[str, Any]:
    reading = traced.readings[0]
    r = get(
        client,
        "/api/v1/trace/bundle",
        traced.tenant.enterprise_key,
        device_id=reading.device_id,
        start=reading.timestamp,
        end=reading.timestamp + 1,
        types="co2",
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
    return r.json()  # type: ignore[no-any-return]


def test_verifier_against_hardhat(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    with app_client(make_settings(tmp_path, chain=cloud_hardhat_node.url)) as client:
        trust = client.get("/api/v1/trust").json()
        traced = tenant_with_batches(client, "Verifier Co", batches=2)
        anchor(client)
        bundle = one_reading_bundle(client, traced)
        statement = get(
            client,
            f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement",
            traced.tenant.enterprise_key,
            start=0,
            end=2_000_000_000,
        ).json()
        upload_batches(client, traced, 1)
        pending = get(client, "/api/v1/trace/bundle", traced.tenant.enterprise_key, types="aggregates").json()

    url = cloud_hardhat_node.url
    code, report = run_verifier(bundle, url, tmp_path, "valid", trust)
    assert code == 0 and report["status"] == "valid", report
    assert [s["step"] for s in report["items"][0]["steps"]][-1] == "consistency"

    code, report = run_verifier(statement, url, tmp_path, "statement", trust)
    assert code == 0 and report["steps"][1]["step"] == "statement_signature", report

    tampered = json.loads(json.dumps(bundle))
    tampered["batches"][0]["signed_header"] = flip_hex(tampered["batches"][0]["signed_header"])
    code, report = run_verifier(tampered, url, tmp_path, "tampered", trust)
    assert (code, report["failed_step"]) == (STEP_EXIT["gateway_signature"], "gateway_signature"), report

    tampered = json.loads(json.dumps(bundle))
    tampered["checkpoints"][0]["consistency_to_newest"] = ["00" * 32]
    code, report = run_verifier(tampered, url, tmp_path, "inconsistent", trust)
    assert (code, report["failed_step"]) == (STEP_EXIT["consistency"], "consistency"), report

    code, report = run_verifier(pending, url, tmp_path, "pending", trust)
    assert code == EXIT_PENDING and report["status"] == "pending", report

    code, report = run_verifier(bundle, f"http://127.0.0.1:{free_port()}", tmp_path, "down", trust)
    assert code == EXIT_CHAIN_UNREACHABLE and report["error"] == "chain_unreachable", report

    path = tmp_path / "human.json"
    path.write_text(json.dumps(bundle))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "carbontrace.verify_bundle",
            str(path),
            "--rpc",
            url,
            "--trust",
            str(tmp_path / "trust.json"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("VALID"), done.stdout + done.stderr


@pytest.fixture
def served_app(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The cloud app (embedded chain) served over real HTTP, so a subprocess can use its /rpc."""
    app = create_app(make_settings(tmp_path))
    with served_over_http(app) as url:
        yield TestClient(app), url


def test_verifier_against_embedded_chain_through_cloud_rpc(served_app: tuple[TestClient, str], tmp_path: Path) -> None:
    client, base = served_app
    trust = client.get("/api/v1/trust").json()
    traced = tenant_with_batches(client, "Demo Co", batches=1)
    anchor(client)
    bundle = one_reading_bundle(client, traced)
    started = time.monotonic()
    code, report = run_verifier(bundle, f"{base}/rpc", tmp_path, "embedded", trust)
    assert code == 0 and report["status"] == "valid", report
    assert time.monotonic() - started < 30
    tampered = json.loads(json.dumps(bundle))
    device_key = next(k for k in tampered["keys"] if k["kind"] == "device")
    device_key["signer"] = "dev-someone-else"  # the chain lists this key for the real device only
    code, report = run_verifier(tampered, f"{base}/rpc", tmp_path, "embedded-tampered", trust)
    assert (code, report["failed_step"]) == (STEP_EXIT["device_key"], "device_key"), report
    # the same bundle in CBOR: told apart by its first byte, verified alike; a non-canonical one is bundle_format
    cbor_bundle = ProofBundle.from_json(bundle).to_cbor()
    code, report = run_verifier(cbor_bundle, f"{base}/rpc", tmp_path, "embedded-cbor", trust)
    assert code == 0 and report["status"] == "valid", report
    longer = cbor_bundle.replace(b"carbontrace-proof-bundle\x01\x03", b"carbontrace-proof-bundle\x01\x18\x03", 1)
    code, report = run_verifier(longer, f"{base}/rpc", tmp_path, "embedded-cbor-longer", trust)
    assert (code, report["failed_step"]) == (STEP_EXIT["bundle_format"], "bundle_format"), report


def test_verifier_needs_a_pinned_trust_anchor_and_strict_json(
    served_app: tuple[TestClient, str], tmp_path: Path
) -> None:
    """No trust anchor: usage error. The bundle's own registry is never believed. Duplicate keys: format."""
    client, base = served_app
    trust = client.get("/api/v1/trust").json()
    assert trust["format"] == "carbontrace-trust" and trust["registry"].startswith("0x"), trust
    traced = tenant_with_batches(client, "Pinned Co", batches=1)
    anchor(client)
    bundle = one_reading_bundle(client, traced)
    rpc = f"{base}/rpc"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.verify_bundle", str(path), "--rpc", rpc, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "trust anchor is required" in done.stderr, done.stderr
    code, report = run_verifier(
        bundle,
        rpc,
        tmp_path,
        "flags",
        trust,
        "--registry",
        trust["registry"].upper().replace("0X", "0x"),
        "--chain-id",
        str(trust["chain_id"]),
    )
    assert code == 0 and report["status"] == "valid", report
    code, report = run_verifier(
        bundle, rpc, tmp_path, "other", trust, "--registry", "0x" + "33" * 20, "--chain-id", str(trust["chain_id"])
    )
    assert (code, report["failed_step"]) == (STEP_EXIT["chain_identity"], "chain_identity"), report
    # a duplicate key: json.loads would keep the last value; two readers could see two bundles
    text = json.dumps(bundle)
    duplicated = text.replace(
        '"format": "carbontrace-proof-bundle"', '"format": "x", "format": "carbontrace-proof-bundle"', 1
    )
    assert duplicated != text and json.loads(duplicated) == bundle
    path.write_text(duplicated)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "carbontrace.verify_bundle",
            str(path),
            "--rpc",
            rpc,
            "--trust",
            str(tmp_path / "trust.json"),
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == STEP_EXIT["bundle_format"] and "duplicate key" in done.stdout, done.stdout + done.stderr
