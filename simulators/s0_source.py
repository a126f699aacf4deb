"""An S0 pulse source: the pulse output of an energy meter driving a ``machine.Pin``-like object's IRQ.

A meter with ``pulses_per_kwh`` emits one pulse per ``1000 / pulses_per_kwh`` Wh, so a draw of P watts gives
``P * pulses_per_kwh / 3.6e6`` pulses per second. ``PulseSource.advance(seconds)`` plays that out exactly
(energy below one pulse carries over), calling the pin's IRQ handler on each falling edge, and moving an
optional ``ManualClock`` to each pulse's time; ``start()`` does the same in real time on a thread (scaled by
``time_scale``), calling the handler from that thread as an interrupt would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from simulators.clock import ManualClock

IrqHandler = Callable[["FakePin"], None]


class FakePin:
    """The part of ``machine.Pin`` an interrupt-driven counter uses: ``irq``, ``value``, the IRQ constants."""

    IN = 1
    PULL_UP = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, pin_id: int | str = 0) -> None:
        self.id = pin_id
        self._value = 1  # S0 is open collector with a pull-up: idle high
        self.handler: IrqHandler | None = None
        self.trigger = 0
        self.hard = False
        self.edges = 0

    def irq(self, handler: IrqHandler | None = None, trigger: int = 3, *, hard: bool = False) -> None:
        self.handler = handler
        self.trigger = trigger
        self.hard = hard

    def value(self, v: int | None = None) -> int:
        if v is not None:
            self._set(1 if v else 0)
        return self._value

    def _set(self, v: int) -> None:
        if v == self._value:
            return
        self._value = v
        self.edges += 1
        edge = self.IRQ_FALLING if v == 0 else self.IRQ_RISING
        if self.handler is not None and self.trigger & edge:
            self.handler(self)

    def pulse(self) -> None:
        """One S0 pulse: low, then high again."""
        self._set(0)
        self._set(1)


class PulseSource:
    """Drives ``pin`` with the pulses of a meter measuring ``power_w`` (watts, or a function of the time in
    seconds since the source started)."""

    def __init__(
        self,
        pin: FakePin,
        power_w: float | Callable[[float], float],
        pulses_per_kwh: int = 1000,
        *,
        clock: ManualClock | None = None,
        time_scale: float = 1.0,
    ) -> None:
        if pulses_per_kwh <= 0:
            raise ValueError("pulses_per_kwh must be > 0")
        self.pin = pin
        if callable(power_w):
            self._power: Callable[[float], float] = power_w
        else:
            constant = float(power_w)

            def steady(_t: float) -> float:
                return constant

            self._power = steady
        self.pulses_per_kwh = pulses_per_kwh
        self.clock = clock
        self.time_scale = time_scale
        self.t = 0.0  # seconds since the source started
        self.pulses = 0
        self._since_pulse_wh = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def wh_per_pulse(self) -> float:
        return 1000.0 / self.pulses_per_kwh

    def advance(self, seconds: float) -> int:
        """Play ``seconds`` of the meter; returns the number of pulses emitted."""
        with self._lock:
            return self._advance(seconds)

    def _advance(self, seconds: float) -> int:
        fired = 0
        end = self.t + seconds
        while self.t < end:
            step = min(1.0, end - self.t)  # re-read the power at least every second
            power = max(0.0, self._power(self.t))
            while step > 0:
                need_wh = self.wh_per_pulse - self._since_pulse_wh
                to_pulse = need_wh * 3600.0 / power if power > 0 else float("inf")
                if to_pulse <= step:
                    self._move(to_pulse)
                    step -= to_pulse
                    self._since_pulse_wh = 0.0
                    self.pulses += 1
                    fired += 1
                    self.pin.pulse()
                else:
                    self._since_pulse_wh += power * step / 3600.0
                    self._move(step)
                    step = 0.0
        self.t = end  # absorb float residue
        return fired

    def _move(self, dt: float) -> None:
        self.t += dt
        if self.clock is not None:
            self.clock.advance(dt)

    # -- real time --------------------------------------------------------------------------------------------

    def start(self, tick_s: float = 0.005) -> None:
        """Emit pulses in (scaled) real time from a background thread until ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("already running")
        self._stop.clear()

        def run() -> None:
            last = time.monotonic()
            while not self._stop.wait(tick_s):
                now = time.monotonic()
                self.advance((now - last) * self.time_scale)
                last = now

        self._thread = threading.Thread(target=run, name="s0-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
