"""Reception-window arithmetic and retry timing. Pure.

Windows are aligned to the epoch on the gateway clock: [k·size, (k+1)·size). A reading belongs to the
window in which the gateway accepted it, never to one that is already closed (a clock stepped back must
not reopen a sealed batch).
"""

from __future__ import annotations


def window_start(t: int, size_s: int) -> int:
    return t - t % size_s


def assign_window(now: int, size_s: int, closed_until: int) -> int:
    """Start of the window a reading accepted at ``now`` goes into, given windows before ``closed_until`` are sealed."""
    return max(window_start(now, size_s), closed_until)


def window_due(start: int, size_s: int, now: int) -> bool:
    """A window is closed once the gateway clock has passed its end."""
    return now >= start + size_s


def backoff_delay(attempt: int, base_s: float, cap_s: float, unit_random: float) -> float:
    """Exponential backoff with jitter: half fixed, half random, so many gateways do not retry in step.

    ``attempt`` counts failures so far (0 for the first retry); ``unit_random`` is in [0, 1).
    """
    ceiling: float = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return ceiling / 2 + ceiling / 2 * unit_random
