"""A verifier holding a newer factor catalogue applies the selection rule to the catalogue as of the version a
statement names, so an insider's older factor is caught, not admitted as "one the rule allows".

The insider runs the cloud on an edited catalogue that lacks the 2022 factors, under the name of a real version
(2026-12-01.1, which held them): its gateways stamp 2021's national factor (0.5568 kgCO2/kWh) on a Hebei site
whose rule gives Hebei's 2022 factor (0.7252). After issuing, the insider makes the residual mix the named
version's own (so the market-based figure checks) and re-signs with the cloud key. The verifier, with the
catalogue 2026-12-03.1 whose history lists 2026-12-01.1, knows what that version held."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.emission_factors import CATALOGUE_ENV, load_catalogue
from carbontrace_protocol.market_based import factor_json
from tests.cloud.cloud_testkit import register_tenant
from tests.trace.test_trace_market_based import HEBEI, _resign, _statement, _verify
from tests.trace.trace_kit import Traced, anchor, upload_batches

BUNDLED = Path(__file__).resolve().parents[2] / "carbontrace_protocol" / "data" / "emission_factors.json"
CHINA = {"country": "CN", "province": None, "grid_region": None}  # no province or grid: the national factor
FIRST = {"version": "2026-12-01.1", "date": "2026-12-01"}
JUNE_2026 = 1_780_272_000  # activity in 2026: every factor of 2021 and 2022 was valid by then


def _lineage(path: Path) -> Path:
    """The bundled catalogue as the second version of a history whose first (2026-12-01.1) held the 2021 and
    2022 factors; the 2023 ones were added in 2026-12-03.1."""
    doc = json.loads(BUNDLED.read_text())
    doc["history"] = [FIRST, *doc["history"]]
    for entry in doc["factors"] + doc["publications"]:
        if entry.get("reporting_year", 0) < 2023 and entry["id"] != "CN-MEE-NBS-2023-FACTORS":
            entry["added_in"] = FIRST["version"]
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def _edited_first_version(path: Path) -> Path:
    """The insider's catalogue: 2026-12-01.1 by name, with only the 2021 factors."""
    doc = json.loads(BUNDLED.read_text())
    doc["factors"] = [{**f, "added_in": FIRST["version"]} for f in doc["factors"] if f["reporting_year"] == 2021]
    used = {f["publication"] for f in doc["factors"]}
    doc["publications"] = [{**p, "added_in": FIRST["version"]} for p in doc["publications"] if p["id"] in used]
    doc["default"], doc["history"] = "CN-national-2021", [FIRST]
    doc["catalogue_version"], doc["catalogue_date"] = FIRST["version"], FIRST["date"]
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any], Path]]:
    from tests.cloud.cloud_testkit import app_client, make_settings

    tmp = tmp_path_factory.mktemp("catalogue-versions")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CATALOGUE_ENV, str(_edited_first_version(tmp / "edited.json")))
        with app_client(make_settings(tmp)) as client:
            traced = Traced(register_tenant(client, "Old Factor", devices=2, location=HEBEI))
            traced.tenant.gateway.window_start = JUNE_2026
            upload_batches(client, traced, 3)
            anchor(client)
            statement = _statement(client, traced)
            env.setenv(CATALOGUE_ENV, str(_lineage(tmp / "lineage.json")))
            yield client, statement, tmp


def _insider_residual(client: TestClient, statement: dict[str, Any]) -> dict[str, Any]:
    """The residual mix made the named version's own rule answer (2022's), figures made consistent, re-signed."""
    document = copy.deepcopy(statement)
    market = document["statement"]["market_based"]
    site = market["sites"][0]
    factor = load_catalogue().factors["CN-national-2022-excl-market-nonfossil"]
    site["residual_factor"] = factor_json(factor, None)
    grams = site["energy_wh"]["residual"] * factor.kg_per_kwh_e4
    site["emissions"] = market["emissions"] = {**site["emissions"], "g_e4": grams,
                                               "t_co2": f"{grams // 10**10}.{grams % 10**10:010d}"}
    return _resign(client, document)


def test_the_insiders_statement_uses_the_older_factor(issued: Any) -> None:
    _, statement, _ = issued
    body = statement["statement"]
    assert [f["id"] for f in body["factors"]] == ["CN-national-2021"]
    assert body["market_based"]["catalogue_version"] == FIRST["version"]
    assert body["market_based"]["sites"][0]["residual_factor"]["id"] == "CN-national-2021-excl-market-nonfossil"


def test_an_older_location_factor_is_caught_with_a_newer_verifier_catalogue(issued: Any) -> None:
    client, statement, _ = issued
    report = _verify(client, _insider_residual(client, statement))
    assert (report.status, report.failed_step) == ("invalid", "statement_market_based"), report.as_json()
    assert "uses factor CN-national-2021, not one the rule gives CN/CN-HE/CN-GRID-NORTH for 2026" in report.detail
    assert "['CN-HE-2022']" in report.detail


def test_the_unedited_older_residual_is_caught_too(issued: Any) -> None:
    client, statement, _ = issued
    report = _verify(client, statement)  # as issued: its residual mix is 2021's, the named version held 2022's
    assert (report.status, report.failed_step) == ("invalid", "statement_market_based"), report.as_json()


def _with_a_later_national_factor(lineage: Path, path: Path) -> Path:
    """The lineage with a third (test) version adding a 2024 national factor valid from 2026-12-04: with it,
    the rule would restate 2026 activity to 2024's factor."""
    doc = json.loads(lineage.read_text())
    third = {"version": "2026-12-04.1", "date": "2026-12-04"}
    doc["history"].append(third)
    doc["catalogue_version"], doc["catalogue_date"] = third["version"], third["date"]
    national = next(f for f in doc["factors"] if f["id"] == "CN-national-2023")
    doc["factors"].append({**national, "id": "CN-national-2024-test", "reporting_year": 2024,
                           "valid_from": "2026-12-04", "kg_per_kwh": "0.5000", "added_in": third["version"]})
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def test_a_restatement_is_checked_against_the_version_it_names(tmp_path: Path) -> None:
    """Issued under 2026-12-01.1, restated under 2026-12-03.1 (2022 → 2023); a verifier holding 2026-12-04.1,
    which adds a 2024 factor, recomputes the restatement's factor changes as of 2026-12-03.1 and accepts it."""
    from tests.cloud.cloud_testkit import app_client, make_settings
    from tests.trace.test_trace_restatement import _catalogue_before_2023_factors, _restate

    with pytest.MonkeyPatch.context() as env:
        env.setenv(CATALOGUE_ENV, str(_catalogue_before_2023_factors(tmp_path / "v1.json")))
        with app_client(make_settings(tmp_path)) as client:
            traced = Traced(register_tenant(client, "Restated Later", devices=2, location=CHINA))
            traced.tenant.gateway.window_start = JUNE_2026
            upload_batches(client, traced, 3)
            anchor(client)
            original = _statement(client, traced)
            lineage = _lineage(tmp_path / "v2.json")
            env.setenv(CATALOGUE_ENV, str(lineage))
            r = _restate(client, traced, statement=original)
            assert r.status_code == 201, r.text
            restated = r.json()["statement"]
            changes = restated["statement"]["restatement"]["factor_changes"]
            assert changes == [{"activity_year": 2026, "from": "CN-national-2022", "to": "CN-national-2023"}]
            env.setenv(CATALOGUE_ENV, str(_with_a_later_national_factor(lineage, tmp_path / "v3.json")))
            for document in (original, restated):
                report = _verify(client, document)
                assert report.status == "valid", report.as_json()
