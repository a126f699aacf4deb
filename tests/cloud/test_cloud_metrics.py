"""The cloud's /metrics: the scrape token, ingestion and rejections by the reason the upload answered, the anchoring
queue, chain errors, and request latency by route template (never by raw path)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cloud.ledger import Ledger
from cloud.settings import Settings
from tests.cloud.cloud_testkit import ADMIN_KEY, app_client, auth, make_settings, register_tenant, upload
from tests.cloud.prometheus_text import exposed_names, samples, value


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _token(settings: Settings) -> str:
    return Path(settings.metrics_token_path).read_text().strip()


def scrape(client: TestClient, token: str) -> str:
    r = client.get("/metrics", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    text: str = r.text
    return text


def test_metrics_need_the_scrape_token_not_an_api_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        token = _token(settings)
        assert oct(Path(settings.metrics_token_path).stat().st_mode & 0o777) == "0o600"
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=auth(ADMIN_KEY)).status_code == 401  # the operator key opens nothing here
        assert client.get("/metrics", headers=auth(token + "0")).status_code == 401
        assert "ct_cloud_batches_accepted_total" in scrape(client, token)
    with app_client(settings) as client:  # a restart keeps the token (Prometheus holds a copy)
        assert _token(settings) == token
        scrape(client, token)


def test_ingestion_rejections_and_anchoring_queue(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        token = _token(settings)
        ledger = _ledger(client)
        gw = register_tenant(client, "Metrics", devices=2).gateway
        batch, readings = gw.build(per_device=3)
        first = upload(client, gw, batch)
        assert first.status_code == 201, first.text
        assert upload(client, gw, batch).status_code == 200  # a retry: same receipt
        gw.accepted(batch, readings)

        malformed = upload(client, gw, b"\xa1\x00")  # type: ignore[arg-type]
        assert malformed.status_code == 422, malformed.text
        gw.batch_seq += 5  # skips ahead: the cloud answers out_of_order
        ahead, _ = gw.build()
        skipped = upload(client, gw, ahead)
        assert skipped.status_code == 409, skipped.text
        gw.batch_seq -= 5

        text = scrape(client, token)
        assert value(text, "ct_cloud_batches_accepted_total") == 1
        assert value(text, "ct_cloud_readings_accepted_total") == first.json()["readings"] == len(readings)
        assert value(text, "ct_cloud_batches_duplicate_total") == 1
        for answer in (malformed, skipped):  # labelled with exactly the code the gateway was told
            assert value(text, "ct_cloud_batches_rejected_total", reason=answer.json()["error"]) == 1
        rejected = [k for k in samples(text) if k[0] == "ct_cloud_batches_rejected_total"]
        assert len(rejected) == 2
        # One leaf in the log, none anchored yet: it waits, and its wait is measured.
        assert value(text, "ct_cloud_log_leaves") == 1
        assert value(text, "ct_cloud_unanchored_leaves") == 1
        assert value(text, "ct_cloud_anchoring_lag_seconds") > 0
        assert value(text, "ct_cloud_database_up") == 1

        report = ledger.anchorer.tick(force_checkpoint=True)
        assert report.anchored == 1, report
        text = scrape(client, token)
        assert value(text, "ct_cloud_unanchored_leaves") == 0
        assert value(text, "ct_cloud_anchoring_lag_seconds") == 0
        assert value(text, "ct_cloud_checkpoints_pending") == 0
        assert all(value(text, "ct_cloud_anchoring_halted", reason=r) == 0
                   for r in ("operator_unfunded", "chain_unavailable", "chain_error"))


def test_request_latency_is_labelled_by_route_template(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        token = _token(settings)
        gw = register_tenant(client, "Routes", devices=1).gateway
        batch, _ = gw.build()
        assert upload(client, gw, batch).status_code == 201
        for seq in (0, 1, 2):  # three raw paths, one template
            client.get(f"/api/v1/batches/{gw.gateway_id}/{seq}", headers=auth(ADMIN_KEY))
        for n in range(3):
            assert client.get(f"/no/such/path/{n}").status_code == 404
        assert client.request("BREW", "/api/v1/batches").status_code == 405  # any token is a method to the server
        text = scrape(client, token)
        routes = {dict(labels)["route"] for name, labels in samples(text) if name.endswith("_count")
                  and name.startswith("ct_cloud_request_duration_seconds")}
        assert "/api/v1/batches" in routes
        assert "/api/v1/batches/{gateway_id}/{batch_seq}" in routes
        assert "unmatched" in routes
        assert not any(gw.gateway_id in r or "/no/such" in r for r in routes)
        template = "/api/v1/batches/{gateway_id}/{batch_seq}"
        found = value(text, "ct_cloud_request_duration_seconds_count", method="GET", route=template, status="200")
        missing = value(text, "ct_cloud_request_duration_seconds_count", method="GET", route=template, status="404")
        assert (found, missing) == (1, 2)
        methods = {dict(labels)["method"] for name, labels in samples(text)
                   if name == "ct_cloud_request_duration_seconds_count"}
        assert methods == {"GET", "POST", "OTHER"}


def test_every_family_is_declared_before_its_first_sample(tmp_path: Path) -> None:
    """A dashboard may name a counter that has not moved yet (no rejection, no chain error): it is still declared."""
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        names = exposed_names(scrape(client, _token(settings)))
    for name in ("ct_cloud_batches_rejected_total", "ct_cloud_chain_errors_total",
                 "ct_cloud_content_store_errors_total", "ct_cloud_request_duration_seconds_bucket"):
        assert name in names
