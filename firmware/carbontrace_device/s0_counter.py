"""S0 pulse output of an energy meter (DIN 43864 / IEC 62053-31) counted on a pin interrupt. MicroPython-safe.

The pin is injected (``machine.Pin``-like: ``pin.irq(handler=..., trigger=...)``, ``Pin.IRQ_FALLING``). The
interrupt handler reads the tick counter and increments int attributes, which allocates nothing while they
stay small ints (below 2**30), so it is safe as a hard IRQ handler. It **debounces**: an edge within
``debounce_ms`` of the last counted one is contact bounce or noise, not a pulse (IEC 62053-31 pulses last at
least 30 ms; at 1000 imp/kWh the default 20 ms still allows 180 kW), and is counted apart as a bounce.
Everything else happens in ``read()``:

* energy: each pulse is ``1000 / pulses_per_kwh`` Wh. The remainder below one Wh is kept exactly (in units of
  1/pulses_per_kwh Wh), so ``energy_wh`` never drifts whatever the meter constant (e.g. 800 or 1000 imp/kWh).
* power: the pulses seen since the previous change of the count, over the time between the two ``read()``
  calls that saw them (so its resolution is the read interval). While no pulse arrives the estimate is
  capped at one pulse over the time since the count last changed, so it falls as 1/t when a load stops.
  The first estimate covers the time since construction.
* persistence: with an ``S0TotalStore`` the total survives a reboot. ``read()`` saves it whenever it
  changed, before the reading that carries it is signed, so a total once published is never above the one a
  reboot restores and the counter never goes backwards (the gateway would count that as a meter reset and
  energy from zero again). Without a saved total (first boot, wiped flash) the first reading says so
  (``reset``: the app flags it FLAG_METER_RESET), so a restart from 0 is never silent.
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
    """Cumulative energy in Wh and the power estimate in tenths of a watt (both ints), the raw count, and
    ``reset``: the count started from 0 without a saved total to continue from (first read only)."""

    def __init__(self, energy_wh, power_deci_w, pulses, reset=False):
        self.energy_wh = energy_wh
        self.power_deci_w = power_deci_w
        self.pulses = pulses
        self.reset = reset

    def __repr__(self):
        return "S0Reading(energy_wh=%d, power_deci_w=%d, pulses=%d)" % (self.energy_wh, self.power_deci_w, self.pulses)


class S0TotalStore:
    """The S0 total (Wh and the sub-Wh remainder) in one flash file, replaced atomically."""

    def __init__(self, flash, name="s0_total"):
        self.flash = flash
        self.name = name

    def load(self, pulses_per_kwh):
        """(energy_wh, remainder) saved for this meter constant, or None (none saved, unreadable, or saved
        for another constant: the remainder would mean something else)."""
        raw = self.flash.read(self.name)
        if raw is None:
            return None
        try:
            parts = bytes(raw).decode().split()
        except UnicodeError:
            return None
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return None
        energy_wh, remainder, constant = int(parts[0]), int(parts[1]), int(parts[2])
        if constant != pulses_per_kwh or remainder >= constant:
            return None
        return energy_wh, remainder

    def save(self, energy_wh, remainder, pulses_per_kwh):
        self.flash.write_atomic(self.name, ("%d %d %d\n" % (energy_wh, remainder, pulses_per_kwh)).encode())


def _ticks_fallback():
    return int(time.monotonic() * 1000)


def _diff_fallback(a, b):
    return a - b


class S0Counter:
    """Count S0 pulses on ``pin``. ``energy_wh``: the meter's count to start from (e.g. restored after a
    reboot). ``trigger``: IRQ trigger, default the pin's ``IRQ_FALLING`` (S0 pulls the line low). ``hard``:
    register a hard IRQ (ESP32, RP2: runs at once, cannot be dropped by a full schedule queue); the handler
    allocates nothing, so it is safe there. ``debounce_ms``: edges closer than this to the last counted one
    are bounces (0: count every edge). ``store``: an ``S0TotalStore``; a total saved there wins over
    ``energy_wh``."""

    def __init__(
        self, pin, pulses_per_kwh=1000, energy_wh=0, ticks_ms=None, trigger=None, hard=False, debounce_ms=20,
        store=None,
    ):
        if pulses_per_kwh <= 0:
            raise ValueError("pulses_per_kwh must be > 0")
        if energy_wh < 0:
            raise ValueError("energy_wh must be >= 0")
        if debounce_ms < 0:
            raise ValueError("debounce_ms must be >= 0")
        self.pin = pin
        self.pulses_per_kwh = pulses_per_kwh
        self._ticks_ms = ticks_ms or getattr(time, "ticks_ms", None) or _ticks_fallback
        self._ticks_diff = getattr(time, "ticks_diff", None) or _diff_fallback
        self._pulses = 0  # written only by the IRQ handler
        self._seen = 0  # pulses already turned into energy
        self._energy_wh = energy_wh
        self._remainder = 0  # energy below 1 Wh, in units of 1/pulses_per_kwh Wh
        self._store = store
        saved = store.load(pulses_per_kwh) if store is not None else None
        if saved is not None:
            self._energy_wh, self._remainder = saved
        # a restart from 0 is reported once: no store (the caller chose), or a store with nothing to continue
        self._reset_pending = store is not None and saved is None
        self._debounce_ms = debounce_ms
        self._last_edge = self._ticks_ms()
        self._armed = False  # the first edge always counts
        self.bounces = 0  # edges dropped as bounce (written only by the IRQ handler)
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
        now = self._ticks_ms()
        if self._armed and self._ticks_diff(now, self._last_edge) < self._debounce_ms:
            self.bounces += 1
            return
        self._armed = True
        self._last_edge = now
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
        if self._store is not None and (new or self._reset_pending):
            self._store.save(self._energy_wh, self._remainder, self.pulses_per_kwh)
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
        reset, self._reset_pending = self._reset_pending, False
        return S0Reading(self._energy_wh, self._power_deci_w, count, reset)

    def _deci_w(self, pulses, elapsed_ms):
        den = self.pulses_per_kwh * elapsed_ms
        return (pulses * _DECI_W_MS_PER_PULSE_KWH + den // 2) // den

    def deinit(self):
        self.pin.irq(handler=None)
