"""Timestamps for readings: NTP time once synced, the monotonic clock before. MicroPython-safe.

Before the first successful NTP sync a reading is not lost: it carries no wall time, only the boot counter
and the seconds since boot from the monotonic clock, with FLAG_TIME_NOT_SYNCED (reading format 2); after the
sync it carries the wall time and still boot + up, so the gateway can re-time the boot's earlier readings
from it (carbontrace_protocol/retime.py). The
monotonic count is accumulated from ``ticks_diff`` steps, so it survives the ticks counter wrapping
(every ~12.4 days on MicroPython boards) as long as ``monotonic_s`` is called more often than that.
A failed resync keeps the last good wall clock.
"""

from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, MAX_TIMESTAMP


class Clock:
    def __init__(self, port, ntp_host=None, resync_interval_ms=6 * 3600 * 1000, retry_interval_ms=30000):
        self.port = port
        self.ntp_host = ntp_host
        self.resync_interval_ms = resync_interval_ms
        self.retry_interval_ms = retry_interval_ms
        self._last_ticks = port.ticks_ms()
        self._uptime_ms = 0
        self._last_attempt = None
        self._last_success = None
        self.syncs = 0

    def monotonic_s(self):
        now = self.port.ticks_ms()
        self._uptime_ms += self.port.ticks_diff(now, self._last_ticks)
        self._last_ticks = now
        return self._uptime_ms // 1000

    def is_synced(self):
        return self.port.wall_time() is not None

    def sync_if_due(self):
        """Try NTP when never synced (every retry interval) or when the resync interval passed."""
        port = self.port
        now = port.ticks_ms()
        if self._last_attempt is not None:
            since_attempt = port.ticks_diff(now, self._last_attempt)
            if self._last_success is None or not self.is_synced():
                if since_attempt < self.retry_interval_ms:
                    return False
            elif port.ticks_diff(now, self._last_success) < self.resync_interval_ms:
                return False
            elif since_attempt < self.retry_interval_ms:
                return False
        self._last_attempt = now
        if port.ntp_sync(self.ntp_host):
            self._last_success = now
            self.syncs += 1
            return True
        return False

    def stamp(self):
        """(timestamp or None, flags, seconds since boot) for a format-2 reading taken now."""
        up = min(self.monotonic_s(), MAX_TIMESTAMP)
        wall = self.port.wall_time()
        if wall is not None and 0 <= wall <= MAX_TIMESTAMP:
            return wall, 0, up
        return None, FLAG_TIME_NOT_SYNCED, up

    def now(self):
        """(timestamp, flags) for a format-1 reading taken now (the monotonic seconds before a sync)."""
        wall = self.port.wall_time()
        if wall is not None and 0 <= wall <= MAX_TIMESTAMP:
            return wall, 0
        return min(self.monotonic_s(), MAX_TIMESTAMP), FLAG_TIME_NOT_SYNCED
