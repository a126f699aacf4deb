"""The factor selection rule (carbontrace_protocol/factor_rule.py) on the bundled catalogue: province before
regional grid before country, the newest reporting year at or before the activity's, only factors valid on
the decision date."""

from __future__ import annotations

import datetime
import json
from importlib import resources

import pytest

from carbontrace_protocol.emission_factors import KIND_RESIDUAL, load_catalogue, parse_catalogue
from carbontrace_protocol.factor_rule import (
    NoFactor,
    SiteLocation,
    activity_year,
    newest_for_region,
    possible_answers,
    select_factor,
)

D = datetime.date.fromisoformat
HEBEI = SiteLocation("CN", "CN-HE", "CN-GRID-NORTH")
BEIJING = SiteLocation("CN", "CN-BJ", "CN-GRID-NORTH")
CHINA = SiteLocation("CN")


@pytest.mark.parametrize(
    ("location", "year", "on", "expected"),
    [
        (HEBEI, 2024, "2026-06-01", "CN-HE-2022"),  # the province's own factor, though a grid one is newer
        (BEIJING, 2024, "2026-06-01", "CN-north-2023"),  # no Beijing factor: its grid's newest
        (BEIJING, 2024, "2025-06-01", "CN-north-2022"),  # 2023 not yet valid on that date
        (CHINA, 2024, "2026-06-01", "CN-national-2023"),  # no province, no grid: the national average
        (CHINA, 2024, "2025-06-01", "CN-national-2022"),
        (CHINA, 2022, "2026-06-01", "CN-national-2022"),  # the year's own factor, not a later one
        (BEIJING, 2021, "2026-06-01", "CN-national-2021"),  # no 2021 grid factor catalogued: national
        (HEBEI, 2021, "2026-06-01", "CN-national-2021"),  # Hebei's 2022 factor describes a later year
        (CHINA, 2022, "2024-12-20", "CN-national-2022"),  # valid from its day on
        (CHINA, 2022, "2024-12-19", "CN-national-2021"),
    ],
)
def test_select_factor(location: SiteLocation, year: int, on: str, expected: str) -> None:
    assert select_factor(load_catalogue(), location, year, D(on)).id == expected


def test_no_factor_before_the_first_publication() -> None:
    with pytest.raises(NoFactor):
        select_factor(load_catalogue(), CHINA, 2020, D("2026-06-01"))
    with pytest.raises(NoFactor):
        select_factor(load_catalogue(), CHINA, 2024, D("2024-04-11"))


def test_residual_mix_by_kind_for_market_based() -> None:
    assert select_factor(load_catalogue(), HEBEI, 2024, D("2026-06-01"), KIND_RESIDUAL).id == (
        "CN-national-2023-excl-market-nonfossil"
    )


def test_activity_year_is_the_utc_year_of_the_window_start() -> None:
    assert activity_year(1_704_067_199) == 2023 and activity_year(1_704_067_200) == 2024


def test_newest_for_region_keeps_region_and_kind() -> None:
    catalogue = load_catalogue()
    used = catalogue.factors["CN-north-2022"]
    assert newest_for_region(catalogue, used, 2024, D("2026-06-01")).id == "CN-north-2023"
    assert newest_for_region(catalogue, used, 2022, D("2026-06-01")).id == "CN-north-2022"
    assert newest_for_region(catalogue, used, 2024, D("2025-06-01")).id == "CN-north-2022"
    assert newest_for_region(catalogue, catalogue.factors["CN-HE-2022"], 2024, D("2026-06-01")).id == "CN-HE-2022"


def test_the_answers_a_leaf_may_have_are_the_rules_over_its_decision_span() -> None:
    catalogue = load_catalogue()
    assert possible_answers(catalogue, HEBEI, 2026, D("2026-06-01"), D("2026-12-04")) == {"CN-HE-2022"}
    # received any time since early 2024: before 2022's factors were valid, 2021's national one was the rule's
    assert possible_answers(catalogue, HEBEI, 2026, D("2024-01-01"), D("2026-12-04")) == {
        "CN-national-2021", "CN-HE-2022"}
    assert possible_answers(catalogue, BEIJING, 2026, D("2025-01-01"), D("2026-12-04")) == {
        "CN-north-2022", "CN-north-2023"}
    assert possible_answers(catalogue, CHINA, 2026, D("2023-01-01"), D("2024-01-01")) == set()


def test_a_version_dated_after_the_decision_day_was_not_held_then() -> None:
    doc = json.loads(resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_text())
    later = {"version": "2027-03-01.1", "date": "2027-03-01"}
    doc["history"].append(later)
    doc["catalogue_version"], doc["catalogue_date"] = later["version"], later["date"]
    doc["factors"].append({**next(f for f in doc["factors"] if f["id"] == "CN-north-2023"), "id": "CN-HE-2023-test",
                           "region": "CN-HE", "added_in": later["version"]})
    catalogue = parse_catalogue(json.dumps(doc, ensure_ascii=False))
    # valid from 2026-01-15, but only in the catalogue from 2027-03-01: not an answer before that day
    assert possible_answers(catalogue, HEBEI, 2026, D("2026-06-01"), D("2027-02-28")) == {"CN-HE-2022"}
    assert possible_answers(catalogue, HEBEI, 2026, D("2026-06-01"), D("2027-03-01")) == {"CN-HE-2022",
                                                                                        "CN-HE-2023-test"}
