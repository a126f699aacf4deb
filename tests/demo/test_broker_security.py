"""The production broker configuration (carbontrace/broker_config.py) on a real Mosquitto, tried as an attacker
on the same network would: no anonymous access, no reading of others' topics, no publishing as another
device, no takeover of the gateway's session by its client id, no oversized payloads, no plain or
wrongly-trusted TLS. Each of these passed on the old anonymous broker (issue 13, item 2 and item 5's cap)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace.broker_config import MAX_PACKET_BYTES, MqttAccess, make_ca_and_server_cert
from carbontrace.servers import Mosquitto, wait_until
from carbontrace_protocol import topics

SITE = "site-sec"
OTHER_SITE = "site-other"


class Client:
    """A paho client recording its connection outcome, disconnects and messages."""

    def __init__(self, access: MqttAccess | None, port: int, client_id: str = "", clean_session: bool = True,
                 ca_file: Path | None = None, tls: bool = True, username: str | None = None,
                 password: str | None = None) -> None:
        if access is not None:
            self.client = access.paho(clean_session=clean_session)
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
            if tls:
                assert ca_file is not None
                self.client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
            if username is not None:
                self.client.username_pw_set(username, password)
        self.port = port
        self.connack: list[Any] = []
        self.disconnects: list[Any] = []
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, reason, p: self.connack.append(reason)
        self.client.on_disconnect = lambda c, u, f, reason, p: self.disconnects.append(reason)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload), m.retain))

    def connect(self) -> Client:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        wait_until(lambda: self.connack or self.disconnects, 10, "CONNACK")
        return self

    @property
    def accepted(self) -> bool:
        return bool(self.connack) and not self.connack[0].is_failure

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def gateway_on(broker: Mosquitto) -> Client:
    """The site's gateway: persistent session, subscribed to its site's readings and statuses. Issue every
    credential a test needs before this: issuing one restarts the broker (Mosquitto.reload)."""
    gateway = Client(broker.add_gateway(SITE, "gw-sec"), broker.port, clean_session=False).connect()
    assert gateway.accepted
    gateway.subscribe(topics.site_readings(SITE))
    gateway.subscribe(topics.site_statuses(SITE))
    return gateway


def marker_arrives(gateway: Client, device: Client, device_id: str, payload: bytes) -> None:
    """A genuine publish after the attempts: once it arrives, anything sent before it would have too (one
    connection, QoS 1, in order), so what is missing was dropped by the broker."""
    device.publish(topics.reading_topic(SITE, device_id), payload)
    wait_until(lambda: any(m[1] == payload for m in gateway.messages), 10, "the genuine reading at the gateway")


def test_anonymous_connect_is_refused(broker: Mosquitto) -> None:
    anonymous = Client(None, broker.port, "anon-1", ca_file=broker.ca_file).connect()
    assert not anonymous.accepted
    anonymous.close()
    wrong = Client(None, broker.port, "anon-2", ca_file=broker.ca_file, username="dev-x", password="guess").connect()
    assert not wrong.accepted
    wrong.close()


def test_no_one_but_the_gateway_reads_device_topics(broker: Mosquitto) -> None:
    accesses = broker.add_device(SITE, "dev-a"), broker.add_device(SITE, "dev-b"), broker.add_gateway(OTHER_SITE, "o")
    gateway = gateway_on(broker)
    device, snooper, other_gateway = (Client(access, broker.port).connect() for access in accesses)
    snooper.subscribe("#")
    snooper.subscribe(topics.site_readings(SITE))
    other_gateway.subscribe("#")
    device.publish(topics.status_topic(SITE, "dev-a"), b'{"state":"online"}', retain=True)
    marker_arrives(gateway, device, "dev-a", b"genuine-1")
    time.sleep(0.5)
    assert snooper.messages == []
    assert other_gateway.messages == []
    assert {m[0] for m in gateway.messages} == {topics.reading_topic(SITE, "dev-a"), topics.status_topic(SITE, "dev-a")}
    for client in (gateway, device, snooper, other_gateway):
        client.close()


def test_a_device_publishes_only_on_its_own_topics(broker: Mosquitto) -> None:
    victim_access, attacker_access = broker.add_device(SITE, "dev-victim"), broker.add_device(SITE, "dev-attacker")
    late_access = broker.add_gateway(SITE, "gw-late")
    gateway = gateway_on(broker)
    victim = Client(victim_access, broker.port).connect()
    victim.publish(topics.status_topic(SITE, "dev-victim"), b'{"state":"online"}', retain=True)
    wait_until(lambda: len(gateway.messages) == 1, 10, "the victim's status")
    attacker = Client(attacker_access, broker.port).connect()
    assert attacker.accepted
    attacker.publish(topics.reading_topic(SITE, "dev-victim"), b"forged-reading")
    attacker.publish(topics.status_topic(SITE, "dev-victim"), b'{"state":"offline"}', retain=True)
    attacker.publish(topics.reading_topic(OTHER_SITE, "dev-attacker"), b"other-site")
    attacker.publish("anything/else", b"elsewhere")
    marker_arrives(gateway, attacker, "dev-attacker", b"genuine-attacker")
    assert [m[1] for m in gateway.messages] == [b'{"state":"online"}', b"genuine-attacker"]
    # The retained status is still the victim's own: a newcomer gets that one.
    late = Client(late_access, broker.port).connect()
    late.subscribe(topics.site_statuses(SITE))
    wait_until(lambda: late.messages, 5, "the retained status")
    assert late.messages == [(topics.status_topic(SITE, "dev-victim"), b'{"state":"online"}', True)]
    for client in (gateway, victim, attacker, late):
        client.close()


def test_the_gateways_client_id_cannot_take_its_session_over(broker: Mosquitto) -> None:
    device_access, impostor_access = broker.add_device(SITE, "dev-t"), broker.add_device(SITE, "dev-impostor")
    gateway = gateway_on(broker)
    gateway_id = gateway.client._client_id.decode()  # the id the gateway connected with
    device = Client(device_access, broker.port).connect()
    # 1. The gateway's client id with no credentials, and with a wrong password: refused.
    for password in (None, "not-the-password"):
        thief = Client(None, broker.port, gateway_id, clean_session=False, ca_file=broker.ca_file,
                       username=gateway_id if password else None, password=password).connect()
        assert not thief.accepted
        thief.close()
    # 2. The gateway's client id with another client's valid credentials: the broker uses the username as
    #    the client id, so this is dev-t's session, not the gateway's, and it reads nothing.
    impostor = Client(None, broker.port, gateway_id, clean_session=False, ca_file=broker.ca_file,
                      username=impostor_access.username, password=impostor_access.credentials.password).connect()
    assert impostor.accepted
    impostor.subscribe(topics.site_readings(SITE))
    assert device.disconnects == [], device.disconnects
    for n in range(5):
        device.publish(topics.reading_topic(SITE, "dev-t"), b"reading-%d" % n)
    wait_until(lambda: len(gateway.messages) == 5, 10, "every reading at the gateway")
    time.sleep(0.3)
    assert gateway.disconnects == []
    assert impostor.messages == []
    assert [m[1] for m in gateway.messages] == [b"reading-%d" % n for n in range(5)]
    for client in (gateway, device, impostor):
        client.close()


def test_a_payload_over_the_cap_is_refused_by_the_broker(broker: Mosquitto) -> None:
    big_access, long_access = broker.add_device(SITE, "dev-big"), broker.add_device(SITE, "d" * 64)
    gateway = gateway_on(broker)
    device = Client(big_access, broker.port).connect()
    device.client.publish(topics.reading_topic(SITE, "dev-big"), b"x" * (MAX_PACKET_BYTES + 1), qos=1)
    wait_until(lambda: device.disconnects, 10, "the broker to drop the oversized publisher")
    device.close()
    device = Client(big_access, broker.port).connect()
    marker_arrives(gateway, device, "dev-big", b"small")
    assert [m[1] for m in gateway.messages] == [b"small"]
    # The largest legitimate message on the longest topic passes.
    long_id = "d" * 64
    big = Client(long_access, broker.port).connect()
    big.publish(topics.reading_topic(SITE, long_id), b"y" * topics.MAX_PAYLOAD_BYTES)
    wait_until(lambda: len(gateway.messages) == 2, 10, "the largest legitimate message")
    for client in (gateway, device, big):
        client.close()


def test_plain_mqtt_and_tls_with_another_ca_are_refused(broker: Mosquitto, tmp_path: Path) -> None:
    # Plain MQTT on the TLS port: a CONNECT in clear text gets no CONNACK.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 4]) + b"anon")
        sock.settimeout(3)
        try:
            answer = sock.recv(4)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"\x20"), "the broker answered a plain-text CONNECT"
    # paho without TLS, with valid credentials: no session.
    access = broker.add_device(SITE, "dev-plain")
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-plain")
    plain.username_pw_set(access.username, access.credentials.password)
    outcomes: list[Any] = []
    plain.on_connect = lambda c, u, f, reason, p: outcomes.append(reason)
    try:
        plain.connect("127.0.0.1", broker.port)
        plain.loop_start()
        time.sleep(2)
    except OSError:
        pass
    finally:
        plain.loop_stop()
    assert not any(not r.is_failure for r in outcomes)
    # TLS pinned to another CA (an attacker's broker would present this one): the handshake fails.
    make_ca_and_server_cert(tmp_path / "other-pki")
    context = ssl.create_default_context(cafile=str(tmp_path / "other-pki" / "ca.pem"))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    # And the right CA with the right host name works (the control).
    good = ssl.create_default_context(cafile=str(broker.ca_file))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw, \
            good.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_key_files_are_private(broker: Mosquitto) -> None:
    config = broker.broker_config
    broker.add_device(SITE, "dev-perm")
    for path in (config.ca_dir / "ca.key", config.pki / "server.key", config.passwd_file, config.acl_file,
                 config.principals_file):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for directory in (config.directory, config.pki, config.ca_dir):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert "password" not in config.principals_file.read_text()


def _private_keys_matching_ca(directory: Path, ca_pem: Path) -> list[Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_public = x509.load_pem_x509_certificate(ca_pem.read_bytes()).public_key().public_numbers()
    found = []
    for path in directory.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        if b"PRIVATE KEY" not in data:
            continue
        key = serialization.load_pem_private_key(data, None)
        if key.public_key().public_numbers() == ca_public:  # type: ignore[union-attr]
            found.append(path)
    return found


def test_the_broker_directory_holds_no_ca_private_key(tmp_path: Path) -> None:
    """The directory Mosquitto reads (chowned to mosquitto, copied to the broker host) had pki/ca.key: whoever
    took the broker could mint certificates every gateway and device trusts. The CA key lives beside it."""
    from carbontrace.broker_config import BrokerConfig

    config = BrokerConfig(tmp_path / "broker", hosts=["127.0.0.1"]).create()
    assert _private_keys_matching_ca(config.directory, config.ca_file) == []
    assert (tmp_path / "broker-ca" / "ca.key").exists()
    assert _private_keys_matching_ca(tmp_path / "broker-ca", config.ca_file) == [tmp_path / "broker-ca" / "ca.key"]
    assert str(tmp_path / "broker-ca") not in config.mosquitto_conf()
    # --ca-dir elsewhere, and a directory of the old layout loses its CA key on the next init
    other = BrokerConfig(tmp_path / "b2", ca_dir=tmp_path / "offline" / "ca").create()
    assert (tmp_path / "offline" / "ca" / "ca.key").exists()
    assert BrokerConfig.open(tmp_path / "b2").ca_dir == tmp_path / "offline" / "ca"
    moved = (tmp_path / "offline" / "ca" / "ca.key").read_bytes()
    (other.pki / "ca.key").write_bytes(moved)
    (tmp_path / "offline" / "ca" / "ca.key").unlink()
    BrokerConfig.open(tmp_path / "b2").create()
    assert not (other.pki / "ca.key").exists()
    assert (tmp_path / "offline" / "ca" / "ca.key").read_bytes() == moved
