"""Adafruit's CircuitPython SCD4x driver (adafruit-circuitpython-scd4x, from PyPI) reads the emulator.

An independent implementation of the sensor's protocol, so a shared misunderstanding between our driver and
our emulator shows up here. It runs on CPython without Blinka when given a bus object; the ``micropython``
and ``busio`` modules it imports are stubbed in ``sys.modules`` for the duration of each test only. Its
waits are real ``time.sleep`` calls (0.5 s in the constructor), so the emulator runs ``time_scale`` times
faster than real time to keep this short.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.scd4x_emulator import Ambient, SCD4xEmulator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def adafruit_scd4x(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    micropython = types.ModuleType("micropython")
    micropython.const = lambda x: x  # type: ignore[attr-defined]
    busio = types.ModuleType("busio")
    busio.I2C = object  # type: ignore[attr-defined]  # only named in annotations
    before = set(sys.modules)
    monkeypatch.setitem(sys.modules, "micropython", micropython)
    monkeypatch.setitem(sys.modules, "busio", busio)
    import adafruit_scd4x

    assert adafruit_scd4x.__version__ == "1.4.13"
    yield adafruit_scd4x
    for name in set(sys.modules) - before:
        if name.startswith(("adafruit_", "circuitpython_typing")):
            del sys.modules[name]


def wait_ready(scd: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not scd.data_ready:
        assert time.monotonic() < deadline, "no measurement within the timeout"
        time.sleep(0.02)


def test_adafruit_driver_reads_serial_and_measurements(adafruit_scd4x: Any) -> None:
    emu = SCD4xEmulator(scenario="office", seed=5, time_scale=10.0)
    started = time.monotonic()
    scd = adafruit_scd4x.SCD4X(emu)  # probes with an empty write, then stop_periodic_measurement
    assert emu.commands[0].name == "stop_periodic_measurement"
    serial = scd.serial_number
    assert serial == (0xF8, 0x96, 0x9F, 0x07, 0x3B, 0xBE)
    assert scd.sensor_variant_name == "SCD41"
    assert scd.self_calibration_enabled is True

    scd.start_periodic_measurement()
    for _ in range(2):
        wait_ready(scd)
        co2 = scd.CO2  # reads the new measurement (and caches temperature and humidity)
        sample = emu.last_read
        assert sample is not None
        assert co2 == sample.co2_ppm
        assert scd.temperature == pytest.approx(sample.temperature_c, abs=1e-9)
        assert scd.relative_humidity == pytest.approx(sample.humidity_pct, abs=1e-9)
        assert 380 <= co2 <= 1400 and 15 < scd.temperature < 30 and 25 < scd.relative_humidity < 60
    # during periodic measurement Adafruit's driver gets the NACK as an error, as on hardware
    with pytest.raises(RuntimeError, match="periodic measurement mode"):
        scd.altitude = 100
    scd.ambient_pressure = 960  # allowed in periodic mode
    assert scd.ambient_pressure == 960
    scd.stop_periodic_measurement()
    assert emu.mode == "idle"
    scd.altitude = 250
    assert scd.altitude == 250
    scd.temperature_offset = 5.4
    assert scd.temperature_offset == pytest.approx(5.4, abs=0.01)
    assert emu.settings.temperature_offset_word == 0x07E6
    assert time.monotonic() - started < 10


def test_adafruit_single_shot_and_forced_recalibration(adafruit_scd4x: Any) -> None:
    emu = SCD4xEmulator(scenario="greenhouse", seed=1, time_scale=200.0)
    emu.noise = 0.0
    emu.ambient_override = Ambient(530.0, 24.0, 70.0)
    scd = adafruit_scd4x.SCD4X(emu)
    scd.measure_single_shot_rht_only()  # Adafruit waits 50 ms
    wait_ready(scd)
    assert scd.CO2 == 0 and scd.temperature == pytest.approx(24.0, abs=0.01)
    scd.start_periodic_measurement()
    time.sleep(1.0)  # 200 emulated seconds: more than the 3 minutes FRC needs
    assert scd.force_calibration(480) == -50  # datasheet example: 530 ppm read, 480 ppm reference
    assert emu.frc_correction_ppm == -50
    scd.start_periodic_measurement()
    wait_ready(scd)
    assert scd.CO2 == 480
