"""The embedded MQTT broker (amqtt in its own process) carries what the pipeline needs: the firmware's QoS 1
signed readings to persistent sessions (also while they are away), retained status and last wills, the
gateway's manual acknowledgements with redelivery, and the whole demo."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import pytest
from carbontrace_device.mqtt_client import MQTTClient
from paho.mqtt.enums import CallbackAPIVersion

from carbontrace.embedded_broker import EmbeddedBroker, resolve_kind, start_broker
from carbontrace.servers import Mosquitto, wait_until
from carbontrace_protocol.verify import verify_reading
from tests.conftest import REPO_ROOT
from tests.firmware.fw_mqtt_helpers import Subscriber
from tests.firmware.test_fw_app_loop import SITE, make_app, run_until

sys.path.insert(0, str(REPO_ROOT / "tests" / "gateway"))  # the gateway tests' helpers import as top-level modules
from gw_helpers import (
    Device,
    InProcessGateway,
    make_gateway_key,
    make_stub,
    publish_all,
    topic,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def listening(broker: EmbeddedBroker) -> list[tuple[str, int]]:
    assert broker.proc is not None
    conns = psutil.Process(broker.proc.pid).net_connections(kind="inet")
    return sorted((c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def paho_subscriber(port: int, client_id: str, topic_filter: str, clean: bool = True,
                    manual_ack: bool = False) -> tuple[paho.Client, list[paho.MQTTMessage]]:
    got: list[paho.MQTTMessage] = []
    subscribed: list[bool] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         manual_ack=manual_ack)
    client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *_a: subscribed.append(True)
    client.on_message = lambda _c, _u, m: got.append(m)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    wait_until(lambda: bool(subscribed))
    return client, got


def close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def test_listens_on_loopback_only_and_stops_like_a_process(embedded: EmbeddedBroker) -> None:
    assert listening(embedded) == [("127.0.0.1", embedded.port)]  # no 0.0.0.0, no websocket listener
    assert (embedded.workdir / "embedded-broker.log").exists()
    pid = embedded.proc.pid if embedded.proc else 0
    embedded.stop(kill=True)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert refused(embedded.port)
    embedded.start()
    publish_all(embedded.port, [("t/after-kill", b"x")])
    embedded.restart()
    assert listening(embedded) == [("127.0.0.1", embedded.port)]
    publish_all(embedded.port, [("t/after-restart", b"y")])
    embedded.stop()
    assert refused(embedded.port)


def test_start_broker_takes_mosquitto_when_installed_else_the_embedded_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Mosquitto, "binary", staticmethod(lambda: "/usr/sbin/mosquitto"))
    assert resolve_kind("auto") == "mosquitto"
    assert resolve_kind("embedded") == "embedded"
    with pytest.raises(ValueError):
        resolve_kind("rabbit")

    def missing() -> str:
        raise RuntimeError("mosquitto is not installed")

    monkeypatch.setattr(Mosquitto, "binary", staticmethod(missing))
    assert resolve_kind("auto") == "embedded"
    lines: list[str] = []
    broker = start_broker(tmp_path / "auto", log=lines.append)
    try:
        assert isinstance(broker, EmbeddedBroker)
        assert lines == [f"MQTT broker: embedded amqtt 0.12.1 in its own process on 127.0.0.1:{broker.port} "
                         "(Mosquitto is not installed); WARNING: anonymous plain MQTT, for a loopback demo only, "
                         "never a deployment"]
        publish_all(broker.port, [("t/auto", b"x")])
    finally:
        broker.stop()
    with pytest.raises(RuntimeError, match="not installed"):
        start_broker(tmp_path / "forced", "mosquitto", log=lines.append)


def test_firmware_readings_reach_a_persistent_paho_session_also_while_it_is_away(
    tmp_path: Path, embedded: EmbeddedBroker
) -> None:
    app, _scd, _pzem = make_app(tmp_path, embedded.port, "dev-emb")
    readings_topic = f"carbontrace/v1/{SITE}/dev-emb/reading"
    sub = Subscriber(embedded.port, readings_topic, "paho-emb")
    app.measure_limit = 5
    run_until(app, lambda: app.readings_made == 5 and app.outbox.depth() == 0)
    wait_until(lambda: len(sub.payloads("/reading")) == 5)
    sub.close()  # the subscriber goes away; its persistent session stays on the broker
    time.sleep(0.5)
    app.measure_limit = 12
    run_until(app, lambda: app.readings_made == 12 and app.outbox.depth() == 0)  # every one PUBACKed
    assert app.readings_acked == 12
    back = Subscriber(embedded.port, readings_topic, "paho-emb")  # same client id, clean_session=False
    wait_until(lambda: len(back.payloads("/reading")) >= 7)
    time.sleep(0.3)
    payloads = sub.payloads("/reading") + back.payloads("/reading")
    readings = [verify_reading(p, app.key.public_key) for p in payloads]
    assert [r.seq for r in readings] == list(range(12))  # the queued seven came in order, none twice
    assert all(r.device_id == "dev-emb" for r in readings)
    app.shutdown()
    back.close()


def test_firmware_client_persistent_session_gets_what_queued_while_offline(embedded: EmbeddedBroker) -> None:
    received: list[tuple[bytes, bytes]] = []
    client = MQTTClient("fw-emb-persist", "127.0.0.1", embedded.port)
    client.set_callback(lambda t, m: received.append((t, m)))
    assert client.connect(clean_session=False) is False
    assert client.subscribe("fw/persist/cmd", qos=1) == 1
    client.disconnect()
    time.sleep(0.3)
    publish_all(embedded.port, [("fw/persist/cmd", b"queued")])
    assert client.connect(clean_session=False) is True  # session present
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        client.wait_msg(1)
    assert received == [(b"fw/persist/cmd", b"queued")]
    client.disconnect()
    assert client.connect(clean_session=True) is False  # a clean session discards it
    client.disconnect()


def test_retained_status_and_last_will(tmp_path: Path, embedded: EmbeddedBroker) -> None:
    app, _scd, _pzem = make_app(tmp_path, embedded.port, "dev-will")
    status_topic = f"carbontrace/v1/{SITE}/dev-will/status"
    app.measure_limit = 1
    run_until(app, lambda: app.readings_made == 1 and app.outbox.depth() == 0)
    # a subscriber arriving later gets the retained birth message
    late, got = paho_subscriber(embedded.port, "late-1", status_topic)
    wait_until(lambda: bool(got))
    assert got[0].retain and json.loads(got[0].payload)["state"] == "online"
    # the device loses power: its socket dies without DISCONNECT and the broker publishes its will
    app.mqtt.client.close()
    wait_until(lambda: any(json.loads(m.payload)["state"] == "offline" for m in got))
    close(late)
    later, got_later = paho_subscriber(embedded.port, "late-2", status_topic)
    wait_until(lambda: bool(got_later))
    assert got_later[-1].retain and json.loads(got_later[-1].payload)["state"] == "offline"  # the will, retained
    close(later)

    # a client that goes silent past its keepalive gets its will published too; a clean DISCONNECT does not
    watcher, seen = paho_subscriber(embedded.port, "watcher", "fw/will/#")
    silent = MQTTClient("fw-silent", "127.0.0.1", embedded.port, keepalive=1)
    silent.set_last_will("fw/will/silent", b"offline-silent", retain=False, qos=1)
    silent.connect()
    polite = MQTTClient("fw-polite", "127.0.0.1", embedded.port, keepalive=30)
    polite.set_last_will("fw/will/polite", b"offline-polite", retain=False, qos=1)
    polite.connect()
    time.sleep(0.5)  # amqtt 0.12 misses a DISCONNECT sent while it is still setting the connection up
    polite.disconnect()
    wait_until(lambda: any(m.topic == "fw/will/silent" for m in seen), timeout=8)
    time.sleep(0.3)
    # only its own topics: not the retained status of dev-will, whose topic the watcher never subscribed to
    assert [m.payload for m in seen] == [b"offline-silent"]
    silent.close()
    close(watcher)


def test_unacknowledged_qos1_delivery_comes_again_after_reconnect(embedded: EmbeddedBroker) -> None:
    """What the gateway relies on: a reading it did not acknowledge (crash, paused ingest) is redelivered.
    (Stock amqtt 0.12 drops it; carbontrace.embedded_broker.keep_unacknowledged_deliveries fixes that.)"""
    first, got = paho_subscriber(embedded.port, "holder", "gw/#", clean=False, manual_ack=True)
    publish_all(embedded.port, [("gw/r", b"reading-1")])
    wait_until(lambda: len(got) == 1)
    assert not got[0].dup
    close(first)  # never acknowledged
    time.sleep(0.3)
    # acknowledged at once this time (amqtt holds the session's SUBACK until redeliveries are acknowledged)
    again, got_again = paho_subscriber(embedded.port, "holder", "gw/#", clean=False)
    wait_until(lambda: len(got_again) == 1)
    assert got_again[0].payload == b"reading-1" and got_again[0].dup and got_again[0].qos == 1
    time.sleep(0.3)
    close(again)
    third, got_third = paho_subscriber(embedded.port, "holder", "gw/#", clean=False, manual_ack=True)
    time.sleep(1.0)
    assert got_third == []  # acknowledged once: gone
    close(third)


def test_gateway_ingests_through_the_embedded_broker(tmp_path: Path, embedded: EmbeddedBroker) -> None:
    a, b = Device("dev-a"), Device("dev-b")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a, b])
    config = write_config(tmp_path, key_file, stub.url, embedded.port, window_s=1)
    sent = {("dev-a", s) for s in range(20)} | {("dev-b", s) for s in range(10)}
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10)
            publish_all(embedded.port, [(topic("dev-a"), a.signed(s)) for s in range(10)]
                        + [(topic("dev-b"), b.signed(s)) for s in range(10)])
            wait_until(lambda: sum(n for n, _ in gw.spool().device_counts().values()) == 20, 15)
        # the gateway is down: its persistent session on the broker collects what the devices send meanwhile
        time.sleep(0.3)
        publish_all(embedded.port, [(topic("dev-a"), a.signed(s)) for s in range(10, 20)])
        with InProcessGateway(config) as gw:
            wait_until(lambda: stub.reading_keys() == sent, 30)
            wait_until(lambda: gw.spool().stats()["unacked_batches"] == 0, 15)
            assert gw.spool().gaps("dev-a") == [] and gw.spool().rejection_counts() == {}
        assert stub.state.rejected == [] and stub.state.duplicate_readings == 0
    finally:
        stub.stop()


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_demo_runs_on_the_embedded_broker(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "carbontrace.demo", "--out", str(out), "--broker", "embedded", "--seconds", "10",
         "--devices", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=460,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Start the MQTT broker (embedded amqtt 0.12.1 on loopback)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted by gateway"] > 0
    assert summary["readings signed by devices"] == summary["acknowledged by broker"]
    # every hole in a device's sequence is one the fleet made on purpose (a tampered reading between intact ones)
    assert summary["missing readings (gaps)"] == summary["gaps the fleet's rejected readings leave"]
    assert summary["checkpoints anchored"] >= 1
    assert summary["bundles verified"] == "reading: exit 0, emissions: exit 0"
    assert summary["tamper attempts caught at the right step"] == "3/3"
    assert summary["rejected by gateway"] == summary["rejections the fleet injected"]
