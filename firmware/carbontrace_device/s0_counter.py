"""S0 pulse output of an energy meter (DIN 43864 / IEC 62053-31) counted on a pin interrupt. MicroPython-safe.

The pin is injected (``machine.Pin``-like: ``pin.irq(handler=..., trigger=...)``, ``Pin.IRQ_FALLING``). The
interrupt handler only increments an int attribute, which allocates nothing while the count stays a small
int (below 2**30 pulses), so it is safe as a hard IRQ handler. Everything else happens in ``read()``:

* energy: each pulse is ``1000 / pulses_per_kwh`` Wh. The remainder below one Wh is kept exactly (in units of
  1/pulses_per_kwh Wh), so ``energy_wh`` never drifts whatever the meter constant (e.g. 800 or 1000 imp/kWh).
* power: the pulses seen since the previous change of the count, over the time between the two ``read()``
  calls that saw them (so its resolution is the read interval). While no pulse arrives the estimate is
  capped at one pulse over the time since the count last changed, so it falls as 1/t when a load stops.
  The first estimate covers the time since construction.
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from carbontrace_device.sensor_errors import SensorError

_IRQ_FALLING = const(2)  # machine.Pin.IRQ_FALLING on most ports, used only when the pin does not name it
# 1 kWh = 3.6e6 W*s = 3.6e10 dW*ms (a plain int: const() wants a small int)
_DECI_W_MS_PER_PULSE_KWH = 36000000000


class S0Error(SensorError):
    def __init__(self, detail):
        SensorError.__init__(self, "S0 counter", "pin", None, detail)


class S0Reading:
    """Cumulative energy in Wh and the power estimate in tenths of a watt (both ints), plus the raw count."""

    def __init__(self, energy_wh, power_deci_w, pulses):
        self.energy_wh = energy_wh
        self.power_deci_w = power_deci_w
        self.pulses = pulses

    def __repr__(self):
        return "S0Reading(energy_wh=%d, power_deci_w=%d, pulses=%d)" % (self.energy_wh, self.power_deci_w, self.pulses)


def _ticks_fallback():
    return int(time.monotonic() * 1000)


def _diff_fallback(a, b):
    return a - b


class S0Counter:
    """Count S0 pulses on ``pin``. ``energy_wh``: the meter's count to start from (e.g. restored after a
    reboot). ``trigger``: IRQ trigger, default the pin's ``IRQ_FALLING`` (S0 pulls the line low). ``hard``:
    register a hard IRQ (ESP32, RP2: runs at once, cannot be dropped by a full schedule queue); the handler
    allocates nothing, so it is safe there."""

    def __init__(self, pin, pulses_per_kwh=1000, energy_wh=0, ticks_ms=None, trigger=None, hard=False):
        if pulses_per_kwh <= 0:
            raise ValueError("pulses_per_kwh must be > 0")
        if energy_wh < 0:
            raise ValueError("energy_wh must be >= 0")
        self.pin = pin
        self.pulses_per_kwh = pulses_per_kwh
        self._ticks_ms = ticks_ms or getattr(time, "ticks_ms", None) or _ticks_fallback
        self._ticks_diff = getattr(time, "ticks_diff", None) or _diff_fallback
        self._pulses = 0  # written only by the IRQ handler
        self._seen = 0  # pulses already turned into energy
        self._energy_wh = energy_wh
        self._remainder = 0  # energy below 1 Wh, in units of 1/pulses_per_kwh Wh
        self._power_deci_w = 0
        self._mark_pulses = 0
        self._mark_tick = self._ticks_ms()
        self._handler = self._on_pulse  # bound once: referencing a method allocates
        if trigger is None:
            trigger = getattr(pin, "IRQ_FALLING", _IRQ_FALLING)
        if hard:
            pin.irq(handler=self._handler, trigger=trigger, hard=True)
        else:
            pin.irq(handler=self._handler, trigger=trigger)

    def _on_pulse(self, _pin):
        self._pulses += 1

    @property
    def pulses(self):
        return self._pulses

    def read(self):
        """Fold new pulses into the energy total and update the power estimate; returns an ``S0Reading``."""
        count = self._pulses  # one read of the IRQ-written attribute
        now = self._ticks_ms()
        new = count - self._seen
        if new < 0:
            raise S0Error("pulse count went backwards (%d after %d)" % (count, self._seen))
        if new:
            self._seen = count
            total = self._remainder + new * 1000
            self._energy_wh += total // self.pulses_per_kwh
            self._remainder = total % self.pulses_per_kwh
        elapsed = self._ticks_diff(now, self._mark_tick)
        if count != self._mark_pulses:
            if elapsed > 0:
                self._power_deci_w = self._deci_w(count - self._mark_pulses, elapsed)
            self._mark_pulses = count
            self._mark_tick = now
        elif elapsed > 0:
            bound = self._deci_w(1, elapsed)
            if bound < self._power_deci_w:
                self._power_deci_w = bound
        return S0Reading(self._energy_wh, self._power_deci_w, count)

    def _deci_w(self, pulses, elapsed_ms):
        den = self.pulses_per_kwh * elapsed_ms
        return (pulses * _DECI_W_MS_PER_PULSE_KWH + den // 2) // den

    def deinit(self):
        self.pin.irq(handler=None)
