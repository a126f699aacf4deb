"""The SCD4x emulator itself: bus API of both flavours, protocol checks, timing, signals."""

from __future__ import annotations

import errno
import time

import pytest

from simulators.clock import ManualClock
from simulators.i2c_bus import I2CBus
from simulators.scd4x_emulator import (
    SCENARIOS,
    SCD4xEmulator,
    crc8,
    encode_words,
    scenario_ambient,
)


def test_machine_i2c_methods() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock)
    assert emu.scan() == [0x62]
    assert emu.writeto(0x62, b"") == 0  # address probe
    assert emu.writeto(0x62, bytes.fromhex("3682"), True) == 2
    clock.advance(0.001)
    assert emu.readfrom(0x62, 9) == encode_words(0xF896, 0x9F07, 0x3BBE)
    with pytest.raises(OSError) as info:  # a reply is read once
        emu.readfrom(0x62, 9)
    assert info.value.errno == errno.ENODEV


def test_busio_methods_with_start_and_end() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock)
    assert emu.try_lock() and not emu.try_lock()
    emu.unlock()
    out = bytearray(b"\xaa\x23\x22\xbb")
    emu.writeto(0x62, out, start=1, end=3)  # get_sensor_altitude
    assert emu.writes(0x62)[-1] == b"\x23\x22"
    clock.advance(0.001)
    buf = bytearray(5)
    emu.readfrom_into(0x62, buf, start=1, end=4)
    assert bytes(buf) == b"\x00" + encode_words(0) + b"\x00"
    emu.writeto(0x62, bytes.fromhex("3682"))
    clock.advance(0.001)
    # writeto_then_readfrom sends the command and reads at once: too early for the 1 ms execution time
    with pytest.raises(OSError) as info:
        emu.writeto_then_readfrom(0x62, bytes.fromhex("e4b8"), bytearray(3))
    assert info.value.errno == errno.ENODEV and "busy" in (emu.transfers[-1].error or "")


def test_written_words_are_crc_checked() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock)
    good = bytes.fromhex("2427") + encode_words(1000)
    bad = good[:-1] + bytes((good[-1] ^ 0xFF,))
    with pytest.raises(OSError) as info:
        emu.writeto(0x62, bad)
    assert info.value.errno == errno.EIO
    assert emu.settings.altitude_m == 0  # not executed
    emu.writeto(0x62, good)
    assert emu.settings.altitude_m == 1000
    for wrong in (bytes.fromhex("1234"), bytes.fromhex("242703"), b"\x24"):
        clock.advance(0.01)
        with pytest.raises(OSError) as info:
            emu.writeto(0x62, wrong)
        assert info.value.errno == errno.EIO


def test_time_scale_runs_emulated_time_faster() -> None:
    emu = SCD4xEmulator(time_scale=1000.0)
    emu.writeto(0x62, bytes.fromhex("21b1"))
    time.sleep(0.02)  # 20 emulated seconds
    assert emu.now() >= 20
    assert emu.data_ready
    emu.writeto(0x62, bytes.fromhex("ec05"))
    time.sleep(0.001)
    data = emu.readfrom(0x62, 9)
    assert all(crc8(data[i : i + 2]) == data[i + 2] for i in (0, 3, 6))


def test_same_seed_same_signal_and_different_seed_differs() -> None:
    def run(seed: int) -> list[tuple[int, int, int]]:
        clock = ManualClock()
        emu = SCD4xEmulator(clock=clock, seed=seed)
        emu.writeto(0x62, bytes.fromhex("21b1"))
        out = []
        for _ in range(10):
            clock.advance(5)
            emu.writeto(0x62, bytes.fromhex("ec05"))
            clock.advance(0.001)
            assert emu.last_sample is not None
            out.append(emu.last_sample.words())
            emu.readfrom(0x62, 9)
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenarios_are_plausible_over_a_day(scenario: str) -> None:
    samples = [scenario_ambient(scenario, h / 4) for h in range(96)]  # type: ignore[arg-type]
    co2 = [a.co2_ppm for a in samples]
    temp = [a.temperature_c for a in samples]
    rh = [a.humidity_pct for a in samples]
    assert min(co2) > 250 and max(co2) < 2000
    assert max(co2) - min(co2) > 200  # a daily cycle, not a constant
    assert min(temp) > 10 and max(temp) < 45
    assert min(rh) > 10 and max(rh) < 95


def test_daily_cycle_shapes() -> None:
    office_night, office_day = scenario_ambient("office", 3.0), scenario_ambient("office", 15.0)
    assert office_day.co2_ppm > office_night.co2_ppm + 300  # occupied
    green_night, green_noon = scenario_ambient("greenhouse", 2.0), scenario_ambient("greenhouse", 13.0)
    assert green_noon.co2_ppm < green_night.co2_ppm - 200  # photosynthesis draws CO2 down
    assert green_noon.temperature_c > green_night.temperature_c + 8
    boiler = [scenario_ambient("boiler_room", h / 10).temperature_c for h in range(240)]
    assert min(boiler) > 25


def test_emulated_day_through_the_bus_follows_the_scenario() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock, scenario="office", start_hour=0.0, seed=4)
    emu.writeto(0x62, bytes.fromhex("21ac"))  # low power: every 30 s
    by_hour: dict[int, list[int]] = {}
    for _ in range(24 * 12):  # every 5 minutes for a day
        clock.advance(300)
        assert emu.data_ready
        emu.writeto(0x62, bytes.fromhex("ec05"))
        clock.advance(0.001)
        data = emu.readfrom(0x62, 9)
        by_hour.setdefault(int(emu.hour_of_day()), []).append((data[0] << 8) | data[1])
    night = sum(by_hour[3]) / len(by_hour[3])
    afternoon = sum(by_hour[15]) / len(by_hour[15])
    assert afternoon > night + 400


def test_bus_with_two_devices_and_missing_address() -> None:
    clock = ManualClock()
    emu_a = SCD4xEmulator(clock=clock)
    bus = I2CBus()
    bus.attach(0x62, emu_a._targets[0x62])
    with pytest.raises(ValueError):
        bus.attach(0x62, emu_a._targets[0x62])
    assert bus.scan() == [0x62]
    with pytest.raises(OSError) as info:
        bus.readfrom(0x44, 2)
    assert info.value.errno == errno.ENODEV
