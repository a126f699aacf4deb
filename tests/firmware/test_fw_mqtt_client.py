"""The firmware MQTT client against a real Mosquitto on its production configuration (TLS with the project's
CA, username and password, ACLs; carbontrace/broker_config.py): exact bytes (tapped inside TLS), QoS 1
matching, keepalive, will, sessions."""

from __future__ import annotations

import itertools
import socket
import ssl
import subprocess
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
from carbontrace_device.mqtt_client import (
    InflightWindowFull,
    MQTTClient,
    MQTTConnectError,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
)
from carbontrace_device.resilient_mqtt import ResilientMQTT

from carbontrace.broker_config import MqttAccess, client_tls_context
from carbontrace.servers import wait_until
from simulators.host_port import HostPort
from tests.conftest import MosquittoBroker

TEST_TOPICS = ["fw/#"]


def issue(broker: MosquittoBroker, *names: str) -> list[MqttAccess]:
    """Test credentials allowed on fw/#; issued before anyone connects (issuing restarts the broker)."""
    return [broker.issue(name, "test", "fw", extra_topics=TEST_TOPICS) for name in names]


def fw_client(access: MqttAccess, **kwargs: Any) -> MQTTClient:
    """The firmware client as a device runs it: TLS pinned to the broker's CA, its username and password."""
    kwargs.setdefault("ssl", client_tls_context(access.ca_file))
    return MQTTClient(access.username, access.host, access.port, user=access.username,
                      password=access.credentials.password, **kwargs)


def cli_auth(access: MqttAccess) -> list[str]:
    """mosquitto_pub/mosquitto_sub arguments for this access."""
    return ["-h", access.host, "-p", str(access.port), "--cafile", str(access.ca_file), "-u", access.username,
            "-P", access.credentials.password, "-i", access.username]


class TappedSocket:
    """A real TCP socket that also records every byte sent and received (a wiretap, not a fake)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = bytearray()
        self.received = bytearray()

    def send(self, data: Any) -> int:
        n = self.sock.send(data)
        self.sent += bytes(data[:n])
        return n

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.received += data
        return data

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def close(self) -> None:
        self.sock.close()


class Tap:
    """Opens TLS connections and taps them inside TLS (the client then gets ``ssl=None``): the MQTT bytes."""

    def __init__(self, access: MqttAccess) -> None:
        self.sockets: list[TappedSocket] = []
        self.context = client_tls_context(access.ca_file)

    def open_socket(self, host: str, port: int, timeout_s: float) -> TappedSocket:
        raw = socket.create_connection((host, port), timeout=timeout_s)
        tapped = TappedSocket(self.context.wrap_socket(raw, server_hostname=host))  # type: ignore[arg-type]
        self.sockets.append(tapped)
        return tapped

    @property
    def last(self) -> TappedSocket:
        return self.sockets[-1]


def subscriber(access: MqttAccess, topic: str) -> tuple[paho.Client, list[Any]]:
    got: list[Any] = []
    ready: list[bool] = []
    sub = access.paho()
    sub.on_message = lambda _c, _u, msg: got.append(msg)
    sub.on_subscribe = lambda *_a: ready.append(True)
    sub.connect(access.host, access.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    wait_until(lambda: bool(ready))
    return sub, got


def test_packet_encoding_matches_the_spec_bytes() -> None:
    assert encode_remaining_length(0) == b"\x00"
    assert encode_remaining_length(127) == b"\x7f"
    assert encode_remaining_length(128) == b"\x80\x01"
    assert encode_remaining_length(16383) == b"\xff\x7f"
    assert encode_remaining_length(2097152) == b"\x80\x80\x80\x01"
    # CONNECT, clean session, keepalive 60, client id "dev": MQTT 3.1.1 §3.1 field by field
    assert encode_connect(b"dev", True, 60) == bytes.fromhex("100f00044d5154540402003c0003") + b"dev"
    # with will (retain, QoS 1), user and password: flags 0x80|0x40|0x20|0x08|0x04 = 0xec, clean off
    packet = encode_connect(b"d", False, 0, "u", "p", ("t", b"w", True, 1))
    assert packet[9] == 0xEC
    assert packet[12:] == b"\x00\x01d" + b"\x00\x01t" + b"\x00\x01w" + b"\x00\x01u" + b"\x00\x01p"
    # PUBLISH QoS 1, retain, DUP, packet id 0x1234
    assert encode_publish("a/b", b"xy", 1, True, 0x1234, dup=True) == bytes.fromhex("3b090003") + b"a/b" + (
        b"\x12\x34xy"
    )
    assert encode_publish("a", b"", 0) == bytes.fromhex("3003000161")
    assert encode_subscribe(7, "a/#", 1) == bytes.fromhex("820800070003") + b"a/#" + b"\x01"


def test_connect_publish_puback_exact_bytes_against_mosquitto(mosquitto: MosquittoBroker) -> None:
    sub_access, access = issue(mosquitto, "fw-sub", "fw-bytes")
    sub, got = subscriber(sub_access, "fw/test/#")
    tap = Tap(access)
    client = fw_client(access, keepalive=30, open_socket=tap.open_socket, ssl=None)
    acked: list[int] = []
    client.set_puback_callback(acked.append)
    assert client.connect() is False
    assert bytes(tap.last.sent) == encode_connect(b"fw-bytes", True, 30, "fw-bytes", access.credentials.password)
    assert bytes(tap.last.received) == b"\x20\x02\x00\x00"  # CONNACK, no session, accepted
    sent_before = len(tap.last.sent)
    pid = client.publish("fw/test/a", b"\x01\x02\x03", qos=1)
    assert pid == 1
    assert bytes(tap.last.sent[sent_before:]) == b"\x32\x10\x00\x09fw/test/a\x00\x01\x01\x02\x03"
    assert client.inflight_pids() == [1]
    while not acked:
        client.wait_msg(2)
    assert acked == [1]
    assert bytes(tap.last.received[4:]) == b"\x40\x02\x00\x01"  # PUBACK for packet id 1
    assert client.inflight_pids() == []
    client.disconnect()
    assert bytes(tap.last.sent[-2:]) == b"\xe0\x00"
    wait_until(lambda: len(got) == 1)
    assert got[0].payload == b"\x01\x02\x03" and got[0].qos == 1
    sub.loop_stop()
    sub.disconnect()


def test_qos1_inflight_window_is_bounded_and_pubacks_match_ids(mosquitto: MosquittoBroker) -> None:
    (access,) = issue(mosquitto, "fw-window")
    client = fw_client(access, max_inflight=4)
    acked: list[int] = []
    client.set_puback_callback(acked.append)
    client.connect()
    pids = [client.publish("fw/window", b"m%d" % i, qos=1) for i in range(4)]
    assert pids == [1, 2, 3, 4]  # returned at once, no PUBACK read yet
    assert client.inflight_free() == 0
    with pytest.raises(InflightWindowFull):
        client.publish("fw/window", b"too many", qos=1)
    deadline = time.monotonic() + 5
    while len(acked) < 4 and time.monotonic() < deadline:
        client.wait_msg(1)
    assert acked == [1, 2, 3, 4]
    assert client.inflight_free() == 4
    assert client.check_msg() is None  # nothing waiting: returns without blocking
    client.disconnect()


def test_connack_refusal_raises_typed_error(mosquitto: MosquittoBroker) -> None:
    # A wrong password (or none): the broker refuses the CONNECT with code 5 (not authorized), MQTT 3.1.1 §3.2.2.3.
    (access,) = issue(mosquitto, "fw-refused")
    for password in ("wrong", None):
        client = MQTTClient("fw-refused", access.host, access.port, user="fw-refused", password=password,
                            ssl=client_tls_context(access.ca_file))
        with pytest.raises(MQTTConnectError) as err:
            client.connect(clean_session=False)
        assert err.value.code == 5
        assert "not authorized" in str(err.value)
        assert not client.is_connected()


def test_plain_mqtt_to_the_tls_broker_gets_no_session(mosquitto: MosquittoBroker) -> None:
    (access,) = issue(mosquitto, "fw-plain")
    client = fw_client(access, ssl=None, timeout_s=2)
    with pytest.raises(OSError):  # the broker expects a TLS ClientHello: it closes or never answers
        client.connect()
    assert not client.is_connected()


def test_tls_to_a_broker_with_another_ca_fails(mosquitto: MosquittoBroker, tmp_path: Any) -> None:
    from carbontrace.broker_config import make_ca_and_server_cert

    (access,) = issue(mosquitto, "fw-wrong-ca")
    make_ca_and_server_cert(tmp_path / "other")
    client = fw_client(access, ssl=client_tls_context(tmp_path / "other" / "ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect()


def test_keepalive_pings_keep_the_link_and_silence_triggers_the_will(mosquitto: MosquittoBroker) -> None:
    sub_access, alive_access, silent_access = issue(mosquitto, "fw-sub", "fw-alive", "fw-silent")
    sub, got = subscriber(sub_access, "fw/will/#")
    tap = Tap(alive_access)
    alive = fw_client(alive_access, keepalive=1, open_socket=tap.open_socket, ssl=None)
    alive.set_last_will("fw/will/alive", b"offline-alive", retain=False, qos=1)
    alive.connect()
    silent = fw_client(silent_access, keepalive=1)
    silent.set_last_will("fw/will/silent", b"offline-silent", retain=False, qos=1)
    silent.connect()
    # Mosquitto drops a client silent for 1.5 x keepalive and publishes its will; the pinging one stays.
    started = time.monotonic()
    while time.monotonic() - started < 3.0 or not any(m.topic == "fw/will/silent" for m in got):
        assert time.monotonic() - started < 8.0, "the silent client's will never came"
        alive.check_msg()
        alive.maintain_keepalive()
        time.sleep(0.05)
    assert b"\xc0\x00" in bytes(tap.last.sent)  # PINGREQ
    assert b"\xd0\x00" in bytes(tap.last.received)  # PINGRESP
    assert not any(m.topic == "fw/will/alive" for m in got)
    assert alive.publish("fw/will/check", b"still here", qos=1) is not None
    alive.disconnect()  # a clean DISCONNECT: no will
    time.sleep(0.3)
    assert [m.payload for m in got if m.topic.startswith("fw/will/")] == [b"offline-silent", b"still here"]
    silent.close()
    sub.loop_stop()
    sub.disconnect()


def test_last_will_delivered_when_the_socket_dies(mosquitto: MosquittoBroker) -> None:
    sub_access, access, late_access = issue(mosquitto, "fw-sub", "fw-dies", "fw-late")
    sub, got = subscriber(sub_access, "fw/dies/status")
    client = fw_client(access, keepalive=60)
    client.set_last_will("fw/dies/status", b'{"state":"offline"}', retain=True, qos=1)
    client.connect()
    client.close()  # the socket dies without DISCONNECT
    wait_until(lambda: bool(got))
    assert got[0].payload == b'{"state":"offline"}'
    # retained: a late subscriber sees it too
    out = subprocess.run(
        ["mosquitto_sub", *cli_auth(late_access), "-t", "fw/dies/status", "-C", "1", "-W", "5"],
        capture_output=True,
        timeout=10,
    )
    assert out.stdout.strip() == b'{"state":"offline"}'
    sub.loop_stop()
    sub.disconnect()


def test_persistent_session_keeps_subscription_and_queued_messages(mosquitto: MosquittoBroker) -> None:
    access, pub_access = issue(mosquitto, "fw-persist", "fw-pub")
    received: list[tuple[bytes, bytes]] = []
    client = fw_client(access)
    client.set_callback(lambda t, m: received.append((t, m)))
    assert client.connect(clean_session=False) is False
    assert client.subscribe("fw/persist/cmd", qos=1) == 1
    client.disconnect()
    pub = subprocess.run(
        ["mosquitto_pub", *cli_auth(pub_access), "-t", "fw/persist/cmd", "-q", "1", "-m", "queued"],
        timeout=10,
    )
    assert pub.returncode == 0
    assert client.connect(clean_session=False) is True  # session present
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        client.wait_msg(1)
    assert received == [(b"fw/persist/cmd", b"queued")]
    client.disconnect()
    assert client.connect(clean_session=True) is False  # a clean session discards it
    client.disconnect()


def test_unacked_publish_is_resent_with_dup_and_same_id_after_reconnect(mosquitto: MosquittoBroker) -> None:
    sub_access, access = issue(mosquitto, "fw-sub", "fw-dup")
    sub, got = subscriber(sub_access, "fw/dup")
    tap = Tap(access)
    client = fw_client(access, open_socket=tap.open_socket, ssl=None)
    acked: list[int] = []
    client.set_puback_callback(acked.append)
    client.connect(clean_session=False)
    client.publish("fw/dup", b"first", qos=1)
    pid = client.publish("fw/dup", b"second", qos=1)
    client.close()  # the link breaks before the PUBACKs were read
    assert acked == [] and client.inflight_pids() == [1, pid]
    assert client.connect(clean_session=False) is True
    resent = bytes(tap.last.sent[len(encode_connect(b"fw-dup", False, 0, "fw-dup", access.credentials.password)) :])
    assert resent == encode_publish("fw/dup", b"first", 1, False, 1, dup=True) + encode_publish(
        "fw/dup", b"second", 1, False, pid, dup=True
    )
    assert resent[0] == 0x3A  # PUBLISH | DUP | QoS 1
    deadline = time.monotonic() + 5
    while len(acked) < 2 and time.monotonic() < deadline:
        client.wait_msg(1)
    assert acked == [1, pid]
    client.disconnect()
    wait_until(lambda: {m.payload for m in got} == {b"first", b"second"})
    sub.loop_stop()
    sub.disconnect()


def test_resilient_link_backs_off_exponentially_and_rejoins_wifi(tmp_path: Any, mosquitto: MosquittoBroker) -> None:
    port = HostPort(str(tmp_path))
    attempts: list[float] = []

    def counting_open(host: str, p: int, timeout_s: float) -> socket.socket:
        attempts.append(time.monotonic())
        return port.open_socket(host, p, timeout_s)

    (access,) = issue(mosquitto, "fw-backoff")
    client = fw_client(access, open_socket=counting_open)
    link = ResilientMQTT(client, port, "lab", "pw", backoff_min_ms=50, backoff_max_ms=400)
    mosquitto.stop()
    delays: list[int] = []  # the wait the link chose after each failure
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert link.poll() is False
        if link.failures > len(delays):
            delays.append(link.retry_delay_ms)
        time.sleep(0.005)
    # 50, 100, 200, 400, 400 ... ms plus up to 25 % jitter
    assert 50 <= delays[0] <= 62 and 100 <= delays[1] <= 125 and 200 <= delays[2] <= 250, delays
    assert all(400 <= d <= 500 for d in delays[3:]) and len(delays) >= 5, delays
    # and no attempt came early (a busy machine can only make them late; ticks are whole milliseconds)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= (delay - 1) / 1000 for gap, delay in zip(gaps, delays, strict=False)), (gaps, delays)
    assert link.failures == len(attempts) and isinstance(link.last_error, OSError)
    mosquitto.start()
    wait_until(lambda: link.poll(), timeout=10)
    assert link.connects == 1
    # Wi-Fi drops: the socket dies and the access point is gone for a while
    port.wifi_up = False
    port.wifi_available = False
    client.close()
    joins = port.wifi_joins
    assert link.poll() is False and port.wifi_joins == joins + 1
    port.wifi_available = True
    wait_until(lambda: link.poll(), timeout=10)
    assert port.wifi_joins == joins + 2 and link.connects == 2
    assert link.publish("fw/backoff", b"back", qos=1) == 1 and link.client.inflight_pids() == [1]
    link.disconnect()
