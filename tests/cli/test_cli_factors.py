"""`carbontrace factors rule` prints the catalogue rule's factor with its official source; `site-add`
registers a site with its location (the client function, against the real cloud app)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from carbontrace.cli import app
from carbontrace.factors_cli import add_site


def test_rule_prints_the_factor_and_its_source() -> None:
    result = CliRunner().invoke(app, ["factors", "rule", "--country", "CN", "--province", "CN-BJ",
                                      "--grid-region", "CN-GRID-NORTH", "--year", "2024", "--on", "2025-06-01"])
    assert result.exit_code == 0, result.output
    factor = json.loads(result.output)["factor"]
    assert (factor["id"], factor["kg_per_kwh_e4"], factor["source"]["publication_date"]) == (
        "CN-north-2022", 6776, "2024-12-20")


def test_rule_refuses_a_location_outside_the_catalogue() -> None:
    result = CliRunner().invoke(app, ["factors", "rule", "--country", "CN", "--province", "CN-ZZ", "--year", "2024"])
    assert result.exit_code == 2


def test_site_add_registers_the_location(tmp_path: Path) -> None:
    from tests.cloud.cloud_testkit import app_client, apply_enterprise, make_settings

    with app_client(make_settings(tmp_path)) as client:
        enterprise_id, key, _ = apply_enterprise(client, "CLI Site")
        site = add_site(client, key, enterprise_id, {"site_id": "cli-1", "name": "C", "country": "CN",
                                                      "province": "CN-SC", "grid_region": "CN-GRID-SOUTHWEST"})
    assert (site["province"], site["emission_factor"]) == ("CN-SC", "CN-SC-2022")
