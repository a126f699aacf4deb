"""The firmware's S0 pulse counter driven by the S0 pulse source, and the pure energy tracker."""

from __future__ import annotations

import ast
import inspect
import textwrap
import time

import pytest
from carbontrace_device import s0_counter
from carbontrace_device.energy import WRAP_32, EnergyTracker
from carbontrace_device.s0_counter import S0Counter, S0Error, S0TotalStore

from simulators.clock import ManualClock
from simulators.s0_source import FakePin, PulseSource


def make(power_w: float, ppk: int = 1000) -> tuple[FakePin, PulseSource, S0Counter, ManualClock]:
    clock = ManualClock()
    pin = FakePin(4)
    counter = S0Counter(pin, pulses_per_kwh=ppk, ticks_ms=clock.ticks_ms)
    return pin, PulseSource(pin, power_w, ppk, clock=clock), counter, clock


def test_registers_a_falling_edge_irq() -> None:
    pin, _, counter, clock = make(100.0)
    assert pin.trigger == FakePin.IRQ_FALLING
    assert pin.handler is not None
    pin.pulse()
    clock.advance(0.05)
    pin.pulse()
    assert counter.pulses == 2
    counter.deinit()
    assert pin.handler is None
    hard_pin = FakePin(5)
    S0Counter(hard_pin, hard=True)
    assert hard_pin.hard is True


def test_irq_handler_builds_nothing() -> None:
    """The handler only reads the tick counter, compares, and stores ints and booleans: no container, string
    or formatting that would allocate in a hard IRQ (the MicroPython heap-lock test checks it for real)."""
    source = textwrap.dedent(inspect.getsource(S0Counter._on_pulse))
    tree = ast.parse(source)
    forbidden = (ast.List, ast.Dict, ast.Set, ast.Tuple, ast.JoinedStr, ast.ListComp, ast.Lambda, ast.Raise)
    assert not [n for n in ast.walk(tree) if isinstance(n, forbidden)]
    increments = [n for n in ast.walk(tree) if isinstance(n, ast.AugAssign)]
    assert all(isinstance(n.op, ast.Add) and isinstance(n.value, ast.Constant) and n.value.value == 1
               for n in increments) and len(increments) == 2


def test_edges_closer_than_the_debounce_are_bounces_not_pulses() -> None:
    clock = ManualClock()
    pin = FakePin(4)
    counter = S0Counter(pin, pulses_per_kwh=1000, ticks_ms=clock.ticks_ms, debounce_ms=20)
    for _ in range(10):  # each pulse rings: a real edge, then two bounces 2 ms and 7 ms later
        pin.pulse()
        clock.advance(0.002)
        pin.pulse()
        clock.advance(0.005)
        pin.pulse()
        clock.advance(0.5)
    assert (counter.read().pulses, counter.bounces) == (10, 20)
    with pytest.raises(ValueError):
        S0Counter(FakePin(5), debounce_ms=-1)


class MemoryFlash:
    """A FlashDir stand-in in RAM (read / write_atomic), so a reboot is a new counter on the same files."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def write_atomic(self, name: str, data: bytes) -> None:
        self.files[name] = bytes(data)


def test_the_total_survives_a_reboot_and_a_restart_from_zero_is_flagged() -> None:
    clock, flash = ManualClock(), MemoryFlash()
    pin = FakePin(4)
    first = S0Counter(pin, pulses_per_kwh=800, ticks_ms=clock.ticks_ms, store=S0TotalStore(flash))
    opening = first.read()
    assert opening.reset and opening.energy_wh == 0  # nothing saved yet: the app flags FLAG_METER_RESET
    for _ in range(1001):  # 1001 pulses at 800 imp/kWh: 1251.25 Wh
        pin.pulse()
        clock.advance(0.1)
    before = first.read()
    assert (before.energy_wh, before.reset) == (1251, False)
    # reboot: a new counter on the same flash continues, sub-Wh remainder included, and says no reset
    again = S0Counter(FakePin(4), pulses_per_kwh=800, ticks_ms=clock.ticks_ms, store=S0TotalStore(flash))
    restored = again.read()
    assert (restored.energy_wh, restored.reset) == (1251, False)
    for _ in range(3):  # 0.25 Wh remainder + 3 × 1.25 Wh = 4 Wh exactly
        again.pin.pulse()
        clock.advance(0.1)
    assert again.read().energy_wh == 1255
    # a saved total for another meter constant, or a damaged file, is not continued: restart, flagged
    flash.files["s0_total"] = b"12 3 1000\n"
    assert S0Counter(FakePin(4), pulses_per_kwh=800, store=S0TotalStore(flash)).read().reset
    flash.files["s0_total"] = b"\xff\xff"
    assert S0Counter(FakePin(4), pulses_per_kwh=800, store=S0TotalStore(flash)).read().reset


def test_energy_and_power_at_a_steady_load() -> None:
    _, source, counter, _ = make(1800.0)  # 1000 imp/kWh: one pulse every 2 s
    source.advance(60)
    first = counter.read()
    assert first.pulses == 30 and first.energy_wh == 30
    assert first.power_deci_w == 18000
    source.advance(3600 - 60)
    r = counter.read()
    assert r.energy_wh == 1800
    assert r.power_deci_w == 18000
    assert isinstance(r.energy_wh, int) and isinstance(r.power_deci_w, int)


def test_fractional_wh_per_pulse_is_kept_exact() -> None:
    _, source, counter, _ = make(800.0, ppk=800)  # 1.25 Wh per pulse
    total_pulses = 0
    for _ in range(97):  # odd read intervals so that pulses straddle reads
        total_pulses += source.advance(7.3)
        r = counter.read()
        assert r.pulses == total_pulses
        assert r.energy_wh == total_pulses * 1000 // 800  # never drifts
    _, source, counter, _ = make(1000.0, ppk=3)  # 333.33... Wh per pulse
    source.advance(3 * 3600 + 1)
    assert counter.read().energy_wh == 3000
    source.advance(1200)  # one more pulse: 3333.33 Wh
    assert counter.read().energy_wh == 3333


def test_power_falls_when_the_load_stops() -> None:
    state = {"power": 3600.0}
    clock = ManualClock()
    pin = FakePin()
    counter = S0Counter(pin, pulses_per_kwh=1000, ticks_ms=clock.ticks_ms)
    source = PulseSource(pin, lambda _t: state["power"], 1000, clock=clock)
    for _ in range(6):
        source.advance(10)
        last = counter.read()
    assert last.power_deci_w == 36000
    state["power"] = 0.0
    readings = []
    for _ in range(6):
        source.advance(60)
        readings.append(counter.read().power_deci_w)
    assert readings == sorted(readings, reverse=True)
    assert readings[-1] < 1000  # below 100 W after six quiet minutes: at most 1 pulse (1 Wh) in 6 min = 10 W
    assert counter.read().energy_wh == 60


def test_low_load_estimate_over_reads_without_pulses() -> None:
    _, source, counter, _ = make(100.0)  # one pulse every 36 s
    estimates = []
    for _ in range(40):
        source.advance(10)
        estimates.append(counter.read().power_deci_w)
    # after the first pulses, each estimate lies within a factor of two of 100 W
    assert all(500 <= e <= 2000 for e in estimates[8:]), estimates


def test_energy_start_value_and_validation() -> None:
    clock = ManualClock()
    pin = FakePin()
    counter = S0Counter(pin, pulses_per_kwh=1000, energy_wh=123456, ticks_ms=clock.ticks_ms)
    pin.pulse()
    assert counter.read().energy_wh == 123457
    with pytest.raises(ValueError):
        S0Counter(FakePin(), pulses_per_kwh=0)
    counter._pulses = 0  # a counter that went backwards is a fault, not negative energy
    with pytest.raises(S0Error, match="backwards"):
        counter.read()


def test_realtime_source_drives_the_irq_from_a_thread() -> None:
    pin = FakePin()
    # 1 pulse/s, 100x faster: pulses 10 ms apart in real time, so no debouncing here
    counter = S0Counter(pin, pulses_per_kwh=1000, debounce_ms=0)
    source = PulseSource(pin, 3600.0, 1000, time_scale=100.0)
    started = time.monotonic()
    source.start()
    time.sleep(0.3)
    source.stop()
    elapsed = time.monotonic() - started
    r = counter.read()
    assert r.pulses == source.pulses
    assert 15 <= r.pulses <= elapsed * 100 + 1
    assert r.energy_wh == r.pulses


def test_s0_module_names_the_app_api() -> None:
    r = s0_counter.S0Reading(1, 2, 3)
    assert (r.energy_wh, r.power_deci_w, r.pulses) == (1, 2, 3)


# -- EnergyTracker ---------------------------------------------------------------------------------------------


def test_tracker_deltas_wrap_and_reset() -> None:
    t = EnergyTracker()
    d = t.update(1000)
    assert d.first and d.delta_wh == 0 and not d.meter_reset
    assert t.update(1500).delta_wh == 500
    assert t.update(1500).delta_wh == 0
    t.update(WRAP_32 - 10)  # a big jump forward is consumption (e.g. a long outage)
    d = t.update(5)
    assert d.wrapped and not d.reset and d.meter_reset and d.delta_wh == 15
    d = t.update(3)
    assert d.reset and not d.wrapped and d.meter_reset and d.delta_wh == 3
    assert t.total_wh == 500 + (WRAP_32 - 10 - 1500) + 15 + 3


def test_tracker_never_reports_negative_consumption() -> None:
    import random

    rng = random.Random(9)
    t = EnergyTracker(wrap_at=10_000, wrap_window=500)
    total = 0
    for _ in range(2000):
        d = t.update(rng.randrange(10_000))
        assert d.delta_wh >= 0
        total += d.delta_wh
    assert t.total_wh == total


def test_tracker_meter_specific_wrap_and_validation() -> None:
    t = EnergyTracker(wrap_at=10_000_000, last_wh=9_999_900, total_wh=50)
    d = t.update(40)
    assert d.wrapped and d.delta_wh == 140 and t.total_wh == 190
    d = t.update(20)
    assert d.reset and d.delta_wh == 20
    with pytest.raises(ValueError):
        t.update(-1)
    with pytest.raises(ValueError):
        t.update(10_000_000)
    # a decrease from the middle of the range is a reset, not a wrap
    t = EnergyTracker()
    t.update(2_000_000_000)
    d = t.update(100)
    assert d.reset and not d.wrapped and d.delta_wh == 100
