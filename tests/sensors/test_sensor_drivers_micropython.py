"""The sensor drivers under real MicroPython 1.27 (WebAssembly port), against the same drivers under CPython.

Each scenario runs first under CPython with the emulator, recording every bus transfer (bytes written, bytes
read, NACKs with their errno, faults included). MicroPython then runs the same scenario code with a bus that
replays the recording and checks that every byte the driver writes is the recorded one. Both interpreters
must return identical results, sleep identically, and consume the whole recording. The S0 counter's IRQ
handler is also run with the heap locked, which raises MemoryError on any allocation.
"""

from __future__ import annotations

from typing import Any

import pytest
from carbontrace_device import pzem004t, s0_counter, scd4x
from carbontrace_device.energy import EnergyTracker

from simulators.clock import ManualClock
from simulators.pzem_emulator import ConstantLoad, PZEMEmulator, UARTAdapter
from simulators.scd4x_emulator import Ambient, SCD4xEmulator
from tests.micropython.mp_runner import FIRMWARE_DIR, run_micropython_ok

pytestmark = pytest.mark.timeout(120)

SCD4X_SCENARIO = """
def scenario(dev, step):
    out = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except SCD4XError as err:
            return (type(err).__name__, str(err))

    out.append(dev.serial_number())
    dev.start_periodic_measurement()
    out.append(dev.data_ready())
    out.append(attempt(dev.read_measurement))
    step("advance 5 s")
    out.append(dev.data_ready())
    out.append(dev.read_measurement())
    out.append(attempt(dev.serial_number))
    dev.set_ambient_pressure(987)
    out.append(dev.get_ambient_pressure())
    step("crc error on the next reply")
    step("advance 5 s")
    out.append(attempt(dev.read_measurement))
    dev.stop_periodic_measurement()
    step("crc error on the next reply")
    out.append(dev.get_sensor_altitude())
    step("crc errors on every reply")
    out.append(attempt(dev.get_temperature_offset))
    step("no crc errors")
    dev.set_temperature_offset(540)
    out.append(dev.get_temperature_offset())
    dev.set_automatic_self_calibration(False)
    out.append(dev.get_automatic_self_calibration())
    out.append(attempt(dev.forced_recalibration, 480))
    step("measure for 200 s")
    dev.stop_periodic_measurement()
    out.append(dev.forced_recalibration(480))
    out.append(dev.self_test())
    dev.measure_single_shot()
    out.append(dev.read_measurement())
    dev.measure_single_shot_rht_only()
    out.append(dev.read_measurement())
    dev.persist_settings()
    dev.reinit()
    dev.factory_reset()
    out.append(dev.sensor_variant())
    step("disconnect")
    out.append(attempt(dev.data_ready))
    return out
"""

PZEM_SCENARIO = """
def scenario(meter, step):
    out = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except PZEMError as err:
            return (type(err).__name__, str(err))

    def values(r):
        return (r.voltage_deci_v, r.current_milli_a, r.power_deci_w, r.energy_wh, r.frequency_deci_hz,
                r.power_factor_centi, r.alarm)

    out.append(values(meter.read()))
    step("advance 1 h")
    out.append(values(meter.read()))
    out.append(meter.reset_energy())
    out.append(meter.get_alarm_threshold())
    meter.set_alarm_threshold(100)
    out.append(values(meter.read()))
    step("silent twice")
    out.append(attempt(meter.read))
    step("bad crc once")
    out.append(values(meter.read()))
    step("truncate twice")
    out.append(attempt(meter.read))
    step("wrong address")
    out.append(attempt(meter.read))
    step("exception 4")
    out.append(attempt(meter.get_address))
    return out
"""

S0_SCENARIO = """
def scenario(S0Counter, EnergyTracker):
    class Pin:
        IRQ_FALLING = 2

        def irq(self, handler=None, trigger=0):
            self.handler = handler
            self.trigger = trigger

    now = [0]
    pin = Pin()
    # pulses come in bursts at one instant here: no debouncing, so the counting itself is compared
    counter = S0Counter(pin, pulses_per_kwh=800, ticks_ms=lambda: now[0], debounce_ms=0)
    tracker = EnergyTracker(wrap_at=10000, wrap_window=1000)
    out = [pin.trigger]
    for i in range(40):
        for _ in range((i * 7) % 5):
            pin.handler(pin)
        now[0] += 9000
        r = counter.read()
        d = tracker.update((r.energy_wh * 997) % 10000)
        out.append((r.energy_wh, r.power_deci_w, r.pulses, d.delta_wh, d.wrapped, d.reset, tracker.total_wh))
    return out
"""

MICROPYTHON_REPLAY_I2C = """
class ReplayI2C:
    def __init__(self, transcript):
        self.t = transcript
        self.i = 0

    def _next(self, kind):
        k, data, err = self.t[self.i]
        self.i += 1
        assert k == kind, (self.i, k, kind)
        return data, err

    def writeto(self, addr, buf, stop=True):
        data, err = self._next("write")
        assert bytes(buf) == data, (self.i, bytes(buf), data)
        if err:
            raise OSError(err)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        data, err = self._next("read")
        if err:
            raise OSError(err)
        assert len(buf) == len(data), (self.i, len(buf), len(data))
        for j in range(len(data)):
            buf[j] = data[j]
"""

MICROPYTHON_REPLAY_UART = """
class ReplayUART:
    def __init__(self, transcript):
        self.t = transcript
        self.i = 0
        self.rx = b""

    def write(self, buf):
        request, reply = self.t[self.i]
        self.i += 1
        assert bytes(buf) == request, (self.i, bytes(buf), request)
        self.rx = reply or b""
        return len(buf)

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None
        if n < 0:
            n = len(self.rx)
        out = self.rx[:n]
        self.rx = self.rx[n:]
        return out
"""


def run_in_cpython(scenario: str, names: dict[str, Any], *args: Any) -> Any:
    namespace = dict(names)
    exec(scenario, namespace)
    return namespace["scenario"](*args)


def normalise(value: Any) -> Any:
    """Results as MicroPython's repr would print them."""
    return repr(value)


def test_scd4x_driver_is_byte_identical_under_micropython() -> None:
    clock = ManualClock()
    emu = SCD4xEmulator(clock=clock, seed=8)
    emu.ambient_override = Ambient(530.0, 23.5, 41.0)
    sleeps: list[int] = []

    def sleep_ms(ms: int) -> None:
        sleeps.append(ms)
        clock.sleep_ms(ms)

    def step(name: str) -> None:
        f = emu.faults
        if name == "advance 5 s":
            clock.advance(5)
        elif name == "crc error on the next reply":
            f.crc_errors = 1
        elif name == "crc errors on every reply":
            f.crc_error_rate = 1.0
        elif name == "no crc errors":
            f.crc_error_rate = 0.0
        elif name == "measure for 200 s":
            dev.start_periodic_measurement()
            clock.advance(200)
        elif name == "disconnect":
            f.disconnected = True

    dev = scd4x.SCD4X(emu, sleep_ms=sleep_ms)
    names = {n: getattr(scd4x, n) for n in dir(scd4x) if n.startswith("SCD4X")}
    expected = run_in_cpython(SCD4X_SCENARIO, names, dev, step)
    assert expected[0] == 273325796834238 and expected[-1][0] == "SCD4XNackError"
    transcript = [(t.direction, t.data, t.errno) for t in emu.transfers]
    assert any(t[2] for t in transcript) and len(transcript) > 60

    script = (
        "from carbontrace_device.scd4x import *\n"
        + MICROPYTHON_REPLAY_I2C
        + SCD4X_SCENARIO
        + f"TRANSCRIPT = {transcript!r}\n"
        + "bus = ReplayI2C(TRANSCRIPT)\n"
        + "sleeps = []\n"
        + "dev = SCD4X(bus, sleep_ms=sleeps.append)\n"
        + "steps = []\n"
        + "def step(name):\n"
        + "    if name == 'measure for 200 s':\n"
        + "        dev.start_periodic_measurement()\n"
        + "out = scenario(dev, step)\n"
        + "print(repr(out))\n"
        + "print(repr(sleeps))\n"
        + "print(bus.i, len(TRANSCRIPT))\n"
    )
    lines = run_micropython_ok(script, [FIRMWARE_DIR]).strip().splitlines()
    assert lines[0] == normalise(expected)
    assert lines[1] == repr(sleeps)
    used, total = lines[2].split()
    assert used == total


def test_pzem_driver_is_byte_identical_under_micropython() -> None:
    clock = ManualClock()
    emu = PZEMEmulator(clock=clock, load=ConstantLoad(1200.0, voltage_v=229.0, power_factor=0.95))
    uart = UARTAdapter(emu)

    def step(name: str) -> None:
        f = emu.faults
        if name == "advance 1 h":
            clock.advance(3600)
        elif name == "silent twice":
            f.silent = 2
        elif name == "bad crc once":
            f.bad_crc = 1
        elif name == "truncate twice":
            f.truncate = 2
        elif name == "wrong address":
            f.wrong_address = 1
        elif name == "exception 4":
            f.exception = 4

    meter = pzem004t.PZEM004T(uart, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms, timeout_ms=100)
    names = {n: getattr(pzem004t, n) for n in dir(pzem004t) if n.startswith(("PZEM", "PowerReading"))}
    expected = run_in_cpython(PZEM_SCENARIO, names, meter, step)
    assert expected[1][3] == 1200  # Wh after an hour
    transcript = [(r.frame, r.reply) for r in emu.requests]

    script = (
        "from carbontrace_device.pzem004t import *\n"
        + MICROPYTHON_REPLAY_UART
        + PZEM_SCENARIO
        + f"TRANSCRIPT = {transcript!r}\n"
        + "uart = ReplayUART(TRANSCRIPT)\n"
        + "now = [0]\n"
        + "def sleep_ms(ms):\n"
        + "    now[0] += ms\n"
        + "meter = PZEM004T(uart, ticks_ms=lambda: now[0], sleep_ms=sleep_ms, timeout_ms=100)\n"
        + "out = scenario(meter, lambda name: None)\n"
        + "print(repr(out))\n"
        + "print(uart.i, len(TRANSCRIPT))\n"
    )
    lines = run_micropython_ok(script, [FIRMWARE_DIR]).strip().splitlines()
    assert lines[0] == normalise(expected)
    used, total = lines[1].split()
    assert used == total


def test_s0_counter_and_energy_tracker_agree_under_micropython() -> None:
    expected = run_in_cpython(S0_SCENARIO, {}, s0_counter.S0Counter, EnergyTracker)
    assert any(row[4] for row in expected[1:]) and any(row[5] for row in expected[1:])  # wraps and resets
    script = (
        "from carbontrace_device.s0_counter import S0Counter\n"
        "from carbontrace_device.energy import EnergyTracker\n"
        + S0_SCENARIO
        + "print(repr(scenario(S0Counter, EnergyTracker)))\n"
    )
    output = run_micropython_ok(script, [FIRMWARE_DIR]).strip()
    assert output == normalise(expected)


def test_s0_irq_handler_allocates_nothing_under_micropython() -> None:
    script = """
import micropython
import time
from carbontrace_device.s0_counter import S0Counter

class Pin:
    IRQ_FALLING = 2

    def irq(self, handler=None, trigger=0):
        self.handler = handler

def fire(handler, pin, count):
    micropython.heap_lock()
    try:
        i = 0
        while i < count:
            handler(pin)
            i += 1
    except MemoryError:
        micropython.heap_unlock()
        return "allocated after %d pulses" % i
    micropython.heap_unlock()
    return "ok"

def allocating(pin):
    allocating.seen = [pin]

pin = Pin()
# the board's own tick counter, read in the handler as on a board; debounce 0 so all 5000 edges count, the
# debounce comparison still runs on each
counter = S0Counter(pin, ticks_ms=time.ticks_ms, debounce_ms=0)
print(fire(pin.handler, pin, 5000), counter.pulses)
bouncy = S0Counter(pin, ticks_ms=time.ticks_ms, debounce_ms=60000)
print(fire(pin.handler, pin, 5000), bouncy.pulses, bouncy.bounces)
print(fire(allocating, pin, 1))
"""
    lines = run_micropython_ok(script, [FIRMWARE_DIR]).strip().splitlines()
    # the last line proves the check bites; the middle one that dropping a bounce allocates nothing either
    assert lines == ["ok 5000", "ok 1 4999", "allocated after 0 pulses"]
