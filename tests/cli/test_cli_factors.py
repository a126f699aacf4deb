"""`carbontrace factors rule` prints the catalogue rule's factor with its official source; `site-add`
registers a site with its location (the client function, against the real cloud app); a refusal or an
unreachable cloud is a message and exit 1 (the cloud served over real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbontrace.cli import app
from carbontrace.factors_cli import add_site


def test_rule_prints_the_factor_and_its_source() -> None:
    result = CliRunner().invoke(app, ["factors", "rule", "--country", "CN", "--province", "CN-BJ",
                                      "--grid-region", "CN-GRID-NORTH", "--year", "2024", "--on", "2025-06-01"])
    assert result.exit_code == 0, result.output
    factor = json.loads(result.stdout)["factor"]
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


@pytest.fixture
def served_cloud(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The cloud app over real HTTP, with one enterprise: (base URL, enterprise id, its key file)."""
    from fastapi.testclient import TestClient

    from cloud.app import create_app
    from tests.cloud.cloud_testkit import apply_enterprise, make_settings, served_over_http

    app = create_app(make_settings(tmp_path))
    with served_over_http(app) as url:
        enterprise_id, key, _ = apply_enterprise(TestClient(app), "CLI Refusal")
        key_file = tmp_path / "enterprise.key"
        key_file.write_text(key)
        yield url, enterprise_id, key_file


def _site_add(base: str, enterprise_id: str, key_file: Path, *location: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["factors", "site-add", "--cloud", base, "--enterprise", enterprise_id,
                                      "--api-key-file", str(key_file), "--site-id", "cli-2", "--name", "R",
                                      *location])
    return result.exit_code, result.output, result.exception


def test_site_add_prints_a_refusal_and_exits_1(served_cloud: tuple[str, str, Path]) -> None:
    base, enterprise_id, key_file = served_cloud
    code, output, exception = _site_add(base, enterprise_id, key_file, "--country", "CN", "--province", "CN-ZZ")
    assert code == 1 and isinstance(exception, SystemExit), (code, output, exception)
    assert "site registration refused (422)" in output, output
    code, output, _ = _site_add(base, enterprise_id, key_file, "--country", "CN", "--province", "CN-SC",
                                "--grid-region", "CN-GRID-SOUTHWEST")
    assert code == 0 and json.loads(output)["emission_factor"] == "CN-SC-2022", output


def test_site_add_says_when_the_cloud_is_unreachable(tmp_path: Path) -> None:
    from tests.conftest import free_port

    key_file = tmp_path / "enterprise.key"
    key_file.write_text("ct_unused")
    code, output, exception = _site_add(f"http://127.0.0.1:{free_port()}", "ent-x", key_file, "--country", "CN")
    assert code == 1 and isinstance(exception, SystemExit), (code, output, exception)
    assert "cannot reach the cloud" in output, output
