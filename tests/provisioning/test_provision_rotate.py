"""`carbontrace provision device|gateway --rotate`: the dry-run plans, and real rotations against the cloud app.

The real device rotation runs the plan's own board snippets: a stand-in ``mpremote`` executes them under
CPython with the firmware's host port (the board's CPython twin) on a flash directory, so the keystore, the
pending key file and the promote are the firmware's code, not test copies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from carbontrace_device.keystore import KEY_FILE, DeviceKey
from typer.testing import CliRunner

from carbontrace.cloud_registration import RegistrationClient, RegistrationError
from carbontrace.provision import provision_app
from carbontrace.provision_plan import (
    PENDING_KEY_FILE,
    DeviceRotationRequest,
    GatewayRotationRequest,
    PromoteDeviceKey,
    ReadDevicePublicKey,
    RotateDeviceKey,
    RotateGatewayKey,
    device_rotation_plan,
    gateway_rotation_plan,
)
from carbontrace.provision_runner import ACTIONS_FILE, DRY_RUN_KEY_ORIGIN, MANUAL_FILE, PlanRunner, ProvisionError
from carbontrace_protocol import p256
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.reading import Reading
from edge_gateway.classify import Rejected, Verified, classify_message, reading_topic
from edge_gateway.cloud_client import CloudClient
from edge_gateway.keys import load_private_key
from simulators.host_port import HostPort
from tests.cloud.cloud_testkit import DeviceKit, GatewayKit, auth, new_key
from tests.provisioning.test_provision_cloud import Cloud, cloud

__all__ = ["cloud"]  # the fixture: a real cloud app on a loopback port

REPO = Path(__file__).resolve().parents[2]
app = typer.Typer()
app.add_typer(provision_app, name="provision")
runner = CliRunner()

# `mpremote connect PORT exec SNIPPET` / `… reset`, on a host flash directory instead of a board.
HOST_MPREMOTE = """import sys, types
from simulators.host_port import HostPort
flash_root, _connect, _port, command, *rest = sys.argv[1:]
board = types.ModuleType("carbontrace_device.ports.board")
board.BoardPort = lambda: HostPort(flash_root)
sys.modules["carbontrace_device.ports.board"] = board
if command == "exec":
    exec(rest[0], {})
elif command != "reset":
    raise SystemExit("unexpected mpremote command " + command)
"""


def test_device_rotation_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "dev"
    result = runner.invoke(app, [
        "provision", "device", "--rotate", "--port", "/dev/ttyACM0", "--cloud", "https://cloud.example.org",
        "--api-key", "ct_secret_key", "--device-id", "dev-017", "--out", str(out), "--dry-run",
    ])
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output and "ct_secret_key" not in result.output
    steps = device_rotation_plan(DeviceRotationRequest("/dev/ttyACM0", "https://c", "dev-017", out))
    assert [type(s).__name__ for s in steps] == [
        "ReadDevicePublicKey", "RotateDeviceKey", "PromoteDeviceKey", "WriteJson", "Mpremote"
    ]
    assert PENDING_KEY_FILE in steps[0].snippet  # type: ignore[union-attr]
    actions = (out / ACTIONS_FILE).read_text()
    runs = [line for line in actions.splitlines() if line.startswith("would run: mpremote connect /dev/ttyACM0 ")]
    assert len(runs) == 3 and runs[-1].endswith(" reset")  # new key, promote, reset: nothing is copied or built
    posts = [line for line in actions.splitlines() if line.startswith("would POST ")]
    assert posts == [posts[0]] and "https://cloud.example.org/api/v1/devices/dev-017/keys" in posts[0]
    assert "ct_secret_key" not in actions
    record = json.loads((out / "device-dev-017-key-rotation.json").read_text())
    assert record["dry_run"] is True and record["key_origin"] == DRY_RUN_KEY_ORIGIN
    assert record["rotation"]["sent"] is False and record["rotation"]["body"]["public_key"] == record["public_key"]
    assert not (out / "firmware").exists()


def test_gateway_rotation_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gw"
    result = runner.invoke(app, [
        "provision", "gateway", "--rotate", "--cloud", "https://cloud.example.org", "--api-key", "ct_secret_key",
        "--gateway-id", "gw-plant-7", "--out", str(out), "--dry-run",
    ])
    assert result.exit_code == 0, result.output
    steps = gateway_rotation_plan(GatewayRotationRequest("https://c", "gw-plant-7", out))
    assert [type(s).__name__ for s in steps] == [
        "CreateGatewayKey", "SystemCommand", "RotateGatewayKey", "WriteJson", "SystemCommand", "SystemCommand",
        "SystemCommand",
    ]
    actions = (out / ACTIONS_FILE).read_text().splitlines()
    assert actions[0] == "would run: systemctl stop carbontrace-gateway.service"
    assert "https://cloud.example.org/api/v1/gateways/gw-plant-7/keys" in actions[1]
    assert actions[2].startswith("would run: install -m 0600 -o carbontrace -g carbontrace ")
    assert actions[2].endswith(f"{out / 'gateway.next.key'} /etc/carbontrace/gateway.key")
    assert actions[-1] == "would run: systemctl start carbontrace-gateway.service"
    staged = out / "gateway.next.key"
    record = json.loads((out / "gateway-gw-plant-7-key-rotation.json").read_text())
    assert record["public_key"] == bytes(p256.public_key(load_private_key(staged))).hex()
    assert not (out / "gateway.toml").exists()  # the settings and their API key stay as they are
    # --site is still required without --rotate.
    result = runner.invoke(app, [
        "provision", "gateway", "--cloud", "https://c", "--api-key", "k", "--gateway-id", "g", "--out", str(out),
        "--dry-run",
    ])
    assert result.exit_code == 2 and "--site" in result.output


def _host_runner(tmp_path: Path, flash: Path, api_key: str, monkeypatch: pytest.MonkeyPatch) -> PlanRunner:
    script = tmp_path / "host_mpremote.py"
    script.write_text(HOST_MPREMOTE)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{REPO / 'firmware'}")
    return PlanRunner(dry_run=False, api_key=api_key, echo=lambda _line: None,
                      mpremote=(sys.executable, str(script), str(flash)))


def test_device_rotation_for_real_resumes_after_a_failure_and_reaches_the_gateway(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flash = tmp_path / "device-flash"
    old_key = DeviceKey(HostPort(str(flash)))  # provisioned earlier: the board's current key
    gateway_public = new_key()[1]
    with RegistrationClient(cloud.url, cloud.engineer_key) as client:
        client.register_device(cloud.site_id, "dev-017", bytes(old_key.public_key))
        gateway_api_key = client.register_gateway(cloud.site_id, "gw-plant-7", gateway_public)["api_key"]
    old_bytes = (flash / KEY_FILE).read_bytes()
    request = DeviceRotationRequest("/dev/fake", cloud.url, "dev-017", tmp_path / "dev")

    # First attempt with a key the cloud refuses: the pending key is on the board, nothing else changed.
    with pytest.raises(RegistrationError) as err:
        _host_runner(tmp_path, flash, "ct_" + "0" * 64, monkeypatch).run(device_rotation_plan(request), request.out_dir)
    assert err.value.status == 401
    assert (flash / KEY_FILE).read_bytes() == old_bytes and (flash / PENDING_KEY_FILE).is_file()
    pending = (flash / PENDING_KEY_FILE).read_bytes()

    # Run again: the same pending key is rotated in, promoted and the board restarted.
    context = _host_runner(tmp_path, flash, cloud.engineer_key, monkeypatch).run(
        device_rotation_plan(request), request.out_dir
    )
    assert not (flash / PENDING_KEY_FILE).exists() and (flash / KEY_FILE).read_bytes() == pending
    new_key_on_board = DeviceKey(HostPort(str(flash)))
    assert context["public_key"] == new_key_on_board.public_key_hex() != old_key.public_key_hex()
    record = json.loads((request.out_dir / "device-dev-017-key-rotation.json").read_text())
    assert record["rotation"]["public_key"] == new_key_on_board.public_key_hex()
    assert [k["fingerprint"] for k in record["rotation"]["keys"]] == [
        key_fingerprint(bytes(old_key.public_key)).hex(), key_fingerprint(bytes(new_key_on_board.public_key)).hex()
    ]
    r = httpx.get(f"{cloud.url}/api/v1/devices/dev-017", headers=auth(cloud.engineer_key), timeout=30)
    assert r.json()["public_key"] == new_key_on_board.public_key_hex()
    assert r.json()["keys"][0]["revoke_tx"].startswith("0x")
    with RegistrationClient(cloud.url, cloud.engineer_key) as client:
        assert client.rotate_device_key("dev-017", bytes(new_key_on_board.public_key))["already_current"] is True

    # The gateway's next registry sync carries the new key: it accepts the board's new signatures only.
    gateway_cloud = CloudClient(cloud.url, "gw-plant-7", gateway_api_key, 30)
    try:
        registry = gateway_cloud.devices()
    finally:
        gateway_cloud.close()
    lookup = {entry.device_id: entry for entry in registry.devices}.get
    now = int(time.time())
    reading = Reading("dev-017", 1, now, "1.0.0", co2_ppm=612)
    topic = reading_topic(cloud.site_id, "dev-017")
    verdict = classify_message(topic, new_key_on_board.sign_reading(reading), cloud.site_id, lookup, now, 300)
    assert isinstance(verdict, Verified)
    verdict = classify_message(topic, old_key.sign_reading(reading), cloud.site_id, lookup, now, 300)
    assert isinstance(verdict, Rejected) and verdict.reason == "bad_signature"


def test_promote_refuses_a_board_that_does_not_hold_the_registered_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flash = tmp_path / "device-flash"
    DeviceKey(HostPort(str(flash)))
    host = _host_runner(tmp_path, flash, "unused", monkeypatch)
    host.context["public_key"] = new_key()[1].hex()  # not what the board holds
    with pytest.raises(ProvisionError, match="not the registered"):
        host.run([PromoteDeviceKey("/dev/fake")], tmp_path / "dev")
    # And a board without a key has nothing to rotate.
    empty = _host_runner(tmp_path, tmp_path / "blank-flash", "unused", monkeypatch)
    with pytest.raises(ProvisionError, match="nothing to rotate"):
        empty.run([device_rotation_plan(DeviceRotationRequest("/dev/fake", "http://x", "d", tmp_path))[0]], tmp_path)
    assert isinstance(device_rotation_plan(DeviceRotationRequest("p", "u", "d", tmp_path))[0], ReadDevicePublicKey)
    assert isinstance(device_rotation_plan(DeviceRotationRequest("p", "u", "d", tmp_path))[1], RotateDeviceKey)


def test_gateway_rotation_for_real_keeps_the_api_key_and_the_new_key_signs(cloud: Cloud, tmp_path: Path) -> None:
    gateway_private, gateway_public = new_key()
    device_private, device_public = new_key()
    with RegistrationClient(cloud.url, cloud.engineer_key) as client:
        client.register_device(cloud.site_id, "dev-9", device_public)
        gateway_api_key = client.register_gateway(cloud.site_id, "gw-9", gateway_public)["api_key"]
    out = tmp_path / "gw"
    steps = gateway_rotation_plan(GatewayRotationRequest(cloud.url, "gw-9", out, config_dir=tmp_path / "etc"))
    assert isinstance(steps[2], RotateGatewayKey)
    # No root here: the system steps wait in the manual list, in order; the cloud step is done.
    context = PlanRunner(dry_run=False, api_key=cloud.engineer_key, echo=lambda _line: None,
                         perform_system=False).run(steps, out)
    manual = (out / MANUAL_FILE).read_text().splitlines()
    assert manual[0] == "run by hand: systemctl stop carbontrace-gateway.service"
    assert manual[-1] == "run by hand: systemctl start carbontrace-gateway.service"
    new_private = load_private_key(out / "gateway.next.key")
    new_public = bytes(p256.public_key(new_private))
    assert context["rotation"]["public_key"] == new_public.hex() and "api_key" not in context["rotation"]

    gateway_cloud = CloudClient(cloud.url, "gw-9", gateway_api_key, 30)  # the same API key still works
    try:
        registry = gateway_cloud.devices()
        assert registry.emission_factor is not None
        kit = GatewayKit("gw-9", cloud.site_id, gateway_private, gateway_public, gateway_api_key,
                         [DeviceKit("dev-9", device_private, device_public)], registry.emission_factor)
        batch, _ = kit.build()
        refused = gateway_cloud.upload(batch.encode())
        assert refused.status == 422 and refused.body["error"] == "revoked_gateway_key"
        kit.private, kit.public = new_private, new_public
        batch, _ = kit.build()
        assert gateway_cloud.upload(batch.encode()).status == 201
    finally:
        gateway_cloud.close()
