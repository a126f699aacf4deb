"""The console's read endpoints on SQLite and on a real PostgreSQL (window functions, FILTER, grouping),
with every figure recomputed here from the batches the test built."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import views
from tests.cloud.cloud_testkit import app_client, auth, make_settings, register_tenant, upload
from tests.cloud.conftest import PostgresCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    tmp = tempfile.mkdtemp(prefix="ct-console-pg-")
    cluster = PostgresCluster(Path(tmp))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path}/cloud.db"
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database()
    with app_client(make_settings(tmp_path, database_url=url)) as client:
        yield client


def test_sites_emissions_batches_and_pulse_agree_with_what_was_uploaded(api: TestClient) -> None:
    tenant = register_tenant(api, "Initech", devices=2)
    other = register_tenant(api, "Umbrella", devices=1)
    gw = tenant.gateway
    uploaded_aggregates = []
    for n, skip in enumerate((0, 3, 0)):
        for device in gw.devices:
            device.next_seq += skip
        batch, readings = gw.build(per_device=2 + n)
        assert upload(api, gw, batch).status_code == 201
        gw.accepted(batch, readings)
        uploaded_aggregates += [
            views.leaf_content(batch.leaves[i], batch.openings[i])[1] for i, _ in batch.aggregates()
        ]
    batch, readings = other.gateway.build()
    assert upload(api, other.gateway, batch).status_code == 201
    api.app.state.ledger.anchorer.tick(force_checkpoint=True)  # type: ignore[attr-defined]
    key = auth(tenant.engineer_key)

    sites = api.get("/api/v1/console/sites", headers=key).json()
    assert [s["site_id"] for s in sites] == [gw.site_id]
    for device in sites[0]["devices"]:
        kit = next(d for d in gw.devices if d.device_id == device["device_id"])
        assert device["readings"] == 2 + 3 + 4 and device["last_seq"] == kit.next_seq - 1
        first_hole = 1 + 2  # seq 1..2, then three skipped (3..5), then 6..8 and 9..12
        assert device["gaps"] == [[first_hole, first_hole + 2]] and device["missing"] == 3
        assert device["rejected"] is None  # the gateway has not reported yet

    series = api.get("/api/v1/console/emissions", headers=key).json()
    expected: dict[int, int] = {}
    for aggregate in uploaded_aggregates:
        grams = aggregate.get("emissions_g")
        if grams is not None:  # a decimal fraction {"e", "m"}; the console sums grams x 1e4
            start = aggregate["window"][0]
            expected[start] = expected.get(start, 0) + grams["m"] * 10 ** (grams["e"] + 4)
    assert {p["window"][0]: p["emissions_g_e4"] for p in series["points"]} == expected
    # shown as a statement reports it: exact tCO2 (1 t = 1e10 g x 1e-4), location-based
    for point in series["points"]:
        g_e4 = expected[point["window"][0]]
        assert point["emissions"] == {"t_co2": f"{g_e4 // 10**10}.{g_e4 % 10**10:010d}", "unit": "tCO2", "gas": "CO2",
                                      "method": "location-based", "g_e4": g_e4}
    total = sum(expected.values())
    assert series["total"]["t_co2"] == f"{total // 10**10}.{total % 10**10:010d}" and total > 0
    assert series["total"]["method"] == "location-based"
    assert set(series["factors"]) == {gw.factor_id} and series["factors"][gw.factor_id]["source"]

    batches = api.get("/api/v1/console/batches", headers=key).json()
    assert [b["batch_seq"] for b in batches] == [2, 1, 0]
    assert all(b["checkpoint_seq"] == 0 and b["tx_hash"].startswith("0x") for b in batches)
    pulse = api.get("/api/v1/console/pulse", headers=key).json()
    assert pulse == {"batches": 3, "last_batch_log_index": batches[0]["log_index"], "checkpoints": 1, "anchored": 1}

    # scope: the other tenant's engineer gets only its own; a gateway key gets nothing; no key is 401
    assert [s["site_id"] for s in api.get("/api/v1/console/sites", headers=auth(other.engineer_key)).json()] == [
        other.gateway.site_id
    ]
    r = api.get("/api/v1/console/sites", params={"enterprise_id": tenant.enterprise_id}, headers=auth(other.engineer_key))
    assert r.status_code == 403
    assert api.get("/api/v1/console/sites", headers=auth(gw.api_key)).status_code == 403
    assert api.get("/api/v1/console/sites").status_code == 401


def test_health_reports_are_validated_and_stay_with_the_reporting_gateways_site(api: TestClient) -> None:
    tenant = register_tenant(api, "Initech", devices=1)
    other = register_tenant(api, "Umbrella", devices=1)
    gw, victim = tenant.gateway, other.gateway.devices[0].device_id
    url = f"/api/v1/gateways/{gw.gateway_id}/health"
    mine = gw.devices[0].device_id
    too_many_gaps = {"devices": [{"device": mine, "gaps": [[i, i] for i in range(0, 200, 2)]}]}
    assert api.post(url, json=too_many_gaps, headers=auth(gw.api_key)).status_code == 422
    assert api.post(url, json={"devices": [{"device": "no spaces"}]}, headers=auth(gw.api_key)).status_code == 422
    assert api.post(url, json={"devices": []}, headers=auth(tenant.engineer_key)).status_code == 403
    # A gateway that names another tenant's device cannot put numbers on that tenant's console.
    report = {"devices": [{"device": victim, "rejections": {"replay": 9}}, {"device": mine, "gaps": [[7, 9]]}]}
    r = api.post(url, json=report, headers=auth(gw.api_key))
    assert r.status_code == 200 and r.json()["devices"] == 3  # the two named and the "_unregistered" line
    theirs = api.get("/api/v1/console/sites", headers=auth(other.engineer_key)).json()[0]["devices"][0]
    assert theirs["device_id"] == victim and theirs["rejected"] is None and theirs["rejections"] == {}
    ours = api.get("/api/v1/console/sites", headers=auth(tenant.engineer_key)).json()[0]["devices"][0]
    assert ours["rejected"] == 0 and ours["gateway_gaps"] == [[7, 9]]
    # the next report replaces the previous one; an empty report still counts as a report
    assert api.post(url, json={"devices": []}, headers=auth(gw.api_key)).status_code == 200
    site = api.get("/api/v1/console/sites", headers=auth(tenant.engineer_key)).json()[0]
    assert site["devices"][0]["rejected"] == 0 and site["devices"][0]["gateway_gaps"] == []
    assert site["gateways"][0]["health_reported_at"] is not None


def test_emissions_show_the_market_based_total_beside_the_location_based(api: TestClient) -> None:
    """Market-based by the protocol's rule over the series' windows: a GEC registered for the site (on
    PostgreSQL under its advisory lock) covers its share of the period, the rest is at China's residual mix
    (MEE/NBS 2023, 0.6096), the location-based total unchanged."""
    tenant = register_tenant(api, "Green Console", devices=1)
    gw = tenant.gateway
    for _ in range(2):
        batch, readings = gw.build(per_device=3)
        assert upload(api, gw, batch).status_code == 201
        gw.accepted(batch, readings)
    key = auth(tenant.enterprise_key)
    before = api.get("/api/v1/console/emissions", headers=key).json()
    energy = sum(p["delta_wh"] for p in before["points"])
    start, end = before["points"][0]["window"][0], before["points"][-1]["window"][1]
    assert energy > 0 and before["market_based"]["method"] == "market-based"
    assert before["market_based"]["g_e4"] == energy * 6096  # no instrument: all at the residual mix
    assert before["total"]["method"] == "location-based"
    gec = {"kind": "gec", "instrument_id": "GEC-CONSOLE-1", "issuer": "China Green Certificate Issuance and "
           "Trading Platform", "volume_wh": energy // 3, "delivery": {"start": start, "end": end},
           "rate_kg_per_kwh_e4": 0, "evidence_sha256": None}
    r = api.post(f"/api/v1/sites/{gw.site_id}/instruments", json=gec, headers=key)
    assert r.status_code == 201, r.text
    assert api.post(f"/api/v1/sites/{gw.site_id}/instruments", json=gec, headers=key).status_code == 409
    after = api.get("/api/v1/console/emissions", headers=key, params={"start": start, "end": end}).json()
    assert after["total"] == before["total"]
    g_e4 = (energy - energy // 3) * 6096
    assert after["market_based"] == {"t_co2": f"{g_e4 // 10**10}.{g_e4 % 10**10:010d}", "unit": "tCO2",
                                     "gas": "CO2", "method": "market-based", "g_e4": g_e4}
