"""A small MQTT 3.1.1 client for MicroPython sockets, with umqtt.simple's interface. MicroPython-safe.

Differences from micropython-lib's ``umqtt.simple``:

* QoS 1 ``publish`` does not wait for the PUBACK. It returns the packet id; PUBACKs are matched by
  packet id whenever ``check_msg()``/``wait_msg()`` read them and reported through
  ``set_puback_callback(f)`` as ``f(pid)``. At most ``max_inflight`` QoS 1 messages wait for a PUBACK;
  publishing beyond that raises ``InflightWindowFull`` (check ``inflight_free()`` first).
* Unacknowledged QoS 1 messages are kept and re-sent with the DUP flag and their original packet ids
  after every (re)connect, as MQTT 3.1.1 §4.4 asks of a client resuming a persistent session.
* ``maintain_keepalive()`` sends PINGREQ when the connection has been idle for half the keepalive and
  raises when the PINGRESP is overdue.
* Failures raise typed errors: ``MQTTConnectError`` carries the CONNACK return code.

Sockets come from ``open_socket(host, port, timeout_s)`` (the port's, by default a plain ``socket``); only
``send``/``recv``/``settimeout``/``close`` are used. With ``ssl`` (an object with ``wrap_socket(sock,
server_hostname=...)``: the port's ``tls_context(ca_file)``) the socket is wrapped in TLS before CONNECT.
Reconnecting is not done here: that is ``resilient_mqtt.ResilientMQTT``'s job.
"""

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


# Control packet types (first byte, flags cleared), MQTT 3.1.1 §2.2.1
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # SUBSCRIBE requires flags 0b0010
SUBACK = 0x90
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

PUBLISH_DUP = 0x08
PUBLISH_RETAIN = 0x01
MAX_PACKET_ID = 65535
MAX_REMAINING_LENGTH = 268435455

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

# errno values meaning "no data yet" on MicroPython (EAGAIN, ETIMEDOUT) and Linux/macOS/lwIP variants
_NO_DATA_ERRNOS = (11, 35, 110, 116, 60)


class MQTTError(Exception):
    """The connection is unusable (protocol violation, refusal, closed socket)."""

    def __init__(self, message, code=None):
        Exception.__init__(self, message)
        self.code = code


class MQTTConnectError(MQTTError):
    """The broker refused the connection; ``code`` is the CONNACK return code."""


class MQTTProtocolError(MQTTError):
    pass


class MQTTConnectionClosed(MQTTError):
    pass


class InflightWindowFull(Exception):
    """Too many QoS 1 messages await a PUBACK; not a connection failure."""


def _no_data(err):
    if type(err).__name__ in ("timeout", "TimeoutError", "BlockingIOError", "SSLWantReadError"):
        return True
    code = err.args[0] if err.args else None
    return code in _NO_DATA_ERRNOS


# --- packet encoding (pure) ---------------------------------------------------------------


def encode_remaining_length(n):
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise MQTTProtocolError("remaining length %d out of range" % n)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(value):
    if isinstance(value, str):
        value = value.encode()
    if len(value) > 65535:
        raise MQTTProtocolError("string of %d bytes is too long for MQTT" % len(value))
    return bytes((len(value) >> 8, len(value) & 0xFF)) + value


def _packet(first_byte, body):
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def encode_connect(client_id, clean_session=True, keepalive=0, user=None, password=None, will=None):
    """CONNECT (§3.1). ``will`` is (topic, message, retain, qos) or None."""
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if will is not None:
        topic, message, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += encode_string(topic) + encode_string(message)
    if user is not None:
        flags |= 0x80
        payload += encode_string(user)
        if password is not None:
            flags |= 0x40
            payload += encode_string(password)
    variable = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    return _packet(CONNECT, variable + payload)


def encode_publish(topic, message, qos=0, retain=False, pid=0, dup=False):
    if isinstance(message, str):
        message = message.encode()
    first = PUBLISH | (qos << 1) | (PUBLISH_RETAIN if retain else 0) | (PUBLISH_DUP if dup else 0)
    body = encode_string(topic)
    if qos:
        body += bytes((pid >> 8, pid & 0xFF))
    return _packet(first, body + bytes(message))


def encode_puback(pid):
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def encode_subscribe(pid, topic, qos):
    return _packet(SUBSCRIBE, bytes((pid >> 8, pid & 0xFF)) + encode_string(topic) + bytes((qos,)))


PINGREQ_PACKET = bytes((PINGREQ, 0))
DISCONNECT_PACKET = bytes((DISCONNECT, 0))


def _default_open_socket(host, port, timeout_s):
    import socket

    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(addr[0], addr[1], addr[2])
    sock.settimeout(timeout_s)
    sock.connect(addr[-1])
    return sock


class MQTTClient:
    def __init__(
        self,
        client_id,
        server,
        port=1883,
        user=None,
        password=None,
        keepalive=0,
        ssl=None,
        open_socket=None,
        max_inflight=8,
        timeout_s=5,
    ):
        if isinstance(client_id, str):
            client_id = client_id.encode()
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.open_socket = open_socket or _default_open_socket
        self.max_inflight = max_inflight
        self.timeout_s = timeout_s
        self.sock = None
        self.cb = None
        self.puback_cb = None
        self.lw = None
        self.pid = 0
        # QoS 1 messages awaiting PUBACK, oldest first: [pid, topic, msg, retain]. A list, not a dict:
        # MicroPython dicts are unordered and resends must keep the original order.
        self.inflight = []
        self._granted = {}
        self._last_tx = 0
        self._ping_sent = None

    # --- umqtt.simple interface -------------------------------------------------------------
    def set_callback(self, f):
        self.cb = f

    def set_puback_callback(self, f):
        self.puback_cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not 0 <= qos <= 1:
            raise ValueError("last will QoS must be 0 or 1")
        if not topic:
            raise ValueError("last will needs a topic")
        self.lw = (topic, msg, retain, qos)

    def connect(self, clean_session=True):
        """Open the socket, send CONNECT, wait for CONNACK; returns the session-present flag."""
        self.close()
        sock = self.open_socket(self.server, self.port, self.timeout_s)
        if self.ssl is not None:
            sock = self.ssl.wrap_socket(sock, server_hostname=self.server)
        self.sock = sock
        self._ping_sent = None
        try:
            self._send(encode_connect(self.client_id, clean_session, self.keepalive, self.user, self.pswd, self.lw))
            head = self._recv_exact(4)
            if head[0] != CONNACK or head[1] != 2:
                raise MQTTProtocolError("expected CONNACK from %s:%d, got %r" % (self.server, self.port, head))
            code = head[3]
            if code != 0:
                reason = CONNACK_REASONS.get(code, "unknown reason")
                raise MQTTConnectError("broker %s:%d refused: %s (%d)" % (self.server, self.port, reason, code), code)
            session_present = head[2] & 1
            for entry in self.inflight:
                self._send(encode_publish(entry[1], entry[2], 1, entry[3], entry[0], dup=True))
        except Exception:
            self.close()
            raise
        return bool(session_present)

    def disconnect(self):
        if self.sock is not None:
            try:
                self._send(DISCONNECT_PACKET)
            except OSError:
                pass
        self.close()

    def close(self):
        """Drop the socket without DISCONNECT (the broker then publishes the last will)."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def is_connected(self):
        return self.sock is not None

    def ping(self):
        self._send(PINGREQ_PACKET)
        if self._ping_sent is None:
            self._ping_sent = ticks_ms()

    def publish(self, topic, msg, retain=False, qos=0):
        """QoS 0: returns None. QoS 1: returns the packet id without waiting for the PUBACK."""
        if qos == 0:
            self._send(encode_publish(topic, msg, 0, retain))
            return None
        if qos != 1:
            raise ValueError("only QoS 0 and 1 are supported")
        if len(self.inflight) >= self.max_inflight:
            raise InflightWindowFull("%d QoS 1 messages await PUBACK" % len(self.inflight))
        pid = self._next_pid()
        entry = [pid, topic, msg, retain]
        self.inflight.append(entry)
        try:
            self._send(encode_publish(topic, msg, 1, retain, pid))
        except Exception:
            # Never fully sent: the caller still holds the message and will publish it again.
            self.inflight.remove(entry)
            raise
        return pid

    def subscribe(self, topic, qos=0):
        """Subscribe and wait for the SUBACK (other packets arriving meanwhile are handled)."""
        pid = self._next_pid()
        self._send(encode_subscribe(pid, topic, qos))
        deadline = ticks_ms()
        while pid not in self._granted:
            if ticks_diff(ticks_ms(), deadline) > self.timeout_s * 1000:
                raise MQTTProtocolError("no SUBACK for %r from %s:%d" % (topic, self.server, self.port))
            self.wait_msg()
        granted = self._granted.pop(pid)
        if granted == 0x80:
            raise MQTTError("broker %s:%d rejected subscription to %r" % (self.server, self.port, topic), granted)
        return granted

    def wait_msg(self, timeout_s=None):
        """Read and handle one packet, waiting up to ``timeout_s`` (None: the socket timeout)."""
        return self._read_one(self.timeout_s if timeout_s is None else timeout_s)

    def check_msg(self):
        """Handle one packet if one is waiting; returns its type, or None without blocking."""
        return self._read_one(0)

    # --- extensions ---------------------------------------------------------------------------
    def inflight_free(self):
        return self.max_inflight - len(self.inflight)

    def inflight_pids(self):
        return [entry[0] for entry in self.inflight]

    def forget_inflight(self):
        """Drop unacknowledged messages (the caller resends them itself, e.g. from its outbox)."""
        self.inflight = []

    def maintain_keepalive(self):
        """Ping when idle for half the keepalive; raise MQTTError if the last ping went unanswered."""
        if not self.keepalive or self.sock is None:
            return
        now = ticks_ms()
        limit_ms = self.keepalive * 1000
        if self._ping_sent is not None and ticks_diff(now, self._ping_sent) > limit_ms:
            raise MQTTError("no PINGRESP from %s:%d within %d s" % (self.server, self.port, self.keepalive))
        if ticks_diff(now, self._last_tx) >= limit_ms // 2:
            self.ping()

    # --- internals ----------------------------------------------------------------------------
    def _next_pid(self):
        # Skip ids still awaiting a PUBACK (possible only after 65535 publishes past a stuck one).
        while True:
            self.pid = self.pid + 1 if self.pid < MAX_PACKET_ID else 1
            if not self.inflight or self.pid not in self.inflight_pids():
                return self.pid

    def _require_socket(self):
        if self.sock is None:
            raise MQTTConnectionClosed("not connected to %s:%d" % (self.server, self.port))
        return self.sock

    def _send(self, data):
        sock = self._require_socket()
        view = memoryview(data)
        sent = 0
        while sent < len(data):
            n = sock.send(view[sent:])
            if n is None or n <= 0:
                raise MQTTConnectionClosed("send to %s:%d failed" % (self.server, self.port))
            sent += n
        self._last_tx = ticks_ms()

    def _recv_exact(self, n):
        sock = self._require_socket()
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise MQTTConnectionClosed("%s:%d closed the connection" % (self.server, self.port))
            buf += chunk
        return buf

    def _read_one(self, first_byte_timeout_s):
        sock = self._require_socket()
        sock.settimeout(first_byte_timeout_s)
        try:
            first = sock.recv(1)
        except OSError as err:
            if _no_data(err):
                return None
            raise
        finally:
            sock.settimeout(self.timeout_s)
        if first is None:  # MicroPython non-blocking TLS sockets return None
            return None
        if not first:
            raise MQTTConnectionClosed("%s:%d closed the connection" % (self.server, self.port))
        length = 0
        shift = 0
        while True:
            byte = self._recv_exact(1)[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTProtocolError("malformed remaining length from %s:%d" % (self.server, self.port))
        body = self._recv_exact(length) if length else b""
        self._handle(first[0], body)
        return first[0] & 0xF0

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            self._handle_publish(first, body)
        elif kind == PUBACK:
            if len(body) != 2:
                raise MQTTProtocolError("PUBACK of %d bytes" % len(body))
            pid = (body[0] << 8) | body[1]
            for entry in self.inflight:
                if entry[0] == pid:
                    self.inflight.remove(entry)
                    if self.puback_cb is not None:
                        self.puback_cb(pid)
                    break
        elif kind == SUBACK:
            if len(body) < 3:
                raise MQTTProtocolError("SUBACK of %d bytes" % len(body))
            self._granted[(body[0] << 8) | body[1]] = body[2]
        elif kind == PINGRESP:
            self._ping_sent = None
        elif kind == UNSUBACK:
            pass
        else:
            raise MQTTProtocolError("unexpected packet type 0x%02x from %s:%d" % (first, self.server, self.port))

    def _handle_publish(self, first, body):
        qos = (first >> 1) & 3
        if qos > 1:
            raise MQTTProtocolError(
                "QoS %d PUBLISH from %s:%d (never subscribed above 1)" % (qos, self.server, self.port)
            )
        topic_len = (body[0] << 8) | body[1]
        topic = body[2 : 2 + topic_len]
        pos = 2 + topic_len
        pid = 0
        if qos:
            pid = (body[pos] << 8) | body[pos + 1]
            pos += 2
        msg = body[pos:]
        if self.cb is not None:
            self.cb(topic, msg)
        if qos:
            self._send(encode_puback(pid))
