"""Real registration against the cloud app (cloud.app.create_app) served by uvicorn on a loopback port."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from carbontrace_device.keystore import DeviceKey
from typer.testing import CliRunner

from carbontrace.cloud_registration import RegistrationClient, RegistrationError
from carbontrace.provision import provision_app
from carbontrace.provision_plan import RegisterDevice
from carbontrace.provision_runner import MANUAL_FILE, PlanRunner
from carbontrace_protocol import p256
from cloud.app import create_app
from edge_gateway.config import load_settings
from edge_gateway.keys import load_private_key
from simulators.host_port import HostPort
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, make_settings, new_key, new_party_key
from tests.conftest import free_port

app = typer.Typer()
app.add_typer(provision_app, name="provision")


@dataclass
class Cloud:
    url: str
    engineer_key: str
    site_id: str


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(make_settings(tmp_path / "cloud")), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="cloud-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/api/v1/enterprises", json={"name": "Acme Greenhouses", "chain_account": new_party_key()[1]})
            assert r.status_code == 201, r.text
            enterprise_id, enterprise_key = r.json()["enterprise_id"], r.json()["api_key"]
            r = http.post(f"/api/v1/enterprises/{enterprise_id}/approve", headers=auth(ADMIN_KEY))
            assert r.status_code == 200, r.text
            r = http.post(f"/api/v1/enterprises/{enterprise_id}/engineers", json={"label": "field"},
                          headers=auth(enterprise_key))
            assert r.status_code == 201, r.text
            engineer_key = r.json()["api_key"]
            r = http.post(f"/api/v1/enterprises/{enterprise_id}/sites", json={"site_id": "plant-7", "name": "Plant 7", "country": "CN"},
                          headers=auth(enterprise_key))
            assert r.status_code == 201, r.text
        yield Cloud(url, engineer_key, "plant-7")
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def assert_private_tree(root: Path) -> None:
    """Every file provisioning wrote is 0600 and every directory 0700 (keys, API keys, records)."""
    wide = {
        str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in [root, *root.rglob("*")]
        if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
    }
    assert wide == {}, wide


def test_gateway_and_device_registered_for_real(cloud: Cloud, tmp_path: Path) -> None:
    out = tmp_path / "gw"
    result = CliRunner().invoke(app, [
        "provision", "gateway", "--cloud", cloud.url, "--api-key", cloud.engineer_key, "--site", cloud.site_id,
        "--gateway-id", "gw-plant-7", "--out", str(out), "--no-install",
    ])
    assert result.exit_code == 0, result.output
    assert cloud.engineer_key not in result.output
    settings = load_settings(out / "gateway.toml")
    gateway_key = settings.api_key.get_secret_value()
    assert gateway_key.startswith("ct_") and gateway_key not in result.output
    # Nothing was installed: the install commands wait in a file for the operator.
    manual = (out / MANUAL_FILE).read_text()
    assert "run by hand: systemctl enable --now carbontrace-gateway.service" in manual
    record = json.loads((out / "gateway-gw-plant-7.json").read_text())
    assert "api_key" not in json.dumps(record) and record["dry_run"] is False
    assert_private_tree(out)
    assert record["public_key"] == bytes(p256.public_key(load_private_key(out / "gateway.key"))).hex()

    # A device key made by the firmware's keystore (host port = the board's CPython twin), registered
    # through the same runner step the real device plan uses.
    device_key = DeviceKey(HostPort(str(tmp_path / "device-flash")))
    runner = PlanRunner(dry_run=False, api_key=cloud.engineer_key, echo=lambda _line: None)
    runner.context["public_key"] = device_key.public_key_hex()
    runner.run([RegisterDevice(cloud.url, cloud.site_id, "dev-017")], tmp_path / "dev")
    assert runner.context["registration"]["public_key"] == device_key.public_key_hex()
    assert runner.context["registration"]["registered_tx"].startswith("0x")

    # The gateway, with the API key provisioning wrote into its settings, sees the device and its key.
    r = httpx.get(f"{cloud.url}/api/v1/gateways/gw-plant-7/devices", headers=auth(gateway_key), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["devices"] == [
        {"device_id": "dev-017", "public_key": device_key.public_key_hex(), "status": "active"}
    ]

    with RegistrationClient(cloud.url, cloud.engineer_key) as client:
        # Re-provisioning the same board (same key on its flash) is accepted as already registered.
        again = client.register_device(cloud.site_id, "dev-017", bytes(device_key.public_key))
        assert again["already_registered"] is True
        # Another key under the same id is refused: replacing a device key is a revocation decision.
        with pytest.raises(RegistrationError) as err:
            client.register_device(cloud.site_id, "dev-017", new_key()[1])
        assert err.value.status == 409


def test_wrong_api_key_fails_cleanly(cloud: Cloud, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "provision", "gateway", "--cloud", cloud.url, "--api-key", "ct_" + "0" * 64, "--site", cloud.site_id,
        "--gateway-id", "gw-x", "--out", str(tmp_path / "gw"), "--no-install",
    ])
    assert result.exit_code == 1
    assert "HTTP 401" in result.output
    assert not (tmp_path / "gw" / "gateway.toml").exists()
    staged = (tmp_path / "gw" / "gateway.key").read_text()

    # With the right key, the re-run registers the key staged by the failed attempt.
    result = CliRunner().invoke(app, [
        "provision", "gateway", "--cloud", cloud.url, "--api-key", cloud.engineer_key, "--site", cloud.site_id,
        "--gateway-id", "gw-x", "--out", str(tmp_path / "gw"), "--no-install",
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gw" / "gateway.key").read_text() == staged
    settings = load_settings(tmp_path / "gw" / "gateway.toml")
    r = httpx.get(f"{cloud.url}/api/v1/gateways/gw-x/devices", headers=auth(settings.api_key.get_secret_value()),
                  timeout=30)
    assert r.status_code == 200 and r.json()["devices"] == []
