"""The simulated device's hardware and link: a host port with a cuttable Wi-Fi and a seeded RNG, and a
wrapper around the firmware's MQTT link that tampers with chosen readings on their way out.

Nothing here changes the firmware: ``SimPort`` extends ``simulators.host_port.HostPort`` (the documented host port)
and ``TamperingLink`` stands in for ``DeviceApp.mqtt`` with the same four calls the app makes.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Callable
from typing import Any

from simulators import firmware_path

firmware_path.ensure()

from carbontrace_protocol import cose  # noqa: E402
from carbontrace_protocol.reading import decode_payload  # noqa: E402
from simulators.host_port import HostPort  # noqa: E402 - needs the firmware directory on sys.path


class LinkDown(OSError):
    pass


class CuttableSocket:
    """A TCP socket that fails (like a dropped Wi-Fi) as soon as its port's link is down."""

    def __init__(self, sock: socket.socket, port: SimPort) -> None:
        self._sock = sock
        self._port = port

    def _check(self) -> None:
        if not self._port.wifi_up:
            self._sock.close()
            raise LinkDown(errno.ENETDOWN, "simulated Wi-Fi is down")

    def send(self, data: bytes | memoryview) -> int:
        self._check()
        return self._sock.send(data)

    def recv(self, n: int) -> bytes:
        self._check()
        return self._sock.recv(n)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()


class _CuttableTLS:
    def __init__(self, context: Any, port: SimPort) -> None:
        self.context = context
        self.port = port

    def wrap_socket(self, sock: CuttableSocket, server_hostname: str | None = None) -> CuttableSocket:
        return CuttableSocket(self.context.wrap_socket(sock._sock, server_hostname=server_hostname), self.port)


class SimPort(HostPort):  # type: ignore[misc]  # HostPort is untyped MicroPython-safe code
    """``HostPort`` whose RNG is seeded (keys and backoff jitter repeat for a seed; simulator keys are not
    secret) and whose Wi-Fi can be cut while connected (``cut_link``/``restore_link``)."""

    def __init__(self, flash_root: str, rng_seed: str, **kwargs: Any) -> None:
        super().__init__(flash_root, **kwargs)
        self._rng = random.Random(rng_seed)
        self.sockets_opened = 0

    def random_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def collect_garbage(self) -> None:
        # One process hosts the whole fleet: a full gc.collect() per device per reading would cost N times
        # over (tens of ms each with N apps alive); CPython's own collector is enough here.
        pass

    def open_socket(self, host: str, port: int, timeout_s: float) -> CuttableSocket:
        if not self.wifi_up:
            raise LinkDown(errno.ENETUNREACH, "simulated Wi-Fi is down")
        self.sockets_opened += 1
        return CuttableSocket(super().open_socket(host, port, timeout_s), self)

    def tls_context(self, ca_file: str) -> _CuttableTLS:
        """TLS as the host port's (CA pinned), under the cut switch: the TLS socket is wrapped again."""
        return _CuttableTLS(super().tls_context(ca_file), self)

    def cut_link(self) -> None:
        self.wifi_available = False
        self.wifi_up = False

    def restore_link(self) -> None:
        self.wifi_available = True

    def link_is_cut(self) -> bool:
        return not self.wifi_available


def reading_seq(message: bytes) -> int:
    """The sequence number inside a signed reading (not verified: the simulator signed it itself)."""
    seq: int = decode_payload(bytes(cose.parse_sign1(message).payload)).seq
    return seq


class TamperingLink:
    """Stands in for the app's ``ResilientMQTT``: counts reading publishes and lets ``transform`` replace a
    reading's bytes (after signing, after the outbox) before they go out."""

    def __init__(
        self,
        inner: Any,
        reading_topic: str,
        transform: Callable[[bytes], bytes] | None = None,
        on_sent: Callable[[bytes, bytes], None] | None = None,
    ) -> None:
        self.inner = inner
        self.client = inner.client
        self.reading_topic = reading_topic
        self.transform = transform
        self.on_sent = on_sent  # f(original bytes, bytes sent) after a reading publish left
        self.readings_sent = 0

    @property
    def on_connect(self) -> Any:
        return self.inner.on_connect

    @on_connect.setter
    def on_connect(self, callback: Any) -> None:
        self.inner.on_connect = callback

    def poll(self) -> bool:
        return bool(self.inner.poll())

    def is_connected(self) -> bool:
        return bool(self.inner.is_connected())

    def disconnect(self) -> None:
        self.inner.disconnect()

    def publish(self, topic: str, msg: Any, retain: bool = False, qos: int = 0) -> int | None:
        if topic != self.reading_topic:
            return self.publish_raw(topic, msg, retain, qos)
        original = bytes(msg)
        sent = self.transform(original) if self.transform is not None else original
        pid = self.publish_raw(topic, sent, retain, qos)
        if pid is not None:
            self.readings_sent += 1
            if self.on_sent is not None:
                self.on_sent(original, sent)
        return pid

    def publish_raw(self, topic: str, msg: Any, retain: bool = False, qos: int = 0) -> int | None:
        """Publish without tampering or counting (status messages, injected replays)."""
        pid = self.inner.publish(topic, msg, retain=retain, qos=qos)
        return None if pid is None else int(pid)
