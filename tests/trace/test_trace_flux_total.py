"""`carbontrace flux-total`: a flux proof bundle is verified against the chain first (through the cloud's /rpc, as a
subprocess), and only a valid one is summed into CO2 per chamber over the period, with its uncertainty; a
tampered bundle gives its verifier verdict and no figure."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import flux
from carbontrace_protocol.proof_verify import STEP_EXIT
from cloud.app import create_app
from tests.cloud.cloud_testkit import make_settings, served_over_http
from tests.conftest import REPO_ROOT
from tests.trace.trace_kit import anchor, get, register_tenant_traced, upload_flux_batch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def served_app(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    app = create_app(make_settings(tmp_path))
    with served_over_http(app) as url:
        yield TestClient(app), url


def run_flux_total(bundle: dict[str, Any], rpc: str, tmp: Path, trust: dict[str, Any], *args: str) -> tuple[int, Any]:
    (tmp / "bundle.json").write_text(json.dumps(bundle))
    (tmp / "trust.json").write_text(json.dumps(trust))
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.flux_report", str(tmp / "bundle.json"), "--rpc", rpc, "--trust",
         str(tmp / "trust.json"), *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, {"stdout": done.stdout, "stderr": done.stderr}


def test_flux_total_verifies_then_sums(served_app: tuple[TestClient, str], tmp_path: Path) -> None:
    client, base = served_app
    trust = client.get("/api/v1/trust").json()
    traced = register_tenant_traced(client, "Flux-Total Farm")
    batches = [upload_flux_batch(client, traced) for _ in range(3)]  # three closures, a minute apart
    anchor(client)
    records = [flux.parse_signed_flux(b.fluxes()[0][1])[1] for b in batches]
    assert all(r.qa == flux.QA_OK for r in records)
    start, end = records[0].session[0], records[-1].session[1]
    bundle = get(client, "/api/v1/trace/bundle", traced.tenant.enterprise_key, types="flux").json()
    assert len(bundle["items"]) == 3

    code, answer = run_flux_total(bundle, f"{base}/rpc", tmp_path, trust, "--start", str(start), "--end", str(end))
    assert code == 0, answer
    (chamber,) = answer["chambers"]
    # by hand: each closure stands for the time nearest to it (midpoints between closures, the period's ends)
    mids = [(r.session[0] + r.session[1]) // 2 for r in records]
    bounds = [start, (mids[0] + mids[1]) // 2, (mids[1] + mids[2]) // 2, end]
    spans = [bounds[i + 1] - bounds[i] for i in range(3)]
    per_m2 = sum(r.flux_e3 * s for r, s in zip(records, spans, strict=True))
    assert chamber["per_m2_nmol"] == per_m2 and chamber["covered_s"] == end - start
    assert chamber["sessions_counted"] == 3 and chamber["area_cm2"] == 1000
    assert chamber["co2_ug"] == round(per_m2 * 1000 * 44009 / 10**10)
    variance = sum((r.flux_se_e3 * s) ** 2 for r, s in zip(records, spans, strict=True))
    assert abs(chamber["per_m2_sigma_nmol"] - variance ** 0.5) <= 1
    assert chamber["direction"] == ("emission" if per_m2 > 0 else "removal")

    tampered = json.loads(json.dumps(bundle))
    leaf = bytearray(bytes.fromhex(tampered["items"][1]["leaf"]))
    leaf[-1] ^= 1
    tampered["items"][1]["leaf"] = bytes(leaf).hex()
    code, answer = run_flux_total(tampered, f"{base}/rpc", tmp_path, trust, "--start", str(start), "--end", str(end))
    assert code == STEP_EXIT["device_signature"] and answer["status"] == "invalid" and "chambers" not in answer
