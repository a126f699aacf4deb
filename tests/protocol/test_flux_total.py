"""Summing a chamber's fluxes over a period (carbontrace_protocol/flux_total.py): coverage, QA exclusion,
the sign of a removal, tonnes, and the propagated uncertainty, each against a figure worked by hand."""

from __future__ import annotations

import math

import pytest

from carbontrace_protocol import flux
from carbontrace_protocol.flux_total import integrate

HOUR = 3600
T0 = 1764126000


def record(midpoint: int, flux_e3: int, se_e3: int = 0, qa: str = flux.QA_OK, seq: int | None = None,
           device: str = "chamber-1", area_cm2: int = 10000) -> flux.Flux:
    """A record with the given figures: the slope chosen so the chamber gives exactly that flux."""
    chamber = (20000, area_cm2, 20000, 101325)
    slope = round(flux_e3 * 8314462618 * 293150 * area_cm2 / (101325 * 20000 * 10**7))
    while flux.flux_from_slope(slope, *chamber) < flux_e3:
        slope += 1
    while flux.flux_from_slope(slope, *chamber) > flux_e3:
        slope -= 1
    se = round(se_e3 * 8314462618 * 293150 * area_cm2 / (101325 * 20000 * 10**7))
    while flux.flux_from_slope(se, *chamber) < se_e3:
        se += 1
    while flux.flux_from_slope(se, *chamber) > se_e3:
        se -= 1
    assert flux.flux_from_slope(slope, *chamber) == flux_e3 and flux.flux_from_slope(se, *chamber) == se_e3
    r2 = 9900 if qa in (flux.QA_OK, flux.QA_NONLINEAR) else 5000
    first = seq if seq is not None else midpoint
    return flux.Flux(device, "0.5.0", [midpoint - 90, midpoint + 90], [first, first + 36], 37 if qa != flux.QA_TOO_FEW_SAMPLES else 4,
                     bytes(32), *chamber, slope, se, r2, flux_e3, se_e3, qa)


def test_hourly_uptake_over_three_hours_is_a_removal_in_tonnes() -> None:
    # -1 µmol m⁻² s⁻¹ over 10,800 s on 1 m²: -10.8 mmol = -0.4752972 g
    sessions = [record(T0 + HOUR // 2 + i * HOUR, -1000) for i in range(3)]
    total = integrate(sessions, T0, T0 + 3 * HOUR)
    assert total["covered_s"] == 3 * HOUR and total["uncovered_s"] == 0
    assert total["per_m2_nmol"] == -10_800_000
    assert total["co2_ug"] == -475297  # -10.8e6 × 10000 × 44009 / 1e10 = -475297.2
    assert total["tco2"] == "-0.000000475297"
    assert total["direction"] == "removal"
    assert total["sessions_counted"] == 3


def test_uncertainty_adds_in_quadrature_over_sessions_and_linearly_within_one() -> None:
    sessions = [record(T0 + HOUR // 2 + i * HOUR, 2000, se_e3=100) for i in range(4)]
    total = integrate(sessions, T0, T0 + 4 * HOUR)
    # each session: σ = 100 nmol m⁻² s⁻¹ × 3600 s; four independent: × 2
    assert total["per_m2_sigma_nmol"] == 2 * 100 * HOUR
    assert total["co2_sigma_ug"] == round(2 * 100 * HOUR * 10000 * 44009 / 1e10)
    assert total["direction"] == "emission"


def test_flagged_sessions_do_not_count_and_leave_their_time_uncovered() -> None:
    sessions = [
        record(T0 + HOUR // 2, -1000),
        record(T0 + HOUR // 2 + HOUR, -9000, qa=flux.QA_LOW_R2),
        record(T0 + HOUR // 2 + 2 * HOUR, -1000, qa=flux.QA_NONLINEAR),
    ]
    total = integrate(sessions, T0, T0 + 3 * HOUR, max_gap_s=HOUR)
    assert total["sessions_counted"] == 1
    assert total["sessions_excluded"] == {"low_r2": 1, "nonlinear": 1}
    assert total["covered_s"] == HOUR and total["uncovered_s"] == 2 * HOUR
    assert total["per_m2_nmol"] == -1000 * HOUR


def test_neighbours_split_the_time_between_them_at_the_midpoint() -> None:
    a = record(T0 + 600, -1000)
    b = record(T0 + 3000, -3000)
    total = integrate([b, a], T0, T0 + HOUR, max_gap_s=2 * HOUR)
    # a holds [T0, T0+1800), b [T0+1800, T0+3600)
    assert total["per_m2_nmol"] == -1000 * 1800 - 3000 * 1800
    assert total["covered_s"] == HOUR


def test_a_session_stands_for_no_more_than_half_the_gap_either_side() -> None:
    total = integrate([record(T0 + 12 * HOUR, 500)], T0, T0 + 24 * HOUR, max_gap_s=2 * HOUR)
    assert total["covered_s"] == 2 * HOUR and total["uncovered_s"] == 22 * HOUR


def test_the_area_it_stands_for_scales_the_mass_not_the_flux() -> None:
    sessions = [record(T0 + HOUR // 2, -1000, area_cm2=1000)]
    own = integrate(sessions, T0, T0 + HOUR)
    field = integrate(sessions, T0, T0 + HOUR, area_cm2=10**8)  # a hectare
    assert own["per_m2_nmol"] == field["per_m2_nmol"]
    assert field["co2_ug"] == -3_600_000 * 10**8 * 44009 // 10**10 == -1_584_324_000
    assert own["co2_ug"] == -15843  # -15843.24 on 0.1 m², rounded to the µg
    assert math.isclose(float(field["tco2"]), -1e-6 * 3600 * 1e4 * 44.009e-6, rel_tol=1e-9)


def test_several_devices_or_conflicting_records_are_refused() -> None:
    with pytest.raises(ValueError, match="one chamber"):
        integrate([record(T0, 1000), record(T0 + HOUR, 1000, device="chamber-2")], T0, T0 + HOUR)
    with pytest.raises(ValueError, match="two different"):
        integrate([record(T0, 1000, seq=5), record(T0, 2000, seq=5)], T0, T0 + HOUR)


def test_a_duplicate_counts_once() -> None:
    one = record(T0 + HOUR // 2, -1000)
    assert integrate([one, one], T0, T0 + HOUR) == integrate([one], T0, T0 + HOUR)
