"""The board port: the device's hardware interface on MicroPython (ESP32, Pico W).

Implements the interface documented in ``simulators/host_port.py``. Import it only on a board: it imports
``machine`` and ``network``. Nothing is touched at import time; ``BoardPort()`` only records settings.
"""

import gc
import os
import socket
import time

import machine
import network

from carbontrace_device.flashfs import FlashDir

# Boards whose time.time() counts from 2000-01-01 need this added to get Unix time.
_EPOCH_2000_TO_1970 = 946684800


class BoardPort:
    def __init__(self, flash_root="/data", ntp_host="pool.ntp.org"):
        self.flash = FlashDir(flash_root)
        self.ntp_host = ntp_host
        self._synced = False
        self._wdt = None
        self._wlan = None
        self._epoch_offset = _EPOCH_2000_TO_1970 if time.gmtime(0)[0] == 2000 else 0

    # --- time -----------------------------------------------------------------
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, delta):
        return time.ticks_add(a, delta)

    def sleep_ms(self, ms):
        if ms > 0:
            time.sleep_ms(ms)

    def wall_time(self):
        if not self._synced:
            return None
        return time.time() + self._epoch_offset

    def ntp_sync(self, host=None):
        import ntptime

        ntptime.host = host or self.ntp_host
        try:
            ntptime.settime()
        except (OSError, OverflowError):
            return False
        self._synced = True
        return True

    # --- network --------------------------------------------------------------
    def _station(self):
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
        return self._wlan

    def wifi_connect(self, ssid, password, timeout_ms=15000):
        wlan = self._station()
        if not wlan.active():
            wlan.active(True)
        if wlan.isconnected():
            return True
        try:
            wlan.disconnect()  # drop a half-open association before rejoining
        except OSError:
            pass
        wlan.connect(ssid, password)
        start = time.ticks_ms()
        while not wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                return False
            self.feed_watchdog()
            time.sleep_ms(100)
        return True

    def wifi_is_connected(self):
        return self._wlan is not None and self._wlan.isconnected()

    def open_socket(self, host, port, timeout_s):
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(addr[0], addr[1], addr[2])
        sock.settimeout(timeout_s)
        try:
            sock.connect(addr[-1])
        except OSError:
            sock.close()
            raise
        return sock

    def tls_context(self, ca_file):
        """TLS trusting only the broker's CA (read from flash), host name checked; MicroPython >= 1.23 ``tls``,
        else the older ``ssl.wrap_socket`` interface. Imported here, never at module import."""
        cadata = self.flash.read(ca_file)
        try:
            import tls

            context = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            context.verify_mode = tls.CERT_REQUIRED
            context.load_verify_locations(cadata=cadata)
            return context
        except ImportError:
            import ssl

            return _LegacyTLS(ssl, cadata)

    # --- misc -----------------------------------------------------------------
    def random_bytes(self, n):
        return os.urandom(n)

    def start_watchdog(self, timeout_ms):
        # Once started the hardware watchdog cannot be stopped; feed it at least every timeout_ms.
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def free_heap(self):
        return gc.mem_free()

    def collect_garbage(self):
        gc.collect()

    def machine_id(self):
        return "".join("%02x" % b for b in machine.unique_id())


class _LegacyTLS:
    """``wrap_socket`` for MicroPython builds whose ``ssl`` has no SSLContext."""

    def __init__(self, ssl, cadata):
        self.ssl = ssl
        self.cadata = cadata

    def wrap_socket(self, sock, server_hostname=None):
        return self.ssl.wrap_socket(sock, cert_reqs=self.ssl.CERT_REQUIRED, cadata=self.cadata,
                                    server_hostname=server_hostname)
