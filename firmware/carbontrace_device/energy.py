"""Energy deltas from a cumulative meter count, with resets and wraps told apart. Pure; MicroPython-safe.

``EnergyTracker.update(cumulative_wh)`` returns an ``EnergyDelta``:

* ``delta_wh``: the energy consumed since the previous value, never negative;
* ``wrapped``: the counter passed its top (``wrap_at``, 2**32 for a 32-bit register) and started again;
  the delta counts across the wrap exactly;
* ``reset``: the counter went backwards without a plausible wrap (the meter was reset, replaced, or the
  device restarted its own count); the delta is the new value, i.e. what was counted since the reset, which
  is all that is known;
* ``meter_reset``: ``wrapped or reset``, which is when a reading sets ``FLAG_METER_RESET``;
* ``first``: no previous value (delta 0).

A decrease is a wrap when the previous value lay in the top ``wrap_window`` Wh of the range and the new
value in the bottom ``wrap_window`` Wh (default: 1/16 of the range each); otherwise it is a reset.
``total_wh`` is the sum of all deltas: a count that only grows, across resets and wraps.
"""

WRAP_32 = 1 << 32


class EnergyDelta:
    def __init__(self, delta_wh, wrapped, reset, first):
        self.delta_wh = delta_wh
        self.wrapped = wrapped
        self.reset = reset
        self.first = first
        self.meter_reset = wrapped or reset

    def __repr__(self):
        return "EnergyDelta(delta_wh=%d, wrapped=%s, reset=%s, first=%s)" % (
            self.delta_wh,
            self.wrapped,
            self.reset,
            self.first,
        )


class EnergyTracker:
    def __init__(self, wrap_at=WRAP_32, wrap_window=None, last_wh=None, total_wh=0):
        if wrap_at <= 0:
            raise ValueError("wrap_at must be > 0")
        self.wrap_at = wrap_at
        self.wrap_window = wrap_window if wrap_window is not None else max(1, wrap_at // 16)
        self.last_wh = last_wh
        self.total_wh = total_wh

    def update(self, cumulative_wh):
        if cumulative_wh < 0 or cumulative_wh >= self.wrap_at:
            raise ValueError("cumulative energy %d Wh outside 0..%d" % (cumulative_wh, self.wrap_at - 1))
        last = self.last_wh
        self.last_wh = cumulative_wh
        if last is None:
            return EnergyDelta(0, False, False, True)
        if cumulative_wh >= last:
            delta = cumulative_wh - last
            self.total_wh += delta
            return EnergyDelta(delta, False, False, False)
        if last >= self.wrap_at - self.wrap_window and cumulative_wh < self.wrap_window:
            delta = self.wrap_at - last + cumulative_wh
            self.total_wh += delta
            return EnergyDelta(delta, True, False, False)
        self.total_wh += cumulative_wh
        return EnergyDelta(cumulative_wh, False, True, False)
