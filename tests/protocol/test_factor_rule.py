"""The factor selection rule (carbontrace_protocol/factor_rule.py) on the bundled catalogue: province before
regional grid before country, the newest reporting year at or before the activity's, only factors valid on
the decision date."""

from __future__ import annotations

import datetime

import pytest

from carbontrace_protocol.emission_factors import KIND_RESIDUAL, load_catalogue
from carbontrace_protocol.factor_rule import NoFactor, SiteLocation, activity_year, newest_for_region, select_factor

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
