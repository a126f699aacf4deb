"""The factor catalogue is data parsed strictly: the bundled one parses, every factor cites an official
publication, and each conformance case in docs/conformance/factor-catalogue/ gets its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrace_protocol.emission_factors import (
    KIND_LOCATION,
    KIND_RESIDUAL,
    CatalogueError,
    as_of,
    get_factor,
    load_catalogue,
    parse_catalogue,
)
from tests.protocol.make_factor_catalogue_cases import CASES

CASE_DIR = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "factor-catalogue"


def test_every_case_has_its_file() -> None:
    assert sorted(p.stem for p in CASE_DIR.glob("*.json")) == sorted(CASES)


@pytest.mark.parametrize("path", sorted(CASE_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_catalogue_case(path: Path) -> None:
    case = json.loads(path.read_text())
    text = json.dumps(case["catalogue"], ensure_ascii=False)
    if case["expected"]["valid"]:
        catalogue = parse_catalogue(text)
        assert set(catalogue.factors) == {f["id"] for f in case["catalogue"]["factors"]}
    else:
        with pytest.raises(CatalogueError) as err:
            parse_catalogue(text)
        assert case["expected"]["error"] in str(err.value), case["description"]


def test_duplicate_json_keys_are_refused() -> None:
    with pytest.raises(CatalogueError):
        parse_catalogue('{"format": "carbontrace-factor-catalogue", "format": "x"}')


def test_the_bundled_catalogue_cites_official_publications_only() -> None:
    catalogue = load_catalogue()
    assert catalogue.version and catalogue.date
    for factor in catalogue.factors.values():
        source = factor.source
        assert "生态环境部" in source.publisher and "公告" in source.title, factor.id  # the announcement, no newspaper
        assert source.confirmed_by, factor.id
        assert factor.valid_from.year > factor.reporting_year
    values = {f.kg_per_kwh_e4 for f in catalogue.factors.values()}
    assert 5703 not in values  # widely quoted, no primary source confirmed
    national_2023 = get_factor("CN-national-2023")
    assert (national_2023.kg_per_kwh_e4, national_2023.reporting_year, national_2023.kind) == (5306, 2023, KIND_LOCATION)
    assert national_2023.region.code == "CN" and "2023年电力二氧化碳排放因子" in national_2023.source.title
    assert get_factor("CN-national-2021").source.document_number is not None  # 公告2024年第12号
    # market-based Scope 2 selects a residual mix by kind
    residual = [f for f in catalogue.factors.values() if f.kind == KIND_RESIDUAL]
    assert {f.reporting_year for f in residual} == {2021, 2022, 2023}
    grids = {f.region.code for f in catalogue.factors.values() if f.region.level == "grid_region"}
    assert len(grids) == 7


def test_the_catalogue_as_of_a_version_holds_what_that_version_added_and_nothing_later() -> None:
    case = json.loads((CASE_DIR / "valid-two-versions.json").read_text())
    catalogue = parse_catalogue(json.dumps(case["catalogue"], ensure_ascii=False))
    first, second = (v.version for v in catalogue.history)
    assert catalogue.version == second and catalogue.knows(first) and not catalogue.knows("2026-12-02.1")
    earlier = as_of(catalogue, first)
    assert (earlier.version, set(earlier.factors), set(earlier.publications)) == (
        first, {"CN-national-2022"}, set(catalogue.publications))
    assert earlier.date.isoformat() == "2026-11-30" and [v.version for v in earlier.history] == [first]
    assert as_of(catalogue, second).factors == catalogue.factors
    with pytest.raises(CatalogueError, match="does not know version"):
        as_of(catalogue, "2026-12-02.1")


def test_every_entry_of_the_bundled_catalogue_names_the_version_that_added_it() -> None:
    catalogue = load_catalogue()
    assert catalogue.history[-1].version == catalogue.version
    versions = {v.version for v in catalogue.history}
    assert {f.added_in for f in catalogue.factors.values()} <= versions
    assert {p.added_in for p in catalogue.publications.values()} <= versions
