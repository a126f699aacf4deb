"""A running cloud (uvicorn with the production log set-up) and a running gateway process: the cloud's JSON request
log lines and the secrets they must never hold, and the Grafana dashboard's metric names against both /metrics."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from carbontrace.benchmarks.common import reading_topic
from carbontrace.benchmarks.mqtt_load import publish_all
from carbontrace.servers import CloudProcess, GatewayProcess, free_port, wait_until
from edge_gateway.cli import gateway_app
from edge_gateway.spool import Spool
from tests.cloud.prometheus_text import exposed_names, value
from tests.conftest import REPO_ROOT, MosquittoBroker

pytestmark = pytest.mark.timeout(180)

DASHBOARD = REPO_ROOT / "ops" / "grafana" / "carbontrace.json"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    process = CloudProcess(tmp_path_factory.mktemp("cloud"), jobs_interval_s=0)
    process.env["CT_CLOUD_LOG_LEVEL"] = "INFO"  # the request lines are INFO
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _log_lines(cloud: CloudProcess) -> list[dict[str, Any]]:
    lines = [line for line in cloud.log_path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object, uvicorn's own too


def test_request_log_lines_carry_id_route_status_duration_and_no_secret(cloud: CloudProcess, tmp_path: Path) -> None:
    tenant = cloud.register_tenant(1, tmp_path, prefix="logs")
    wrong_key = "ct_" + secrets.token_hex(32)  # shaped like a real key: it must not be echoed into the log
    request_id = "probe-" + secrets.token_hex(4)
    with httpx.Client(base_url=cloud.url, timeout=30) as http:
        r = http.get(f"/api/v1/gateways/{tenant.gateway_id}/devices", headers={
            "Authorization": f"Bearer {tenant.gateway_api_key}", "X-Request-ID": request_id})
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == request_id
        refused = http.get(f"/api/v1/gateways/{tenant.gateway_id}", headers={"Authorization": f"Bearer {wrong_key}"})
        assert refused.status_code == 401
        assert http.get("/metrics", headers={"Authorization": f"Bearer {cloud.metrics_token}"}).status_code == 200
        generated = http.get("/healthz", headers={"X-Request-ID": "not a token; " + "x" * 80}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)  # a malformed id is replaced, not logged as given
    lines = _log_lines(cloud)
    mine = [e for e in lines if e.get("request_id") == request_id]
    assert len(mine) == 1, mine
    line = mine[0]
    assert (line["msg"], line["method"], line["route"], line["status"]) == (
        "request", "GET", "/api/v1/gateways/{gateway_id}/devices", 200)
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert {"ts", "level", "logger"} <= set(line)
    assert any(e.get("route") == "/api/v1/gateways/{gateway_id}" and e.get("status") == 401 for e in lines)
    text = cloud.log_path.read_text()
    for secret in (cloud.operator_key, tenant.enterprise_key, tenant.gateway_api_key, cloud.metrics_token, wrong_key):
        assert secret not in text
    assert "Bearer" not in text and "authorization" not in text.lower()


# PromQL words that are not metric names (functions are recognised by the "(" after them).
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside label matchers, grouping clauses,
    ranges and strings, not called as functions."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", bare):
        rest = bare[match.end():].lstrip()
        if match.group() not in _KEYWORDS and not rest.startswith("("):
            names.add(match.group())
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_metric_names_of_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, route) (rate(ct_x_bucket{route="/a"}[5m]))) / time() - ct_y offset 5m'
    assert metric_names(expr) == {"ct_x_bucket", "ct_y"}


def test_dashboard_names_only_metrics_a_running_gateway_and_cloud_expose(
    cloud: CloudProcess, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    tenant = cloud.register_tenant(1, tmp_path, prefix="dash")
    access = mosquitto.add_gateway(tenant.site_id, tenant.gateway_id)
    port = free_port()
    gateway = GatewayProcess(tmp_path / "gw", tenant, cloud.url, access, metrics_port=port)
    gateway.start()
    try:
        gateway_text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        gateway.stop()
    cloud_text = httpx.get(f"{cloud.url}/metrics", headers={"Authorization": f"Bearer {cloud.metrics_token}"},
                           timeout=10).text
    exposed = exposed_names(gateway_text) | exposed_names(cloud_text)
    named = set().union(*(metric_names(e) for e in _dashboard_exprs()))
    assert named - exposed == set()
    # both tiers are on it
    assert any(n.startswith("ct_gateway_") for n in named) and any(n.startswith("ct_cloud_") for n in named)


def test_revoked_gateway_halts_its_uploads_with_a_status_line_and_a_metric(
    cloud: CloudProcess, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Before: the cloud's 401 for a revoked gateway's key looked like any bad key, and the gateway retried it
    forever. Now the 401 says gateway_revoked, the gateway halts once and `gateway status` says what to do."""
    tenant = cloud.register_tenant(1, tmp_path, prefix="rvk")
    (device,) = tenant.devices
    publisher = mosquitto.add_publisher(tenant.site_id, "rvk-pub")  # every credential before anyone connects
    access = mosquitto.add_gateway(tenant.site_id, tenant.gateway_id)
    port = free_port()
    gateway = GatewayProcess(tmp_path / "gw", tenant, cloud.url, access, metrics_port=port, window_s=1)
    gateway.start()
    spool = Spool(gateway.spool_path)
    now = int(time.time())
    try:
        def publish(seqs: range) -> None:
            publish_all(publisher, [(reading_topic(tenant.site_id, device.device_id), device.signed(s, now + s))
                                    for s in seqs])

        publish(range(0, 3))
        wait_until(lambda: spool.stats()["acked_batches"] >= 1, 60, "a first batch acknowledged")
        r = httpx.post(f"{cloud.url}/api/v1/gateways/{tenant.gateway_id}/revoke",
                       headers={"Authorization": f"Bearer {tenant.enterprise_key}"}, timeout=30)
        assert r.status_code == 200, r.text
        publish(range(3, 6))
        wait_until(lambda: spool.stats()["upload_halted"] is not None, 60, "the upload halt")
        publish(range(6, 9))  # the gateway goes on verifying and spooling; it only stops uploading
        wait_until(lambda: spool.stats()["unacked_batches"] >= 2, 60, "a second unacknowledged batch")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        spool.close()
        gateway.stop()
    assert json.loads(Spool(gateway.spool_path).stats()["upload_halted"])["reason"] == "gateway_revoked"
    assert value(metrics, "ct_gateway_upload_halted") == 1
    status = CliRunner().invoke(gateway_app, ["status", "--config", str(gateway.config)])
    assert status.exit_code == 0, status.output
    (halt,) = json.loads(status.stdout)["halts"]
    assert halt["state"] == "gateway_revoked" and "replacement" in halt["resolve"]
    refused = [e for e in _log_lines(cloud) if e.get("route") == "/api/v1/batches" and e.get("status") == 401]
    assert len(refused) == 1  # halted at the first refusal: no retry storm against a key that never works again
