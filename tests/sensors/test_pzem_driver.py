"""The firmware's PZEM-004T driver against the Modbus RTU emulator, through a machine.UART-like adapter, on a
manual clock (reply bytes arrive at 9600 baud; timeouts elapse on the same clock)."""

from __future__ import annotations

import pytest
from carbontrace_device.energy import EnergyTracker
from carbontrace_device.pzem004t import (
    FC_READ_INPUT,
    PZEM004T,
    PowerReading,
    PZEMAddressError,
    PZEMCRCError,
    PZEMError,
    PZEMExceptionResponse,
    PZEMShortFrame,
    PZEMTimeout,
    decode_input_registers,
)
from carbontrace_device.sensor_errors import SensorError

from simulators.clock import ManualClock
from simulators.pzem_emulator import ConstantLoad, DailyLoad, PZEMEmulator, UARTAdapter


def make(
    load: ConstantLoad | DailyLoad | None = None, **kwargs: object
) -> tuple[PZEMEmulator, UARTAdapter, PZEM004T, ManualClock]:
    clock = ManualClock()
    emu = PZEMEmulator(clock=clock, load=load or ConstantLoad(1000.0), **kwargs)  # type: ignore[arg-type]
    uart = UARTAdapter(emu)
    driver = PZEM004T(uart, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms, timeout_ms=200)
    return emu, uart, driver, clock


def test_read_request_bytes_and_values() -> None:
    _emu, uart, meter, clock = make(ConstantLoad(1000.0, voltage_v=230.0, power_factor=1.0))
    reading = meter.read()
    assert uart.written[-1] == bytes.fromhex("01040000000a700d")  # the widely quoted request
    assert isinstance(reading, PowerReading)
    assert reading.voltage_deci_v == 2300
    assert reading.current_milli_a == 4348  # 1000 W / 230 V
    assert reading.power_deci_w == 10000
    assert reading.energy_wh == 0
    assert reading.frequency_deci_hz == 500
    assert reading.power_factor_centi == 100
    assert reading.alarm is False
    assert 25 < clock() * 1000 < 60  # 8 + 25 bytes at 9600 baud plus the meter's reply delay
    clock.advance(3600)
    assert meter.read().energy_wh == 1000


def test_real_pzem_frame_decodes() -> None:
    # a real PZEM-004T v3 reply quoted in ESPHome's pzemac.cpp (shared/vectors/crc); 0x08d1 is 225.7 V
    # (the vector's description says 223.3 V, which would be 0x08b9)
    frame = bytes.fromhex("01041408d1006c000000f400000026000001f4006400005134")
    regs = [(frame[3 + 2 * i] << 8) | frame[4 + 2 * i] for i in range(10)]
    r = decode_input_registers(regs)
    assert (r.voltage_deci_v, r.current_milli_a, r.power_deci_w, r.energy_wh) == (2257, 108, 244, 38)
    assert (r.frequency_deci_hz, r.power_factor_centi, r.alarm) == (500, 100, False)

    class Replay:
        def __init__(self) -> None:
            self.rx = b""

        def write(self, buf: bytes) -> int:
            self.rx = frame
            return len(buf)

        def any(self) -> int:
            return len(self.rx)

        def read(self, n: int) -> bytes | None:
            out, self.rx = self.rx[:n], self.rx[n:]
            return out or None

    reading = PZEM004T(Replay()).read()
    assert repr(reading) == repr(r)


def test_large_32_bit_values_are_low_word_first() -> None:
    emu, _, meter, _ = make(ConstantLoad(20000.0, voltage_v=100.0))  # 200 A: current above 16 bits
    emu.set_energy_wh(0x0123_4567)
    r = meter.read()
    assert r.current_milli_a == 200000 and r.power_deci_w == 200000
    assert r.energy_wh == 0x0123_4567


def test_timeout_is_a_typed_error_after_a_retry() -> None:
    emu, uart, meter, clock = make()
    emu.faults.silent = 2
    with pytest.raises(PZEMTimeout) as info:
        meter.read()
    assert "PZEM-004T at Modbus 0x01" in str(info.value) and "200 ms" in str(info.value)
    assert isinstance(info.value, PZEMError) and isinstance(info.value, SensorError)
    assert len(uart.written) == 2  # 1 + retries
    assert clock() >= 0.4
    emu.faults.silent = 1
    assert meter.read().power_deci_w == 10000  # the retry answers
    emu.faults.offline = True
    with pytest.raises(PZEMTimeout):
        meter.read()


def test_short_frame() -> None:
    emu, _, meter, _ = make()
    emu.faults.truncate = 2
    emu.faults.truncate_to = 11
    with pytest.raises(PZEMShortFrame, match=r"11 bytes .* want 25"):
        meter.read()


def test_bad_crc_is_retried_then_typed() -> None:
    emu, uart, meter, _ = make()
    emu.faults.bad_crc = 1
    assert meter.read().voltage_deci_v == 2300
    assert len(uart.written) == 2
    emu.faults.bad_crc = 2
    with pytest.raises(PZEMCRCError, match="bad CRC"):
        meter.read()


def test_garbage_before_the_reply_is_a_crc_error_then_the_retry_works() -> None:
    emu, _, meter, _ = make()
    emu.faults.garbage = 1
    assert meter.read().power_deci_w == 10000


def test_stale_bytes_are_flushed_before_a_request() -> None:
    _, uart, meter, _ = make()
    uart.inject(b"\x01\x04\x14\x00\x00")
    assert meter.read().voltage_deci_v == 2300


def test_exception_responses() -> None:
    emu, uart, meter, _ = make()
    with pytest.raises(PZEMExceptionResponse) as info:
        meter._read_registers(FC_READ_INPUT, 5, 10)  # registers 5..14: only 0..9 exist
    assert info.value.code == 0x02 and info.value.function == 0x04
    assert "illegal address" in str(info.value)
    emu.faults.exception = 0x04
    sent = len(uart.written)
    with pytest.raises(PZEMExceptionResponse) as info:
        meter.read()
    assert info.value.code == 0x04
    assert len(uart.written) == sent + 1  # an exception is an answer: not retried
    emu.faults.exception = None
    with pytest.raises(PZEMExceptionResponse) as info:
        meter._write_register(0x0002, 0x00F8)  # not a valid slave address
    assert info.value.code == 0x03


def test_reply_from_another_address() -> None:
    emu, _, meter, _ = make()
    emu.faults.wrong_address = 1
    with pytest.raises(PZEMAddressError, match="0x02"):
        meter.read()


def test_reset_energy_and_tracker_sees_the_reset() -> None:
    emu, uart, meter, clock = make(ConstantLoad(2000.0))
    tracker = EnergyTracker()
    clock.advance(1800)
    first = tracker.update(meter.read().energy_wh)
    assert first.first and first.delta_wh == 0
    clock.advance(1800)
    d = tracker.update(meter.read().energy_wh)
    assert (d.delta_wh, d.meter_reset) == (1000, False)
    assert meter.reset_energy() is True
    assert uart.written[-1] == bytes.fromhex("01428011")
    assert emu.energy_resets == 1
    clock.advance(360)
    d = tracker.update(meter.read().energy_wh)
    assert d.reset and d.meter_reset and not d.wrapped
    assert d.delta_wh == 200  # counted since the reset; never negative
    assert tracker.total_wh == 1200


def test_energy_register_wrap_is_counted_across() -> None:
    _emu, _, meter, clock = make(ConstantLoad(1000.0), energy_wh=(1 << 32) - 300)
    tracker = EnergyTracker()
    tracker.update(meter.read().energy_wh)
    clock.advance(3600)
    reading = meter.read()
    assert reading.energy_wh == 700
    d = tracker.update(reading.energy_wh)
    assert d.wrapped and d.meter_reset and not d.reset
    assert d.delta_wh == 1000


def test_alarm_threshold_and_address_registers() -> None:
    emu, uart, meter, _ = make(ConstantLoad(1000.0))
    assert meter.get_alarm_threshold() == 23000
    assert uart.written[-1][:6] == bytes.fromhex("010300010001")
    meter.set_alarm_threshold(500)
    assert uart.written[-1][:6] == bytes.fromhex("0106000101f4")
    assert meter.read().alarm is True
    general = PZEM004T(uart, address=0xF8, ticks_ms=meter._ticks_ms, sleep_ms=meter._sleep_ms)
    assert general.get_address() == 1
    general.set_address(1)
    assert uart.written[-1] == bytes.fromhex("f80600020001fda3")  # shared vector
    meter.set_address(0x11)
    assert emu.address == 0x11 and meter.address == 0x11
    assert meter.read().voltage_deci_v == 2300
    old = PZEM004T(uart, address=0x01, ticks_ms=meter._ticks_ms, sleep_ms=meter._sleep_ms, retries=0)
    with pytest.raises(PZEMTimeout):
        old.read()  # nobody answers 0x01 any more
    with pytest.raises(ValueError):
        meter.set_address(0xF8)


def test_daily_load_profile_over_a_day() -> None:
    _emu, _, meter, clock = make(DailyLoad(base_w=300.0, peak_w=2500.0, start_hour=0.0, seed=2))
    powers = []
    for _ in range(24):
        clock.advance(3600)
        powers.append(meter.read().power_deci_w)
    assert min(powers) < 4000 and max(powers) > 20000
    energy = meter.read().energy_wh
    assert 15000 < energy < 30000
