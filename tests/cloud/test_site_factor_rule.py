"""A site's factor follows from its location by the catalogue rule: registration, the gateway's registry and
every aggregate the cloud accepts agree with carbontrace_protocol/factor_rule.py, and nothing else passes."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.emission_factors import load_catalogue
from carbontrace_protocol.factor_rule import SiteLocation, activity_year, select_factor
from tests.cloud.cloud_testkit import apply_enterprise, auth, make_settings, register_tenant, upload

NORTH_BEIJING = {"country": "CN", "province": "CN-BJ", "grid_region": "CN-GRID-NORTH"}
HEBEI = {"country": "CN", "province": "CN-HE", "grid_region": "CN-GRID-NORTH"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from tests.cloud.cloud_testkit import app_client

    with app_client(make_settings(tmp_path_factory.mktemp("site-factors"))) as c:
        yield c


def _rule(location: dict[str, str], when: int) -> str:
    loc = SiteLocation(location["country"], location.get("province"), location.get("grid_region"))
    today = datetime.datetime.now(datetime.UTC).date()
    return select_factor(load_catalogue(), loc, activity_year(when), today).id


def test_registration_takes_the_location_and_the_factor_is_the_rules(client: TestClient) -> None:
    tenant = register_tenant(client, "Rule North", devices=1, location=NORTH_BEIJING)
    gw = tenant.gateway
    # Beijing has no province factor in the catalogue: its regional grid's, the newest valid year
    assert gw.factor_id == "CN-north-2023"
    r = client.get(f"/api/v1/enterprises/{tenant.enterprise_id}/sites", headers=auth(tenant.enterprise_key))
    site = r.json()[0]
    assert (site["country"], site["province"], site["grid_region"]) == ("CN", "CN-BJ", "CN-GRID-NORTH")
    r = client.get(f"/api/v1/gateways/{gw.gateway_id}/devices", headers=auth(gw.api_key))
    assert r.json()["emission_factor"] == "CN-north-2023"  # what the gateway is configured with
    hebei = register_tenant(client, "Rule Hebei", devices=1, location=HEBEI)
    assert hebei.gateway.factor_id == "CN-HE-2022" == _rule(HEBEI, gw.window_start)  # province before grid


def test_a_hand_picked_factor_is_refused_unless_it_is_the_rules(client: TestClient) -> None:
    enterprise_id, key, _ = apply_enterprise(client, "Picker")
    site = {"site_id": "pick-1", "name": "P", **NORTH_BEIJING}
    r = client.post(f"/api/v1/enterprises/{enterprise_id}/sites", json=site | {"emission_factor": "CN-southwest-2023"},
                    headers=auth(key))
    assert r.status_code == 422 and "CN-north-2023" in r.text, r.text
    r = client.post(f"/api/v1/enterprises/{enterprise_id}/sites", json=site | {"emission_factor": "CN-north-2023"},
                    headers=auth(key))
    assert r.status_code == 201 and r.json()["emission_factor"] == "CN-north-2023", r.text


@pytest.mark.parametrize(
    "location",
    [
        {},  # no location at all
        {"country": "US"},  # no catalogue region (no factor could be confirmed there)
        {"country": "CN", "province": "CN-XX"},
        {"country": "CN", "province": "CN-GRID-NORTH"},  # a grid is not a province
        {"country": "CN", "grid_region": "CN-HE"},  # a province is not a grid
    ],
)
def test_a_location_outside_the_catalogue_is_refused(client: TestClient, location: dict[str, str]) -> None:
    enterprise_id, key, _ = apply_enterprise(client, f"Nowhere {sorted(location.items())}")
    r = client.post(f"/api/v1/enterprises/{enterprise_id}/sites", json={"site_id": "x-1", "name": "X", **location},
                    headers=auth(key))
    assert r.status_code == 422, r.text


def test_the_cloud_refuses_an_aggregate_whose_factor_is_not_the_rules(client: TestClient) -> None:
    tenant = register_tenant(client, "Rule Refuse", devices=1, location=NORTH_BEIJING)
    gw = tenant.gateway
    gw.factor_id = "CN-national-2023"  # a gateway configured with the national average for a North China site
    batch, _ = gw.build(per_device=2)
    r = upload(client, gw, batch)
    assert r.status_code == 422 and r.json()["error"] == "bad_emission_factor", r.text
    assert "CN-north-2023" in r.text and "CN-national-2023" in r.text and "2023" in r.text, r.text
    gw.factor_id = _rule(NORTH_BEIJING, gw.window_start)
    batch, readings = gw.build(per_device=2)
    assert upload(client, gw, batch).status_code == 201
    gw.accepted(batch, readings)


def test_migration_0012_gives_old_sites_a_location(tmp_path: Path) -> None:
    """Sites registered before 0012 keep working: country CN, a picked regional factor becomes the grid."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from cloud.db import alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    config = alembic_config(url)
    command.upgrade(config, "0011")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO enterprises (id, name, chain_account, created_at) "
                       "VALUES ('E', 'E', '0x01', 1)"))
        for site, factor in (("n", "CN-north-2023"), ("s", "CN-southwest-2023"), ("c", "CN-national-2022-fossil")):
            c.execute(text("INSERT INTO sites (id, enterprise_id, name, emission_factor, created_at) "
                           f"VALUES ('{site}', 'E', 'S', '{factor}', 1)"))
    command.upgrade(config, "0012")
    with engine.connect() as c:
        rows = dict(c.execute(text("SELECT id, country || '/' || coalesce(grid_region, '-') FROM sites")).all())
    engine.dispose()
    assert rows == {"n": "CN/CN-GRID-NORTH", "s": "CN/CN-GRID-SOUTHWEST", "c": "CN/-"}
