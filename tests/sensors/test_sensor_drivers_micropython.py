"""The sensor drivers under real MicroPython 1.27 (WebAssembly port), against the same drivers under CPython.

Each scenario runs first under CPython with the emulator, recording every bus transfer; MicroPython then
replays the recording (tests/sensors/driver_recordings.py, the one definition of the SCD4x and PZEM
scenarios and their recordings, which the unix port and the emulated Pico replay too). Both interpreters
must return identical results, sleep identically, and consume the whole recording. The S0 counter's IRQ
handler is also run with the heap locked, which raises MemoryError on any allocation.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from carbontrace_device import s0_counter
from carbontrace_device.energy import EnergyTracker

from tests.micropython.mp_runner import FIRMWARE_DIR, run_micropython_ok
from tests.sensors.driver_recordings import Recording, normalise, record_pzem, record_scd4x, run_in_cpython

pytestmark = pytest.mark.timeout(120)

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

@pytest.mark.parametrize("record", [record_scd4x, record_pzem], ids=["scd4x", "pzem"])
def test_driver_replays_its_recorded_bus_traffic_under_micropython(record: Callable[[], Recording]) -> None:
    recording = record()
    recording.check(run_micropython_ok(recording.script, [FIRMWARE_DIR]))


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
