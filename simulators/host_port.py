"""The host port: the device's hardware interface implemented on CPython (tests, fleet simulator).

Importing this module touches no hardware. The port interface, shared with ``ports.board``:

    ticks_ms() -> int                      monotonic milliseconds (wraps on boards; use ticks_diff)
    ticks_diff(a, b) -> int                a - b, wrap-aware
    ticks_add(a, delta) -> int             a + delta, wrap-aware
    sleep_ms(ms)
    wall_time() -> int | None              Unix seconds (UTC), None until ntp_sync() succeeded once
    ntp_sync(host=None) -> bool            set the wall clock from NTP; True on success
    wifi_connect(ssid, password, timeout_ms) -> bool
    wifi_is_connected() -> bool
    open_socket(host, port, timeout_s)     a connected TCP socket: send(b)->n, recv(n)->bytes (b"" on
                                           close), settimeout(s or None; 0 = non-blocking), close()
    tls_context(ca_file)                   an object with wrap_socket(sock, server_hostname=...): TLS
                                           trusting only the CA in flash file ``ca_file``, host name checked
    flash                                  a ``flashfs.FlashDir`` (path(name), read, write_atomic, ...)
    random_bytes(n) -> bytes               hardware RNG (os.urandom)
    start_watchdog(timeout_ms), feed_watchdog()
    free_heap() -> int                     bytes free on the heap (-1 when unknown)
    collect_garbage()
    machine_id() -> str                    a stable hex id of the board

Host specifics: the flash is a directory; Wi-Fi is up unless a test sets ``wifi_up = False`` (a join
then succeeds only while ``wifi_available``); the watchdog only counts feeds; the wall
clock is the OS clock plus ``clock_offset_s`` (settable at run time to simulate clock jumps) and is
reported only after ``ntp_sync()`` (or ``synced=True``), like a board before its first NTP answer.
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from carbontrace_device.flashfs import FlashDir


class HostPort:
    def __init__(
        self, flash_root: str | Path, synced: bool = True, clock_offset_s: int = 0, ntp_available: bool = True
    ) -> None:
        self.flash = FlashDir(flash_root)
        self.clock_offset_s = clock_offset_s
        self.ntp_available = ntp_available
        self._synced = False
        if synced:
            self.ntp_sync()
        self.watchdog_timeout_ms: int | None = None
        self.watchdog_feeds = 0
        self.wifi_joins = 0
        self.wifi_up = True
        self.wifi_available = True

    # --- time -----------------------------------------------------------------
    def ticks_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def ticks_add(self, a: int, delta: int) -> int:
        return a + delta

    def sleep_ms(self, ms: float) -> None:
        if ms > 0:
            time.sleep(ms / 1000)

    def wall_time(self) -> int | None:
        if not self._synced:
            return None
        return int(time.time()) + self.clock_offset_s

    def ntp_sync(self, host: str | None = None) -> bool:
        # The OS keeps the host clock in sync; "syncing" means the device may now trust it.
        if not self.ntp_available:
            return False
        self._synced = True
        return True

    # --- network --------------------------------------------------------------
    def wifi_connect(self, ssid: str | None = None, password: str | None = None, timeout_ms: int = 10000) -> bool:
        self.wifi_joins += 1
        self.wifi_up = self.wifi_available
        return self.wifi_up

    def wifi_is_connected(self) -> bool:
        return self.wifi_up

    # Any: the port interface is duck-typed (a subclass may hand out wrapped sockets and contexts)
    def open_socket(self, host: str, port: int, timeout_s: float) -> Any:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def tls_context(self, ca_file: str) -> Any:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.flash.path(ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    # --- misc -----------------------------------------------------------------
    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def start_watchdog(self, timeout_ms: int) -> None:
        self.watchdog_timeout_ms = timeout_ms

    def feed_watchdog(self) -> None:
        self.watchdog_feeds += 1

    def free_heap(self) -> int:
        return -1

    def collect_garbage(self) -> None:
        gc.collect()

    def machine_id(self) -> str:
        return "host"
