"""The SCD4x emulator's chamber scenario: read through the firmware's own driver at the sensor's 5 s cadence,
a closed chamber over a surface of known flux gives back that flux through the protocol core's fit, with its
sign; a bending headspace is flagged nonlinear; outside the closure the sensor sees the scenario's air."""

from __future__ import annotations

import pytest
from carbontrace_device.scd4x import SCD4X

from carbontrace_protocol import flux
from simulators.clock import ManualClock
from simulators.scd4x_emulator import ChamberSession, SCD4xEmulator

SOIL = dict(volume_ml=20000, area_cm2=1000, pressure_pa=101325)


def closure(emu: SCD4xEmulator, dev: SCD4X, clock: ManualClock, seconds: int) -> list[tuple[int, int, int]]:
    """(t from the first sample, co2 ppm, temperature centi-°C) for every measurement of the closure."""
    out = []
    dev.start_periodic_measurement()
    first: float | None = None
    while len(out) < seconds // 5:
        clock.advance(5.0)
        if dev.data_ready():
            co2, temp, _ = dev.read_measurement()
            assert co2 is not None
            now = emu.now()
            first = now if first is None else first
            out.append((round(now - first), co2, temp))
    dev.stop_periodic_measurement()
    return out


def run_session(chamber: ChamberSession, noise: float = 0.25, seconds: int = 180) -> flux.Flux:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock, scenario="greenhouse", start_hour=12.0, seed=7, noise=noise)
    emu.chamber = chamber
    dev = SCD4X(emu, sleep_ms=clock.sleep_ms)
    samples = closure(emu, dev, clock, seconds)
    temp_mc = 10 * sum(t for _, _, t in samples) // len(samples)
    return flux.compute_flux("chamber-1", "0.5.0", [1764126000, 1764126000 + seconds], [1, len(samples)],
                             [(t, c) for t, c, _ in samples], chamber.volume_ml, chamber.area_cm2, temp_mc,
                             chamber.pressure_pa)


@pytest.mark.parametrize("true_flux,noise,seconds", [(2.0, 0.25, 180), (-6.0, 0.25, 180), (0.8, 0.1, 300)])
def test_a_closed_chamber_gives_back_its_flux(true_flux: float, noise: float, seconds: int) -> None:
    session = ChamberSession(true_flux, closed_at=0.0, duration_s=400.0, temperature_c=25.0, **SOIL)
    record = run_session(session, noise=noise, seconds=seconds)
    assert record.qa == flux.QA_OK
    assert abs(record.flux_e3 / 1000 - true_flux) <= max(3 * record.flux_se_e3 / 1000, 0.05 * abs(true_flux))
    assert (record.flux_e3 < 0) == (true_flux < 0)


def test_uptake_in_a_greenhouse_bay() -> None:
    # 600 m³ over 200 m², net photosynthesis at noon: -15 µmol m⁻² s⁻¹ is about -0.11 ppm/s
    bay = ChamberSession(-15.0, volume_ml=600_000_000, area_cm2=2_000_000, duration_s=1000.0, temperature_c=27.0)
    record = run_session(bay, seconds=600)
    assert record.qa == flux.QA_OK and record.flux_e3 < 0
    assert abs(record.flux_e3 / 1000 + 15.0) < 1.5


def test_a_bending_headspace_is_flagged_nonlinear() -> None:
    bent = ChamberSession(10.0, closed_at=0.0, duration_s=400.0, temperature_c=25.0, saturation_s=90.0, **SOIL)
    record = run_session(bent)
    assert record.r2_e4 >= flux.QA_MIN_R2_E4  # a straight line fits well, and still the halves disagree
    assert record.qa == flux.QA_NONLINEAR


def test_noise_without_flux_is_low_r2() -> None:
    still = ChamberSession(0.0, closed_at=0.0, duration_s=400.0, temperature_c=25.0, **SOIL)
    assert run_session(still, noise=1.0).qa == flux.QA_LOW_R2


def test_outside_the_closure_the_sensor_sees_the_scenario_air() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock, scenario="greenhouse", start_hour=12.0, noise=0.0)
    emu.chamber = ChamberSession(5.0, closed_at=100.0, duration_s=60.0, **SOIL)
    before = emu.ambient(50.0)
    assert emu.ambient(100.0).co2_ppm == pytest.approx(before.co2_ppm, abs=1.0)
    assert emu.ambient(150.0).co2_ppm > before.co2_ppm + 20
    assert emu.ambient(170.0).co2_ppm == pytest.approx(emu.ambient(0.0).co2_ppm, abs=5.0)


def test_slope_follows_the_ideal_gas_law() -> None:
    session = ChamberSession(2.0, **SOIL)
    # F R T A / (P V): 2e-6 × 8.314 × 298.15 × 0.1 / (101325 × 0.02) = 2.447e-7 mol/mol/s
    assert session.slope_ppm_s(25.0) == pytest.approx(0.2447, rel=1e-3)
