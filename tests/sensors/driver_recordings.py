"""The sensor drivers' recorded bus traffic: one definition, replayed by every MicroPython runtime.

Each scenario runs first under CPython with the driver on a bus-level emulator (simulators/), recording every
bus transfer (bytes written, bytes read, NACKs with their errno, faults included). ``Recording.script`` is a
MicroPython program that runs the same scenario code with a bus that replays the recording and asserts that
every byte the driver writes is the recorded one; ``Recording.check`` asserts that its output is CPython's
result, that it slept identically and consumed the whole recording. The WebAssembly port
(tests/sensors/test_sensor_drivers_micropython.py), the unix port and the emulated Pico
(tests/micropython/test_mp_unix_port.py, test_mp_pico_emulator.py) run the same scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carbontrace_device import pzem004t, scd4x

from simulators.clock import ManualClock
from simulators.pzem_emulator import ConstantLoad, PZEMEmulator, UARTAdapter
from simulators.scd4x_emulator import Ambient, SCD4xEmulator

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


def normalise(value: Any) -> str:
    """Results as MicroPython's repr would print them."""
    return repr(value)


@dataclass(frozen=True)
class Recording:
    """A driver scenario recorded under CPython and the MicroPython program that replays it."""

    name: str
    script: str  # prints repr(results), [repr(sleeps)], "used total"
    expected: str  # repr of CPython's results
    sleeps: str | None  # repr of the sleeps CPython's driver asked for (None: the scenario does not record them)
    transfers: int

    def check(self, stdout: str) -> None:
        lines = stdout.strip().splitlines()[-(3 if self.sleeps is not None else 2):]
        assert lines[0] == self.expected, f"{self.name}: results differ from CPython's"
        if self.sleeps is not None:
            assert lines[1] == self.sleeps, f"{self.name}: sleeps differ from CPython's"
        used, total = lines[-1].split()
        assert used == total == str(self.transfers), f"{self.name}: replayed {used} of {total} transfers"


def record_scd4x() -> Recording:
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
        + "def step(name):\n"
        + "    if name == 'measure for 200 s':\n"
        + "        dev.start_periodic_measurement()\n"
        + "out = scenario(dev, step)\n"
        + "print(repr(out))\n"
        + "print(repr(sleeps))\n"
        + "print(bus.i, len(TRANSCRIPT))\n"
    )
    return Recording("SCD4x I2C", script, normalise(expected), repr(sleeps), len(transcript))


def record_pzem() -> Recording:
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
    return Recording("PZEM-004T Modbus", script, normalise(expected), None, len(transcript))


def all_recordings() -> list[Recording]:
    return [record_scd4x(), record_pzem()]
