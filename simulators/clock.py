"""A manual clock for deterministic tests of drivers and emulators.

``clock()`` is the time in seconds (use it as an emulator's ``clock=``); ``sleep_ms`` / ``ticks_ms`` have the
MicroPython signatures (use them as a driver's ``sleep_ms=`` / ``ticks_ms=``): sleeping advances the clock, so a
driver's datasheet waits take no real time while the emulator still sees them.
"""

from __future__ import annotations

import threading


class ManualClock:
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept_ms: list[int] = []  # every sleep_ms() call, in order

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds

    def set(self, seconds: float) -> None:
        with self._lock:
            if seconds < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def sleep_ms(self, ms: int) -> None:
        self.slept_ms.append(ms)
        self.advance(ms / 1000)

    def ticks_ms(self) -> int:
        with self._lock:
            return int(self._now * 1000)
