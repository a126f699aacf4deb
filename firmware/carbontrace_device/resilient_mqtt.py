"""Connection resilience around ``mqtt_client.MQTTClient``: Wi-Fi rejoin, reconnect with backoff.

The protocol client raises; this class owns every retry (one place, like mqtt_as). Nothing here blocks
for long: when the link is down ``poll()``/``publish()`` return at once and the next attempt is scheduled
with exponential backoff (doubling from ``backoff_min_ms`` up to ``backoff_max_ms``, plus up to 25 %
random jitter so a fleet that lost its broker does not reconnect in lockstep). MicroPython-safe.
"""

from carbontrace_device.mqtt_client import InflightWindowFull, MQTTError


class ResilientMQTT:
    def __init__(
        self,
        client,
        port,
        wifi_ssid=None,
        wifi_password=None,
        clean_session=False,
        backoff_min_ms=250,
        backoff_max_ms=30000,
        on_connect=None,
        max_packets_per_poll=32,
    ):
        self.client = client
        self.port = port
        self.wifi_ssid = wifi_ssid
        self.wifi_password = wifi_password
        self.clean_session = clean_session
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.on_connect = on_connect
        self.max_packets_per_poll = max_packets_per_poll
        self._backoff_ms = backoff_min_ms
        self._failed_at = None  # ticks of the last failure; the next attempt waits retry_delay_ms after it
        self.retry_delay_ms = 0  # backoff plus jitter chosen at the last failure
        self.connects = 0
        self.failures = 0
        self.last_error = None

    def is_connected(self):
        return self.client.is_connected()

    def ensure_connected(self):
        """Connect if due; True when connected. Never raises for network or broker failures."""
        if self.client.is_connected():
            return True
        port = self.port
        if self._failed_at is not None and port.ticks_diff(port.ticks_ms(), self._failed_at) < self.retry_delay_ms:
            return False
        if not port.wifi_is_connected() and not port.wifi_connect(self.wifi_ssid, self.wifi_password):
            self._fail(OSError("Wi-Fi join failed"))
            return False
        try:
            session_present = self.client.connect(clean_session=self.clean_session)
            self.connects += 1
            if self.on_connect is not None:
                self.on_connect(session_present)
        except (OSError, MQTTError) as err:
            self._fail(err)
            return False
        self._backoff_ms = self.backoff_min_ms
        self._failed_at = None
        return True

    def _fail(self, err):
        self.last_error = err
        self.failures += 1
        self.client.close()
        jitter = 0
        if self._backoff_ms >= 4:
            rnd = self.port.random_bytes(2)
            jitter = ((rnd[0] << 8) | rnd[1]) % (self._backoff_ms // 4 + 1)
        self._failed_at = self.port.ticks_ms()
        self.retry_delay_ms = self._backoff_ms + jitter
        self._backoff_ms = min(self._backoff_ms * 2, self.backoff_max_ms)

    def poll(self):
        """Connect if due, read every waiting packet, keep the connection alive."""
        if not self.ensure_connected():
            return False
        try:
            for _ in range(self.max_packets_per_poll):
                if self.client.check_msg() is None:
                    break
            self.client.maintain_keepalive()
        except (OSError, MQTTError) as err:
            self._fail(err)
            return False
        return True

    def publish(self, topic, msg, retain=False, qos=0):
        """The packet id (QoS 1), 0 for a sent QoS 0 message, or None if not sent now."""
        if not self.ensure_connected():
            return None
        try:
            pid = self.client.publish(topic, msg, retain, qos)
        except InflightWindowFull:
            return None
        except (OSError, MQTTError) as err:
            self._fail(err)
            return None
        return 0 if pid is None else pid

    def disconnect(self):
        self.client.disconnect()
