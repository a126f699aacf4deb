"""Shared pieces of the gateway tests: device keys, signed readings, settings files, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gw_cloud_stub import CloudStub, StubState

from carbontrace.broker_config import MqttAccess
from carbontrace.servers import Mosquitto
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
from edge_gateway.keys import create_key_file, load_private_key, public_key_of

SITE = "site-a"
GATEWAY = "gw-1"
API_KEY = "test-api-key-not-secret"


class Device:
    def __init__(self, device_id: str, seed: bytes | None = None) -> None:
        self.device_id = device_id
        self.key = p256.private_key_from_bytes(seed or os.urandom(32))
        self.public = bytes(p256.public_key(self.key))

    def reading(self, seq: int, timestamp: int | None = None, flags: int = 0, energy_wh: int | None = None,
                co2_ppm: int | None = 600) -> Reading:
        return Reading(self.device_id, seq, int(time.time()) if timestamp is None else timestamp, "1.0.0",
                       flags=flags, co2_ppm=co2_ppm, temperature_centi_c=2150, humidity_centi_pct=4500,
                       energy_wh=energy_wh if energy_wh is not None else 1000 + 5 * seq, power_deci_w=1200)

    def signed(self, seq: int, **kwargs: int) -> bytes:
        return bytes(sign_reading(self.reading(seq, **kwargs), self.key))


def topic(device_id: str, site: str = SITE) -> str:
    return f"carbontrace/v1/{site}/{device_id}/reading"


def make_gateway_key(tmp: Path) -> tuple[Path, bytes]:
    path = tmp / "gateway.key"
    create_key_file(path)
    return path, public_key_of(load_private_key(path))


def make_stub(gateway_public: bytes, devices: list[Device], revoked: list[Device] = (),  # type: ignore[assignment]
              port: int | None = None) -> CloudStub:
    entries = {d.device_id: (d.public, "active") for d in devices}
    entries.update({d.device_id: (d.public, "revoked") for d in revoked})
    stub = CloudStub(StubState(GATEWAY, SITE, API_KEY, gateway_public, entries), port=port)
    stub.start()
    return stub


def gateway_access(broker: Mosquitto, site: str = SITE, gateway: str = GATEWAY) -> MqttAccess:
    return broker.add_gateway(site, gateway)


TEST_PUBLISHER = "test-publisher"


def test_publisher(broker: Mosquitto) -> MqttAccess:
    """The site's load publisher that ``publish_all`` uses (issued once per broker)."""
    return broker.add_publisher(SITE, TEST_PUBLISHER)


def mqtt_settings(access: MqttAccess) -> dict[str, object]:
    """The gateway's MQTT settings for this access: TLS with the broker's CA, its username and password."""
    return {"mqtt_host": access.host, "mqtt_port": access.port, "mqtt_ca_file": str(access.ca_file),
            "mqtt_username": access.username, "mqtt_password": access.credentials.password}


def write_config(tmp: Path, key_file: Path, cloud_url: str, broker: Mosquitto | int, **extra: object) -> Path:
    """Settings for a gateway on ``broker`` (its TLS access issued there), or on a bare port it never reaches."""
    if isinstance(broker, Mosquitto):
        # Issuing credentials restarts the broker: issue the publisher now, before the gateway connects, or
        # the first publish_all restarts the broker under a connected gateway, which then loses seconds to
        # its reconnect backoff (a test waiting on ingest timed out that way on a slow CI machine).
        test_publisher(broker)
    values: dict[str, object] = {
        "gateway_id": GATEWAY,
        "site_id": SITE,
        "cloud_url": cloud_url,
        "api_key": API_KEY,
        "key_file": str(key_file),
        "spool_path": str(tmp / "spool.sqlite"),
        **(mqtt_settings(gateway_access(broker)) if isinstance(broker, Mosquitto) else {"mqtt_port": broker}),
        "window_s": 2,
        "interval_s": 1,
        "metrics_port": 0,
        "backoff_base_s": 0.2,
        "backoff_max_s": 1.0,
        "tick_s": 0.1,
        "registry_refresh_s": 3600,
    }
    values.update(extra)
    lines = ["[gateway]"]
    for name, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{name} = {value}")
        else:
            lines.append(f'{name} = "{value}"')
    path = tmp / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def publish_all(broker: Mosquitto | MqttAccess | int, messages: list[tuple[str, bytes]], client_id: str = "test-publisher",
                timeout: float = 30.0) -> None:
    """Publish at QoS 1 and wait for every PUBACK from the broker. With a broker: as the site's load publisher
    (broker role "publisher", one per site: issuing another would restart the broker under the gateway)."""
    if isinstance(broker, int):  # the embedded (amqtt) demo broker: anonymous plain MQTT on loopback
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        host, port = "127.0.0.1", broker
    else:
        access = broker if isinstance(broker, MqttAccess) else test_publisher(broker)
        client, host, port = access.paho(), access.host, access.port
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=timeout)
            if not info.is_published():
                raise AssertionError("broker did not acknowledge a publish")
    finally:
        client.disconnect()
        client.loop_stop()


class InProcessGateway:
    """The real Gateway (MQTT, SQLite, HTTP) on a thread of the test process."""

    def __init__(self, config: Path, **overrides: object) -> None:
        import threading

        from edge_gateway.config import load_settings
        from edge_gateway.service import Gateway

        self.settings = load_settings(config, **overrides)
        self.gateway = Gateway(self.settings)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.gateway.run()

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gateway.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "gateway did not stop"

    def spool(self):  # type: ignore[no-untyped-def]
        from edge_gateway.spool import Spool

        return Spool(self.settings.spool_path)


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m edge_gateway run` on ``config`` as its own process, its output appended to ``log``."""
    from tests.conftest import REPO_ROOT

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "edge_gateway", "run", "--config", str(config)],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=out)


def start_persistent_broker(workdir: Path):  # type: ignore[no-untyped-def]
    """Mosquitto whose persistence survives a restart (carbontrace.servers.Mosquitto runs it as root)."""
    from tests.conftest import MosquittoBroker

    broker = MosquittoBroker(workdir)
    broker.start()
    return broker
