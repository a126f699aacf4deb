"""The firmware's SCD4x driver against the SCD4x bus emulator, on a manual clock.

The driver sleeps through ``clock.sleep_ms``, which moves the emulator's clock: datasheet waits cost no real
time, and a wait that is too short makes the emulated sensor NACK as the real one does.
"""

from __future__ import annotations

import errno
from fractions import Fraction

import pytest
from carbontrace_device import scd4x
from carbontrace_device.scd4x import (
    SCD4X,
    SCD4XCalibrationError,
    SCD4XCRCError,
    SCD4XError,
    SCD4XNackError,
    SCD4XNotReady,
    SCD4XSelfTestError,
    SCD4XStuckError,
)
from carbontrace_device.sensor_errors import SensorError

from simulators.clock import ManualClock
from simulators.scd4x_emulator import Ambient, SCD4xEmulator


def make(**kwargs: object) -> tuple[SCD4xEmulator, SCD4X, ManualClock]:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock, **kwargs)  # type: ignore[arg-type]
    return emu, SCD4X(emu, sleep_ms=clock.sleep_ms), clock


def writes(emu: SCD4xEmulator) -> list[bytes]:
    return emu.writes(0x62)


def test_exact_command_bytes_including_datasheet_examples() -> None:
    emu, dev, clock = make()
    emu.ambient_override = Ambient(530.0, 21.0, 40.0)
    emu.noise = 0.0
    dev.start_periodic_measurement()
    assert writes(emu)[-1] == bytes.fromhex("21b1")
    clock.advance(200)
    dev.stop_periodic_measurement()
    assert writes(emu)[-1] == bytes.fromhex("3f86")
    # datasheet v1.3 3.7.1: FRC to 480 ppm is 36 2f 01 e0 b4; the sensor reading 530 ppm answers -50 (7f ce 7b)
    assert dev.forced_recalibration(480) == -50
    assert writes(emu)[-1] == bytes.fromhex("362f01e0b4")
    assert emu.transfers[-1].data == bytes.fromhex("7fce7b")
    # datasheet v1.3 3.7.2: enable ASC is 24 16 00 01 b0
    dev.set_automatic_self_calibration(True)
    assert writes(emu)[-1] == bytes.fromhex("24160001b0")
    dev.set_temperature_offset(540)  # 5.4 °C -> word 0x07e6 (datasheet example)
    assert writes(emu)[-1][:4] == bytes.fromhex("241d07e6")
    dev.set_ambient_pressure(987)
    assert writes(emu)[-1][:4] == bytes.fromhex("e00003db")
    dev.set_sensor_altitude(1195)
    assert writes(emu)[-1][:4] == bytes.fromhex("242704ab")
    assert dev.get_ambient_pressure() == 987
    assert writes(emu)[-1] == bytes.fromhex("e000")  # get: the command alone, then a read
    dev.persist_settings()
    assert writes(emu)[-1] == bytes.fromhex("3615")
    dev.reinit()
    dev.factory_reset()
    assert writes(emu)[-2:] == [bytes.fromhex("3646"), bytes.fromhex("3632")]
    for data in writes(emu):
        if len(data) == 5:
            assert scd4x.crc8_sensirion(data, 2, 4) == data[4]


def test_serial_number_is_the_datasheet_example() -> None:
    emu, dev, _ = make()
    assert dev.serial_number() == 273325796834238
    assert writes(emu)[-1] == bytes.fromhex("3682")
    assert emu.transfers[-1].data == bytes.fromhex("f896319f07c23bbe89")


def test_periodic_measurement_matches_the_emulator_exactly() -> None:
    emu, dev, clock = make(scenario="greenhouse", seed=7)
    dev.start_periodic_measurement()
    assert dev.data_ready() is False
    with pytest.raises(SCD4XNotReady):
        dev.read_measurement()
    readings = []
    for _ in range(6):
        clock.advance(5.0)
        assert dev.data_ready() is True
        co2, t_centi, rh_centi = dev.read_measurement()
        sample = emu.last_read
        assert sample is not None
        assert (co2, t_centi, rh_centi) == (sample.co2_ppm, sample.temperature_centi_c, sample.humidity_centi_pct)
        assert all(isinstance(v, int) for v in (co2, t_centi, rh_centi))
        assert dev.data_ready() is False  # the buffer empties on read
        readings.append(co2)
    assert len(set(readings)) > 1  # noise: a live signal
    dev.stop_periodic_measurement()
    assert emu.mode == "idle"


def test_datasheet_waits_are_taken() -> None:
    _emu, dev, clock = make()
    dev.start_periodic_measurement()
    dev.stop_periodic_measurement()
    assert 500 in clock.slept_ms
    dev.persist_settings()
    assert clock.slept_ms[-1] == 800
    dev.self_test()
    assert 10000 in clock.slept_ms
    dev.measure_single_shot()
    assert clock.slept_ms[-1] == 5000
    dev.read_measurement()
    dev.measure_single_shot_rht_only()
    assert clock.slept_ms[-1] == 50
    dev.serial_number()
    assert clock.slept_ms[-1] == 1


def test_a_driver_that_does_not_wait_is_refused_by_the_emulator() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock)
    impatient = SCD4X(emu, sleep_ms=lambda ms: None, retries=2)
    impatient.start_periodic_measurement()
    impatient.stop_periodic_measurement()  # the sensor is busy for 500 ms now
    with pytest.raises(SCD4XNackError) as info:
        impatient.serial_number()
    assert "ENODEV" in str(info.value)
    assert "0x62" in str(info.value)
    clock.advance(0.5)
    with pytest.raises(SCD4XNackError, match="0x3682 not acknowledged"):
        impatient.serial_number()  # read back without the 1 ms execution time
    assert SCD4X(emu, sleep_ms=clock.sleep_ms).serial_number() == 273325796834238


def test_commands_not_allowed_in_periodic_mode_are_nacked() -> None:
    emu, dev, clock = make()
    dev.start_periodic_measurement()
    with pytest.raises(SCD4XNackError) as info:
        dev.serial_number()
    message = str(info.value)
    assert "SCD4x at I2C 0x62" in message and "0x3682" in message and "periodic" in message
    assert "4 attempts" in message  # 1 + retries
    refused = [t for t in emu.transfers if t.error]
    assert len(refused) == 4 and all("periodic" in (t.error or "") for t in refused)
    # allowed during periodic measurement: data-ready, pressure, read_measurement, stop
    dev.set_ambient_pressure(950)
    assert dev.get_ambient_pressure() == 950
    clock.advance(5)
    assert dev.data_ready()
    dev.read_measurement()
    dev.stop_periodic_measurement()
    assert dev.serial_number() == 273325796834238


def test_micropython_soft_i2c_ack_count_is_a_nack_too() -> None:
    emu, dev, _ = make(data_nack="count")
    dev.start_periodic_measurement()
    assert emu.writeto(0x62, bytes.fromhex("3682")) == 1  # MicroPython's soft I2C: ACKs counted, no raise
    with pytest.raises(SCD4XNackError, match="1 of 2 bytes acknowledged"):
        dev.serial_number()


def test_crc_error_is_retried_then_succeeds() -> None:
    emu, dev, _ = make()
    emu.faults.crc_errors = 2
    assert dev.serial_number() == 273325796834238
    reads = [t for t in emu.transfers if t.direction == "read"]
    assert len(reads) == 3
    assert emu.faults.crc_errors == 0


def test_persistent_crc_errors_raise_a_typed_error_after_bounded_retries() -> None:
    emu, dev, _ = make()
    emu.faults.crc_error_rate = 1.0
    with pytest.raises(SCD4XCRCError) as info:
        dev.serial_number()
    assert "after 4 attempt(s)" in str(info.value)
    assert info.value.address == 0x62 and info.value.device == "SCD4x"
    assert isinstance(info.value, SCD4XError) and isinstance(info.value, SensorError)
    assert len([t for t in emu.transfers if t.direction == "read"]) == 4
    emu.faults.crc_error_rate = 0.0
    dev.retries = 0
    emu.faults.crc_errors = 1
    with pytest.raises(SCD4XCRCError, match="after 1 attempt"):
        dev.get_sensor_altitude()


def test_a_corrupted_measurement_is_not_asked_for_twice() -> None:
    # read_measurement empties the sensor's buffer: asking again would only give "not ready"
    emu, dev, clock = make()
    dev.start_periodic_measurement()
    clock.advance(5)
    emu.faults.crc_errors = 1
    with pytest.raises(SCD4XCRCError, match=r"0xec05.*1 attempt"):
        dev.read_measurement()
    assert dev.data_ready() is False
    clock.advance(5)
    assert dev.read_measurement()[0] is not None


def test_nack_is_retried_then_a_typed_error() -> None:
    emu, dev, _ = make()
    emu.faults.nack = 3
    assert dev.get_automatic_self_calibration() is True
    emu.faults.disconnected = True
    with pytest.raises(SCD4XNackError, match=r"ENODEV.*after 4 attempts"):
        dev.get_automatic_self_calibration()
    with pytest.raises(SCD4XNackError):
        dev.start_periodic_measurement()
    assert emu.scan() == []
    emu.faults.disconnected = False
    assert emu.scan() == [0x62]


def test_not_ready_fault_stalls_measurements() -> None:
    emu, dev, clock = make()
    emu.faults.not_ready = True
    dev.start_periodic_measurement()
    for _ in range(4):
        clock.advance(5)
        assert dev.data_ready() is False
    with pytest.raises(SCD4XNotReady, match="no measurement available"):
        dev.read_measurement()
    emu.faults.not_ready = False
    clock.advance(5)
    assert dev.data_ready()


def test_stuck_values_are_detected_when_asked_for() -> None:
    emu, _, clock = make(seed=3)
    dev = SCD4X(emu, sleep_ms=clock.sleep_ms, stuck_limit=3)
    dev.start_periodic_measurement()
    clock.advance(5)
    first = dev.read_measurement()
    emu.faults.stuck = True
    clock.advance(5)
    assert dev.read_measurement() == first
    clock.advance(5)
    with pytest.raises(SCD4XStuckError, match="3 times in a row"):
        dev.read_measurement()
    emu.faults.stuck = False
    clock.advance(5)
    assert dev.read_measurement() != first


def test_settings_persist_reinit_and_factory_reset() -> None:
    emu, dev, clock = make()
    assert dev.get_temperature_offset() == 400  # default 4 °C
    assert dev.get_sensor_altitude() == 0
    dev.set_temperature_offset(540)
    dev.set_sensor_altitude(1195)
    dev.set_automatic_self_calibration(False)
    assert (dev.get_temperature_offset(), dev.get_sensor_altitude()) == (540, 1195)
    assert dev.get_automatic_self_calibration() is False
    dev.reinit()  # not persisted: back to the EEPROM values
    assert (dev.get_temperature_offset(), dev.get_sensor_altitude()) == (400, 0)
    dev.set_sensor_altitude(300)
    dev.persist_settings()
    assert emu.eeprom_writes == 1
    emu.power_cycle()
    clock.advance(0.03)  # power-up
    assert dev.get_sensor_altitude() == 300
    dev.factory_reset()
    assert dev.get_sensor_altitude() == 0 and dev.get_automatic_self_calibration() is True
    with pytest.raises(ValueError):
        dev.set_sensor_altitude(3001)
    with pytest.raises(ValueError):
        dev.set_ambient_pressure(500)
    with pytest.raises(ValueError):
        dev.set_temperature_offset(-1)


def test_temperature_offset_changes_the_reported_temperature() -> None:
    emu, dev, clock = make()
    emu.noise = 0.0
    emu.ambient_override = Ambient(600.0, 22.0, 50.0)
    dev.start_periodic_measurement()
    clock.advance(5)
    assert dev.read_measurement() == (600, 2200, 5000)
    dev.stop_periodic_measurement()
    dev.set_temperature_offset(0)
    dev.start_periodic_measurement()
    clock.advance(5)
    assert dev.read_measurement()[1] == 2600  # the element's 4 °C self-heating shows


def test_forced_recalibration_needs_three_minutes_of_measuring() -> None:
    emu, dev, clock = make()
    emu.noise = 0.0
    emu.ambient_override = Ambient(700.0, 21.0, 40.0)
    dev.start_periodic_measurement()
    clock.advance(60)
    dev.stop_periodic_measurement()
    with pytest.raises(SCD4XCalibrationError, match="failed"):
        dev.forced_recalibration(420)
    assert clock.slept_ms[-1] == 400
    dev.start_periodic_measurement()
    clock.advance(125)
    dev.stop_periodic_measurement()
    assert dev.forced_recalibration(420) == -280
    assert emu.frc_correction_ppm == -280
    dev.start_periodic_measurement()
    clock.advance(5)
    assert dev.read_measurement()[0] == 420


def test_self_test() -> None:
    emu, dev, _ = make()
    assert dev.self_test() is True
    emu.faults.self_test_fails = True
    with pytest.raises(SCD4XSelfTestError, match="0x0001"):
        dev.self_test()


def test_single_shot_and_rht_only() -> None:
    emu, dev, clock = make(scenario="boiler_room", seed=11)
    dev.measure_single_shot()
    assert dev.data_ready()
    co2, _, _ = dev.read_measurement()
    assert emu.last_read is not None and co2 == emu.last_read.co2_ppm > 0
    dev.measure_single_shot_rht_only()
    co2, t_centi, _rh_centi = dev.read_measurement()
    assert co2 is None  # the sensor sends 0 there; 0 is not a measurement
    assert emu.last_read is not None and emu.last_read.co2_ppm == 0
    assert t_centi == emu.last_read.temperature_centi_c
    # without waiting: the sensor is busy for 5 s and says so by not acknowledging
    dev.measure_single_shot(wait=False)
    with pytest.raises(SCD4XNackError, match=r"0xe4b8 not acknowledged \(ENODEV"):
        dev.data_ready()
    assert "busy" in (emu.transfers[-1].error or "")
    clock.advance(5)
    assert dev.data_ready()


def test_single_shot_is_refused_by_an_scd40() -> None:
    _, dev, _ = make(variant="SCD40")
    assert dev.sensor_variant() == "SCD40"
    with pytest.raises(SCD4XNackError, match="0x219d"):
        dev.measure_single_shot()


def test_low_power_periodic_interval_is_30_s() -> None:
    _, dev, clock = make()
    assert dev.sensor_variant() == "SCD41"
    dev.start_low_power_periodic_measurement()
    clock.advance(25)
    assert not dev.data_ready()
    clock.advance(5)
    assert dev.data_ready()


def test_power_down_and_wake_up() -> None:
    emu, dev, _ = make()
    dev.power_down()
    assert emu.mode == "sleep"
    with pytest.raises(SCD4XNackError):
        dev.serial_number()
    dev.wake_up()  # NACKed by design; the driver expects that
    assert emu.mode == "idle"
    assert dev.serial_number() == 273325796834238


def test_oserror_errno_from_the_bus() -> None:
    emu, _, _ = make()
    with pytest.raises(OSError) as info:
        emu.readfrom(0x62, 3)
    assert info.value.errno == errno.ENODEV
    emu.writeto(0x62, bytes.fromhex("21b1"))
    with pytest.raises(OSError) as info:
        emu.writeto(0x62, bytes.fromhex("3682"))
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError) as info:
        emu.writeto(0x10, b"\x00")
    assert info.value.errno == errno.ENODEV


def test_integer_conversions_match_the_datasheet_formulas_for_every_raw_value() -> None:
    for raw in range(0x10000):
        t_exact = Fraction(-4500) + Fraction(17500 * raw, 65535)
        rh_exact = Fraction(10000 * raw, 65535)
        assert scd4x.temperature_centi_c(raw) == round(t_exact)
        assert scd4x.humidity_centi_pct(raw) == round(rh_exact)
    assert scd4x.temperature_centi_c(0) == -4500 and scd4x.temperature_centi_c(0xFFFF) == 13000
    assert scd4x.humidity_centi_pct(0xFFFF) == 10000


@pytest.mark.parametrize("self_calibration", [True, False])
def test_self_calibration_is_a_setting_applied_at_every_start(self_calibration: bool) -> None:
    """A greenhouse never sees 400 ppm: ASC must be switchable, and the device applies the setting itself."""
    from carbontrace_device import config

    from simulators.device_host import build_emulated_sensors

    settings = config.load(None, {"scd4x_self_calibration": self_calibration})
    _sensor, _meter, emulator, _pzem = build_emulated_sensors(
        time_scale=100.0, self_calibration=settings["scd4x_self_calibration"]
    )
    assert emulator.settings.asc_enabled is self_calibration
    with pytest.raises(config.ConfigError, match="scd4x_self_calibration"):
        config.load(None, {"scd4x_self_calibration": "no"})
